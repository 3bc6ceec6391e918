//! `faultline policy explain POLICY`: what each grant of a policy reaches on this host right now.
//! The library computes it ([`crate::policy::explain`]); this prints it.

use super::{EXIT_OK, EXIT_USAGE};
use crate::policy::Policy;
use crate::policy::explain::{Explanation, GrantReach, ProcessMatch};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;

/// `faultline policy …`.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// Policy commands.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show, for each grant, which components it applies to, its capabilities and operations,
    /// and the processes, cgroups, namespaces and interfaces it reaches on this host now.
    Explain {
        /// The policy file (TOML).
        policy: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a policy command.
pub async fn run(args: PolicyArgs, out: &mut dyn Write) -> u8 {
    match args.command {
        PolicyCommand::Explain { policy, json } => explain(&policy, json, out).await,
    }
}

async fn explain(path: &std::path::Path, json: bool, out: &mut dyn Write) -> u8 {
    let policy = match Policy::load(path) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(out, "error: {e:#}");
            return EXIT_USAGE;
        }
    };
    // It reads /proc, walks cgroup trees and enters namespaces: off the async threads.
    let explained =
        match tokio::task::spawn_blocking(move || crate::policy::explain::explain(&policy)).await {
            Ok(e) => e,
            Err(e) => {
                let _ = writeln!(out, "error: explaining the policy failed: {e}");
                return EXIT_USAGE;
            }
        };
    let written = if json {
        serde_json::to_string_pretty(&explained)
            .map_err(std::io::Error::other)
            .and_then(|text| writeln!(out, "{text}"))
    } else {
        print_text(&explained, out)
    };
    match written {
        Ok(()) => EXIT_OK,
        Err(e) => {
            let _ = writeln!(out, "error: cannot write the explanation: {e}");
            EXIT_USAGE
        }
    }
}

fn list<T: std::fmt::Display>(items: &[T], empty: &str) -> String {
    if items.is_empty() {
        empty.to_string()
    } else {
        items
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn print_text(e: &Explanation, out: &mut dyn Write) -> std::io::Result<()> {
    if e.grants.is_empty() {
        writeln!(out, "no grants: every component gets log and rollback only")?;
    }
    for g in &e.grants {
        print_grant(g, out)?;
        writeln!(out)?;
    }
    writeln!(
        out,
        "never in scope, whatever the policy says (pid 1, the agent — here this process, \
         pid {} — its ancestors, and their threads):",
        e.agent
    )?;
    for x in &e.never_in_scope {
        writeln!(out, "  pid {} ({}): {}", x.pid, x.name, x.why)?;
    }
    Ok(())
}

fn print_process(p: &ProcessMatch, out: &mut dyn Write) -> std::io::Result<()> {
    write!(
        out,
        "    pid {} {} user {} matched by {}",
        p.pid, p.name, p.user, p.matched_by
    )?;
    if let Some(why) = &p.why {
        write!(out, " — excluded: {why}")?;
    }
    writeln!(out, "\n      cmdline: {}", p.cmdline)
}

fn print_grant(g: &GrantReach, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "grant {} ({}): applies to {}",
        g.number, g.component, g.applies_to
    )?;
    writeln!(
        out,
        "  capabilities: {} (log and rollback are always granted)",
        list(&g.capabilities, "none")
    )?;
    writeln!(
        out,
        "  signals: {}",
        list(&g.signals, "none (no signal may be sent)")
    )?;
    writeln!(
        out,
        "  stress: {}",
        list(&g.stress, "none (no stress worker may be started)")
    )?;
    match &g.processes {
        None => writeln!(out, "  processes: none (the process scope lists nothing)")?,
        Some(reach) => {
            writeln!(out, "  processes in scope now: {}", reach.matched.len())?;
            for p in &reach.matched {
                print_process(p, out)?;
            }
            if !reach.excluded.is_empty() {
                writeln!(
                    out,
                    "  named by the scope but never in scope: {}",
                    reach.excluded.len()
                )?;
                for p in &reach.excluded {
                    print_process(p, out)?;
                }
            }
        }
    }
    for s in &g.cgroups {
        match &s.error {
            Some(err) => writeln!(out, "  cgroup subtree {}: cannot list: {err}", s.subtree)?,
            None if s.total == 0 => {
                writeln!(out, "  cgroup subtree {}: does not exist now", s.subtree)?
            }
            None => {
                writeln!(
                    out,
                    "  cgroup subtree {}: {} cgroup(s) now",
                    s.subtree, s.total
                )?;
                for c in &s.cgroups {
                    writeln!(
                        out,
                        "    {} (v{}{})",
                        c.path,
                        c.version,
                        if c.controllers.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", c.controllers.join(","))
                        }
                    )?;
                }
                if s.total > s.cgroups.len() {
                    writeln!(out, "    … and {} more", s.total - s.cgroups.len())?;
                }
            }
        }
    }
    match &g.network {
        None => writeln!(out, "  network: none (no namespace granted)")?,
        Some(n) => {
            writeln!(
                out,
                "  network: interfaces matching {}, destinations {}, ports {}",
                list(&n.interface_globs, "(none: no interface)"),
                n.destinations
                    .as_ref()
                    .map_or("any".to_string(), |d| d.join(", ")),
                n.ports.as_ref().map_or("any".to_string(), |p| p.join(", "))
            )?;
            for ns in &n.namespaces {
                match &ns.error {
                    Some(err) => {
                        writeln!(out, "    {}: cannot list interfaces: {err}", ns.namespace)?
                    }
                    None => writeln!(
                        out,
                        "    {}: {}",
                        ns.namespace,
                        list(&ns.interfaces, "no matching interface")
                    )?,
                }
            }
            if n.pid_namespaces {
                writeln!(
                    out,
                    "    pid: the namespace of any process in the component's process scope"
                )?;
            }
        }
    }
    if let Some(o) = &g.outbound {
        writeln!(out, "  outbound: {o}")?;
    }
    for p in &g.commands {
        match &p.unusable {
            None => writeln!(out, "  command: {} (runs now)", p.rule)?,
            Some(why) => writeln!(out, "  command: {} — would be refused now: {why}", p.rule)?,
        }
    }
    if let Some(fs) = &g.filesystem {
        writeln!(
            out,
            "  filesystem: fills must leave {} of the file system available",
            fs.reserve
        )?;
        let size = |b: u64| bytesize::ByteSize::b(b).display().iec().to_string();
        for d in &fs.directories {
            match &d.error {
                Some(err) => writeln!(out, "    {}: cannot be opened now: {err}", d.directory)?,
                None => writeln!(
                    out,
                    "    {}: {} available of {}; one fill may take up to {} now (reserve {})",
                    d.directory,
                    size(d.available_bytes),
                    size(d.total_bytes),
                    size(d.fillable_bytes),
                    size(d.reserve_bytes)
                )?,
            }
        }
    }
    Ok(())
}
