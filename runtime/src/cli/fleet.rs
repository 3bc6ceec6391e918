//! Fleets: which agents a command goes to (`--agent`, `--fleet fleet.toml`, `--select`), and
//! `faultline --agent URL[,URL…] run FILE`, one experiment on every selected agent at once.
//!
//! # The fleet file
//!
//! ```toml
//! [[agent]]
//! url = "http://10.0.0.1:7787"
//! name = "db-1"                 # optional; default: the URL's host and port
//! labels = { zone = "a", role = "db" }
//! ```
//!
//! At most [`MAX_AGENTS`] agents, [`MAX_LABELS`] labels each; errors name the file, the line
//! or the agent. `--select key=value` (repeatable, all must match) keeps the agents whose label
//! has that value, where an agent's labels are those the fleet file gives, checked against
//! those the agent itself reports (`GET /v1/status`): a label the agent reports wins over a
//! missing one, and one the two disagree on is an error (the fleet file is stale).
//!
//! # A run on a fleet
//!
//! 1. The file is read here (at most 1 MiB) and sent to every agent's pre-run checks
//!    (`POST /v1/experiments/validate`). If any refuses, none starts: each agent's problems
//!    are printed (exit 2 for an invalid file, 3 for refused checks).
//! 2. It starts on every agent with a lease (`--lease`, default 10 s); should one start fail,
//!    those already started are stopped.
//! 3. Each agent's lease is renewed every lease / 3 ([`LeaseSchedule`]) and each run's events
//!    are followed, log lines printed with the agent's name.
//! 4. SIGINT or SIGTERM stop the run on every agent (exit 130 or 143). An agent that accepts no
//!    heartbeat for a whole lease has dropped: the others are stopped, the run ends ERRORED
//!    (exit 4) naming it; its own lease lapses and it reverts by itself. Should this command
//!    die, every agent's lease lapses and each reverts.
//! 5. The verdict lists each agent's record: end state, status, score. The exit code is the
//!    worst of the agents' (a failed revert 5, errored 4, canceled 8, failed 1), as in
//!    `faultline run` on this host.

use super::remote::{
    Client, Endpoint, REQUEST_TIMEOUT, Remote, RemoteArgs, RemoteError, STOP_TIMEOUT, decode,
    fan_out, summary_line,
};
use super::run::{EXIT_CANCELED, EXIT_ERRORED, RunArgs};
use super::{EXIT_OK, EXIT_PROBE_FAILED, EXIT_REFUSED, EXIT_REVERT_FAILED, EXIT_USAGE};
use crate::execution::StopReason;
use crate::experiment::record::{LogEntry, Record};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// The most agents one command goes to.
pub const MAX_AGENTS: usize = 256;
/// The most labels an agent has in a fleet file.
pub const MAX_LABELS: usize = 64;
/// The largest fleet file.
pub const MAX_FLEET_FILE: u64 = 1 << 20;
/// The longest label key and value.
const MAX_LABEL: usize = 253;
/// The default lease of a run on agents.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);
/// The shortest lease (the agent's [`crate::agent::MIN_LEASE`]).
pub const MIN_LEASE: Duration = crate::agent::MIN_LEASE;
/// The longest lease.
pub const MAX_LEASE: Duration = Duration::from_secs(3600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetFile {
    #[serde(default)]
    agent: Vec<FleetAgent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetAgent {
    url: String,
    name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Parses a fleet file's text; `file` names it in errors.
pub fn parse_fleet(text: &str, file: &str) -> Result<Vec<Endpoint>, String> {
    let parsed: FleetFile = toml::from_str(text).map_err(|e| format!("{file}: {e}"))?;
    if parsed.agent.is_empty() {
        return Err(format!(
            "{file} lists no agent (add [[agent]] tables with a url)"
        ));
    }
    if parsed.agent.len() > MAX_AGENTS {
        return Err(format!(
            "{file} lists {} agents; at most {MAX_AGENTS} are allowed",
            parsed.agent.len()
        ));
    }
    let mut agents: Vec<Endpoint> = Vec::new();
    for (i, a) in parsed.agent.into_iter().enumerate() {
        let place = format!(
            "{file}: agent {} ({})",
            i + 1,
            super::executions::plain(&a.url)
        );
        let mut endpoint = Endpoint::parse(&a.url).map_err(|e| format!("{place}: {e}"))?;
        if let Some(name) = a.name {
            label_text(&name).map_err(|e| format!("{place}: name {e}"))?;
            endpoint.name = name;
        }
        if a.labels.len() > MAX_LABELS {
            return Err(format!(
                "{place}: {} labels; at most {MAX_LABELS} are allowed",
                a.labels.len()
            ));
        }
        for (k, v) in &a.labels {
            label_key(k).map_err(|e| format!("{place}: label {e}"))?;
            label_text(v).map_err(|e| format!("{place}: label {k}: value {e}"))?;
        }
        if let Some(twin) = agents
            .iter()
            .find(|b| b.url == endpoint.url || b.name == endpoint.name)
        {
            return Err(format!(
                "{place}: lists the same agent (url or name) as {}",
                twin.name
            ));
        }
        endpoint.labels = a.labels;
        agents.push(endpoint);
    }
    Ok(agents)
}

fn label_key(k: &str) -> Result<(), String> {
    let ok = !k.is_empty()
        && k.len() <= MAX_LABEL
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?}: a key is 1 to {MAX_LABEL} letters, digits, -, _, . or /",
            super::executions::plain(k)
        ))
    }
}

fn label_text(v: &str) -> Result<(), String> {
    if v.is_empty() || v.len() > MAX_LABEL || v.chars().any(char::is_control) {
        Err(format!(
            "{:?}: it must be 1 to {MAX_LABEL} bytes without control characters",
            super::executions::plain(v)
        ))
    } else {
        Ok(())
    }
}

/// A `--select key=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// The label.
    pub key: String,
    /// The value it must have.
    pub value: String,
}

/// Parses the `--select` values.
pub fn parse_selectors(texts: &[String]) -> Result<Vec<Selector>, String> {
    texts
        .iter()
        .map(|t| {
            let Some((k, v)) = t.split_once('=') else {
                return Err(format!(
                    "--select {:?}: write key=value (like zone=a)",
                    super::executions::plain(t)
                ));
            };
            let (k, v) = (k.trim(), v.trim());
            label_key(k).map_err(|e| format!("--select {e}"))?;
            label_text(v).map_err(|e| format!("--select {k}: value {e}"))?;
            Ok(Selector {
                key: k.into(),
                value: v.into(),
            })
        })
        .collect()
}

/// Whether the fleet file's labels already rule the agent out (a selected key with another
/// value), so it need not be asked.
pub fn ruled_out(listed: &BTreeMap<String, String>, selectors: &[Selector]) -> bool {
    selectors
        .iter()
        .any(|s| listed.get(&s.key).is_some_and(|v| *v != s.value))
}

/// Whether an agent is selected, given the labels of the fleet file and those it reports: a
/// reported label wins over a missing one; a selected label the two disagree on is an error.
pub fn selected(
    agent: &str,
    listed: &BTreeMap<String, String>,
    reported: &BTreeMap<String, String>,
    selectors: &[Selector],
) -> Result<bool, String> {
    let mut all = true;
    for s in selectors {
        let value = match (listed.get(&s.key), reported.get(&s.key)) {
            (Some(l), Some(r)) if l != r => {
                return Err(format!(
                    "agent {agent}: the fleet file says {}={l} but the agent reports {}={r}; correct the fleet file or the agent's labels",
                    s.key, s.key
                ));
            }
            (_, Some(v)) | (Some(v), None) => Some(v),
            (None, None) => None,
        };
        all &= value == Some(&s.value);
    }
    Ok(all)
}

#[derive(Debug, Deserialize)]
struct Status {
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// The agents of `--agent` and `--fleet`, narrowed by `--select` (asking each candidate for
/// its labels). An error is `(exit code, message)`.
pub async fn resolve(args: &RemoteArgs, client: &Client) -> Result<Vec<Endpoint>, (u8, String)> {
    let usage = |e: String| (EXIT_USAGE, e);
    let mut agents: Vec<Endpoint> = match &args.fleet {
        None => Vec::new(),
        Some(path) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || read_fleet(&path))
                .await
                .map_err(|e| usage(format!("reading the fleet file failed: {e}")))?
                .map_err(usage)?
        }
    };
    for text in args.agents.iter().filter(|t| !t.trim().is_empty()) {
        let endpoint = Endpoint::parse(text).map_err(usage)?;
        if !agents.iter().any(|a| a.url == endpoint.url) {
            agents.push(endpoint);
        }
    }
    if agents.is_empty() {
        return Err(usage("--agent names no agent".into()));
    }
    if agents.len() > MAX_AGENTS {
        return Err(usage(format!(
            "{} agents given; at most {MAX_AGENTS} are allowed",
            agents.len()
        )));
    }
    let selectors = parse_selectors(&args.select).map_err(usage)?;
    if selectors.is_empty() {
        return Ok(agents);
    }
    let candidates: Vec<Endpoint> = agents
        .into_iter()
        .filter(|a| !ruled_out(&a.labels, &selectors))
        .collect();
    let statuses = fan_out(&candidates, |a| async {
        client.get::<Status>(a, "/v1/status").await
    })
    .await;
    let mut chosen = Vec::new();
    for (a, status) in candidates.into_iter().zip(statuses) {
        let status = status.map_err(|e| {
            (
                e.exit_code(),
                format!(
                    "cannot read the labels of agent {} (GET /v1/status): {e}",
                    a.name
                ),
            )
        })?;
        if selected(&a.name, &a.labels, &status.labels, &selectors).map_err(usage)? {
            chosen.push(a);
        }
    }
    if chosen.is_empty() {
        let wanted: Vec<String> = selectors
            .iter()
            .map(|s| format!("{}={}", s.key, s.value))
            .collect();
        return Err(usage(format!(
            "no agent matches --select {}",
            wanted.join(" --select ")
        )));
    }
    Ok(chosen)
}

/// Reads and parses a fleet file (bounded). Sync.
fn read_fleet(path: &Path) -> Result<Vec<Endpoint>, String> {
    use std::io::Read as _;
    let shown = path.display().to_string();
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot read the fleet file {shown}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_FLEET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the fleet file {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_FLEET_FILE {
        return Err(format!(
            "the fleet file {shown} is larger than {MAX_FLEET_FILE} bytes"
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("{shown} is not UTF-8 text"))?;
    parse_fleet(&text, &shown)
}

/// When to renew a lease and when it is lost: a heartbeat every lease / 3; the lease is lost
/// once no heartbeat was accepted for a whole lease. Each heartbeat is given until the next
/// one is due, so a hanging agent cannot delay the verdict.
#[derive(Debug, Clone)]
pub struct LeaseSchedule {
    lease: Duration,
    period: Duration,
    renewed: Instant,
    next: Instant,
}

impl LeaseSchedule {
    /// A lease granted (the run started) at `now`.
    pub fn new(lease: Duration, now: Instant) -> LeaseSchedule {
        let period = lease / 3;
        LeaseSchedule {
            lease,
            period,
            renewed: now,
            next: now + period,
        }
    }

    /// When the next heartbeat is due.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// How long a heartbeat may take.
    pub fn timeout(&self) -> Duration {
        self.period.min(REQUEST_TIMEOUT)
    }

    /// A heartbeat sent at `sent` was accepted: the agent renewed the lease no earlier.
    pub fn accepted(&mut self, sent: Instant, now: Instant) {
        self.renewed = self.renewed.max(sent);
        self.advance(now);
    }

    /// A heartbeat failed or was refused.
    pub fn failed(&mut self, now: Instant) {
        self.advance(now);
    }

    fn advance(&mut self, now: Instant) {
        self.next += self.period;
        // Behind schedule (a slow answer): the next one goes now, not in a burst of them.
        if self.next < now {
            self.next = now;
        }
    }

    /// Whether the lease is lost: no heartbeat accepted for a whole lease.
    pub fn lost(&self, now: Instant) -> bool {
        now.duration_since(self.renewed) >= self.lease
    }

    /// When the lease is lost unless a heartbeat is accepted first.
    pub fn deadline(&self) -> Instant {
        self.renewed + self.lease
    }
}

/// What the per-agent tasks tell the run.
#[derive(Debug)]
enum Update {
    Log(usize, LogEntry),
    Record(usize, Box<Record>),
    Ended(usize, Box<Record>),
    Dropped(usize, String),
    Note(usize, String),
}

/// How the run on the fleet ended.
enum Ending {
    AllEnded,
    Dropped(usize, String),
    Signal(StopReason),
}

/// `faultline --agent URL… run FILE`.
pub async fn run(args: RunArgs, remote: &Remote, out: &mut dyn Write) -> u8 {
    // Handlers first: a signal after a start must still stop every agent's run.
    let signals = super::inject::interrupted();
    tokio::pin!(signals);
    let fail = |out: &mut dyn Write, code: u8, msg: String| {
        let _ = writeln!(out, "error: {msg}");
        code
    };
    for (given, flag) in [
        (args.policy.is_some(), "--policy"),
        (args.junit.is_some(), "--junit"),
        (args.html.is_some(), "--html"),
    ] {
        if given {
            return fail(
                out,
                EXIT_USAGE,
                format!(
                    "{flag} applies to runs on this host; an agent uses its own policy, and its records are read with `executions show --json`"
                ),
            );
        }
    }
    let lease = args.lease.unwrap_or(DEFAULT_LEASE);
    if !(MIN_LEASE..=MAX_LEASE).contains(&lease) {
        return fail(
            out,
            EXIT_USAGE,
            format!(
                "--lease {} must be between {} and {}",
                humantime::format_duration(lease),
                humantime::format_duration(MIN_LEASE),
                humantime::format_duration(MAX_LEASE)
            ),
        );
    }
    let text = match super::run::read_bounded(&args.experiment).await {
        Ok(t) => t,
        Err(e) => return fail(out, EXIT_USAGE, e),
    };
    let file = args
        .experiment
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| args.experiment.display().to_string());
    let (client, agents) = (&remote.client, &remote.agents);

    // 1. Every agent checks first: none starts unless all would.
    let body = json!({ "experiment": text, "file": file });
    let checks = fan_out(agents, |a| async {
        client
            .call(
                a,
                Method::POST,
                "/v1/experiments/validate",
                Some(&body),
                REQUEST_TIMEOUT,
            )
            .await
    });
    let checks = tokio::select! {
        c = checks => c,
        reason = &mut signals => {
            let _ = writeln!(out, "{reason} during the pre-run checks: nothing was started");
            return signal_code(reason);
        }
    };
    let mut codes = Vec::new();
    for (a, c) in agents.iter().zip(&checks) {
        match c {
            Ok(checked) => {
                if args.dry_run && !args.json {
                    print_checked(a, checked, out);
                }
            }
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
                codes.push(start_code(e));
            }
        }
    }
    if !codes.is_empty() {
        let _ = writeln!(
            out,
            "{} of {} agents refused the experiment: nothing was started",
            codes.len(),
            agents.len()
        );
        return codes.into_iter().max().unwrap_or(EXIT_REFUSED);
    }
    if args.dry_run {
        if args.json {
            let doc: Vec<Value> = agents
                .iter()
                .zip(checks)
                .map(|(a, c)| json!({"agent": a.name, "url": a.url.as_str(), "checked": c.unwrap_or(Value::Null)}))
                .collect();
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            );
        } else {
            let _ = writeln!(
                out,
                "dry run: the pre-run checks passed on all {} agents; nothing was started",
                agents.len()
            );
        }
        return EXIT_OK;
    }

    // 2. Start everywhere. Each agent's lease is held from the moment its start answers (a
    // slower agent must not make a faster one's lease lapse). A signal now is handled once
    // the starts have answered, so that no run is left without a stop.
    let body = json!({
        "experiment": text,
        "file": file,
        "lease": humantime::format_duration(lease).to_string(),
    });
    let (tx, mut rx) = mpsc::channel::<Update>(1024);
    let started = fan_out(agents, |a| {
        let (body, tx) = (&body, tx.clone());
        let i = agents.iter().position(|b| b == a).unwrap_or(0);
        async move {
            let sent = Instant::now();
            let value = client
                .call(
                    a,
                    Method::POST,
                    "/v1/experiments",
                    Some(body),
                    REQUEST_TIMEOUT,
                )
                .await?;
            let id = value
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| RemoteError::BadAnswer {
                    agent: a.name.clone(),
                    detail: "the start answer has no `id`".into(),
                })?;
            super::remote::execution_id(&id).map_err(|detail| RemoteError::BadAnswer {
                agent: a.name.clone(),
                detail,
            })?;
            let beat = tokio::spawn(heartbeat(
                client.clone(),
                a.clone(),
                id.clone(),
                i,
                lease,
                sent,
                tx,
            ));
            Ok::<_, RemoteError>((id, beat.abort_handle()))
        }
    })
    .await;
    let mut ids: Vec<Option<String>> = Vec::new();
    let mut beats = Vec::new();
    let mut codes = Vec::new();
    for (a, s) in agents.iter().zip(started) {
        match s {
            Ok((id, beat)) => {
                if !args.json {
                    let _ = writeln!(out, "agent {}: execution {id}", a.name);
                }
                ids.push(Some(id));
                beats.push(beat);
            }
            Err(e) => {
                let _ = writeln!(out, "error: {e}");
                codes.push(start_code(&e));
                ids.push(None);
            }
        }
    }
    let _ = out.flush();
    if !codes.is_empty() {
        beats.iter().for_each(tokio::task::AbortHandle::abort);
        let _ = writeln!(
            out,
            "the experiment did not start on every agent: stopping it where it started"
        );
        let finals = stop_all(client, agents, &ids, &[], out).await;
        for (a, r) in agents.iter().zip(&finals) {
            if let Some(r) = r {
                let _ = writeln!(out, "{}", summary_line(a, r));
            }
        }
        let changed = finals.iter().flatten().any(Record::host_changed);
        return if changed {
            EXIT_REVERT_FAILED
        } else {
            codes.into_iter().max().unwrap_or(EXIT_REFUSED)
        };
    }

    // 3. Follow the events while the heartbeats hold the leases.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (a, id)) in agents.iter().zip(&ids).enumerate() {
        let Some(id) = id.clone() else { continue };
        tasks.spawn(follow(client.clone(), a.clone(), id, i, tx.clone()));
    }
    drop(tx);
    let mut records: Vec<Option<Record>> = vec![None; agents.len()];
    let mut ended = vec![false; agents.len()];
    let ending = loop {
        if ended.iter().all(|e| *e) {
            break Ending::AllEnded;
        }
        tokio::select! {
            update = rx.recv() => match update {
                Some(Update::Log(i, e)) => {
                    if !args.json {
                        let _ = writeln!(out, "[{}] {}", agents[i].name, super::run::log_line(&e));
                    }
                }
                Some(Update::Record(i, r)) => records[i] = Some(*r),
                Some(Update::Ended(i, r)) => {
                    records[i] = Some(*r);
                    ended[i] = true;
                }
                Some(Update::Note(i, note)) => {
                    if !args.json {
                        let _ = writeln!(out, "[{}] ({note})", agents[i].name);
                    }
                }
                Some(Update::Dropped(i, why)) if !ended[i] => break Ending::Dropped(i, why),
                Some(Update::Dropped(..)) => {}
                // Every task ended without every run ending: cannot happen (a heartbeat task
                // only ends with an end or a drop), but never wait forever.
                None => break Ending::Dropped(
                    ended.iter().position(|e| !e).unwrap_or(0),
                    "its tasks ended before its run did".into(),
                ),
            },
            reason = &mut signals => break Ending::Signal(reason),
        }
    };
    tasks.abort_all();
    beats.iter().for_each(tokio::task::AbortHandle::abort);
    let _ = out.flush();

    // 4. Stop what still runs.
    let mut dropped = None;
    match &ending {
        Ending::AllEnded => {}
        Ending::Dropped(i, why) => {
            let _ = writeln!(
                out,
                "agent {} dropped: {why}; stopping the run on the other agents (its own lease lapses and it reverts by itself)",
                agents[*i].name
            );
            dropped = Some(*i);
        }
        Ending::Signal(reason) => {
            let _ = writeln!(
                out,
                "{reason}: stopping the run on every agent, reverting every fault"
            );
        }
    }
    if !matches!(ending, Ending::AllEnded) {
        let running: Vec<Option<String>> = ids
            .iter()
            .zip(&ended)
            .map(|(id, done)| if *done { None } else { id.clone() })
            .collect();
        let finals = stop_all(client, agents, &running, dropped.as_slice(), out).await;
        for (i, r) in finals.into_iter().enumerate() {
            if let Some(r) = r {
                records[i] = Some(r);
            }
        }
    }

    // 5. The verdict.
    let code = fleet_code(&records, &ending);
    if args.json {
        let logs = fan_out(agents, |a| {
            let id = ids[agents.iter().position(|b| b == a).unwrap_or(0)].clone();
            async move {
                match id {
                    Some(id) => {
                        let path = format!("/v1/experiments/{id}/log");
                        client
                            .get::<Value>(a, &path)
                            .await
                            .ok()
                            .and_then(|v| v.get("lines").cloned())
                    }
                    None => None,
                }
            }
        })
        .await;
        let doc: Vec<Value> = agents
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut v = json!({
                    "agent": a.name,
                    "url": a.url.as_str(),
                    "id": ids[i],
                    "record": records[i],
                    "log": logs[i].clone().unwrap_or(Value::Array(Vec::new())),
                });
                if dropped == Some(i)
                    && let (Ending::Dropped(_, why), Some(o)) = (&ending, v.as_object_mut())
                {
                    o.insert("dropped".into(), Value::String(why.clone()));
                }
                v
            })
            .collect();
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json!({ "agents": doc, "exit_code": code }))
                .unwrap_or_default()
        );
    } else {
        let _ = writeln!(out, "\nverdict on {} agents:", agents.len());
        for (i, a) in agents.iter().enumerate() {
            match &records[i] {
                Some(r) => {
                    let _ = writeln!(out, "  {}", summary_line(a, r));
                }
                None => {
                    let _ = writeln!(
                        out,
                        "  agent {}: execution {} — dropped, no final record (its lease lapses and it reverts; `--agent {} executions show {}` once it is back)",
                        a.name,
                        ids[i].as_deref().unwrap_or("-"),
                        a.url,
                        ids[i].as_deref().unwrap_or("-"),
                    );
                }
            }
        }
        let _ = writeln!(out, "fleet run: exit code {code}");
    }
    let _ = out.flush();
    code
}

/// The exit code of the pre-run checks or the start of one agent: 2 for an invalid file or a
/// token problem, 3 for refused checks or an agent refusing new runs, 7 for an agent failing.
fn start_code(e: &RemoteError) -> u8 {
    match e.status() {
        Some(422 | 409 | 503) => EXIT_REFUSED,
        _ => e.exit_code(),
    }
}

/// 130 for SIGINT, 143 for SIGTERM.
fn signal_code(reason: StopReason) -> u8 {
    if reason == StopReason::Sigint {
        130
    } else {
        143
    }
}

/// The fleet's exit code: a failed revert on any agent (5); else a dropped agent (4), a signal
/// (130, 143); else the worst of the agents' own codes (errored 4, canceled 8, failed 1).
fn fleet_code(records: &[Option<Record>], ending: &Ending) -> u8 {
    if records.iter().flatten().any(Record::host_changed) {
        return EXIT_REVERT_FAILED;
    }
    match ending {
        Ending::Dropped(..) => EXIT_ERRORED,
        Ending::Signal(reason) => signal_code(*reason),
        Ending::AllEnded => {
            let rank = |c: u8| match c {
                EXIT_ERRORED => 3,
                EXIT_CANCELED => 2,
                EXIT_PROBE_FAILED => 1,
                _ => 0,
            };
            records
                .iter()
                .map(|r| r.as_ref().map_or(EXIT_ERRORED, super::run::exit_code))
                .max_by_key(|c| rank(*c))
                .unwrap_or(EXIT_OK)
        }
    }
}

/// Stops the runs `ids` names (`None`: nothing to stop there) at once; the final records. A
/// `dropped` agent is tried briefly: it may be back, and if not its lease reverts it.
async fn stop_all(
    client: &Client,
    agents: &[Endpoint],
    ids: &[Option<String>],
    dropped: &[usize],
    out: &mut dyn Write,
) -> Vec<Option<Record>> {
    let answers = fan_out(agents, |a| {
        let i = agents.iter().position(|b| b == a).unwrap_or(0);
        let id = ids.get(i).cloned().flatten();
        let timeout = if dropped.contains(&i) {
            Duration::from_secs(2)
        } else {
            STOP_TIMEOUT
        };
        async move {
            let id = id?;
            let path = format!("/v1/experiments/{id}/stop");
            Some(
                match client.call(a, Method::POST, &path, None, timeout).await {
                    Ok(v) => decode::<Record>(a, &path, v),
                    // It ended meanwhile: its final record is there to read.
                    Err(e) if e.status() == Some(409) => {
                        client
                            .get::<Record>(a, &format!("/v1/experiments/{id}"))
                            .await
                    }
                    Err(e) => Err(e),
                },
            )
        }
    })
    .await;
    answers
        .into_iter()
        .enumerate()
        .map(|(i, a)| match a {
            None => None,
            Some(Ok(r)) => Some(r),
            Some(Err(e)) => {
                if !dropped.contains(&i) {
                    let _ = writeln!(out, "error: stopping: {e}");
                }
                None
            }
        })
        .collect()
}

/// Renews one agent's lease until its run ends or the lease is lost.
async fn heartbeat(
    client: Client,
    agent: Endpoint,
    id: String,
    i: usize,
    lease: Duration,
    started: Instant,
    tx: mpsc::Sender<Update>,
) {
    let path = format!("/v1/experiments/{id}/heartbeat");
    let mut schedule = LeaseSchedule::new(lease, started);
    let mut last_error = String::from("no heartbeat answered");
    loop {
        tokio::time::sleep_until(schedule.next()).await;
        let sent = Instant::now();
        // Never wait past the deadline: a lost lease is reported on time.
        let timeout = schedule
            .timeout()
            .min(schedule.deadline().saturating_duration_since(sent))
            .max(Duration::from_millis(50));
        match client
            .call(&agent, Method::POST, &path, None, timeout)
            .await
        {
            Ok(_) => schedule.accepted(sent, Instant::now()),
            Err(e) if e.status() == Some(409) => {
                // The run has ended there: its final record says how.
                match client
                    .get::<Record>(&agent, &format!("/v1/experiments/{id}"))
                    .await
                {
                    Ok(r) if r.status.is_final() => {
                        let _ = tx.send(Update::Ended(i, Box::new(r))).await;
                        return;
                    }
                    Ok(_) => last_error = e.to_string(),
                    Err(e2) => last_error = format!("{e}; then {e2}"),
                }
                schedule.failed(Instant::now());
            }
            Err(e) => {
                last_error = e.to_string();
                schedule.failed(Instant::now());
            }
        }
        if schedule.lost(Instant::now()) {
            let why = format!(
                "no heartbeat accepted for the whole lease of {} (last: {last_error})",
                humantime::format_duration(lease)
            );
            let _ = tx.send(Update::Dropped(i, why)).await;
            return;
        }
    }
}

/// Follows one run's event stream until its `end`, reconnecting when the stream breaks (the
/// heartbeats decide whether the agent is gone). Log lines already shown are not repeated.
async fn follow(client: Client, agent: Endpoint, id: String, i: usize, tx: mpsc::Sender<Update>) {
    let path = format!("/v1/experiments/{id}/events");
    let mut shown_until: Option<u64> = None;
    let mut reconnects = 0u32;
    loop {
        let broke = match client.events(&agent, &path).await {
            Err(e) => e.to_string(),
            Ok(mut events) => loop {
                match events.next().await {
                    Ok(Some(ev)) => {
                        let update = match ev.event.as_str() {
                            "log" => match serde_json::from_str::<LogEntry>(&ev.data) {
                                Ok(e)
                                    if reconnects > 0
                                        && shown_until.is_some_and(|t| e.at_ms <= t) =>
                                {
                                    None
                                }
                                Ok(e) => {
                                    shown_until = Some(shown_until.unwrap_or(0).max(e.at_ms));
                                    Some(Update::Log(i, e))
                                }
                                Err(e) => Some(Update::Note(
                                    i,
                                    format!("a log event that does not parse: {e}"),
                                )),
                            },
                            "record" | "end" => match serde_json::from_str::<Record>(&ev.data) {
                                Ok(r) if ev.event == "end" => {
                                    let _ = tx.send(Update::Ended(i, Box::new(r))).await;
                                    return;
                                }
                                Ok(r) => Some(Update::Record(i, Box::new(r))),
                                Err(e) => Some(Update::Note(
                                    i,
                                    format!("a {} event that does not parse: {e}", ev.event),
                                )),
                            },
                            "lagged" => {
                                let missed = serde_json::from_str::<Value>(&ev.data)
                                    .ok()
                                    .and_then(|v| v.get("missed").and_then(Value::as_u64))
                                    .unwrap_or(0);
                                Some(Update::Note(
                                    i,
                                    format!(
                                        "{missed} log lines not shown; `executions log {id}` has them"
                                    ),
                                ))
                            }
                            _ => None,
                        };
                        if let Some(u) = update
                            && tx.send(u).await.is_err()
                        {
                            return;
                        }
                    }
                    Ok(None) => break "the agent closed the event stream".to_string(),
                    Err(e) => break e.to_string(),
                }
            },
        };
        reconnects += 1;
        if reconnects == 1 || reconnects.is_multiple_of(30) {
            let _ = tx
                .send(Update::Note(
                    i,
                    format!("event stream interrupted ({broke}); reconnecting"),
                ))
                .await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A dry run's answer from one agent.
fn print_checked(agent: &Endpoint, checked: &Value, out: &mut dyn Write) {
    use super::executions::plain;
    let name = checked.get("name").and_then(Value::as_str).unwrap_or("-");
    let planned = checked
        .get("planned_ms")
        .and_then(Value::as_u64)
        .map(|ms| humantime::format_duration(Duration::from_millis(ms)).to_string())
        .unwrap_or_else(|| "-".into());
    let _ = writeln!(
        out,
        "agent {}: the pre-run checks of {} passed (planned {planned})",
        agent.name,
        plain(name)
    );
    for line in checked
        .get("plan")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let _ = writeln!(out, "  {}", plain(line));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_fleet_file_is_read_with_names_and_labels() {
        let fleet = parse_fleet(
            r#"
[[agent]]
url = "http://10.0.0.1:7787"
labels = { zone = "a", role = "db" }

[[agent]]
url = "https://b.example:7787/"
name = "b"
"#,
            "fleet.toml",
        )
        .unwrap();
        assert_eq!(fleet.len(), 2);
        assert_eq!(fleet[0].name, "10.0.0.1:7787");
        assert_eq!(fleet[0].labels, labels(&[("zone", "a"), ("role", "db")]));
        assert_eq!(fleet[1].name, "b");
        assert!(fleet[1].labels.is_empty());
    }

    #[test]
    fn fleet_file_errors_name_the_place() {
        for (text, says) in [
            ("[[agent]]\nurl = 7\n", "fleet.toml: "),
            (
                "[[agent]]\nurl = \"http://a:1\"\nlabel = {}\n",
                "unknown field",
            ),
            ("", "lists no agent"),
            (
                "[[agent]]\nurl = \"ftp://a\"\n",
                "agent 1 (ftp://a): agent ftp://a: the scheme",
            ),
            (
                "[[agent]]\nurl = \"http://a:1\"\n[[agent]]\nurl = \"http://a:1/\"\n",
                "agent 2 (http://a:1/): lists the same agent",
            ),
            (
                "[[agent]]\nurl = \"http://a:1\"\nlabels = { \"bad key\" = \"x\" }\n",
                "agent 1 (http://a:1): label \"bad key\"",
            ),
            (
                "[[agent]]\nurl = \"http://a:1\"\nlabels = { k = \"\" }\n",
                "label k: value",
            ),
        ] {
            let e = parse_fleet(text, "fleet.toml").unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
        // The toml error says where.
        let e =
            parse_fleet("[[agent]]\nurl = \"http://a:1\"\nurl = \"x\"\n", "f.toml").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
        let many = "[[agent]]\nurl = \"http://a:1\"\n".repeat(MAX_AGENTS + 1);
        assert!(parse_fleet(&many, "f").unwrap_err().contains("at most 256"));
    }

    #[test]
    fn selectors_parse() {
        let s = parse_selectors(&["zone=a".into(), " role = db ".into()]).unwrap();
        assert_eq!(
            s,
            vec![
                Selector {
                    key: "zone".into(),
                    value: "a".into()
                },
                Selector {
                    key: "role".into(),
                    value: "db".into()
                }
            ]
        );
        assert!(
            parse_selectors(&["zone".into()])
                .unwrap_err()
                .contains("key=value")
        );
        assert!(parse_selectors(&["=a".into()]).is_err());
        assert!(parse_selectors(&["k=".into()]).is_err());
    }

    #[test]
    fn selection_uses_listed_and_reported_labels() {
        let sel = parse_selectors(&["zone=a".into()]).unwrap();
        let none = BTreeMap::new();
        // Listed with another value: not asked at all.
        assert!(ruled_out(&labels(&[("zone", "b")]), &sel));
        assert!(!ruled_out(&labels(&[("zone", "a")]), &sel));
        assert!(!ruled_out(&none, &sel));
        // Listed only, reported only, both agreeing.
        assert!(selected("x", &labels(&[("zone", "a")]), &none, &sel).unwrap());
        assert!(selected("x", &none, &labels(&[("zone", "a")]), &sel).unwrap());
        assert!(!selected("x", &none, &labels(&[("zone", "b")]), &sel).unwrap());
        assert!(!selected("x", &none, &none, &sel).unwrap());
        // Disagreeing: the fleet file is stale, which is an error, not a silent choice.
        let e = selected(
            "x",
            &labels(&[("zone", "a")]),
            &labels(&[("zone", "b")]),
            &sel,
        )
        .unwrap_err();
        assert!(
            e.contains("fleet file says zone=a") && e.contains("reports zone=b"),
            "{e}"
        );
        // Every selector must match.
        let two = parse_selectors(&["zone=a".into(), "role=db".into()]).unwrap();
        assert!(!selected("x", &labels(&[("zone", "a")]), &none, &two).unwrap());
        assert!(
            selected(
                "x",
                &labels(&[("zone", "a")]),
                &labels(&[("role", "db")]),
                &two
            )
            .unwrap()
        );
    }

    #[test]
    fn the_lease_is_renewed_every_third_and_lost_after_a_whole_lease() {
        let t0 = Instant::now();
        let s = |ms: u64| t0 + Duration::from_millis(ms);
        let mut l = LeaseSchedule::new(Duration::from_secs(3), t0);
        assert_eq!(l.next(), s(1000));
        assert_eq!(l.timeout(), Duration::from_secs(1));
        l.accepted(s(1000), s(1010));
        assert_eq!(l.next(), s(2000));
        assert_eq!(l.deadline(), s(4000));
        // Two failures: still held until three seconds after the last accepted one.
        l.failed(s(2500));
        assert_eq!(l.next(), s(3000));
        l.failed(s(3200));
        assert!(!l.lost(s(3999)));
        assert!(l.lost(s(4000)));
        // A late answer does not cause a burst: the next beat is due now, not in the past.
        let mut l = LeaseSchedule::new(Duration::from_secs(30), t0);
        assert_eq!(l.timeout(), REQUEST_TIMEOUT);
        l.accepted(s(10_000), s(25_000));
        assert_eq!(l.next(), s(25_000));
        assert_eq!(l.deadline(), s(40_000));
        // An answer older than the last renewal does not move the lease back.
        l.accepted(s(5_000), s(25_001));
        assert_eq!(l.deadline(), s(40_000));
    }

    fn record(end: Option<crate::experiment::record::EndState>, reason: Option<&str>) -> Record {
        // From JSON: the record gains fields, a struct literal here would not follow.
        let mut v = json!({
            "id": "01J", "name": "n", "file": "f", "file_digest": "sha256:0",
            "status": "completed", "started_ms": 0, "owner_pid": 1, "owner_start": 1,
            "boot_id": "", "faults": [], "probes": [], "activities": [],
        });
        if let Some(e) = end {
            v["end_state"] = serde_json::to_value(e).unwrap();
        }
        if let Some(r) = reason {
            v["reason"] = json!(r);
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_fleet_exit_code_is_the_worst() {
        use crate::experiment::record::EndState;
        let ok = Some(record(Some(EndState::Completed), None));
        let failed = Some(record(Some(EndState::Failed), None));
        let canceled = Some(record(Some(EndState::Canceled), Some("stopped")));
        assert_eq!(
            fleet_code(&[ok.clone(), ok.clone()], &Ending::AllEnded),
            EXIT_OK
        );
        assert_eq!(
            fleet_code(&[ok.clone(), failed.clone()], &Ending::AllEnded),
            EXIT_PROBE_FAILED
        );
        assert_eq!(
            fleet_code(&[canceled.clone(), failed], &Ending::AllEnded),
            EXIT_CANCELED
        );
        assert_eq!(
            fleet_code(&[ok.clone(), None], &Ending::Dropped(1, "x".into())),
            EXIT_ERRORED
        );
        assert_eq!(
            fleet_code(
                &[canceled.clone(), canceled],
                &Ending::Signal(StopReason::Sigint)
            ),
            130
        );
        assert_eq!(fleet_code(&[ok], &Ending::Signal(StopReason::Sigterm)), 143);
    }
}
