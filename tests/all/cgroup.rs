//! The cgroup backend and the stress workers against real cgroup files, in throwaway cgroups
//! (`faultline_tests::cgroups::TestCgroup`) that are removed even when a test fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use faultline::capability::CapError;
use faultline::capability::cgroup::linux::{CgroupBackend, Inverse, Setting, Target};
use faultline::capability::process::stress::{self, StressKind, StressSpec};
use faultline_tests::cgroups::{TestCgroup, cpu_ns, read, v1_mount, write};

fn all() -> Vec<String> {
    vec!["/".to_string()]
}

fn worker_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stress-worker"))
}

/// The directory holding the files an inverse changed, as the harness sees it.
fn dir_of(cg: &TestCgroup, inverse: &Inverse) -> PathBuf {
    match &inverse.controller {
        Some(controller) => cg.v1(controller).to_path_buf(),
        None => cg.v2().to_path_buf(),
    }
}

/// Full contents of each file the inverse names.
fn snapshot(dir: &Path, inverse: &Inverse) -> Vec<(String, String)> {
    inverse
        .files
        .iter()
        .map(|f| (f.file.clone(), read(dir.join(&f.file))))
        .collect()
}

/// The state letter of `pid` in `/proc/PID/stat`, None when it is gone.
fn state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

fn cpu_spec(cgroup: &str, workers: u32, load_percent: u8) -> StressSpec {
    StressSpec {
        kind: StressKind::Cpu,
        workers,
        load_percent,
        memory_bytes: 0,
        cgroup: Some(cgroup.to_string()),
    }
}

/// Sets `setting` on the test cgroup, checks `expect(dir)`, undoes it (twice, the second time
/// from a fresh backend through the serialised inverse), and checks every file is back byte
/// for byte.
fn set_and_restore(cg: &TestCgroup, setting: Setting, expect: impl Fn(&Path, &Inverse)) -> Inverse {
    let backend = CgroupBackend::new().unwrap();
    let target = Target::Path(cg.path().to_string());
    let inverse = backend.prepare(&target, &setting, &all()).unwrap();
    let dir = dir_of(cg, &inverse);
    let before = snapshot(&dir, &inverse);
    for (file, change) in before.iter().zip(&inverse.files) {
        assert_eq!(file.1, change.previous, "{} read by prepare", file.0);
    }
    assert!(!backend.is_present(&inverse).unwrap());
    backend.apply(&target, &setting, &inverse).unwrap();
    assert!(backend.is_present(&inverse).unwrap());
    expect(&dir, &inverse);

    let journal = serde_json::to_string(&inverse).unwrap();
    drop(backend);
    let fresh = CgroupBackend::new().unwrap();
    let replayed: Inverse = serde_json::from_str(&journal).unwrap();
    assert!(fresh.is_present(&replayed).unwrap());
    fresh.undo(&replayed).unwrap();
    assert_eq!(snapshot(&dir, &inverse), before, "restored byte for byte");
    assert!(!fresh.is_present(&replayed).unwrap());
    fresh.undo(&replayed).unwrap();
    assert_eq!(
        snapshot(&dir, &inverse),
        before,
        "second undo changes nothing"
    );
    inverse
}

#[test]
fn cpu_limit_holds_a_worker_to_its_share() {
    if !faultline_tests::privileged("cpu_limit_holds_a_worker_to_its_share") {
        return;
    }
    let cg = TestCgroup::new(&["cpu", "cpuacct", "memory", "pids"], true);
    let backend = CgroupBackend::new().unwrap();
    let target = Target::Path(cg.path().to_string());
    let setting = Setting::CpuLimit { millicores: 200 };
    let inverse = backend.prepare(&target, &setting, &all()).unwrap();
    let dir = dir_of(&cg, &inverse);
    let before = snapshot(&dir, &inverse);
    backend.apply(&target, &setting, &inverse).unwrap();
    if inverse.version == 1 {
        let period: u64 = read(dir.join("cpu.cfs_period_us")).trim().parse().unwrap();
        assert_eq!(
            read(dir.join("cpu.cfs_quota_us")).trim(),
            (period / 5).to_string()
        );
    } else {
        let max = read(dir.join("cpu.max"));
        let (quota, period) = max.trim().split_once(' ').unwrap();
        assert_eq!(
            quota.parse::<u64>().unwrap() * 5,
            period.parse::<u64>().unwrap()
        );
    }

    let workers = stress::spawn(
        &cpu_spec(cg.path(), 1, 100),
        &worker_exe(),
        &backend,
        &all(),
    )
    .unwrap();
    let pid = workers.pgid;
    let membership = read(format!("/proc/{pid}/cgroup"));
    assert!(
        membership.lines().any(|l| l.ends_with(cg.path())),
        "worker placed in {}: {membership}",
        cg.path()
    );
    // Let the first CFS periods pass, then measure over 2 s.
    std::thread::sleep(Duration::from_millis(300));
    // Two readings: the worker's own (schedstat) and its cgroup's (cpuacct.usage, v1).
    let cpuacct = v1_mount("cpuacct").map(|_| cg.v1("cpuacct").join("cpuacct.usage"));
    let group_ns = || {
        cpuacct
            .as_ref()
            .map(|f| read(f).trim().parse::<u64>().unwrap())
    };
    let (t0, c0, g0) = (Instant::now(), cpu_ns(pid), group_ns());
    std::thread::sleep(Duration::from_secs(2));
    let (c1, g1) = (cpu_ns(pid), group_ns());
    let elapsed = t0.elapsed().as_nanos() as f64;
    let share = (c1 - c0) as f64 / elapsed;
    if let (Some(g0), Some(g1)) = (g0, g1) {
        eprintln!(
            "cgroup cpuacct.usage share: {:.1}% (target 20%)",
            (g1 - g0) as f64 / elapsed * 100.0
        );
    }
    eprintln!(
        "cpu share of a 100% worker under a 200 millicore limit: {:.1}% (target 20%)",
        share * 100.0
    );
    stress::undo(&workers).unwrap();
    backend.undo(&inverse).unwrap();
    assert_eq!(snapshot(&dir, &inverse), before);
    assert!(
        (0.15..=0.25).contains(&share),
        "cpu share {share:.3} not within 20% ±25%"
    );
}

#[test]
fn cpu_limit_is_restored_exactly() {
    if !faultline_tests::privileged("cpu_limit_is_restored_exactly") {
        return;
    }
    let cg = TestCgroup::new(&["cpu"], true);
    // 5 millicores is a 0.5 ms quota at the default 100 ms period, below the kernel's 1 ms
    // minimum: the period grows to 1 s (quota 5 ms), so both v1 files change and come back.
    set_and_restore(&cg, Setting::CpuLimit { millicores: 5 }, |dir, inv| {
        if inv.version == 1 {
            assert_eq!(read(dir.join("cpu.cfs_period_us")), "1000000\n");
            assert_eq!(read(dir.join("cpu.cfs_quota_us")), "5000\n");
        } else {
            assert_eq!(read(dir.join("cpu.max")), "5000 1000000\n");
        }
    });
}

#[test]
fn memory_limit_is_set_and_restored() {
    if !faultline_tests::privileged("memory_limit_is_set_and_restored") {
        return;
    }
    let cg = TestCgroup::new(&["memory"], true);
    let inverse = set_and_restore(&cg, Setting::MemoryLimit { bytes: 64 << 20 }, |dir, inv| {
        let file = if inv.version == 1 {
            "memory.limit_in_bytes"
        } else {
            "memory.max"
        };
        assert_eq!(read(dir.join(file)), format!("{}\n", 64u64 << 20));
    });
    assert_eq!(
        inverse.controller.as_deref(),
        v1_mount("memory").map(|_| "memory")
    );
}

#[test]
fn pids_limit_is_enforced() {
    if !faultline_tests::privileged("pids_limit_is_enforced") {
        return;
    }
    let cg = TestCgroup::new(&["pids"], true);
    set_and_restore(&cg, Setting::PidsLimit { max: 2 }, |dir, _| {
        assert_eq!(read(dir.join("pids.max")), "2\n");
        // The sleep child and this shell make two: the shell's fork is the third.
        let mut sh = Command::new("sh")
            .args(["-c", "read go; /bin/true && echo forked"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        cg.adopt(sh.id());
        drop(sh.stdin.take());
        let out = sh.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "fork beyond pids.max succeeded");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("forked"));
        assert!(stderr.to_lowercase().contains("fork"), "stderr: {stderr}");
    });
}

#[test]
fn io_limit_is_set_and_restored() {
    if !faultline_tests::privileged("io_limit_is_set_and_restored") {
        return;
    }
    // A whole disk (not a partition, loop or zram device): throttling needs a request queue.
    let device = std::fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            !["loop", "zram", "ram"].iter().any(|p| name.starts_with(p))
        })
        .find_map(|e| std::fs::read_to_string(e.path().join("dev")).ok())
        .map(|d| d.trim().to_string());
    let Some(device) = device else {
        faultline_tests::skip("io_limit_is_set_and_restored", "a block device to throttle");
        return;
    };
    let cg = TestCgroup::new(&["blkio"], true);
    let setting = Setting::IoLimit {
        device: device.clone(),
        read_bps: 1 << 20,
        write_bps: 0,
    };
    let backend = CgroupBackend::new().unwrap();
    match backend.prepare(&Target::Path(cg.path().to_string()), &setting, &all()) {
        Err(CapError::Unsupported(why)) => {
            faultline_tests::skip("io_limit_is_set_and_restored", &why.to_string());
            return;
        }
        other => drop(other.unwrap()),
    }
    set_and_restore(&cg, setting, |dir, inv| {
        if inv.version == 1 {
            assert_eq!(
                read(dir.join("blkio.throttle.read_bps_device")),
                format!("{device} 1048576\n")
            );
            assert!(!read(dir.join("blkio.throttle.write_bps_device")).contains(&device));
        } else {
            let io = read(dir.join("io.max"));
            assert!(
                io.contains(&format!("{device} rbps=1048576 wbps=max")),
                "io.max: {io}"
            );
        }
    });
}

/// Freezes the cgroup a busy worker is in, checks it stopped, thaws it, checks it runs.
fn freeze_and_thaw(cg: &TestCgroup, target: Target, expect_version: u8) {
    let backend = CgroupBackend::new().unwrap();
    let workers = stress::spawn(
        &cpu_spec(cg.path(), 1, 100),
        &worker_exe(),
        &backend,
        &all(),
    )
    .unwrap();
    let pids = [workers.pgid, i32::try_from(cg.pid()).unwrap()];
    let inverse = backend.prepare(&target, &Setting::Freeze, &all()).unwrap();
    assert_eq!(inverse.version, expect_version);
    let dir = dir_of(cg, &inverse);
    let before = snapshot(&dir, &inverse);
    backend.apply(&target, &Setting::Freeze, &inverse).unwrap();
    if inverse.version == 1 {
        assert_eq!(read(dir.join("freezer.state")), "FROZEN\n");
    } else {
        assert!(read(dir.join("cgroup.events")).contains("frozen 1\n"));
    }
    for pid in pids {
        // v1 freezes tasks in the refrigerator (D); v2 parks them in the signal path (S).
        let s = state(pid).unwrap();
        assert!(
            s == 'D' || s == 'S',
            "process {pid} in state {s} while frozen"
        );
    }
    let c0 = cpu_ns(workers.pgid);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(cpu_ns(workers.pgid), c0, "a frozen worker ran");

    backend.undo(&inverse).unwrap();
    assert_eq!(snapshot(&dir, &inverse), before, "thawed byte for byte");
    std::thread::sleep(Duration::from_millis(200));
    assert!(cpu_ns(workers.pgid) > c0, "the thawed worker does not run");
    stress::undo(&workers).unwrap();
}

#[test]
fn freeze_uses_v2_when_the_cgroup_is_there() {
    if !faultline_tests::privileged("freeze_uses_v2_when_the_cgroup_is_there") {
        return;
    }
    let cg = TestCgroup::new(&["freezer"], true);
    freeze_and_thaw(&cg, Target::Path(cg.path().to_string()), 2);
}

#[test]
fn freeze_falls_back_to_the_v1_freezer() {
    if !faultline_tests::privileged("freeze_falls_back_to_the_v1_freezer") {
        return;
    }
    if v1_mount("freezer").is_none() {
        faultline_tests::skip(
            "freeze_falls_back_to_the_v1_freezer",
            "a v1 freezer hierarchy",
        );
        return;
    }
    // Not in v2: the sleep child's v2 cgroup is the root, which cannot be frozen there.
    let cg = TestCgroup::new(&["freezer", "cpu"], false);
    freeze_and_thaw(&cg, Target::Pid(cg.pid()), 1);
}

#[test]
fn denials() {
    if !faultline_tests::privileged("denials") {
        return;
    }
    let mut cg = TestCgroup::new(&["cpu", "memory", "pids", "freezer"], true);
    let inner = cg.sub("inner");
    let backend = CgroupBackend::new().unwrap();
    let pids = Setting::PidsLimit { max: 10 };
    let denied = |target: Target, allowed: &[String]| match backend.prepare(&target, &pids, allowed)
    {
        Err(CapError::Denied(reason)) => reason,
        other => panic!("{target:?} with {allowed:?}: {other:?}"),
    };
    let elsewhere = vec!["/faultline-nowhere".to_string()];
    assert_eq!(
        denied(Target::Path(cg.path().to_string()), &elsewhere),
        format!(
            "cgroup {} is outside the granted subtrees [/faultline-nowhere]",
            cg.path()
        )
    );
    // A grant of the inner cgroup does not reach its parent, nor a sibling through `..`.
    let only_inner = vec![inner.clone()];
    denied(Target::Path(cg.path().to_string()), &only_inner);
    let escape = format!("{inner}/../../{}", cg.path().trim_start_matches('/'));
    assert!(denied(Target::Path(escape), &only_inner).contains("\"..\""));
    denied(Target::Path(format!("{inner}/..")), &all());
    denied(Target::Path("/../..".to_string()), &all());
    // The root cgroup and the agent's own, whatever the grant.
    assert!(denied(Target::Path("/".to_string()), &all()).contains("root cgroup"));
    let me = std::process::id();
    denied(Target::Pid(me), &all());
    for setting in [
        Setting::MemoryLimit { bytes: 1 << 30 },
        Setting::Freeze,
        Setting::CpuLimit { millicores: 100 },
    ] {
        assert!(matches!(
            backend.prepare(&Target::Pid(me), &setting, &all()),
            Err(CapError::Denied(_))
        ));
    }
    // Inside the grant is fine, by path or by a pid in it.
    backend
        .prepare(&Target::Path(inner.clone()), &pids, &only_inner)
        .unwrap();
    backend
        .prepare(&Target::Pid(cg.pid()), &pids, &[cg.path().to_string()])
        .unwrap();
    // Stress workers obey the same rules and start nothing when denied.
    let spec = cpu_spec(cg.path(), 1, 10);
    assert!(matches!(
        stress::spawn(&spec, &worker_exe(), &backend, &elsewhere),
        Err(CapError::Denied(_))
    ));
    assert!(matches!(
        stress::spawn(&cpu_spec("/", 1, 10), &worker_exe(), &backend, &all()),
        Err(CapError::Denied(_))
    ));
    // Malformed requests and gone targets.
    assert!(matches!(
        backend.prepare(&Target::Path("relative".to_string()), &pids, &all()),
        Err(CapError::Invalid(_))
    ));
    assert!(matches!(
        backend.prepare(
            &Target::Path("/faultline-test-none".to_string()),
            &pids,
            &all()
        ),
        Err(CapError::TargetGone(_))
    ));
}

#[test]
fn undo_of_a_removed_cgroup_counts_as_done() {
    if !faultline_tests::privileged("undo_of_a_removed_cgroup_counts_as_done") {
        return;
    }
    // Freeze: the one setting every layout has without enabling a controller.
    let cg = TestCgroup::new(&["freezer"], true);
    let backend = CgroupBackend::new().unwrap();
    let target = Target::Path(cg.path().to_string());
    let inverse = backend.prepare(&target, &Setting::Freeze, &all()).unwrap();
    backend.apply(&target, &Setting::Freeze, &inverse).unwrap();
    drop(cg);
    assert!(!backend.is_present(&inverse).unwrap());
    backend.undo(&inverse).unwrap();
    // Created again under the same name: another cgroup, not ours to touch.
    let path = inverse.path.trim_start_matches('/').to_string();
    let dir = dir_of_hierarchy(&inverse).join(&path);
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join(&inverse.files[0].file);
    write(&file, &inverse.files[0].apply);
    let present = backend.is_present(&inverse);
    let undone = backend.undo(&inverse);
    let after = read(&file);
    write(&file, &inverse.files[0].restore);
    std::fs::remove_dir(&dir).unwrap();
    assert!(!present.unwrap());
    undone.unwrap();
    assert_eq!(after.trim_end(), inverse.files[0].apply);
}

fn dir_of_hierarchy(inverse: &Inverse) -> PathBuf {
    match &inverse.controller {
        Some(c) => v1_mount(c).unwrap(),
        None => faultline_tests::cgroups::v2_mount().unwrap(),
    }
}

#[test]
fn stress_undo_kills_the_whole_group() {
    if !faultline_tests::privileged("stress_undo_kills_the_whole_group") {
        return;
    }
    let cg = TestCgroup::new(&["memory", "pids"], true);
    let backend = CgroupBackend::new().unwrap();
    let spec = StressSpec {
        kind: StressKind::Memory,
        workers: 3,
        load_percent: 0,
        memory_bytes: 16 << 20,
        cgroup: Some(cg.path().to_string()),
    };
    let workers = stress::spawn(&spec, &worker_exe(), &backend, &all()).unwrap();
    assert_eq!(workers.workers.len(), 3);
    for w in &workers.workers {
        let stat = read(format!("/proc/{}/stat", w.pid));
        let pgrp: i32 = stat[stat.rfind(')').unwrap() + 2..]
            .split_whitespace()
            .nth(2)
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(pgrp, workers.pgid, "worker {} in the group", w.pid);
    }
    if let Some(memory) = v1_mount("memory") {
        // Each worker touches 16 MiB after it was moved in: all of it is charged here.
        let usage_file = memory
            .join(cg.path().trim_start_matches('/'))
            .join("memory.usage_in_bytes");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut usage = 0u64;
        while Instant::now() < deadline && usage < 48 << 20 {
            std::thread::sleep(Duration::from_millis(50));
            usage = read(&usage_file).trim().parse().unwrap();
        }
        assert!(usage >= 48 << 20, "charged {usage} bytes");
    }
    assert!(stress::is_present(&workers));
    stress::undo(&workers).unwrap();
    for w in &workers.workers {
        assert_eq!(state(w.pid), None, "worker {} still in /proc", w.pid);
    }
    assert!(!stress::is_present(&workers));
    stress::undo(&workers).unwrap();

    // An io worker leaves no file behind: it writes to an unlinked temporary file.
    let io = StressSpec {
        kind: StressKind::Io,
        workers: 1,
        ..spec
    };
    let workers = stress::spawn(&io, &worker_exe(), &backend, &all()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", workers.pgid))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    stress::undo(&workers).unwrap();
    assert!(fds.iter().any(|f| f.ends_with("(deleted)")), "fds: {fds:?}");
}

#[test]
fn harness_cleans_up_after_a_panic() {
    if !faultline_tests::privileged("harness_cleans_up_after_a_panic") {
        return;
    }
    let left = std::sync::Mutex::new((Vec::new(), Vec::new()));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let cg = TestCgroup::new(&["freezer", "cpu"], true);
        let backend = CgroupBackend::new().unwrap();
        let workers =
            stress::spawn(&cpu_spec(cg.path(), 2, 10), &worker_exe(), &backend, &all()).unwrap();
        // Frozen (on v1, where a frozen task cannot even die, when there is a v1 freezer).
        match v1_mount("freezer") {
            Some(_) => write(cg.v1("freezer").join("freezer.state"), "FROZEN"),
            None => write(cg.v2().join("cgroup.freeze"), "1"),
        }
        *left.lock().unwrap() = (
            cg.dirs(),
            workers
                .workers
                .iter()
                .map(|w| w.pid)
                .chain([cg.pid() as i32])
                .collect(),
        );
        panic!("deliberate panic: the harness must clean up after it");
    }));
    assert!(outcome.is_err());
    let (dirs, pids) = left.into_inner().unwrap();
    assert!(!dirs.is_empty());
    for dir in dirs {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    std::thread::sleep(Duration::from_millis(100));
    for pid in pids {
        // Killed; a zombie until this process reaps it, but no longer running.
        assert!(
            matches!(state(pid), None | Some('Z')),
            "process {pid} survived"
        );
    }
}
