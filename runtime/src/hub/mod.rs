//! Chaos hub: finds, verifies and caches the faults and probes that Faultline runs.
//!
//! A hub publishes `hub-index.json` ([`Index`]) with a detached Ed25519 signature beside it
//! (`hub-index.json.sig`). The agent reads its [`HubConfig`] (the `[hub]` section of
//! `faultline.toml`: sources, trusted keys, curation, pins, cache directory), and [`Hub`]:
//!
//! 1. **syncs** every source: the **bundled hub**, compiled into the binary (index and
//!    artefacts, by `runtime/build.rs`), whose trust is built in; and any path, `file://` or
//!    `http(s)://` source, whose index needs a valid signature from a configured trusted key
//!    (at least one unless the configuration says `required_signatures = 0` for it in so many
//!    words). Each index is checked for schema, signatures, expiry, runtime requirement and
//!    rollback (a serial lower than the highest already seen for that hub id); the last good
//!    index stays in the cache when a sync fails, so everything works offline;
//! 2. **resolves** a reference (`name`, `name@^1`, `name@=1.2.3`, `sha256:<hex>`) to the newest
//!    matching release that is not yanked, honouring pins, curation and the capability ceiling;
//! 3. **pulls** the component into a content-addressed cache, checking its size and digest and
//!    that its imports stay within its declared capabilities, and **fetches** its bytes with
//!    their provenance ([`Fetched`]).
//!
//! ```no_run
//! # async fn example(imports: &dyn faultline::hub::ComponentImports) -> Result<(), faultline::hub::HubError> {
//! use faultline::hub::{HubConfig, open_hub};
//!
//! // No sources: the bundled hub alone.
//! let config = HubConfig::from_toml_str("[hub]\n", std::path::Path::new("."))?;
//! let (hub, problems) = open_hub(config).await?;
//! for problem in problems {
//!     eprintln!("warning: {problem}");
//! }
//! let fetched = hub.fetch_component("process-pause@^0.1", imports).await?;
//! println!("{} ({} bytes)", fetched.identity.label(), fetched.bytes.len());
//! # Ok(()) }
//! ```
//!
//! Authors and curators use [`edit`] (init, yank), [`build`], [`sign`] and [`lint`] through
//! `faultline hub ...`.

pub mod build;
mod bundled;
mod cache;
pub mod catalog;
mod config;
mod curate;
mod digest;
pub mod edit;
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

pub use bundled::BUNDLED_HUB_ID;
pub use cache::Cache;
pub use config::{ConfiguredSource, HubConfig, SourceEntry, TrustedKey};
pub use curate::{ComponentImports, check_imports};
pub use digest::Digest;
pub use error::HubError;
pub use index::{
    Capability, CapabilityDecl, Deprecated, HubInfo, INDEX_FILE, Index, Kind, Package, Release,
    SCHEMA_VERSION, SIGNATURE_FILE, Yanked, index_schema,
};
pub use pull::{Fetched, Pulled};
pub use resolve::{Reference, Resolved};
pub use source::{BUNDLED, Source, signature_path};
pub use sync::{Hub, LoadedIndex, SourceOutcome, SourceReport, SyncReport, open_hub};
pub use verify::verify_file;
