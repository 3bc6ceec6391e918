//! Store limits against real components: the memory cap is a total over every memory of a
//! store, and the published faults fit the store's counts with room to spare.

use faultline::host::CallError;
use faultline::host::limits::{MAX_MEMORIES, MAX_TABLES};
use faultline::policy::Policy;
use faultline_tests::{components as c, host, wasm};
use std::time::Duration;

const PAGE: usize = 64 << 10;

/// `multi-memory` grows each of its two memories by `pages` (it reads them from the duration)
/// under the test host's cap of 32 MiB (512 pages).
async fn grow_both(pages: u64) -> Result<faultline::host::Injected, CallError> {
    let (host, _d) = host();
    let plugin = faultline_tests::load_fault(&host, &wasm(c::MULTI_MEMORY), &Policy::default())
        .await
        .unwrap();
    assert_eq!(plugin.label(), "multi-memory@0.1.0");
    plugin
        .inject(&host, "ex-multi", "{}", Duration::from_millis(pages))
        .await
}

#[tokio::test]
async fn two_memories_each_under_the_cap_together_hit_it() {
    // Each memory holds 1 + 300 pages (18.8 MiB), under the cap; both hold 602 pages.
    let e = grow_both(300).await.unwrap_err();
    match &e {
        CallError::MemoryLimit {
            phase: "inject",
            limit,
            asked,
        } => {
            assert_eq!(*limit, 32 << 20);
            assert_eq!(*asked, 602 * PAGE);
        }
        other => panic!("expected the memory limit, got {other:?}"),
    }
    assert_eq!(
        e.to_string(),
        "inject exceeded the memory limit of 33554432 bytes (asked for 39452672)"
    );
}

#[tokio::test]
async fn two_memories_together_under_the_cap_run() {
    // 2 × (1 + 200) = 402 pages of 512.
    let injected = grow_both(200).await.unwrap();
    assert!(injected.state.is_empty());
    assert!(injected.changes.is_empty());
}

#[tokio::test]
async fn published_faults_fit_the_store_limits_with_room_to_spare() {
    let (host, _d) = host();
    for (name, path) in c::PUBLISHED {
        let bytes = wasm(path);
        let (component, _, _) = host.compile(&bytes).await.unwrap();
        let needs = component
            .resources_required()
            .unwrap_or_else(|| panic!("{name}: imports core modules"));
        assert!(
            needs.num_memories * 2 <= MAX_MEMORIES as u32,
            "{name}: {} memories",
            needs.num_memories
        );
        assert!(
            needs.num_tables * 2 <= MAX_TABLES as u32,
            "{name}: {} tables",
            needs.num_tables
        );
        // Instantiating under the limiter checks the instance count and the initial sizes.
        let inspected = host.inspect(&bytes).await.unwrap();
        assert_eq!(inspected.description.name, *name);
    }
}
