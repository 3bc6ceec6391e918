//! Programs from the operator's allow-list, for probes, through the host's `command` capability:
//! no shell, an empty environment (`PATH=/usr/bin:/bin` only), no stdin, stdout and stderr cut
//! at 64 KiB each, and a timeout that kills the program with everything it started.
//!
//! ```
//! # #[cfg(feature = "probe")]
//! fn database_is_ready() -> Result<bool, faultline_sdk::Error> {
//!     let args = ["-h".to_string(), "db".to_string()];
//!     let out = faultline_sdk::command::run("/usr/bin/pg_isready", &args, 5_000)?;
//!     Ok(out.exit_code == Some(0))
//! }
//! ```

pub use crate::bindings::faultline::contract::command::*;
#[cfg(all(feature = "testing", not(target_arch = "wasm32"), not(doc)))]
pub use crate::testing::host::command::run;
