//! Experiments: reports. A realistic record (two lanes, three faults of which one was skipped,
//! a wait, a probe action, a continuous probe with passes and failures, an edge probe) full of
//! hostile text, rendered as the JSON journal, as JUnit XML read back by Python's XML parser,
//! and as HTML drawn by headless Chromium: the screenshot's pixels show the bars and marks, the
//! DOM Chromium built has every one of them and no script.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use faultline::experiment::record::{
    Activity, Check, EndState, FaultRecord, FaultStatus, LogEntry, Moment, ProbeRecord, Record,
    Source, Status, TargetRun,
};
use faultline::experiment::report;
use faultline::experiment::spec::ProbeMode;
use faultline::host::Verdict;

const T0: u64 = 1_796_132_718_000;
const HOSTILE: &str = "<script>alert(\"pwned\")</script> & 'quotes'";
/// Characters XML 1.0 forbids: NUL, ESC, a C1 control, U+FFFF.
const FORBIDDEN: &str = "\u{0}\u{1b}\u{85}\u{FFFF}";

/// The fills `experiment/report/timeline.rs` gives a completed fault's bar, a completed-with-error
/// fault's bar, and a failed check's mark.
const COMPLETED_BAR: [u8; 3] = [0x43, 0xa0, 0x47];
const WITH_ERROR_BAR: [u8; 3] = [0xfb, 0x8c, 0x00];
const FAILED_MARK: [u8; 3] = [0xc6, 0x28, 0x28];

fn target(target: &str, injected: u64, reverted: u64) -> TargetRun {
    TargetRun {
        target: target.into(),
        params: serde_json::json!({"delay": "200ms"}),
        execution: Some(format!("01JDZ8X3V9Q6Y2K7M4N5P8R{injected:03}")),
        grant: Some("network-latency on netns a".into()),
        reason: Some("duration over".into()),
        error: None,
        injected_ms: Some(T0 + injected),
        reverted_ms: Some(T0 + reverted),
        revert_ms: None,
    }
}

fn fault(name: &str, lane: &str, status: FaultStatus, span: Option<(u64, u64)>) -> FaultRecord {
    FaultRecord {
        name: name.into(),
        lane: lane.into(),
        reference: format!("{}@^0.1", name.split(' ').next().unwrap()),
        resolved: Some(format!("{}@0.1.3", name.split(' ').next().unwrap())),
        weight: 5,
        duration_ms: 10_000,
        status,
        message: None,
        targets: Vec::new(),
        probe_success: None,
        started_ms: span.map(|s| T0 + s.0),
        ended_ms: span.map(|s| T0 + s.1),
    }
}

fn activity(
    kind: &str,
    name: &str,
    lane: &str,
    span: Option<(u64, u64)>,
    status: &str,
) -> Activity {
    Activity {
        kind: kind.into(),
        name: name.into(),
        lane: lane.into(),
        started_ms: span.map(|s| T0 + s.0),
        ended_ms: span.map(|s| T0 + s.1),
        status: status.into(),
        output: String::new(),
    }
}

fn check(at: u64, moment: Moment, verdict: Verdict, message: &str) -> Check {
    Check {
        at_ms: T0 + at,
        moment,
        verdict,
        message: message.into(),
        value: Some(0.042),
        elapsed_ms: 12.5,
        attempts: 1,
    }
}

/// The names of the faults, each with hostile text in it.
fn latency() -> String {
    format!("latency {HOSTILE}")
}
const CPU: &str = "cpu-stress";
const DISK: &str = "disk-fill";

/// A run of 30 s: lane `network` waits 2 s then holds `latency` (injected 2.2 s..13.8 s, it
/// completed); lane `cpu` holds `cpu-stress` (4.1 s..21.9 s, completed with error), runs the
/// probe action `health-once` (not applicable) and never runs `disk-fill` (skipped). The
/// continuous probe `http-health` checks every second from 0.5 s and fails from 10.5 s to
/// 17.5 s (8 failures, 22 passes); the edge probe `steady` passes before and after.
fn sample() -> (Record, Vec<LogEntry>) {
    let mut lat = fault(
        &latency(),
        "network",
        FaultStatus::Completed,
        Some((2000, 14_000)),
    );
    lat.targets = vec![target(&format!("netns a: veth0 {HOSTILE}"), 2200, 13_800)];
    lat.probe_success = Some(100.0);
    let mut cpu = fault(
        CPU,
        "cpu",
        FaultStatus::CompletedWithError,
        Some((4000, 22_000)),
    );
    cpu.targets = vec![target("cgroup /demo", 4100, 21_900)];
    cpu.message = Some(format!("http-health failed 8 times {HOSTILE}{FORBIDDEN}"));
    cpu.probe_success = Some(73.4);
    let mut disk = fault(DISK, "cpu", FaultStatus::Skipped, None);
    disk.message = Some("the run ended first".into());

    let mut health = Vec::new();
    for i in 0..30u64 {
        let at = 500 + i * 1000;
        let failed = (10_000..18_000).contains(&at);
        let moment = if at < 2200 {
            Moment::Before
        } else if at > 21_900 {
            Moment::After
        } else {
            Moment::During
        };
        health.push(if failed {
            check(
                at,
                moment,
                Verdict::Failed,
                &format!("GET http://127.0.0.1:8080/health: 503 {HOSTILE}{FORBIDDEN}"),
            )
        } else {
            check(
                at,
                moment,
                Verdict::Passed,
                "GET https://127.0.0.1:8080/health: 200",
            )
        });
    }
    let probes = vec![
        ProbeRecord {
            name: "http-health".into(),
            reference: "http-probe@^0.1".into(),
            resolved: Some("http-probe@0.1.4".into()),
            mode: Some(ProbeMode::Continuous),
            faults: vec![latency(), CPU.into()],
            tally: Default::default(),
            checks: health,
            success_rate: Some(22.0 / 30.0 * 100.0),
            verdict: Some(Verdict::Failed),
        },
        ProbeRecord {
            name: format!("steady {HOSTILE}"),
            reference: "tcp-probe@^0.1".into(),
            resolved: None,
            mode: Some(ProbeMode::Edge),
            faults: vec![],
            tally: Default::default(),
            checks: vec![
                check(100, Moment::Before, Verdict::Passed, "connected"),
                check(29_800, Moment::After, Verdict::Passed, "connected"),
            ],
            success_rate: None,
            verdict: Some(Verdict::Passed),
        },
        ProbeRecord {
            name: "health-once".into(),
            reference: "command-probe@^0.1".into(),
            resolved: Some("command-probe@0.1.0".into()),
            mode: None,
            faults: vec![],
            tally: Default::default(),
            checks: vec![check(
                22_000,
                Moment::During,
                Verdict::NotApplicable,
                &format!("denied: <program> not granted {FORBIDDEN}"),
            )],
            success_rate: None,
            verdict: Some(Verdict::NotApplicable),
        },
    ];
    let mut health_once = activity(
        "probe",
        "health-once",
        "cpu",
        Some((22_000, 22_100)),
        "completed",
    );
    health_once.output = format!("not applicable: {HOSTILE}");
    let activities = vec![
        activity("wait", "warm-up", "network", Some((0, 2000)), "completed"),
        activity(
            "fault",
            &latency(),
            "network",
            Some((2000, 14_000)),
            "completed",
        ),
        activity(
            "fault",
            CPU,
            "cpu",
            Some((4000, 22_000)),
            "completed-with-error",
        ),
        health_once,
        activity("fault", DISK, "cpu", None, "skipped"),
    ];
    let faults = vec![lat, cpu, disk];
    let record = Record {
        id: "01JDZ8X3V9Q6Y2K7M4N5P8R0ST".into(),
        name: format!("checkout survives {HOSTILE}"),
        description: format!("Latency and CPU pressure, see https://example.com/runbook {HOSTILE}"),
        tags: vec!["checkout".into(), format!("team {HOSTILE}")],
        team: None,
        started_by: None,
        file: "experiments/checkout.yaml".into(),
        file_digest: "sha256:7f83b1657ff1fc53b92dc18148a1d65dfc2d4b1fa3d677284addd200126d9069"
            .into(),
        status: Status::Error,
        end_state: Some(EndState::Errored),
        reason: Some(format!("probe health-once was not applicable {HOSTILE}")),
        score: Record::score_of(&faults),
        started_ms: T0,
        ended_ms: Some(T0 + 30_000),
        owner_pid: 4242,
        owner_start: 123_456,
        boot_id: "8c3b8f0e-4a3b-4c61-9d2c-0c7a1b2c3d4e".into(),
        faults,
        probes,
        activities,
    };
    let line = |at: u64, source, level: &str, step: Option<&str>, message: &str| LogEntry {
        at_ms: T0 + at,
        source,
        level: level.into(),
        step: step.map(String::from),
        message: message.into(),
    };
    let log = vec![
        line(0, Source::Engine, "info", None, "run started"),
        line(
            2200,
            Source::Host,
            "info",
            Some("latency"),
            "injected into netns a",
        ),
        line(
            2300,
            Source::Guest,
            "warn",
            Some("latency"),
            &format!("guest says {HOSTILE}{FORBIDDEN} <img src=https://evil.example/x.png>"),
        ),
        line(
            10_500,
            Source::Probe,
            "error",
            Some("http-health"),
            "check failed: 503",
        ),
        line(13_800, Source::Host, "info", Some("latency"), "reverted"),
        line(30_000, Source::Engine, "info", None, "run ended: error"),
    ];
    (record, log)
}

#[test]
fn json_journal_groups_steady_states_and_reads_back() {
    let (record, log) = sample();
    let journal = report::json(&record, &log);
    assert_eq!(journal["journal_version"], report::JOURNAL_VERSION);
    assert_eq!(journal["duration_ms"], 30_000);
    let states = &journal["steady_states"];
    let group = |m: &str| states[m].as_array().unwrap().clone();
    // before: 2 health checks (0.5 s, 1.5 s) and steady's; after: 8 health checks and steady's.
    assert_eq!(group("before").len(), 3);
    assert_eq!(group("during").len(), 20 + 1);
    assert_eq!(group("after").len(), 8 + 1);
    let before = group("before");
    assert_eq!(before[0]["probe"], format!("steady {HOSTILE}"));
    assert_eq!(before[0]["at_ms"], T0 + 100);
    assert_eq!(before[0]["mode"], "edge");
    assert_eq!(before[1]["probe"], "http-health");
    assert!(
        before[1].get("moment").is_none(),
        "the group says the moment"
    );
    let during = group("during");
    let times: Vec<u64> = during
        .iter()
        .map(|c| c["at_ms"].as_u64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "in time order: {times:?}"
    );
    let na = during.iter().find(|c| c["probe"] == "health-once").unwrap();
    assert_eq!(na["verdict"], "not-applicable");
    assert!(na.get("mode").is_none(), "a probe action has no mode");
    assert_eq!(
        during.iter().filter(|c| c["verdict"] == "failed").count(),
        8
    );
    assert_eq!(journal["activities"].as_array().unwrap().len(), 5);
    assert_eq!(journal["activities"][1]["started_ms"], T0 + 2000);
    assert_eq!(
        journal["activities"][3]["output"],
        format!("not applicable: {HOSTILE}")
    );
    assert_eq!(journal["log"].as_array().unwrap().len(), log.len());
    assert_eq!(journal["log"][2]["source"], "guest");
    // The journal keeps text whole, and is the record plus its own fields.
    assert_eq!(
        journal["faults"][1]["message"],
        record.faults[1].message.clone().unwrap()
    );
    let back: Record = serde_json::from_value(journal).unwrap();
    assert_eq!(back, record);
}

/// `program`'s path, or `None` after recording the skip; with FAULTLINE_REQUIRE_PRIVILEGED=1
/// (CI) a missing program fails the test.
pub(crate) fn tool(test: &str, program: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("FAULTLINE_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
            "{test} needs {program} (Debian package `{package}`), and FAULTLINE_REQUIRE_PRIVILEGED=1 forbids skipping"
        );
        faultline_tests::skip(test, &format!("{program} (Debian package `{package}`)"));
    }
    found
}

/// Reads JUnit XML with Python's own XML parser (which refuses anything not well-formed) and
/// gives back what it read, as JSON.
fn parse_junit(xml: &Path) -> serde_json::Value {
    const READ: &str = r#"
import json, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [dict(s.attrib, properties={p.get("name"): p.get("value") for p in s.iter("property")},
               cases=[dict(c.attrib, outcome=[dict(o.attrib, tag=o.tag, text=o.text or "")
                                              for o in c if o.tag != "system-out"],
                           out="".join(o.text or "" for o in c if o.tag == "system-out"))
                      for c in s.iter("testcase")])
          for s in root.iter("testsuite")]
print(json.dumps(dict(root.attrib, tag=root.tag, suites=suites)))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(READ)
        .arg(xml)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python3 could not parse the JUnit XML: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python3 printed JSON")
}

#[test]
fn junit_parses_as_xml_with_hostile_text() {
    let test = "report::junit_parses_as_xml_with_hostile_text";
    if tool(test, "python3", "python3").is_none() {
        return;
    }
    let (record, _) = sample();
    let xml = report::junit(&record);
    assert!(!xml.contains("<script"), "escaped: {xml}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junit.xml");
    std::fs::write(&path, &xml).unwrap();
    let doc = parse_junit(&path);

    assert_eq!(doc["tag"], "testsuites");
    // 3 faults + 3 probes; cpu-stress and http-health failed; health-once was not
    // applicable; disk-fill was skipped.
    for node in [&doc, &doc["suites"][0]] {
        assert_eq!(node["tests"], "6", "{node}");
        assert_eq!(node["failures"], "2");
        assert_eq!(node["errors"], "1");
        assert_eq!(node["skipped"], "1");
        assert_eq!(node["time"], "30.000");
    }
    let suite = &doc["suites"][0];
    // Names come back exactly: escaping lost nothing.
    assert_eq!(suite["name"], record.name);
    assert_eq!(suite["timestamp"], "2026-12-01T13:45:18.000Z");
    assert_eq!(suite["properties"]["status"], "error");
    assert_eq!(suite["properties"]["end-state"], "ERRORED");
    assert_eq!(
        suite["properties"]["reason"],
        record.reason.clone().unwrap()
    );

    let cases: BTreeMap<String, &serde_json::Value> = suite["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c))
        .collect();
    assert_eq!(cases.len(), 6, "{cases:?}");
    let outcome = |name: &str| -> Option<&serde_json::Value> {
        cases[name]["outcome"].as_array().unwrap().first()
    };
    let lat = cases[&latency()];
    assert_eq!(lat["classname"], format!("{}.network", record.name));
    assert_eq!(lat["time"], "12.000");
    assert!(outcome(&latency()).is_none(), "latency passed");
    assert!(
        lat["out"]
            .as_str()
            .unwrap()
            .contains(&format!("target netns a: veth0 {HOSTILE}"))
    );

    let cpu = outcome(CPU).unwrap();
    assert_eq!(cpu["tag"], "failure");
    assert_eq!(cpu["type"], "completed-with-error");
    // What XML 1.0 forbids came back as U+FFFD, one per character; the rest exactly.
    let cleaned = "\u{FFFD}".repeat(FORBIDDEN.chars().count());
    assert_eq!(
        cpu["message"],
        format!("http-health failed 8 times {HOSTILE}{cleaned}")
    );
    assert!(
        cpu["text"]
            .as_str()
            .unwrap()
            .contains("probe http-health: failed, 73.3% of checks passed")
    );

    assert_eq!(outcome(DISK).unwrap()["tag"], "skipped");
    assert_eq!(outcome(DISK).unwrap()["message"], "the run ended first");

    let health = outcome("http-health").unwrap();
    assert_eq!(health["tag"], "failure");
    assert!(
        health["message"]
            .as_str()
            .unwrap()
            .starts_with("8 of 30 checks failed; first at +10.500 s: GET http://127.0.0.1:8080/health: 503 <script>"),
        "{health}"
    );
    assert_eq!(health["text"].as_str().unwrap().lines().count(), 8);
    assert_eq!(
        cases["http-health"]["time"], "0.375",
        "30 checks of 12.5 ms"
    );

    let once = outcome("health-once").unwrap();
    assert_eq!(once["tag"], "error");
    assert_eq!(once["type"], "not-applicable");
    assert!(outcome(&format!("steady {HOSTILE}")).is_none());
}

#[test]
fn junit_of_a_record_with_nothing_in_it_is_still_valid() {
    let test = "report::junit_of_a_record_with_nothing_in_it_is_still_valid";
    if tool(test, "python3", "python3").is_none() {
        return;
    }
    let (mut record, _) = sample();
    record.faults.clear();
    record.probes.clear();
    record.activities.clear();
    record.name = FORBIDDEN.into();
    record.ended_ms = None;
    record.started_ms = u64::MAX;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junit.xml");
    std::fs::write(&path, report::junit(&record)).unwrap();
    let doc = parse_junit(&path);
    assert_eq!(doc["tests"], "0");
    assert_eq!(doc["time"], "0.000");
    assert_eq!(doc["suites"][0]["name"], "\u{FFFD}".repeat(4));
    assert_eq!(
        doc["suites"][0]["timestamp"],
        format!("{} ms since the epoch", u64::MAX)
    );
}

#[test]
fn html_escapes_every_user_string() {
    let (record, log) = sample();
    let page = report::html(&record, &log);
    let lower = page.to_lowercase();
    assert!(!lower.contains("<script"), "an unescaped script tag");
    assert!(!lower.contains("<img"), "an unescaped img tag");
    let escaped = "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; &amp; &#39;quotes&#39;";
    // The name, in the title, the header and the suite; a fault in its row, its bar's title
    // and the probe that judges it; messages, outputs, the log.
    assert!(
        page.matches(escaped).count() >= 15,
        "{}",
        page.matches(escaped).count()
    );
    assert!(page.contains(&format!("guest says {escaped}")));
    assert!(page.contains("&lt;img src=https://evil.example/x.png&gt;"));
    for c in FORBIDDEN.chars() {
        assert!(!page.contains(c), "{c:?} is in the page");
    }
    // Header facts.
    assert!(page.contains(r#"<dd id="status"><span class="status s-error">error</span></dd>"#));
    assert!(
        page.contains(r#"<dd id="end-state"><span class="status s-errored">errored</span></dd>"#)
    );
    assert!(page.contains(r#"<dd id="duration">30.0 s</dd>"#));
    assert!(
        page.contains(r#"<dd id="score">86.7</dd>"#),
        "(5×100 + 5×73.4) / 10"
    );
}

#[test]
fn html_references_no_url() {
    let (record, log) = sample();
    let page = report::html(&record, &log);
    // Every user string is escaped, so `<` and `>` delimit markup only: split the page into
    // its tags and the text between them (the style sheet is text too, but gets checked).
    let (mut tags, mut text) = (String::new(), String::new());
    let mut in_tag = false;
    for c in page.to_lowercase().chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                tags.push('\n');
            }
            c if in_tag => tags.push(c),
            c => text.push(c),
        }
    }
    let style = page
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .map(|(css, _)| css.to_lowercase())
        .unwrap();
    for loader in [
        "http:", "https:", "//", "src=", "href=", "xmlns", "srcset", "url(", "data:", "refresh",
    ] {
        assert!(!tags.contains(loader), "a tag has `{loader}`: {tags}");
    }
    for loader in ["url(", "@import", "http", "//"] {
        assert!(!style.contains(loader), "the style sheet has `{loader}`");
    }
    for element in [
        "script", "link", "img", "iframe", "object", "embed", "base", "image", "use", "video",
        "audio", "source", "form", "a",
    ] {
        assert!(
            !tags.lines().any(|t| t.split(' ').next() == Some(element)),
            "the page has a <{element}> element"
        );
    }
    // The record is full of URLs; they are all there, as text.
    let urls = text.matches("http://").count() + text.matches("https://").count();
    assert!(urls >= 30, "the check saw the record's URLs: {urls}");
    assert!(page.contains("content=\"default-src 'none'; style-src 'unsafe-inline'\""));
}

/// Headless Chromium on one page, in its own process group, with a private profile and a
/// private home (its crash handler, dconf and caches would write to the real one): killed with
/// its group when done or late, and no process of it outlives the test.
pub(crate) struct Chromium {
    /// The browser.
    pub(crate) binary: PathBuf,
    /// The test's temporary directory: the profile and the home are in it.
    pub(crate) dir: PathBuf,
}

impl Chromium {
    pub(crate) fn run(&self, page: &Path, args: &[String]) -> Vec<u8> {
        let mut child = Command::new(&self.binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                "--window-size=1200,900",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-breakpad",
                "--disable-crash-reporter",
            ])
            .arg(format!(
                "--user-data-dir={}",
                self.dir.join("profile").display()
            ))
            .env("HOME", self.dir.join("home"))
            .env("XDG_CONFIG_HOME", self.dir.join("home/config"))
            .env("XDG_CACHE_HOME", self.dir.join("home/cache"))
            .args(args)
            .arg(format!("file://{}", page.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start chromium");
        let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
        // Read the pipes on their own threads so a chatty Chromium cannot block on them.
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut stdout, &mut buf).ok();
            buf
        });
        let err = std::thread::spawn(move || {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut stderr, &mut buf).ok();
            buf
        });
        let deadline = Instant::now() + Duration::from_secs(90);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // Whatever it left in its group (GPU, zygote, renderers) goes with it.
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
        self.assert_gone();
        let out = out.join().unwrap();
        let err = err.join().unwrap();
        let status = status.unwrap_or_else(|| {
            panic!(
                "chromium took longer than 90 s, killed: {}",
                String::from_utf8_lossy(&err)
            )
        });
        assert!(
            status.success(),
            "chromium failed ({status}): {}",
            String::from_utf8_lossy(&err)
        );
        out
    }

    /// Waits (up to 10 s) until no process mentions the test's directory in its command line
    /// (the crash handler runs in a session of its own, out of the group, but names its
    /// database there), killing any that do.
    fn assert_gone(&self) {
        let profile = self.dir.to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left: Vec<i32> = std::fs::read_dir("/proc")
                .unwrap()
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&profile))
                })
                .collect();
            if left.is_empty() {
                return;
            }
            for pid in &left {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            assert!(
                Instant::now() < deadline,
                "chromium processes outlived their group: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Rows of `rgb` pixels in a screenshot: for each row, how many pixels have exactly it.
fn rows_of(png: &[u8], rgb: [u8; 3]) -> (Vec<usize>, usize, Vec<Vec<bool>>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected colour type {other:?}"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let (w, h) = (info.width as usize, info.height as usize);
    let mut grid = vec![vec![false; w]; h];
    for (y, row) in grid.iter_mut().enumerate() {
        for (x, hit) in row.iter_mut().enumerate() {
            let at = y * info.line_size + x * channels;
            *hit = buf[at..at + 3] == rgb;
        }
    }
    let counts = grid
        .iter()
        .map(|r| r.iter().filter(|h| **h).count())
        .collect();
    (counts, w, grid)
}

/// The value of attribute `name` of the element whose `id` is `id`, in a dumped DOM.
fn attribute(dom: &str, id: &str, name: &str) -> i64 {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let start = dom[..at].rfind('<').unwrap();
    let end = at + dom[at..].find('>').unwrap();
    let tag = &dom[start..end];
    let value = tag
        .split(&format!(" {name}=\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no {name} in {tag}"));
    value[..value.find('"').unwrap()].parse().unwrap()
}

#[test]
fn html_timeline_is_drawn_in_chromium() {
    let test = "report::html_timeline_is_drawn_in_chromium";
    let Some(binary) = tool(test, "chromium", "chromium") else {
        return;
    };
    let (record, log) = sample();
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, report::html(&record, &log)).unwrap();
    let chromium = Chromium {
        binary,
        dir: dir.path().to_path_buf(),
    };

    // The DOM Chromium built from the page: every bar and mark, no script.
    let started = Instant::now();
    let dom = String::from_utf8(chromium.run(&page, &["--dump-dom".into()])).unwrap();
    eprintln!("chromium --dump-dom took {:?}", started.elapsed());
    let count = |class: &str| dom.matches(&format!("class=\"{class}\"")).count();
    assert_eq!(count("bar fault completed"), 1, "{dom}");
    assert_eq!(count("bar fault completed-with-error"), 1);
    assert_eq!(count("bar fault skipped"), 0, "a skipped fault has no bar");
    assert_eq!(count("bar wait completed"), 1);
    assert_eq!(count("bar probe completed"), 1);
    assert_eq!(count("mark passed"), 22 + 2);
    assert_eq!(count("mark failed"), 8);
    assert_eq!(count("mark not-applicable"), 1);
    assert_eq!(count("row lane"), 2);
    assert_eq!(count("row probe"), 3);
    assert!(count("tick") >= 5, "an axis with ticks");
    assert!(
        !dom.to_lowercase().contains("<script"),
        "no script in the DOM"
    );

    // The screenshot: the bars and marks were drawn where the DOM says, at their size.
    let shot = dir.path().join("shot.png");
    let started = Instant::now();
    chromium.run(&page, &[format!("--screenshot={}", shot.display())]);
    eprintln!("chromium --screenshot took {:?}", started.elapsed());
    let png = std::fs::read(&shot).unwrap();
    // To look at them: FAULTLINE_REPORT_KEEP=<dir> keeps the page and its screenshot.
    if let Some(keep) = std::env::var_os("FAULTLINE_REPORT_KEEP") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&page, keep.join("report.html")).unwrap();
        std::fs::copy(&shot, keep.join("report.png")).unwrap();
    }
    for (id, rgb) in [("fault-0", COMPLETED_BAR), ("fault-1", WITH_ERROR_BAR)] {
        let (width, height) = (attribute(&dom, id, "width"), attribute(&dom, id, "height"));
        let (rows, _, _) = rows_of(&png, rgb);
        // Rows where this colour spans (nearly) the bar's width: exactly the bar's height,
        // one after the other.
        let full: Vec<usize> = (0..rows.len())
            .filter(|y| rows[*y] as i64 >= width - 2 && rows[*y] as i64 <= width + 2)
            .collect();
        eprintln!(
            "#{id}: {width}×{height} in the DOM, {} full rows in the screenshot",
            full.len()
        );
        assert_eq!(full.len() as i64, height, "#{id} rows {full:?}: {rows:?}");
        assert!(full.windows(2).all(|w| w[1] == w[0] + 1), "{full:?}");
    }
    let (rows, width, grid) = rows_of(&png, FAILED_MARK);
    let total: usize = rows.iter().sum();
    let y = (0..rows.len()).max_by_key(|y| rows[*y]).unwrap();
    // Runs of the colour along the fullest row: one per failed mark (the legend's is lower).
    let runs = (0..width)
        .filter(|x| grid[y][*x] && (*x == 0 || !grid[y][x - 1]))
        .count();
    eprintln!("failed marks: {total} pixels, {runs} marks on row {y}");
    assert_eq!(runs, 8, "one run per failed check on row {y}");
    assert!(total >= 8 * 50, "eight marks of radius 5: {total} pixels");
}

/// `record` and `log` with every free-text string (names, lanes, references, messages,
/// outputs, targets, log lines) replaced through `new`, the same string always by the same
/// replacement, so lanes and judged faults still match up.
fn renamed(
    record: &Record,
    log: &[LogEntry],
    new: &mut dyn FnMut(usize) -> String,
) -> (Record, Vec<LogEntry>) {
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut map = |s: &mut String| {
        let to = match seen.iter().find(|(from, _)| from == s) {
            Some((_, to)) => to.clone(),
            None => {
                // The index first: distinct strings stay distinct whatever `new` gives.
                let to = format!("{}:{}", seen.len(), new(seen.len()));
                seen.push((s.clone(), to.clone()));
                to
            }
        };
        *s = to;
    };
    let mut r = record.clone();
    for s in [&mut r.name, &mut r.description, &mut r.file, &mut r.id] {
        map(s);
    }
    r.tags.iter_mut().for_each(&mut map);
    if let Some(s) = r.reason.as_mut() {
        map(s);
    }
    for f in &mut r.faults {
        for s in [&mut f.name, &mut f.lane, &mut f.reference] {
            map(s);
        }
        if let Some(s) = f.message.as_mut() {
            map(s);
        }
        for t in &mut f.targets {
            map(&mut t.target);
            for s in [&mut t.reason, &mut t.error].into_iter().flatten() {
                map(s);
            }
        }
    }
    for p in &mut r.probes {
        map(&mut p.name);
        map(&mut p.reference);
        p.faults.iter_mut().for_each(&mut map);
        p.checks.iter_mut().for_each(|c| map(&mut c.message));
    }
    for a in &mut r.activities {
        for s in [&mut a.name, &mut a.lane, &mut a.output] {
            map(s);
        }
    }
    let mut log = log.to_vec();
    for e in &mut log {
        map(&mut e.message);
        if let Some(s) = e.step.as_mut() {
            map(s);
        }
    }
    (r, log)
}

/// The names of a document's elements, in order (`/x` for a closing tag).
fn elements(markup: &str) -> Vec<String> {
    markup
        .split('<')
        .skip(1)
        .map(|t| {
            t.split(|c: char| c.is_whitespace() || c == '>')
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Text never becomes markup: with any strings at all in the record, JUnit and HTML have
    /// exactly the elements they have with plain words.
    #[test]
    fn any_text_leaves_the_markup_as_it_was(
        texts in proptest::collection::vec("(?s).{0,24}|[<>&\"'\\x00-\\x1f\\u{85}\\u{FFFE}\\u{FFFF}]{1,8}", 64)
    ) {
        let (record, log) = sample();
        let (plain, plain_log) = renamed(&record, &log, &mut |_| "x".to_string());
        let (wild, wild_log) = renamed(&record, &log, &mut |i| texts[i % texts.len()].clone());
        let page = report::html(&wild, &wild_log);
        proptest::prop_assert_eq!(elements(&page), elements(&report::html(&plain, &plain_log)));
        proptest::prop_assert_eq!(elements(&report::junit(&wild)), elements(&report::junit(&plain)));
        for c in page.chars() {
            proptest::prop_assert!(
                matches!(c, '\n' | '\t') || !(c.is_control() || matches!(c, '\u{FFFE}' | '\u{FFFF}')),
                "{:?} in the page", c
            );
        }
    }
}
