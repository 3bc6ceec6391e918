//! `faultline demo`: the main job on an embedded default. Starts a demo process, pauses it with
//! the bundled `process-pause` fault under a policy that grants exactly that process, shows its
//! state in `/proc`, and reverts.

use super::inject::{InjectArgs, LoadArgs, Loaded, load, run_fault};
use super::{EXIT_OK, EXIT_USAGE};
use crate::policy::Policy;
use clap::Args;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// `faultline demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long to keep the demo process paused.
    #[arg(long, short = 'd', default_value = "3s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
}

fn state_of(pid: u32) -> String {
    crate::capability::process::linux::info(pid)
        .map(|p| p.state.to_string())
        .unwrap_or_else(|| "gone".into())
}

/// Runs `faultline demo`.
pub async fn run(
    args: DemoArgs,
    hub: &crate::hub::HubConfig,
    state_dir: &Path,
    out: &mut dyn Write,
) -> u8 {
    let mut child = match tokio::process::Command::new("sleep")
        .arg("600")
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(out, "error: cannot start the demo process (sleep): {e}");
            return EXIT_USAGE;
        }
    };
    let Some(pid) = child.id() else {
        let _ = writeln!(out, "error: the demo process exited at once");
        return EXIT_USAGE;
    };
    let code = demo(pid, &args, hub, state_dir, out).await;
    let _ = child.kill().await;
    code
}

async fn demo(
    pid: u32,
    args: &DemoArgs,
    hub: &crate::hub::HubConfig,
    state_dir: &Path,
    out: &mut dyn Write,
) -> u8 {
    let policy_text = format!(
        "[[grant]]\ncomponent = \"process-pause@^0.1\"\ncapabilities = [\"log\", \"rollback\", \"process\"]\nprocess = {{ pids = [{pid}], signals = [\"stop\"] }}\n"
    );
    let _ = writeln!(
        out,
        "demo target: `sleep 600` as pid {pid}, state {}",
        state_of(pid)
    );
    let _ = writeln!(
        out,
        "policy:\n  {}",
        policy_text.trim_end().replace('\n', "\n  ")
    );
    let policy = match Policy::parse(&policy_text) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "error: {e:#}");
            return EXIT_USAGE;
        }
    };
    let inject = InjectArgs {
        load: LoadArgs {
            component: "process-pause@^0.1".to_string(),
            params: vec![format!("pid={pid}")],
            params_json: None,
            policy: None,
            memory_mib: 64,
            call_timeout: Duration::from_secs(10),
            execution_id: None,
        },
        duration: args.duration,
    };
    let loaded: Loaded =
        match load(&inject.load, hub, state_dir, Some(policy), Vec::new(), out).await {
            Ok(l) => l,
            Err(code) => return code,
        };
    // Looks at /proc while the fault holds.
    let watch = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        state_of(pid)
    };
    let stop = std::future::pending::<crate::execution::StopReason>();
    tokio::pin!(stop);
    let (code, during) = tokio::join!(run_fault(loaded, &inject, &mut stop, out), watch);
    let _ = writeln!(
        out,
        "while injected: pid {pid} state {during} (T = stopped)"
    );
    let _ = writeln!(out, "after revert:   pid {pid} state {}", state_of(pid));
    if code == EXIT_OK && during == "T" && state_of(pid) != "T" {
        let _ = writeln!(out, "demo passed: paused and resumed a real process");
    }
    code
}
