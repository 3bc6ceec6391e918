//! The `Fault` trait and its export macro.

use crate::{Capability, Error};
use schemars::JsonSchema;
use serde::{Serialize, de::DeserializeOwned};

/// What `inject` knows besides its parameters.
#[derive(Debug, Clone)]
pub struct InjectContext {
    /// How long the host keeps the fault injected, in milliseconds; 0 when open-ended.
    pub duration_ms: u64,
    /// The execution this injection belongs to.
    pub execution_id: String,
}

/// A fault: breaks something on `inject`, undoes it on `revert`.
///
/// `revert` runs in a fresh instance and sees only the state `inject` returned: keep nothing
/// in statics between the two.
pub trait Fault {
    /// The parameters, parsed from the JSON object the operator gave. Use `#[serde(default)]`
    /// for defaults: they appear in the published schema.
    type Params: DeserializeOwned + JsonSchema;
    /// What `inject` hands to `revert` (serialised as JSON by the SDK).
    type State: Serialize + DeserializeOwned;

    /// One line on what the fault breaks.
    const SUMMARY: &'static str;
    /// The capability interfaces the fault uses.
    const CAPABILITIES: &'static [Capability];
    /// Whether `revert` truly undoes `inject`; false for a kill.
    const REVERTIBLE: bool = true;

    /// Checks parameters beyond their types. No side effects.
    fn validate(_params: &Self::Params) -> Result<(), Error> {
        Ok(())
    }

    /// Injects the fault.
    fn inject(params: Self::Params, context: &InjectContext) -> Result<Self::State, Error>;

    /// Undoes `inject`.
    fn revert(state: Self::State) -> Result<(), Error>;
}

#[doc(hidden)]
pub mod __private {
    use super::*;
    use crate::{Description, InjectRequest};

    pub fn describe<F: Fault>(name: &str, version: &str) -> Description {
        crate::__private::describe::<F::Params>(
            name,
            version,
            F::SUMMARY,
            F::CAPABILITIES,
            F::REVERTIBLE,
        )
    }

    pub fn validate<F: Fault>(params: &str) -> Result<(), Error> {
        F::validate(&crate::__private::parse_params::<F::Params>(params)?)
    }

    pub fn inject<F: Fault>(request: InjectRequest) -> Result<Vec<u8>, Error> {
        let params = crate::__private::parse_params::<F::Params>(&request.params)?;
        F::validate(&params)?;
        let context = InjectContext {
            duration_ms: request.duration_ms,
            execution_id: request.execution_id,
        };
        let state = F::inject(params, &context)?;
        serde_json::to_vec(&state).map_err(|e| Error::Failed(format!("cannot encode state: {e}")))
    }

    pub fn revert<F: Fault>(state: Vec<u8>) -> Result<(), Error> {
        let state: F::State = serde_json::from_slice(&state)
            .map_err(|e| Error::Invalid(format!("state from inject is unreadable: {e}")))?;
        F::revert(state)
    }
}

/// The `describe`, `validate`, `inject` and `revert` of a `Guest` impl, shared by the `fault`
/// and `ticking-fault` worlds' export macros.
#[doc(hidden)]
#[macro_export]
macro_rules! __fault_exports {
    ($fault:ty) => {
        fn describe() -> $crate::Description {
            $crate::__fault::describe::<$fault>(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"))
        }
        fn validate(params: String) -> Result<(), $crate::Error> {
            $crate::__fault::validate::<$fault>(&params)
        }
        fn inject(request: $crate::InjectRequest) -> Result<Vec<u8>, $crate::Error> {
            $crate::__fault::inject::<$fault>(request)
        }
        fn revert(state: Vec<u8>) -> Result<(), $crate::Error> {
            $crate::__fault::revert::<$fault>(state)
        }
    };
}

/// Exports a [`Fault`] implementation as the component's `fault` world.
#[macro_export]
macro_rules! export_fault {
    ($fault:ty) => {
        const _: () = {
            struct FaultlineExport;

            impl $crate::fault_bindings::Guest for FaultlineExport {
                $crate::__fault_exports!($fault);
            }

    $crate::fault_bindings::__export_fault_world!(FaultlineExport with_types_in $crate::fault_bindings);
        };
    };
}
