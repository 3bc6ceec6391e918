//! The `Ticking` trait and its export macro: a fault the host calls again while it is held.

use crate::{Error, Fault, TickRequest, TickResponse};
use std::time::Duration;

/// What `tick` knows besides the state.
#[derive(Debug, Clone)]
pub struct TickContext {
    /// 0 for the tick right after `inject` returned, then 1, 2, …
    pub tick: u64,
    /// Time since `inject` returned.
    pub elapsed: Duration,
    /// Time until the host reverts; `None` when the run is open-ended.
    pub remaining: Option<Duration>,
    /// The execution this tick belongs to.
    pub execution_id: String,
}

/// A fault that acts over time (world `ticking-fault`): besides [`Fault::inject`] and
/// [`Fault::revert`], the host calls [`Ticking::tick`] right after `inject` returns and then
/// whenever the previous tick asked, until the fault's duration is over or it is stopped.
///
/// Each tick runs in a fresh instance with its own deadline (10 s by default): never sleep or
/// wait inside it, return and ask to be called again instead. Every change a tick makes is
/// journalled like one made by `inject`; `revert` gets the state the last successful tick left.
/// A tick that returns an error (or traps, or runs past its deadline) ends the run: the host
/// reverts at once.
pub trait Ticking: Fault {
    /// Acts once more, updating `state`. Returns when to be called next, counted from the start
    /// of this tick (at least 10 ms; the host schedules by the start, so ticks do not drift), or
    /// `None` for no more ticks (the fault stays injected until the host reverts it).
    fn tick(state: &mut Self::State, context: &TickContext) -> Result<Option<Duration>, Error>;
}

#[doc(hidden)]
pub mod __private {
    use super::*;

    pub fn tick<F: Ticking>(request: TickRequest) -> Result<TickResponse, Error> {
        let mut state: F::State = serde_json::from_slice(&request.state)
            .map_err(|e| Error::Invalid(format!("state from the last call is unreadable: {e}")))?;
        let context = TickContext {
            tick: request.tick,
            elapsed: Duration::from_millis(request.elapsed_ms),
            remaining: (request.remaining_ms > 0)
                .then(|| Duration::from_millis(request.remaining_ms)),
            execution_id: request.execution_id,
        };
        let next = F::tick(&mut state, &context)?;
        let state = serde_json::to_vec(&state)
            .map_err(|e| Error::Failed(format!("cannot encode state: {e}")))?;
        // 0 means "no more ticks", so a real interval is at least 1 ms (the host makes it 10).
        let next_ms = next.map_or(0, |d| {
            u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
        });
        Ok(TickResponse { state, next_ms })
    }
}

/// Exports a [`Ticking`] fault as the component's `ticking-fault` world: `describe`,
/// `validate`, `inject`, `revert` as [`export_fault!`](crate::export_fault) does, and `tick`.
#[macro_export]
macro_rules! export_ticking_fault {
    ($fault:ty) => {
        const _: () = {
            struct FaultlineExport;

            impl $crate::ticking_bindings::Guest for FaultlineExport {
                $crate::__fault_exports!($fault);

                fn tick(
                    request: $crate::TickRequest,
                ) -> Result<$crate::TickResponse, $crate::Error> {
                    $crate::__tick::tick::<$fault>(request)
                }
            }

            $crate::ticking_bindings::__export_ticking_fault_world!(
                FaultlineExport with_types_in $crate::ticking_bindings
            );
        };
    };
}
