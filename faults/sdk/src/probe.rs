//! The `Probe` trait and its export macro.

use crate::{Capability, Error, Outcome};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

/// What `check` knows besides its parameters.
#[derive(Debug, Clone)]
pub struct ProbeContext {
    /// The execution this check belongs to.
    pub execution_id: String,
}

/// A probe: checks something once and says whether it is healthy.
pub trait Probe {
    /// The parameters, parsed from the JSON object the operator gave.
    type Params: DeserializeOwned + JsonSchema;

    /// One line on what the probe checks.
    const SUMMARY: &'static str;
    /// The capability interfaces the probe uses.
    const CAPABILITIES: &'static [Capability];

    /// Checks parameters beyond their types. No side effects.
    fn validate(_params: &Self::Params) -> Result<(), Error> {
        Ok(())
    }

    /// Checks once.
    fn check(params: Self::Params, context: &ProbeContext) -> Result<Outcome, Error>;
}

#[doc(hidden)]
pub mod __private {
    use super::*;
    use crate::{Description, ProbeRequest};

    pub fn describe<P: Probe>(name: &str, version: &str) -> Description {
        crate::__private::describe::<P::Params>(name, version, P::SUMMARY, P::CAPABILITIES, true)
    }

    pub fn validate<P: Probe>(params: &str) -> Result<(), Error> {
        P::validate(&crate::__private::parse_params::<P::Params>(params)?)
    }

    pub fn check<P: Probe>(request: ProbeRequest) -> Result<Outcome, Error> {
        let params = crate::__private::parse_params::<P::Params>(&request.params)?;
        P::validate(&params)?;
        P::check(
            params,
            &ProbeContext {
                execution_id: request.execution_id,
            },
        )
    }
}

/// Exports a [`Probe`] implementation as the component's `probe` world.
#[macro_export]
macro_rules! export_probe {
    ($probe:ty) => {
        const _: () = {
            struct FaultlineExport;

            impl $crate::probe_bindings::Guest for FaultlineExport {
                fn describe() -> $crate::Description {
                    $crate::__probe::describe::<$probe>(
                        env!("CARGO_PKG_NAME"),
                        env!("CARGO_PKG_VERSION"),
                    )
                }
                fn validate(params: String) -> Result<(), $crate::Error> {
                    $crate::__probe::validate::<$probe>(&params)
                }
                fn check(request: $crate::ProbeRequest) -> Result<$crate::Outcome, $crate::Error> {
                    $crate::__probe::check::<$probe>(request)
                }
            }

    $crate::probe_bindings::__export_probe_world!(FaultlineExport with_types_in $crate::probe_bindings);
        };
    };
}
