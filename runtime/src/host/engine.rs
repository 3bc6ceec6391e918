//! The one wasm engine of a host, and the ticker that advances its epoch while guest code may
//! be running.

use super::error::anyhow_of_wasmtime;
use anyhow::{Context as _, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::Thread;
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

/// What the ticker thread and the stores share.
struct Shared {
    stop: AtomicBool,
    /// Stores alive (calls that may run guest code).
    awake: AtomicUsize,
    /// The ticker thread's kernel id, for tests that read its `/proc` entry.
    #[cfg(test)]
    tid: std::sync::atomic::AtomicI32,
}

/// Advances the engine's epoch every [`TICK`] on a thread of its own while at least one
/// [`Awake`] guard lives, and sleeps (parked: no wake-ups at all) while none does, so an idle
/// agent costs no CPU. Stops when dropped.
pub(super) struct Ticker {
    shared: Arc<Shared>,
    thread: Thread,
}

/// Keeps the ticker ticking while a store exists: deadlines and the guest's yields to the
/// executor depend on it. Every store holds one.
pub(crate) struct Awake {
    shared: Arc<Shared>,
    thread: Thread,
}

impl Ticker {
    pub(super) fn start(engine: &Engine) -> Result<Ticker> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            awake: AtomicUsize::new(0),
            #[cfg(test)]
            tid: std::sync::atomic::AtomicI32::new(0),
        });
        let (engine, ticking) = (engine.clone(), shared.clone());
        let handle = std::thread::Builder::new()
            .name("faultline-epoch".into())
            .spawn(move || {
                #[cfg(test)]
                ticking
                    .tid
                    .store(nix::unistd::gettid().as_raw(), Ordering::Release);
                while !ticking.stop.load(Ordering::Acquire) {
                    if ticking.awake.load(Ordering::Acquire) == 0 {
                        // An `Awake` made after this load unparks us: the token makes this
                        // return at once, and the loop looks again.
                        std::thread::park();
                        continue;
                    }
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .context("failed to start the epoch ticker")?;
        Ok(Ticker {
            shared,
            thread: handle.thread().clone(),
        })
    }

    /// A guard that keeps the epoch advancing while it lives.
    pub(super) fn awake(&self) -> Awake {
        if self.shared.awake.fetch_add(1, Ordering::AcqRel) == 0 {
            self.thread.unpark();
        }
        Awake {
            shared: self.shared.clone(),
            thread: self.thread.clone(),
        }
    }
}

impl Clone for Awake {
    fn clone(&self) -> Awake {
        if self.shared.awake.fetch_add(1, Ordering::AcqRel) == 0 {
            self.thread.unpark();
        }
        Awake {
            shared: self.shared.clone(),
            thread: self.thread.clone(),
        }
    }
}

impl Drop for Awake {
    fn drop(&mut self) {
        // The thread notices the count at its next tick and parks.
        self.shared.awake.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// The ticker thread's voluntary context switches, from `/proc`: each sleep of a tick is
    /// one; a parked thread makes none.
    fn switches(ticker: &Ticker) -> u64 {
        let tid = loop {
            match ticker.shared.tid.load(Ordering::Acquire) {
                0 => std::thread::sleep(Duration::from_millis(1)),
                tid => break tid,
            }
        };
        let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn the_ticker_sleeps_without_wake_ups_until_a_store_is_awake() {
        let engine = engine().unwrap();
        let ticker = Ticker::start(&engine).unwrap();
        let watch = Duration::from_millis(300);
        std::thread::sleep(Duration::from_millis(20)); // let it reach its first park
        let idle = switches(&ticker);
        std::thread::sleep(watch);
        let idle = switches(&ticker) - idle;
        assert!(idle <= 1, "{idle} wake-ups in {watch:?} with nothing awake");

        let guard = ticker.awake();
        let second = guard.clone();
        drop(guard);
        let busy = switches(&ticker);
        std::thread::sleep(watch);
        let busy = switches(&ticker) - busy;
        // 30 ticks in 300 ms; a loaded machine may run fewer, never none.
        assert!(busy >= 10, "only {busy} ticks in {watch:?} while awake");

        drop(second);
        std::thread::sleep(TICK * 3); // the thread sees the count at its next tick
        let after = switches(&ticker);
        std::thread::sleep(watch);
        let after = switches(&ticker) - after;
        assert!(after <= 1, "{after} wake-ups after the last store went");
    }
}
