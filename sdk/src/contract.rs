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

impl Error {
    /// A parameter is malformed or out of range.
    pub fn invalid(reason: impl Into<String>) -> Self {
        Error::Invalid(reason.into())
    }

    /// Anything else went wrong.
    pub fn failed(reason: impl Into<String>) -> Self {
        Error::Failed(reason.into())
    }

    /// The target is gone.
    pub fn target_gone(reason: impl Into<String>) -> Self {
        Error::TargetGone(reason.into())
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
