//! The contract's types, re-exported for whichever world this build targets.

pub use crate::bindings::faultline::contract::types::{Capability, Description, Error};

#[cfg(feature = "fault")]
pub use crate::bindings::faultline::contract::types::{InjectRequest, TickRequest, TickResponse};
#[cfg(feature = "probe")]
pub use crate::bindings::faultline::contract::types::{Outcome, ProbeRequest};

#[cfg(feature = "fault")]
pub use crate::fault::{Fault, InjectContext};
#[cfg(feature = "probe")]
pub use crate::probe::{Probe, ProbeContext};
#[cfg(feature = "fault")]
pub use crate::tick::{TickContext, Ticking};

#[doc(hidden)]
pub mod __private {
    pub use serde_json;

    use crate::{Description, Error};
    use schemars::JsonSchema;
    use serde::de::DeserializeOwned;

    /// Parses a parameters object, naming the problem for the operator.
    pub fn parse_params<P: DeserializeOwned>(params: &str) -> Result<P, Error> {
        let text = if params.trim().is_empty() {
            "{}"
        } else {
            params
        };
        serde_json::from_str(text).map_err(|e| Error::Invalid(format!("parameters: {e}")))
    }

    /// Builds the description from the author's constants and the parameter type's schema.
    pub fn describe<P: JsonSchema>(
        name: &str,
        version: &str,
        summary: &str,
        capabilities: &[crate::Capability],
        revertible: bool,
    ) -> Description {
        let schema = schemars::schema_for!(P);
        Description {
            name: name.to_string(),
            version: version.to_string(),
            summary: summary.to_string(),
            params_schema: serde_json::to_string(&schema).unwrap_or_else(|_| "{}".to_string()),
            capabilities: capabilities.to_vec(),
            revertible,
        }
    }
}

/// One constructor per case of the contract's `error`, and what the host makes of each. The
/// message is for people: say what is wrong and with what. Errors are values: the host never
/// traps a component for a denied or bad call, and a component should never panic for one.
///
/// ```
/// # #[cfg(any(feature = "fault", feature = "probe"))] {
/// use faultline_sdk::Error;
///
/// fn check_percent(percent: f32) -> Result<(), Error> {
///     if !(0.0..=100.0).contains(&percent) {
///         return Err(Error::invalid(format!("`percent` must be 0 to 100, not {percent}")));
///     }
///     Ok(())
/// }
/// assert!(matches!(check_percent(150.0), Err(Error::Invalid(_))));
/// # }
/// ```
impl Error {
    /// A parameter is malformed or out of range: from `validate` (nothing has run), or from
    /// `inject`/`check` for what only shows then. The run is refused, nothing is injected.
    pub fn invalid(reason: impl Into<String>) -> Self {
        Error::Invalid(reason.into())
    }

    /// Not allowed. The host returns this when the policy does not grant a call (its message
    /// names the rule); a component returns it to pass such a refusal on. A probe's `denied`
    /// makes its check *not applicable*, never a failure of the system.
    pub fn denied(reason: impl Into<String>) -> Self {
        Error::Denied(reason.into())
    }

    /// This host cannot do it: a kernel feature, a cgroup controller or a qdisc it lacks
    /// (the host returns it, naming the feature). Like every error from `inject`, it fails the
    /// run and the host undoes whatever was journalled.
    pub fn unsupported(reason: impl Into<String>) -> Self {
        Error::Unsupported(reason.into())
    }

    /// The target is gone, or none matches: a process exited, a cgroup was removed. From
    /// `revert`, say so: the host still undoes whatever its journal holds for the run.
    pub fn target_gone(reason: impl Into<String>) -> Self {
        Error::TargetGone(reason.into())
    }

    /// Anything else went wrong. From `inject`, the host reverts what was journalled and
    /// reports the run failed.
    pub fn failed(reason: impl Into<String>) -> Self {
        Error::Failed(reason.into())
    }
}

#[cfg(feature = "fault")]
#[doc(hidden)]
pub use crate::fault::__private as __fault;
#[cfg(feature = "probe")]
#[doc(hidden)]
pub use crate::probe::__private as __probe;
#[cfg(feature = "fault")]
#[doc(hidden)]
pub use crate::tick::__private as __tick;
