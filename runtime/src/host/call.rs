//! One call into a plug-in: a fresh store with its limits, a deadline enforced by epochs and by
//! an outer timeout, and a verdict that says why a call failed.

use super::engine::TICK;
use super::error::{CallError, GuestErrorText};
use super::limits::MemoryLimitHit;
use crate::capability::Context;
use crate::contract::types::Error as GuestError;
use std::time::{Duration, Instant};
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Bytes of a guest's stderr kept for the trap message.
pub(super) const STDERR_CAP: usize = 16 * 1024;

/// Everything one store holds.
pub struct StoreState {
    pub(super) wasi: WasiCtx,
    pub(super) http_ctx: wasmtime_wasi_http::WasiHttpCtx,
    pub(super) http: crate::capability::outbound::http::HttpHooks,
    pub(super) table: ResourceTable,
    pub(super) limits: super::limits::Limiter,
    pub(super) cap: Context,
    /// Keeps the epoch ticker running while the store (and so a call) exists; an idle host
    /// has no ticker wake-ups.
    pub(super) _awake: super::engine::Awake,
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_http::WasiHttpView for StoreState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.http,
        }
    }
}

pub(super) fn classify(
    phase: &'static str,
    e: wasmtime::Error,
    stderr: &MemoryOutputPipe,
) -> CallError {
    if let Some(hit) = e.downcast_ref::<MemoryLimitHit>() {
        return CallError::MemoryLimit {
            phase,
            limit: hit.limit,
            asked: hit.asked,
        };
    }
    if let Some(wasmtime::Trap::Interrupt) = e.downcast_ref::<wasmtime::Trap>() {
        return CallError::Deadline {
            phase,
            limit: Duration::ZERO,
        };
    }
    let mut message = format!("{e:#}");
    let said = String::from_utf8_lossy(&stderr.contents())
        .trim()
        .to_string();
    if !said.is_empty() {
        message = format!("{said} ({message})");
    }
    CallError::Trap { phase, message }
}

/// Runs a call with its deadline. Epochs cut off guest code; the outer timeout also covers time
/// inside host functions.
pub(super) async fn within<T>(
    phase: &'static str,
    limit: Duration,
    stderr: &MemoryOutputPipe,
    call: impl std::future::Future<Output = wasmtime::Result<T>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(limit + TICK * 10, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(match classify(phase, e, stderr) {
            CallError::Deadline { phase, .. } => CallError::Deadline { phase, limit },
            other => other,
        }),
        Err(_) => Err(CallError::Deadline { phase, limit }),
    }
}

/// Arms a call's deadline. The guest yields to the executor every tick, so a looping guest
/// never holds a worker thread and a signal, a stop or an emergency stop is acted on while it
/// runs (dropping the call cancels it); once `limit` has passed it traps.
pub(super) fn arm_deadline(store: &mut Store<StoreState>, limit: Duration) {
    let end = Instant::now() + limit;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        Ok(if Instant::now() >= end {
            wasmtime::UpdateDeadline::Interrupt
        } else {
            wasmtime::UpdateDeadline::Yield(1)
        })
    });
}

/// The contract's error from an export, as a [`CallError`].
pub(super) fn guest<T>(phase: &'static str, r: Result<T, GuestError>) -> Result<T, CallError> {
    r.map_err(|e| CallError::Guest {
        phase,
        error: GuestErrorText::from(e),
    })
}
