//! The one wasm engine of a host, and the ticker that advances its epoch.

use super::error::anyhow_of_wasmtime;
use anyhow::{Context as _, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::{Config, Engine};

/// How often the epoch advances; deadlines are counted in these ticks.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// The engine: epoch interruption for deadlines, the component model, a bounded stack.
/// Components load from their binary form only (`Component::from_binary` everywhere), so a
/// file named as a component is never parsed, and quoted back, as WAT text.
pub(super) fn engine() -> Result<Engine> {
    let mut wasm = Config::new();
    wasm.epoch_interruption(true)
        .wasm_component_model(true)
        .max_wasm_stack(1 << 20);
    Engine::new(&wasm)
        .map_err(anyhow_of_wasmtime)
        .context("failed to create the wasm engine")
}

/// Advances the engine's epoch every [`TICK`] on a thread of its own; stops when dropped.
pub(super) struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Ticker {
    pub(super) fn start(engine: &Engine) -> Result<Ticker> {
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, stopped) = (engine.clone(), stop.clone());
        std::thread::Builder::new()
            .name("faultline-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .context("failed to start the epoch ticker")?;
        Ok(Ticker { stop })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
