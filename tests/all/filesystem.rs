//! The filesystem capability, `disk-fill` and `io-stress` on real file systems the tests mount
//! themselves (a 64 MiB tmpfs, a loop-mounted ext4 image), measured with statvfs and
//! `/proc/<pid>/io`: fills hit their targets within one block, the reserve refuses, revert and
//! `faultline recover` remove exactly the files made, and no path leads out of a grant.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use faultline::capability::{Backends, CapError, Context};
use faultline::host::{CallError, FaultPlugin, Host, Injected};
use faultline::journal::Journal;
use faultline::policy::{Identity, Policy};
use faultline_tests::cgroups::{TestCgroup, read};
use faultline_tests::{components as c, host_with, proc_state, wasm};

const BIN: &str = env!("CARGO_BIN_EXE_faultline-e2e");

/// A file system mounted on a fresh temporary directory; unmounted (and its loop device freed)
/// on drop, even when the test panics.
struct Mounted {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mounted {
    /// A tmpfs of `mib` MiB.
    fn tmpfs(mib: u64) -> Mounted {
        let dir = tempfile::tempdir().unwrap();
        let path = std::fs::canonicalize(dir.path()).unwrap().join("mnt");
        std::fs::create_dir(&path).unwrap();
        run(Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0755"),
                "tmpfs",
            ])
            .arg(&path));
        Mounted { path, _dir: dir }
    }

    /// An ext4 image of `mib` MiB, loop-mounted (a real block device, so reads and writes show
    /// in `/proc/<pid>/io`).
    fn ext4(mib: u64) -> Mounted {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let image = root.join("fs.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(mib << 20)
            .unwrap();
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
        let path = root.join("mnt");
        std::fs::create_dir(&path).unwrap();
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&path));
        Mounted { path, _dir: dir }
    }

    /// (total, available) bytes, from statvfs.
    fn space(&self) -> (u64, u64, u64) {
        let s = nix::sys::statvfs::statvfs(&self.path).unwrap();
        let unit = s.fragment_size();
        (
            s.blocks() * unit,
            s.blocks_free() * unit,
            s.blocks_available() * unit,
        )
    }

    /// Names in the mount's root, `lost+found` left out.
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "lost+found")
            .collect();
        names.sort();
        names
    }

    fn policy(&self, extra: &str) -> Policy {
        Policy::parse(&format!(
            "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"filesystem\"]\nfilesystem = {{ directories = [\"{}\"]{extra} }}\n",
            self.path.display()
        ))
        .unwrap()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

/// Whether `path` is a mount point now (for the leave-nothing checks).
fn mounted(path: &Path) -> bool {
    read("/proc/self/mountinfo")
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&*path.to_string_lossy()))
}

fn host() -> (Host, tempfile::TempDir) {
    host_with(|config| {
        config.worker_exe = BIN.into();
        config.call_timeout = Duration::from_secs(20);
        config.revert_timeout = Duration::from_secs(20);
    })
}

async fn inject(
    host: &Host,
    component: &str,
    policy: &Policy,
    params: &str,
) -> (FaultPlugin, Injected) {
    let plugin = faultline_tests::load_fault(host, &wasm(component), policy)
        .await
        .unwrap();
    plugin.validate(host, params).await.unwrap();
    let injected = plugin
        .inject(host, "ex-fs", params, Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("inject {params}: {e}"));
    (plugin, injected)
}

async fn revert(host: &Host, plugin: &FaultPlugin, injected: &Injected) {
    let reverted = plugin.revert(host, "ex-fs", Some(&injected.state)).await;
    assert_eq!(reverted.guest_error, None, "the fault's revert failed");
    assert!(reverted.failures.is_empty(), "{:?}", reverted.failures);
    assert!(host.journal().outstanding(None).is_empty());
}

/// The reason of the contract's `denied` error from an inject, which left nothing journalled.
async fn denied(host: &Host, component: &str, policy: &Policy, params: &str) -> String {
    let plugin = faultline_tests::load_fault(host, &wasm(component), policy)
        .await
        .unwrap();
    plugin.validate(host, params).await.unwrap();
    let r = plugin
        .inject(host, "ex-fs", params, Duration::from_secs(30))
        .await;
    let reverted = plugin.revert(host, "ex-fs", None).await;
    assert!(reverted.failures.is_empty(), "{:?}", reverted.failures);
    assert!(host.journal().outstanding(None).is_empty());
    match r {
        Err(CallError::Guest {
            phase: "inject",
            error,
        }) if error.kind == "denied" => error.reason,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test]
async fn disk_fill_size_percent_and_space_left_hit_their_targets_and_revert_frees_them() {
    if !faultline_tests::privileged("disk_fill_size_percent_and_space_left_hit_their_targets") {
        return;
    }
    let fs = Mounted::tmpfs(64);
    let policy = fs.policy("");
    let (host, _d) = host();
    let (total, _, before) = fs.space();
    let block = 4096;
    let dir = fs.path.display();

    // size: exactly that much less available.
    let params = format!(r#"{{"directory": "{dir}", "size": "20MiB"}}"#);
    let started = Instant::now();
    let (plugin, injected) = inject(&host, c::DISK_FILL, &policy, &params).await;
    let took = started.elapsed();
    let (_, _, avail) = fs.space();
    let filled = before - avail;
    eprintln!("disk-fill size 20MiB on a 64 MiB tmpfs: {filled} bytes in {took:?}");
    assert!(filled.abs_diff(20 << 20) <= block, "filled {filled}");
    assert_eq!(fs.entries().len(), 1, "{:?}", fs.entries());
    assert!(fs.entries()[0].starts_with(".faultline-fill-ex-fs-"));
    revert(&host, &plugin, &injected).await;
    assert_eq!(fs.space().2, before);
    assert!(fs.entries().is_empty(), "{:?}", fs.entries());

    // percent: used / (used + available) reaches 60 %.
    let params = format!(r#"{{"directory": "{dir}", "percent": 60}}"#);
    let (plugin, injected) = inject(&host, c::DISK_FILL, &policy, &params).await;
    let (total_now, free, avail) = fs.space();
    let used = total_now - free;
    let capacity = used + avail;
    let wanted = capacity * 60 / 100;
    eprintln!("disk-fill percent 60: used {used} of {capacity} (wanted {wanted})");
    assert!(
        used.abs_diff(wanted) <= block,
        "used {used}, wanted {wanted}"
    );
    revert(&host, &plugin, &injected).await;
    assert_eq!(fs.space().2, before);

    // space_left: only 8 MiB available afterwards.
    let params = format!(r#"{{"directory": "{dir}", "space_left": "8MiB"}}"#);
    let (plugin, injected) = inject(&host, c::DISK_FILL, &policy, &params).await;
    let (_, _, avail) = fs.space();
    eprintln!("disk-fill space_left 8MiB: {avail} bytes available of {total}");
    assert!(avail.abs_diff(8 << 20) <= block, "available {avail}");
    revert(&host, &plugin, &injected).await;
    assert_eq!(fs.space().2, before);
    assert!(fs.entries().is_empty(), "{:?}", fs.entries());

    // The reserve: 50 % of 64 MiB must stay free, so a 40 MiB fill is refused, naming numbers.
    let reason = denied(
        &host,
        c::DISK_FILL,
        &fs.policy(", reserve = \"50%\""),
        &format!(r#"{{"directory": "{dir}", "size": "40MiB"}}"#),
    )
    .await;
    eprintln!("reserve refusal: {reason}");
    assert!(reason.contains(&format!("a fill of 40.0 MiB (41943040 bytes) in {dir} would leave 24.0 MiB (25165824 bytes) available of 64.0 MiB (67108864 bytes)")), "{reason}");
    assert!(
        reason.contains("below the reserve of 32.0 MiB (33554432 bytes) (50% set by grant 1 (*))"),
        "{reason}"
    );
    assert!(fs.entries().is_empty(), "{:?}", fs.entries());
    // The default reserve (5 %) refuses filling to 100 %.
    let reason = denied(
        &host,
        c::DISK_FILL,
        &policy,
        &format!(r#"{{"directory": "{dir}", "percent": 100}}"#),
    )
    .await;
    assert!(reason.contains("(5% set by grant 1 (*))"), "{reason}");
    assert_eq!(fs.space().2, before);
    let path = fs.path.clone();
    drop(fs);
    assert!(!mounted(&path), "{} still mounted", path.display());
}

/// Starts `faultline inject` for `duration` and returns once it has loaded the component.
fn start_inject(
    state: &Path,
    component: &str,
    params: &str,
    policy: &Path,
    duration: &str,
) -> std::process::Child {
    let mut child = Command::new(BIN)
        .arg("--state-dir")
        .arg(state)
        .args([
            "inject",
            component,
            "--params-json",
            params,
            "--duration",
            duration,
        ])
        .args(["--call-timeout", "10s", "--policy"])
        .arg(policy)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "inject exited before loading"
        );
        if line.starts_with("loaded ") {
            break;
        }
        assert!(!line.starts_with("error"), "{line}");
    }
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    child
}

#[test]
fn a_fill_left_by_a_killed_agent_is_removed_by_recover() {
    if !faultline_tests::privileged("a_fill_left_by_a_killed_agent_is_removed_by_recover") {
        return;
    }
    let fs = Mounted::ext4(64);
    let (_, _, before) = fs.space();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"filesystem\"]\nfilesystem = {{ directories = [\"{}\"] }}\n",
            fs.path.display()
        ),
    )
    .unwrap();
    let params = format!(
        r#"{{"directory": "{}", "size": "16MiB"}}"#,
        fs.path.display()
    );
    let mut child = start_inject(&state, c::DISK_FILL, &params, &policy, "60s");
    let deadline = Instant::now() + Duration::from_secs(20);
    while fs.entries().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The file is linked only after its inverse is journalled: once it is visible, the journal
    // knows it.
    assert_eq!(fs.entries().len(), 1, "no fill file appeared");
    std::thread::sleep(Duration::from_millis(100));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(fs.space().2 + (15 << 20) < before, "the fill is not there");
    let out = Command::new(BIN)
        .arg("--state-dir")
        .arg(&state)
        .arg("recover")
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("recover after kill -9 of a disk-fill: {report}");
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(fs.entries().is_empty(), "{:?}", fs.entries());
    assert_eq!(fs.space().2, before);
}

#[test]
fn disk_fill_over_time_grows_by_chunks_until_its_target_then_revert_frees_it() {
    if !faultline_tests::privileged("disk_fill_over_time_grows_by_chunks_until_its_target") {
        return;
    }
    let fs = Mounted::tmpfs(64);
    let (_, _, before) = fs.space();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"filesystem\"]\nfilesystem = {{ directories = [\"{}\"] }}\n",
            fs.path.display()
        ),
    )
    .unwrap();
    let size: u64 = 16 << 20;
    let params = format!(
        r#"{{"directory": "{}", "size": "16MiB", "duration_to_fill": "2s"}}"#,
        fs.path.display()
    );
    let mut child = start_inject(&state, c::DISK_FILL, &params, &policy, "4s");
    let started = Instant::now();
    let mut samples = Vec::new();
    let reached = loop {
        let filled = before - fs.space().2;
        samples.push((started.elapsed(), filled));
        if filled + 4096 >= size || started.elapsed() > Duration::from_secs(10) {
            break started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let at_one_second = samples
        .iter()
        .find(|(t, _)| *t >= Duration::from_secs(1))
        .map(|(_, f)| *f)
        .unwrap();
    let filled = before - fs.space().2;
    eprintln!(
        "disk-fill 16MiB over 2s: {at_one_second} bytes after 1 s, {filled} bytes at {reached:?}, {} files",
        fs.entries().len()
    );
    assert!(
        (size / 4..=size * 3 / 4).contains(&at_one_second),
        "after 1 s: {at_one_second} of {size}"
    );
    assert!(filled.abs_diff(size) <= 4096, "filled {filled}");
    assert!(
        reached >= Duration::from_millis(1500) && reached <= Duration::from_secs(3),
        "reached the target at {reached:?}"
    );
    assert_eq!(fs.entries().len(), 20, "{:?}", fs.entries());
    let out = child.wait().unwrap();
    assert!(out.success(), "{out:?}");
    assert!(fs.entries().is_empty(), "{:?}", fs.entries());
    assert_eq!(fs.space().2, before);
}

#[test]
fn io_workers_left_by_a_killed_agent_die_and_recover_removes_their_directory() {
    if !faultline_tests::privileged("io_workers_left_by_a_killed_agent_die_and_recover") {
        return;
    }
    let fs = Mounted::tmpfs(64);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"filesystem\"]\nfilesystem = {{ directories = [\"{}\"] }}\n",
            fs.path.display()
        ),
    )
    .unwrap();
    let params = format!(
        r#"{{"directory": "{}", "workers": 2, "file_size": "1MiB", "mode": "write"}}"#,
        fs.path.display()
    );
    let mut child = start_inject(&state, c::IO_STRESS, &params, &policy, "60s");
    // Children of every thread: a worker is the child of whichever thread spawned it (the
    // blocking pool's, not always the main one).
    let workers = |parent: u32| -> Vec<u32> {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
            return Vec::new();
        };
        let mut found: Vec<u32> = tasks
            .filter_map(|t| t.ok())
            .flat_map(|t| {
                std::fs::read_to_string(t.path().join("children"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect();
        found.sort_unstable();
        found
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        seen = workers(child.id());
        if seen.len() == 2 && !fs.entries().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(seen.len(), 2, "workers of the agent: {seen:?}");
    assert_eq!(fs.entries().len(), 1, "{:?}", fs.entries());
    child.kill().unwrap();
    child.wait().unwrap();
    // The workers watch the agent and exit when it is gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.iter().any(|w| proc_state(*w) != '?') && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for w in &seen {
        assert_eq!(proc_state(*w), '?', "worker {w} outlived the agent");
    }
    let out = Command::new(BIN)
        .arg("--state-dir")
        .arg(&state)
        .arg("recover")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert!(report.contains("1 change(s) undone"), "{report}");
    assert!(fs.entries().is_empty(), "{:?}", fs.entries());
}

/// A capability context for a local component under `policy`.
fn context(policy: &str, journal: &Path) -> Context {
    let policy = Policy::parse(policy).unwrap();
    let who = Identity::local(&format!("sha256:{}", "c".repeat(64)));
    Context {
        execution: "ex-fs".to_string(),
        grants: Arc::new(policy.grants_for(&who)),
        journal: Arc::new(Journal::create(journal).unwrap()),
        backends: Arc::new(Backends::new(BIN.into())),
        log: faultline::host::tracing_log(),
        changes: Vec::new(),
        gate: Arc::new(tokio::sync::RwLock::new(())),
        deadline: None,
    }
}

fn denial<T: std::fmt::Debug>(r: Result<T, CapError>) -> String {
    match r {
        Err(CapError::Denied(reason)) => reason,
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn paths_never_lead_out_of_a_grant() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let grant = root.join("grant");
    std::fs::create_dir_all(grant.join("sub")).unwrap();
    std::os::unix::fs::symlink("/etc", grant.join("etc")).unwrap();
    std::os::unix::fs::symlink("../..", grant.join("up")).unwrap();
    std::os::unix::fs::symlink("sub", grant.join("inside")).unwrap();
    std::fs::create_dir(root.join("beside")).unwrap();
    let mut cx = context(
        &format!(
            "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"filesystem\"]\nfilesystem = {{ directories = [\"{}\"], reserve = \"0\" }}\n",
            grant.display()
        ),
        &tmp.path().join("journal"),
    );
    let g = grant.display();
    let rule = "(grant 1 (*))";
    // A symlink inside the grant pointing at /etc, and one climbing out of it.
    for link in ["etc", "up", "etc/ssl"] {
        let reason = denial(cx.disk_space(&format!("{g}/{link}")));
        assert!(
            reason.contains(&format!("leads outside the granted directory {g}"))
                && reason.ends_with(rule),
            "{link}: {reason}"
        );
        let reason = denial(cx.fill_directory(&format!("{g}/{link}"), 4096));
        assert!(reason.contains("leads outside"), "{reason}");
    }
    // `..`, even one that would land back inside.
    for path in [
        format!("{g}/.."),
        format!("{g}/sub/../sub"),
        format!("{g}/../beside"),
    ] {
        let reason = denial(cx.fill_directory(&path, 4096));
        assert!(
            reason.contains("contains `..`") && reason.ends_with(rule),
            "{path}: {reason}"
        );
    }
    // Absolute paths outside, and a sibling whose name only starts like the grant.
    for path in [
        "/etc".to_string(),
        format!("{}/beside", root.display()),
        format!("{g}x"),
    ] {
        let reason = denial(cx.fill_directory(&path, 4096));
        assert_eq!(
            reason,
            format!(
                "directory {path} is outside the scope granted to local file sha256:cccccccccccc {rule}"
            )
        );
    }
    // Not absolute: invalid, not denied.
    assert!(matches!(
        cx.disk_space("grant/sub"),
        Err(CapError::Invalid(_))
    ));
    // Nothing was written anywhere, and /etc has no fill file.
    assert!(cx.changes.is_empty());
    assert!(std::fs::read_dir("/etc").unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".faultline-fill")
    }));
    // A symlink that stays inside the grant is followed, beneath it.
    let space = cx.disk_space(&format!("{g}/inside")).unwrap();
    assert!(space.total_bytes > 0);
    // The granted directory swapped for a symlink after the policy was read: refused, not
    // followed.
    std::fs::rename(&grant, root.join("moved")).unwrap();
    std::os::unix::fs::symlink(root.join("beside"), &grant).unwrap();
    let reason = denial(cx.fill_directory(&g.to_string(), 4096));
    assert!(
        reason.starts_with(&format!("granted directory {g} is refused, not followed"))
            && reason.ends_with(rule),
        "{reason}"
    );
    assert_eq!(std::fs::read_dir(root.join("beside")).unwrap().count(), 0);
}

#[test]
fn undo_removes_only_the_file_the_fill_created() {
    let tmp = tempfile::tempdir().unwrap();
    let grant = std::fs::canonicalize(tmp.path()).unwrap().join("grant");
    std::fs::create_dir(&grant).unwrap();
    let mut cx = context(
        &format!(
            "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"filesystem\"]\nfilesystem = {{ directories = [\"{}\"], reserve = \"0\" }}\n",
            grant.display()
        ),
        &tmp.path().join("journal"),
    );
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let change = cx
        .fill_directory(&grant.display().to_string(), 8192)
        .unwrap();
    let files = names(&grant);
    assert_eq!(files.len(), 1, "{files:?}");
    let file = grant.join(&files[0]);
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(meta.len(), 8192);
    // Allocated, not sparse.
    assert!(std::os::unix::fs::MetadataExt::blocks(&meta) * 512 >= 8192);
    // Another file takes the name: undo leaves it alone.
    std::fs::remove_file(&file).unwrap();
    std::fs::write(&file, b"someone else's").unwrap();
    let entry = cx
        .journal
        .outstanding(None)
        .into_iter()
        .find(|e| e.id == change)
        .unwrap();
    cx.backends.undo_json(&entry.inverse).unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), b"someone else's");
    std::fs::remove_file(&file).unwrap();
    // A guest filling in a loop is stopped at 256 files per execution.
    let many: Vec<u64> = (0..faultline::capability::filesystem::MAX_FILLS - 1)
        .map(|_| cx.fill_directory(&grant.display().to_string(), 1).unwrap())
        .collect();
    match cx.fill_directory(&grant.display().to_string(), 1) {
        Err(CapError::Invalid(reason)) => assert!(
            reason.ends_with("already has 256 fill files; at most 256 at once"),
            "{reason}"
        ),
        other => panic!("the 257th fill was not refused: {other:?}"),
    }
    for id in many {
        let entry = cx.journal.get(id).unwrap();
        cx.backends.undo_json(&entry.inverse).unwrap();
        cx.journal.undone(id).unwrap();
    }
    assert!(names(&grant).is_empty());
    // Its own file goes, and a second undo is a no-op.
    let change = cx
        .fill_directory(&grant.display().to_string(), 4096)
        .unwrap();
    let entry = cx
        .journal
        .outstanding(None)
        .into_iter()
        .find(|e| e.id == change)
        .unwrap();
    cx.backends.undo_json(&entry.inverse).unwrap();
    assert!(names(&grant).is_empty());
    cx.backends.undo_json(&entry.inverse).unwrap();
}

/// `read_bytes` and `write_bytes` of `/proc/<pid>/io`.
fn io_bytes(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("read_bytes:"), field("write_bytes:"))
}

#[tokio::test]
async fn io_stress_workers_in_the_cgroup_write_and_read_until_revert_leaves_nothing() {
    if !faultline_tests::privileged("io_stress_workers_in_the_cgroup_write_and_read_until_revert") {
        return;
    }
    let fs = Mounted::ext4(96);
    let cg = TestCgroup::new(&["blkio"], true);
    let policy = Policy::parse(&format!(
        "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"filesystem\"]\nfilesystem = {{ directories = [\"{}\"] }}\ncgroup = {{ subtrees = [\"{}\"] }}\n",
        fs.path.display(),
        cg.path()
    ))
    .unwrap();
    let (host, _d) = host();
    let (_, _, before) = fs.space();
    for target in [
        format!(r#""cgroup": "{}""#, cg.path()),
        format!(r#""pid": {}"#, cg.pid()),
    ] {
        let params = format!(
            r#"{{"directory": "{}", "workers": 2, "file_size": "4MiB", "mode": "readwrite", {target}}}"#,
            fs.path.display()
        );
        let (plugin, injected) = inject(&host, c::IO_STRESS, &policy, &params).await;
        let workers: Vec<u32> = cg.procs().into_iter().filter(|p| *p != cg.pid()).collect();
        assert_eq!(
            workers.len(),
            2,
            "{target}: workers in the cgroup: {workers:?}"
        );
        // In every hierarchy the cgroup has (v1 blkio and v2).
        for d in cg.dirs() {
            let procs = read(d.join("cgroup.procs"));
            for w in &workers {
                assert!(
                    procs.lines().any(|l| l == w.to_string()),
                    "{w} not in {}",
                    d.display()
                );
            }
        }
        for w in &workers {
            let cmdline = read(format!("/proc/{w}/cmdline")).replace('\0', " ");
            assert!(cmdline.contains("stress-worker --kind file"), "{cmdline}");
        }
        let subdirs = fs.entries();
        assert_eq!(subdirs.len(), 1, "{subdirs:?}");
        assert!(
            subdirs[0].starts_with(".faultline-io-ex-fs-"),
            "{subdirs:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let seen = loop {
            let seen = workers.iter().map(|w| io_bytes(*w)).collect::<Vec<_>>();
            if seen.iter().all(|(r, w)| *r >= 4 << 20 && *w >= 4 << 20) || Instant::now() > deadline
            {
                break seen;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        eprintln!(
            "io-stress ({target}): /proc/<pid>/io (read_bytes, write_bytes) per worker: {seen:?}"
        );
        for (r, w) in &seen {
            assert!(*w >= 4 << 20, "a worker wrote {w} bytes: {seen:?}");
            assert!(*r >= 4 << 20, "a worker read {r} bytes: {seen:?}");
        }
        revert(&host, &plugin, &injected).await;
        for w in &workers {
            assert_eq!(proc_state(*w), '?', "worker {w} still in /proc");
        }
        assert!(fs.entries().is_empty(), "{:?}", fs.entries());
        assert!(
            fs.space().2.abs_diff(before) <= 1 << 20,
            "space not given back"
        );
    }
    // Files that would pass the reserve (2 x 64 MiB on 96 MiB) start nothing.
    let reason = denied(
        &host,
        c::IO_STRESS,
        &policy,
        &format!(
            r#"{{"directory": "{}", "workers": 2, "file_size": "64MiB"}}"#,
            fs.path.display()
        ),
    )
    .await;
    assert!(
        reason.starts_with("IO workers' files of 128.0 MiB (134217728 bytes) in ")
            && reason.contains("below the reserve of"),
        "{reason}"
    );
    assert!(fs.entries().is_empty(), "{:?}", fs.entries());
    // A cgroup outside the grant is denied.
    let reason = denied(
        &host,
        c::IO_STRESS,
        &policy,
        &format!(
            r#"{{"directory": "{}", "cgroup": "/elsewhere"}}"#,
            fs.path.display()
        ),
    )
    .await;
    assert!(reason.contains("/elsewhere"), "{reason}");
    assert!(fs.entries().is_empty(), "{:?}", fs.entries());
    let path = fs.path.clone();
    drop(fs);
    assert!(!mounted(&path));
}

#[test]
fn policy_explain_shows_each_directory_and_what_a_fill_may_take() {
    let tmp = tempfile::tempdir().unwrap();
    let grant = std::fs::canonicalize(tmp.path()).unwrap();
    let path = grant.join("policy.toml");
    std::fs::write(
        &path,
        format!(
            "[[grant]]\ncomponent = \"*\"\ncapabilities = [\"filesystem\"]\nfilesystem = {{ directories = [\"{}\"], reserve = \"10%\" }}\n",
            grant.display()
        ),
    )
    .unwrap();
    let explain = |json: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["policy", "explain"]).arg(&path);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let text = explain(false);
    assert!(
        text.contains("filesystem: fills must leave 10% of the file system available"),
        "{text}"
    );
    assert!(
        text.contains(&format!("    {}: ", grant.display()))
            && text.contains("one fill may take up to"),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(&explain(true)).unwrap();
    let d = &v["grants"][0]["filesystem"]["directories"][0];
    let (total, avail, reserve, fillable) = (
        d["total_bytes"].as_u64().unwrap(),
        d["available_bytes"].as_u64().unwrap(),
        d["reserve_bytes"].as_u64().unwrap(),
        d["fillable_bytes"].as_u64().unwrap(),
    );
    assert_eq!(reserve, total.div_ceil(10), "{d}");
    assert_eq!(fillable, avail.saturating_sub(reserve), "{d}");
}
