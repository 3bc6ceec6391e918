//! Chaos hub: finds, verifies and caches the faults and probes that Faultline runs.
//!
//! A hub publishes `hub-index.json` ([`Index`]) with a detached Ed25519 signature beside it
//! (`hub-index.json.sig`). The agent reads its [`HubConfig`] (the `[hub]` section of
//! `faultline.toml`: sources, trusted keys, curation, pins, cache directory), and [`Hub`]:
//!
//! 1. **syncs** every source (local path, `file://`, `http(s)://`): checks the schema, the
//!    signatures, the expiry, the runtime requirement and rollback (a serial lower than the
//!    highest already seen for that hub id), and keeps the last good index in the cache when a
//!    sync fails, so everything works offline;
//! 2. **resolves** a reference (`name`, `name@^1`, `name@=1.2.3`, `sha256:<hex>`) to the newest
//!    matching release that is not yanked, honouring pins, curation and the capability ceiling;
//! 3. **pulls** the component into a content-addressed cache, checking its size and digest and
//!    that its imports stay within its declared capabilities.
//!
//! ```no_run
//! # async fn example(imports: &dyn faultline::hub::ComponentImports) -> Result<(), faultline::hub::HubError> {
//! use faultline::hub::{Hub, HubConfig};
//!
//! let config = HubConfig::from_toml_str("[hub]\nrequired_signatures = 0\n", std::path::Path::new("."))?;
//! let mut hub = Hub::open(config)?;
//! let report = hub.sync().await;
//! for problem in report.problems() {
//!     eprintln!("warning: {problem}");
//! }
//! let resolved = hub.resolve("process-pause@^0.1")?;
//! let pulled = hub.pull(&resolved, imports).await?;
//! println!("{} at {}", pulled.digest, pulled.path.display());
//! # Ok(()) }
//! ```
//!
//! Authors and curators use [`sign`], [`lint`] and [`build`] through `faultline hub ...`.

pub mod build;
mod cache;
mod config;
mod curate;
mod digest;
mod error;
mod fetch;
mod index;
pub mod lint;
mod pull;
mod resolve;
pub mod sign;
mod source;
mod sync;
mod verify;

pub use cache::Cache;
pub use config::{HubConfig, TrustedKey, bundled_index_path};
pub use curate::{ComponentImports, check_imports};
pub use digest::Digest;
pub use error::HubError;
pub use index::{
    Capability, CapabilityDecl, Deprecated, HubInfo, INDEX_FILE, Index, Kind, Package, Release,
    SCHEMA_VERSION, SIGNATURE_FILE, Yanked, index_schema,
};
pub use pull::Pulled;
pub use resolve::{Reference, Resolved};
pub use source::{Source, signature_path};
pub use sync::{Hub, LoadedIndex, SourceOutcome, SourceReport, SyncReport};
pub use verify::verify_file;
