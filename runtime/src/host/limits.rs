//! What one store may hold: a memory cap that is a total over every linear memory and table of
//! the store, and bounds on how many instances, memories and tables it may create.
//!
//! Wasmtime asks a store's [`ResourceLimiter`] before it creates or grows a memory or a table;
//! [`Limiter`] keeps the running sum of what it allowed and refuses (with a [`MemoryLimitHit`]
//! error, which traps the guest) any growth that would take the sum past the cap. A component
//! with several core memories therefore gets the cap once, not once per memory.
//!
//! Initial sizes count too: when an instance is created wasmtime calls
//! [`ResourceLimiter::memory_growing`] with `current == 0` and the memory's minimum (and
//! [`ResourceLimiter::table_growing`] likewise for tables), so a component whose memories are
//! big from the start is refused at instantiation.

use wasmtime::ResourceLimiter;

/// Bytes counted for each table element. Wasmtime keeps one pointer per element today
/// (`ResourceLimiter::table_growing` says so); two pointers leave room for a richer element
/// layout so that tables can never be a way around the memory cap.
pub const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>() * 2;

/// Core instances a store may create. Every fault and probe built from `faults/` (Rust,
/// `wasm32-wasip2`) instantiates 3 core modules: its own code and the shim and fixup modules
/// that tie the imported functions into its table. 32 leaves room for components built by
/// other toolchains (a WASI preview 1 adapter, a language runtime in modules of its own) while
/// stopping one that instantiates modules by the thousand.
pub const MAX_INSTANCES: usize = 32;

/// Linear memories a store may create. Each fault built from `faults/` has 1 (17 pages at
/// start); an adapted component has 2.
pub const MAX_MEMORIES: usize = 8;

/// Tables a store may create. Each fault built from `faults/` has 2 (its function table, 60
/// to 160 elements, and the shim's, under 60).
pub const MAX_TABLES: usize = 16;

/// A store's memory (and table) growth was refused because the total would pass the cap.
///
/// Returned as the error of a refused growth, so the guest traps and the host can downcast the
/// trap to this and report the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLimitHit {
    /// The cap, in bytes, over all memories and tables of the store.
    pub limit: usize,
    /// The total, in bytes, the store would have held had the growth been allowed.
    pub asked: usize,
}

impl std::fmt::Display for MemoryLimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "memory limit of {} bytes exceeded: all memories and tables of the store would hold {} bytes",
            self.limit, self.asked
        )
    }
}

impl std::error::Error for MemoryLimitHit {}

/// The [`ResourceLimiter`] of one store: a total memory cap and counts of instances, memories
/// and tables.
#[derive(Debug, Clone)]
pub struct Limiter {
    cap: usize,
    used: usize,
}

impl Limiter {
    /// A limiter allowing `cap` bytes in total over every memory and table of the store.
    pub fn new(cap: usize) -> Limiter {
        Limiter { cap, used: 0 }
    }

    /// The cap, in bytes.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Bytes of memory and table the store holds so far, as far as this limiter allowed them.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Allows growing something from `current` to `desired` bytes if the total stays within
    /// the cap; counts it when allowed.
    fn grow(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Growth past the declared maximum fails anyway (memory.grow returns -1, as the spec
        // says); answering no here keeps such a failure out of the count.
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        let asked = self.used.saturating_add(desired.saturating_sub(current));
        if asked > self.cap {
            // An error (not `Ok(false)`) traps the guest, so the verdict can say which limit it
            // hit instead of the guest's allocator failing somewhere later.
            return Err(wasmtime::Error::new(MemoryLimitHit {
                limit: self.cap,
                asked,
            }));
        }
        // A growth allowed here may still fail in wasmtime (the OS refuses the pages); it stays
        // counted. `memory_grow_failed` cannot tell which growth failed (it is also called for
        // growths this limiter was never asked about), and counting too much can only refuse
        // earlier, never let a guest past the cap.
        self.used = asked;
        Ok(true)
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.grow(current, desired, maximum)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let bytes = |elements: usize| elements.saturating_mul(TABLE_ELEMENT_BYTES);
        self.grow(bytes(current), bytes(desired), maximum.map(bytes))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use wasmtime::{Engine, Instance, Module, Store};

    const PAGE: usize = 64 << 10;

    /// A module with two memories of `initial` pages each and a `grow` export per memory.
    fn two_memories(initial: u32) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(module
                (memory $a {initial})
                (memory $b {initial})
                (func (export "grow-a") (param i32) (result i32) (memory.grow $a (local.get 0)))
                (func (export "grow-b") (param i32) (result i32) (memory.grow $b (local.get 0))))"#
        ))
        .unwrap()
    }

    fn instantiate(wasm: &[u8], cap: usize) -> Result<(Store<Limiter>, Instance), wasmtime::Error> {
        let engine = Engine::default();
        let module = Module::new(&engine, wasm)?;
        let mut store = Store::new(&engine, Limiter::new(cap));
        store.limiter(|l| l);
        let instance = Instance::new(&mut store, &module, &[])?;
        Ok((store, instance))
    }

    fn grow(
        store: &mut Store<Limiter>,
        i: &Instance,
        which: &str,
        pages: i32,
    ) -> wasmtime::Result<i32> {
        i.get_typed_func::<i32, i32>(&mut *store, which)?
            .call(&mut *store, pages)
    }

    #[test]
    fn initial_sizes_count_against_the_cap() {
        let (store, _) = instantiate(&two_memories(3), 10 * PAGE).unwrap();
        assert_eq!(store.data().used(), 6 * PAGE);
    }

    #[test]
    fn the_cap_is_a_total_over_every_memory() {
        let (mut store, i) = instantiate(&two_memories(1), 10 * PAGE).unwrap();
        // Each memory alone would stay under the cap (1 + 6 = 7 pages of 10)…
        assert_eq!(grow(&mut store, &i, "grow-a", 6).unwrap(), 1);
        // …but together they pass it: 7 + 7 = 14 pages.
        let e = grow(&mut store, &i, "grow-b", 6).unwrap_err();
        let hit = e
            .downcast_ref::<MemoryLimitHit>()
            .expect("a memory limit hit");
        assert_eq!(
            hit,
            &MemoryLimitHit {
                limit: 10 * PAGE,
                asked: 14 * PAGE
            }
        );
        assert!(
            format!("{e:#}").contains("memory limit of 655360 bytes exceeded"),
            "{e:#}"
        );
        // The refused growth is not counted.
        assert_eq!(store.data().used(), 8 * PAGE);
    }

    #[test]
    fn memories_too_big_together_are_refused_at_instantiation() {
        let e = instantiate(&two_memories(6), 10 * PAGE).unwrap_err();
        let hit = e
            .downcast_ref::<MemoryLimitHit>()
            .expect("a memory limit hit");
        assert_eq!(hit.asked, 12 * PAGE);
    }

    #[test]
    fn growth_past_a_declared_maximum_fails_without_being_counted() {
        let wasm = wat::parse_str(
            r#"(module (memory 1 2)
                (func (export "grow-a") (param i32) (result i32) (memory.grow (local.get 0))))"#,
        )
        .unwrap();
        let (mut store, i) = instantiate(&wasm, 10 * PAGE).unwrap();
        assert_eq!(grow(&mut store, &i, "grow-a", 5).unwrap(), -1);
        assert_eq!(store.data().used(), PAGE);
    }

    #[test]
    fn table_elements_count_against_the_same_cap() {
        let cap = 4 * PAGE;
        let elements = (2 * PAGE / TABLE_ELEMENT_BYTES) as i32;
        let wasm = wat::parse_str(
            r#"(module (memory 1) (table $t 0 funcref)
                (func (export "grow-t") (param i32) (result i32)
                    (table.grow $t (ref.null func) (local.get 0))))"#,
        )
        .unwrap();
        let (mut store, i) = instantiate(&wasm, cap).unwrap();
        // 1 page of memory + 2 pages' worth of elements fit; another 2 pages' worth do not.
        assert_eq!(grow(&mut store, &i, "grow-t", elements).unwrap(), 0);
        let e = grow(&mut store, &i, "grow-t", elements).unwrap_err();
        let hit = e
            .downcast_ref::<MemoryLimitHit>()
            .expect("a memory limit hit");
        assert_eq!(hit.asked, 5 * PAGE);
    }

    #[test]
    fn too_many_memories_are_refused() {
        let memories: String = (0..=MAX_MEMORIES).map(|_| "(memory 0)").collect();
        let wasm = wat::parse_str(format!("(module {memories})")).unwrap();
        let e = instantiate(&wasm, 10 * PAGE).unwrap_err();
        assert!(format!("{e:#}").contains("memory count"), "{e:#}");
    }

    #[test]
    fn too_many_instances_are_refused() {
        let engine = Engine::default();
        let module = Module::new(&engine, wat::parse_str("(module)").unwrap()).unwrap();
        let mut store = Store::new(&engine, Limiter::new(PAGE));
        store.limiter(|l| l);
        for _ in 0..MAX_INSTANCES {
            Instance::new(&mut store, &module, &[]).unwrap();
        }
        let e = Instance::new(&mut store, &module, &[]).unwrap_err();
        assert!(format!("{e:#}").contains("instance count"), "{e:#}");
    }
}
