//! Programs from the operator's allow-list, for probes, through the host's `command` capability:
//! no shell, an empty environment (`PATH=/usr/bin:/bin` only), no stdin, stdout and stderr cut
//! at 64 KiB each, and a timeout that kills the program with everything it started.
//!
//! ```ignore
//! let out = faultline_sdk::command::run("/usr/bin/pg_isready", &["-h".into(), "db".into()], 5_000)?;
//! let healthy = out.exit_code == Some(0);
//! ```

pub use crate::bindings::faultline::contract::command::*;
