//! Experiments: the experiment file. Malformed files are refused with their line, column and
//! field path; semantic problems are all reported, each located; YAML and JSON read the same;
//! the published schema is current; hostile files (alias bombs, deep nesting, fuzzed bytes)
//! are refused quickly and never panic.

use faultline::experiment::parse::{MAX_ERRORS, SpecError, SpecErrors, parse, schema};
use faultline::experiment::spec::{Experiment, ProbeMode, Select, limits};
use faultline_tests::repo_root;
use proptest::prelude::*;
use std::time::{Duration, Instant};

/// A file using every field, valid.
const VALID: &str = r#"# yaml-language-server: $schema=../docs/experiment.schema.json
apiVersion: faultline/v1
kind: Experiment
name: web survives a pause
description: the demo service keeps answering while paused briefly
tags: [demo, process]
hubs: [bundled]
timeout: 2m
lanes:
  - name: chaos
    steps:
      - wait: 2s
      - name: pause-web
        fault: process-pause@^0.1
        duration: 5s
        weight: 7
        params: { signal: stop }
        targets:
          names: [demo-service]
          select: { percent: 50 }
          on_empty: skip
      - name: still-up
        probe: http-probe@^0.1
        params: { url: "http://127.0.0.1:8080/" }
        timeout: 2s
        attempts: 3
        stop_on_failure: true
  - steps:
      - fault: network-delay
        duration: 10s
        targets: { netns: demo, interfaces: [veth0] }
probes:
  - name: web-up
    probe: http-probe@^0.1
    params: { url: "http://127.0.0.1:8080/" }
    mode: continuous
    interval: 500ms
    success_rate: 90
    faults: [pause-web]
  - name: steady
    probe: http-probe
    mode: start-of-test
    attempts: 5
    interval: 1s
    initial_delay: 1s
"#;

fn errors(text: &str) -> Vec<SpecError> {
    match parse(text, "x.yaml") {
        Ok(e) => panic!("parsed, expected errors: {e:?}\n--- file:\n{text}"),
        Err(SpecErrors(errors)) => {
            assert!(!errors.is_empty(), "an Err holds at least one error");
            errors
        }
    }
}

/// `VALID` with the first occurrence of `from` replaced by `to` (which must exist).
fn valid_with(from: &str, to: &str) -> String {
    assert!(VALID.contains(from), "{from:?} is not in VALID");
    VALID.replacen(from, to, 1)
}

/// The 1-based line and column of the first `needle` in `text`, in characters.
fn position_of(text: &str, needle: &str) -> (usize, usize) {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the text"));
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    (line, column)
}

#[test]
fn the_valid_file_parses_with_every_field() {
    let e = parse(VALID, "valid.yaml").unwrap();
    assert_eq!(e.name, "web survives a pause");
    assert_eq!(e.hubs, ["bundled"]);
    assert_eq!(e.lanes.len(), 2);
    assert_eq!(e.lane_name(1), "lane-2");
    assert_eq!(e.step_name(0, 0), "chaos-1");
    assert_eq!(e.step_name(1, 0), "lane-2-1");
    let pause = &e.lanes[0].steps[1];
    assert_eq!(pause.duration.unwrap().get(), Duration::from_secs(5));
    assert_eq!(pause.weight, Some(7));
    let targets = pause.targets.as_ref().unwrap();
    assert_eq!(targets.select, Some(Select::Percent(50.0)));
    assert_eq!(
        e.lanes[1].steps[0].targets.as_ref().unwrap().interfaces,
        ["veth0"]
    );
    assert_eq!(e.probes[0].mode, ProbeMode::Continuous);
    assert_eq!(
        e.probes[0].interval.unwrap().get(),
        Duration::from_millis(500)
    );
    assert_eq!(e.probes[1].attempts, Some(5));
}

/// One malformed file: where the error is expected and what it says.
struct Case {
    what: &'static str,
    text: String,
    /// Text whose first occurrence starts at the expected line and column.
    at: &'static str,
    path: &'static str,
    fragment: &'static str,
}

fn case(
    what: &'static str,
    text: String,
    at: &'static str,
    path: &'static str,
    fragment: &'static str,
) -> Case {
    Case {
        what,
        text,
        at,
        path,
        fragment,
    }
}

#[test]
fn malformed_files_are_refused_with_line_column_and_path() {
    let json = r#"{
  "apiVersion": "faultline/v1",
  "kind": "Experiment",
  "name": "j",
  "lanes": [ { "steps": [ { "wait": "1s" } ] } ]
}
"#;
    parse(json, "j.json").unwrap();
    let cases = [
        case(
            "unknown field",
            valid_with("        weight: 7\n", "        wieght: 7\n"),
            "wieght",
            "lanes[0].steps[1].wieght",
            "unknown field `wieght`",
        ),
        case(
            "wrong type",
            valid_with("weight: 7", "weight: heavy"),
            "heavy",
            "lanes[0].steps[1].weight",
            "invalid type: string \"heavy\", expected u8",
        ),
        case(
            "bad duration",
            valid_with("duration: 5s", "duration: 5 parsecs"),
            "5 parsecs",
            "lanes[0].steps[1].duration",
            "\"5 parsecs\" is not a duration",
        ),
        case(
            "duration too long",
            valid_with("duration: 5s", "duration: 8days"),
            "8days",
            "lanes[0].steps[1].duration",
            "longer than the 7 days",
        ),
        case(
            "bad apiVersion",
            valid_with("faultline/v1", "faultline/v2"),
            "faultline/v2",
            "apiVersion",
            "unknown variant `faultline/v2`, expected `faultline/v1`",
        ),
        case(
            "missing kind",
            valid_with("kind: Experiment\n", ""),
            "apiVersion",
            "",
            "missing field `kind`",
        ),
        case(
            "YAML syntax error",
            valid_with("tags: [demo, process]", "tags: [demo, process"),
            ": [bundled]",
            "tags",
            "did not find expected ',' or ']'",
        ),
        case(
            "JSON syntax error",
            json.replace("]\n}", "],\n}"),
            "}\n",
            "",
            "trailing comma",
        ),
        case(
            "JSON wrong type",
            json.replace("\"name\": \"j\"", "\"name\": 12"),
            "12",
            "name",
            "invalid type: integer `12`, expected a string",
        ),
        case(
            "JSON unknown field",
            json.replace("\"name\": \"j\"", "\"nom\": \"j\""),
            "\"nom\"",
            "nom",
            "unknown field `nom`",
        ),
        case(
            "two kinds in a step",
            valid_with("      - wait: 2s\n", "      - wait: 2s\n        fault: x\n"),
            "wait: 2s",
            "lanes[0].steps[0]",
            "step \"chaos-1\" has `fault` and `wait`",
        ),
        case(
            "no kind in a step",
            valid_with("      - wait: 2s\n", "      - name: idle\n"),
            "name: idle",
            "lanes[0].steps[0]",
            "step \"idle\" needs one of `fault`, `wait` or `probe`",
        ),
        case(
            "weight 11",
            valid_with("weight: 7", "weight: 11"),
            "weight: 11",
            "lanes[0].steps[1].weight",
            "weight 11 is more than 10 (step \"pause-web\")",
        ),
        case(
            "duplicate step names",
            valid_with("name: still-up", "name: pause-web"),
            "name: pause-web\n        probe",
            "lanes[0].steps[2]",
            "has the name of lanes[0].steps[1]",
        ),
        case(
            "a default name taken by a named step",
            valid_with("name: still-up", "name: lane-2-1"),
            "fault: network-delay",
            "lanes[1].steps[0]",
            "step \"lane-2-1\" (its default name) has the name of lanes[0].steps[2]",
        ),
        case(
            "duplicate probe names",
            valid_with("name: steady", "name: web-up"),
            "name: web-up\n    probe: http-probe\n",
            "probes[1].name",
            "a probe is already called \"web-up\"",
        ),
        case(
            "a probe named as a step",
            valid_with("name: steady", "name: pause-web"),
            "name: pause-web\n    probe",
            "probes[1].name",
            "probes and steps need distinct names",
        ),
        case(
            "a file path as fault",
            valid_with("fault: process-pause@^0.1", "fault: ./evil.wasm"),
            "fault: ./evil.wasm",
            "lanes[0].steps[1].fault",
            "not a path",
        ),
        case(
            "an absolute path as probe",
            valid_with("probe: http-probe\n", "probe: /etc/passwd\n"),
            "probe: /etc/passwd",
            "probes[1].probe",
            "an experiment never names a file",
        ),
        case(
            "a bad reference",
            valid_with("fault: network-delay", "fault: Network@^x"),
            "fault: Network@^x",
            "lanes[1].steps[0].fault",
            "invalid package reference `Network@^x`",
        ),
        case(
            "duration on a wait",
            valid_with(
                "      - wait: 2s\n",
                "      - wait: 2s\n        duration: 1s\n",
            ),
            "duration: 1s",
            "lanes[0].steps[0].duration",
            "`duration` does not belong to a wait step (step \"chaos-1\")",
        ),
        case(
            "weight on a probe action",
            valid_with(
                "        attempts: 3\n",
                "        attempts: 3\n        weight: 1\n",
            ),
            "weight: 1",
            "lanes[0].steps[2].weight",
            "`weight` does not belong to a probe action",
        ),
        case(
            "a fault without duration",
            valid_with("        duration: 10s\n", ""),
            "fault: network-delay",
            "lanes[1].steps[0]",
            "fault step \"lane-2-1\" needs a `duration`",
        ),
        case(
            "attempts 0",
            valid_with("attempts: 3", "attempts: 0"),
            "attempts: 0",
            "lanes[0].steps[2].attempts",
            "attempts must be 1 to 100, not 0",
        ),
        case(
            "attempts 101",
            valid_with("attempts: 5", "attempts: 101"),
            "attempts: 101",
            "probes[1].attempts",
            "attempts must be 1 to 100, not 101",
        ),
        case(
            "interval under 50ms",
            valid_with("interval: 500ms", "interval: 10ms"),
            "interval: 10ms",
            "probes[0].interval",
            "shorter than the 50ms",
        ),
        case(
            "interval without effect",
            valid_with("attempts: 5", "attempts: 1"),
            "interval: 1s",
            "probes[1].interval",
            "`interval` has no effect on a start-of-test probe with one attempt",
        ),
        case(
            "success_rate on a one-shot probe",
            valid_with("initial_delay: 1s", "success_rate: 50"),
            "success_rate: 50",
            "probes[1].success_rate",
            "`success_rate` is for continuous and on-chaos probes, not start-of-test",
        ),
        case(
            "success_rate 0",
            valid_with("success_rate: 90", "success_rate: 0"),
            "success_rate: 0",
            "probes[0].success_rate",
            "more than 0 and at most 100, not 0",
        ),
        case(
            "percent 0",
            valid_with("percent: 50", "percent: 0"),
            "percent: 0",
            "lanes[0].steps[1].targets.select.percent",
            "percent must be more than 0",
        ),
        case(
            "percent over 100",
            valid_with("percent: 50", "percent: 100.5"),
            "percent: 100.5",
            "lanes[0].steps[1].targets.select.percent",
            "at most 100, not 100.5",
        ),
        case(
            "count 0",
            valid_with("percent: 50", "count: 0"),
            "count: 0",
            "lanes[0].steps[1].targets.select.count",
            "count must be at least 1",
        ),
        case(
            "select without processes",
            valid_with(
                "interfaces: [veth0]",
                "interfaces: [veth0], select: { count: 1 }",
            ),
            "select: { count",
            "lanes[1].steps[0].targets.select",
            "`select` picks among processes",
        ),
        case(
            "a netns that is a path",
            valid_with("netns: demo", "netns: ../../etc"),
            "netns: ../",
            "lanes[1].steps[0].targets.netns",
            "not the name of a network namespace",
        ),
        case(
            "probe faults naming a probe action",
            valid_with("faults: [pause-web]", "faults: [pause-web, still-up]"),
            "still-up]",
            "probes[0].faults[1]",
            "\"still-up\" is not the name of a fault step",
        ),
        case(
            "a bad hub name",
            valid_with("hubs: [bundled]", "hubs: [bundled, \"https://x\"]"),
            "\"https://x\"",
            "hubs[1]",
            "is not a hub name",
        ),
        case(
            "an empty name",
            valid_with("name: web survives a pause", "name: \"\""),
            "name: \"\"",
            "name",
            "the experiment's name must be 1 to 128 bytes, not 0",
        ),
        case(
            "a lane without steps",
            valid_with(
                "  - steps:\n      - fault: network-delay\n        duration: 10s\n        targets: { netns: demo, interfaces: [veth0] }\n",
                "  - steps: []\n",
            ),
            "steps: []",
            "lanes[1].steps",
            "lane \"lane-2\" has no steps",
        ),
        case(
            "a bad command-line pattern",
            valid_with("names: [demo-service]", "cmdlines: [\"demo(\"]"),
            "\"demo(\"",
            "lanes[0].steps[1].targets.cmdlines[0]",
            "not a regular expression",
        ),
    ];
    // Every case is checked before the test fails, so one run shows every mismatch.
    let mut failures = Vec::new();
    for c in cases {
        let errors = errors(&c.text);
        let Some(e) = errors.iter().find(|e| e.path == c.path) else {
            failures.push(format!(
                "{}: no error at path {:?}; got:\n{}",
                c.what,
                c.path,
                SpecErrors(errors)
            ));
            continue;
        };
        let (line, column) = position_of(&c.text, c.at);
        if (e.line, e.column) != (Some(line), Some(column)) {
            failures.push(format!("{}: expected {line}:{column}, got {e}", c.what));
        }
        if !e.message.contains(c.fragment) {
            failures.push(format!("{}: {e} does not say {:?}", c.what, c.fragment));
        }
        if e.message
            .contains(&format!(" at line {line} column {column}"))
        {
            failures.push(format!("{}: the message repeats its position: {e}", c.what));
        }
        // The one-line form a user sees: file:line:column: path: message.
        let shown = e.to_string();
        if !shown.starts_with(&format!("x.yaml:{line}:{column}: ")) || e.file != "x.yaml" {
            failures.push(format!("{}: shown as {shown}", c.what));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_semantic_problem_is_reported_in_document_order() {
    let text = valid_with("weight: 7", "weight: 11")
        .replacen("attempts: 3", "attempts: 0", 1)
        .replacen("interval: 500ms", "interval: 1ms", 1);
    let errors = errors(&text);
    let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "lanes[0].steps[1].weight",
            "lanes[0].steps[2].attempts",
            "probes[0].interval"
        ]
    );
    let lines: Vec<_> = errors.iter().map(|e| e.line.unwrap()).collect();
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "{lines:?}");
}

#[test]
fn problems_past_the_cap_are_counted_not_listed() {
    let mut text = String::from("apiVersion: faultline/v1\nkind: Experiment\nname: many\nlanes:\n");
    text.push_str("  - steps:\n");
    for _ in 0..100 {
        text.push_str("      - {}\n");
    }
    let errors = errors(&text);
    assert_eq!(errors.len(), MAX_ERRORS + 1);
    assert!(errors[..MAX_ERRORS].iter().all(|e| e.line.is_some()));
    assert_eq!(
        errors[MAX_ERRORS].message,
        format!("{} more problems not shown", 100 - MAX_ERRORS)
    );
}

#[test]
fn locations_hold_in_flow_yaml_and_json_alike() {
    // A comment first: a file whose first character is `{` is read as JSON.
    let flow = "# flow style\n{apiVersion: faultline/v1, kind: Experiment, name: f,\n lanes: [{steps: [{wait: 1s}, {fault: x, weight: 12, duration: 1s}]}]}\n";
    let json = "{\"apiVersion\": \"faultline/v1\", \"kind\": \"Experiment\", \"name\": \"é\",\n \"lanes\": [{\"steps\": [{\"wait\": \"1s\"}, {\"fault\": \"x\", \"weight\": 12, \"duration\": \"1s\"}]}]}";
    for (text, at) in [(flow, "weight"), (json, "\"weight\"")] {
        let errors = errors(text);
        assert_eq!(errors.len(), 1, "{}", SpecErrors(errors.clone()));
        let e = &errors[0];
        assert_eq!(e.path, "lanes[0].steps[1].weight");
        let (line, column) = position_of(text, at);
        assert_eq!((e.line, e.column), (Some(line), Some(column)), "{e}");
    }
    assert_eq!(position_of(flow, "weight"), (3, 42));
    let e = &errors(&flow["# flow style\n".len()..])[0];
    assert!(e.message.contains("is read as JSON"), "{e}");
}

#[test]
fn yaml_and_json_read_the_same() {
    let yaml = r#"apiVersion: faultline/v1
kind: Experiment
name: same
lanes:
  - steps:
      - fault: process-pause@^0.1
        duration: 5s
        targets: { pids: [1], select: { count: 1 } }
      - wait: 1s
      - fault: process-pause@^0.1
        duration: 5s
        targets: { pids: [1], select: all }
probes:
  - name: p
    probe: http-probe
    mode: on-chaos
    success_rate: 99.5
"#;
    let json = r#"  {
  "apiVersion": "faultline/v1",
  "kind": "Experiment",
  "name": "same",
  "lanes": [
    {"steps": [
      {"fault": "process-pause@^0.1", "duration": "5s",
       "targets": {"pids": [1], "select": {"count": 1}}},
      {"wait": "1s"},
      {"fault": "process-pause@^0.1", "duration": "5s", "targets": {"pids": [1], "select": "all"}}
    ]}
  ],
  "probes": [{"name": "p", "probe": "http-probe", "mode": "on-chaos", "success_rate": 99.5}]
}"#;
    let from_yaml = parse(yaml, "a.yaml").unwrap();
    let select = |j: usize| from_yaml.lanes[0].steps[j].targets.as_ref().unwrap().select;
    assert_eq!(select(0), Some(Select::Count(1)));
    assert_eq!(select(2), Some(Select::All));
    assert_eq!(from_yaml, parse(json, "a.json").unwrap());
    // The full file, through its JSON form.
    let full = parse(VALID, "valid.yaml").unwrap();
    let as_json = serde_json::to_string_pretty(&full).unwrap();
    assert_eq!(parse(&as_json, "valid.json").unwrap(), full);
}

#[test]
fn the_published_schema_is_current() {
    let path = repo_root().join("docs/experiment.schema.json");
    let current = format!("{}\n", serde_json::to_string_pretty(&schema()).unwrap());
    if std::env::var_os("FAULTLINE_BLESS").is_some() {
        std::fs::write(&path, &current).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == current,
        "{} is not the schema the code generates; regenerate it with \
         FAULTLINE_BLESS=1 cargo test -p faultline-tests --test all -- \
         experiment_file::the_published_schema_is_current",
        path.display()
    );
}

#[test]
fn the_schema_describes_the_file() {
    let s = schema();
    assert_eq!(s["$id"], faultline::experiment::parse::SCHEMA_ID);
    assert_eq!(s["title"], "Faultline experiment");
    assert_eq!(s["additionalProperties"], false);
    let required: Vec<_> = s["required"].as_array().unwrap().iter().collect();
    for field in ["apiVersion", "kind", "name", "lanes"] {
        assert!(required.iter().any(|r| *r == field), "{field} is required");
    }
    let step = &s["$defs"]["Step"];
    assert_eq!(step["additionalProperties"], false);
    assert!(step["properties"]["weight"].is_object());
}

#[test]
fn the_bundled_examples_parse() {
    // `examples/*.yaml` and `examples/*/experiment.yaml`; the scripts that run them fill in
    // `{{PID}}` and `{{PORT}}`, and so does this test.
    let dir = repo_root().join("examples");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.push(path.join("experiment.yaml"));
        } else if path.extension().is_some_and(|x| x == "yaml" || x == "json") {
            files.push(path);
        }
    }
    assert!(files.len() >= 3, "{files:?}");
    for path in &files {
        let text = std::fs::read_to_string(path)
            .unwrap()
            .replace("{{PID}}", "4242")
            .replace("{{PORT}}", "8080");
        if let Err(e) = parse(&text, &path.display().to_string()) {
            panic!("{e}");
        }
    }
}

#[test]
fn a_file_over_the_limit_is_refused_before_it_is_read() {
    let mut text = valid_with("description: ", "description: ");
    text.push_str(&format!("# {}\n", "x".repeat(limits::FILE_BYTES)));
    let e = &errors(&text)[0];
    assert!(e.message.contains("more than the 1048576"), "{e}");
    assert_eq!((e.line, e.path.as_str()), (None, ""));
    assert_eq!(errors("  \n\n")[0].message, "the file is empty");
    let e = &errors("# only a comment\n")[0];
    assert_eq!(e.message, "the file is empty: it holds only comments");
    // A second document is refused where it starts.
    let two = format!("{VALID}---\nname: again\n");
    let e = &errors(&two)[0];
    assert!(e.message.contains("a second YAML document"), "{e}");
    assert_eq!(
        (e.line, e.column),
        Some(position_of(&two, "name: again"))
            .map(|(l, c)| (Some(l), Some(c)))
            .unwrap()
    );
}

/// Nine levels of nine: 9^9 (387 million) values once the aliases are expanded, after
/// `padding` plain values (the YAML library allows 100 alias uses per event of the file).
fn alias_bomb(padding: usize) -> String {
    let mut text = String::from(
        "apiVersion: faultline/v1\nkind: Experiment\nname: bomb\nlanes:\n  - steps:\n      - fault: x\n        duration: 1s\n        params:\n",
    );
    text.push_str(&format!(
        "          pad: [{}]\n",
        vec!["0"; padding].join(",")
    ));
    text.push_str("          a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for level in 1..9 {
        let prev = format!("*a{}", level - 1);
        let items = [prev.as_str(); 9].join(", ");
        text.push_str(&format!("          a{level}: &a{level} [{items}]\n"));
    }
    text
}

#[test]
fn a_yaml_alias_bomb_is_refused_quickly() {
    // A small bomb meets the YAML library's own repetition limit; a padded one meets the
    // census's value budget first.
    for (padding, fragment) in [
        (0, "YAML aliases are expanded too many times"),
        (50_000, "more than 262144 values"),
    ] {
        let start = Instant::now();
        let errors = errors(&alias_bomb(padding));
        let took = start.elapsed();
        let e = &errors[0];
        assert!(e.message.contains(fragment), "{e}");
        assert!(e.path.starts_with("lanes[0].steps[0].params.a"), "{e}");
        assert!(took < Duration::from_secs(5), "took {took:?}");
        eprintln!("alias bomb with {padding} padding values refused in {took:?}: {e}");
    }
    assert_eq!(limits::VALUES, 262_144);
    // A few aliases are fine.
    let small = "apiVersion: faultline/v1\nkind: Experiment\nname: small\nlanes:\n  - steps:\n      - fault: x\n        duration: &d 1s\n      - fault: y\n        duration: *d\n";
    let e = parse(small, "small.yaml").unwrap();
    assert_eq!(e.lanes[0].steps[1].duration, e.lanes[0].steps[0].duration);
}

#[test]
fn an_alias_of_a_long_string_repeated_is_charged_for_its_copies() {
    // 200 KB of text, aliased 20,000 times: 4 GB once the typed parse copies it.
    let long = "x".repeat(200_000);
    let aliases = vec!["*s"; 20_000].join(", ");
    let text = format!(
        "apiVersion: faultline/v1\nkind: Experiment\nname: strings\ntags: [&s {long}, {aliases}]\nlanes:\n  - steps:\n      - wait: 1s\n"
    );
    assert!(text.len() < limits::FILE_BYTES);
    let start = Instant::now();
    let e = &errors(&text)[0];
    assert!(e.message.contains("more than 262144 values"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn deep_nesting_and_huge_numbers_are_refused_cleanly() {
    let head = "apiVersion: faultline/v1\nkind: Experiment\nname: deep\nlanes:\n  - steps:\n      - fault: x\n        duration: 1s\n        params: { x: ";
    let deep = format!("{head}{}{} }}\n", "[".repeat(200), "]".repeat(200));
    let e = &errors(&deep)[0];
    assert!(e.message.contains("nested more than 128 levels"), "{e}");
    let json_deep = format!(
        "{{\"apiVersion\": \"faultline/v1\", \"x\": {}{}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    let e = &errors(&json_deep)[0];
    assert!(e.message.contains("nested more than 128 levels"), "{e}");
    assert!(e.line.is_some(), "{e}");

    let huge = valid_with("weight: 7", "weight: 123456789012345678901234567890");
    let e = &errors(&huge)[0];
    assert_eq!(e.path, "lanes[0].steps[1].weight");
    let huge_json = "{\"apiVersion\": \"faultline/v1\", \"kind\": \"Experiment\", \"name\": \"n\", \"lanes\": [{\"steps\": [{\"fault\": \"x\", \"duration\": \"1s\", \"params\": {\"x\": 1e999}}]}]}";
    let e = &errors(huge_json)[0];
    assert!(e.message.contains("number out of range"), "{e}");
    // In params, a number past 64 bits has no JSON value: refused where it is.
    let big = valid_with("signal: stop", "signal: 123456789012345678901234567890");
    let e = &errors(&big)[0];
    assert_eq!(e.path, "lanes[0].steps[1].params.signal");
    assert_eq!(
        (e.line, e.column),
        Some(position_of(&big, "1234567890"))
            .map(|(l, c)| (Some(l), Some(c)))
            .unwrap()
    );
}

/// Every error of a refused fuzzed file says where: a line, or a field path, or it is about
/// the whole file.
fn assert_located(text: &str) {
    let start = Instant::now();
    let result = parse(text, "fuzz.yaml");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?} on {text:?}");
    let lines = text.split('\n').count();
    if let Err(SpecErrors(errors)) = result {
        assert!(!errors.is_empty());
        for e in &errors {
            let whole_file = e.message.starts_with("the file is empty")
                || e.message.ends_with("more problems not shown");
            assert!(
                e.line.is_some() || !e.path.is_empty() || whole_file,
                "unlocated: {e} in {text:?}"
            );
            if let Some(line) = e.line {
                assert!(line <= lines + 1, "line {line} of {lines}: {e}");
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, u8),
    Delete(usize),
    Flip(usize, u8),
}

fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for edit in edits {
        let len = bytes.len().max(1);
        match *edit {
            Edit::Insert(at, b) => bytes.insert(at % (bytes.len() + 1), b),
            Edit::Delete(at) if !bytes.is_empty() => {
                bytes.remove(at % len);
            }
            Edit::Flip(at, mask) if !bytes.is_empty() => bytes[at % len] ^= mask.max(1),
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn edit() -> impl Strategy<Value = Edit> {
    // Bytes that matter to YAML and JSON are likelier than random ones.
    let byte = prop_oneof![
        any::<u8>(),
        prop::sample::select(b":-[]{},\"'&*!|>#\n \t0123456789".to_vec()),
    ];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(at, b)| Edit::Insert(at, b)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), any::<u8>()).prop_map(|(at, m)| Edit::Flip(at, m)),
    ]
}

proptest! {
    // 256 cases each, a few seconds; PROPTEST_CASES=N runs a longer campaign.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        assert_located(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutations_of_a_valid_file_never_panic(edits in prop::collection::vec(edit(), 1..8)) {
        assert_located(&mutate(VALID, &edits));
    }

    #[test]
    fn mutations_of_its_json_never_panic(edits in prop::collection::vec(edit(), 1..8)) {
        let json = serde_json::to_string_pretty(&parse(VALID, "v").unwrap()).unwrap();
        assert_located(&mutate(&json, &edits));
    }
}

#[test]
fn experiment_values_round_trip_through_serde() {
    // The types stay plain data: what parse returns serializes back to a file parse accepts.
    let e: Experiment = parse(VALID, "v").unwrap();
    let yaml_like = serde_json::to_value(&e).unwrap();
    assert_eq!(yaml_like["apiVersion"], "faultline/v1");
    assert_eq!(
        yaml_like["lanes"][0]["steps"][1]["targets"]["select"]["percent"],
        50.0
    );
}

#[test]
fn a_large_file_with_many_problems_is_read_in_bounded_time() {
    // The most steps a file may have, every one with a problem: 8192 problems, 64 listed, and
    // as many located as LOCATE_BYTES allows.
    let mut text = String::from("apiVersion: faultline/v1\nkind: Experiment\nname: big\nlanes:\n");
    for _ in 0..limits::LANES {
        text.push_str("  - steps:\n");
        for _ in 0..limits::STEPS {
            text.push_str(
                "      - fault: process-pause\n        duration: 1s\n        weight: 11\n",
            );
        }
    }
    let start = Instant::now();
    let errors = errors(&text);
    let took = start.elapsed();
    assert_eq!(errors.len(), MAX_ERRORS + 1);
    let located = errors.iter().filter(|e| e.line.is_some()).count();
    let budget = faultline::experiment::parse::LOCATE_BYTES / text.len();
    assert_eq!(located, budget.min(MAX_ERRORS), "{} bytes", text.len());
    assert!(
        errors[..MAX_ERRORS]
            .iter()
            .all(|e| e.path.ends_with(".weight"))
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    eprintln!(
        "{} bytes, {} problems: {located} located in {took:?}",
        text.len(),
        limits::LANES * limits::STEPS
    );
    // The same file without problems.
    let clean = text.replace("weight: 11", "weight: 10");
    let start = Instant::now();
    let e = parse(&clean, "big.yaml").unwrap();
    eprintln!(
        "{} bytes parsed and checked in {:?}",
        clean.len(),
        start.elapsed()
    );
    assert_eq!(e.lanes.len(), limits::LANES);
}
