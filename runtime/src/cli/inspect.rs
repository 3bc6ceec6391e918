//! `faultline inspect`: what a component is, what it touches, whether the host accepts it and,
//! with `--policy`, whether that policy would load it.
//!
//! Exit codes: 0 accepted (and loadable under the policy, when one is given); 2 a usage error
//! (unreadable file or policy); 3 refused: by the contract (a missing export, an import
//! outside the contract or beyond what `describe()` declares) or by the policy.

use super::{EXIT_OK, EXIT_REFUSED, EXIT_USAGE};
use crate::host::{Host, HostConfig, LoadError, Shape, check};
use crate::policy::{Capability, Grants, Policy};
use clap::Args;
use std::io::Write;
use std::path::Path;

/// `faultline inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The component: a `.wasm` file or a hub reference.
    pub component: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also say whether this policy (TOML) would load the component, and why: each imported
    /// capability and the grant that gives it, or the first one no grant gives.
    #[arg(long)]
    pub policy: Option<std::path::PathBuf>,
}

/// Runs `faultline inspect`.
pub async fn run(
    args: InspectArgs,
    hub: &crate::hub::HubConfig,
    state_dir: &Path,
    out: &mut dyn Write,
) -> u8 {
    let policy = match &args.policy {
        Some(path) => match Policy::load(path) {
            Ok(p) => Some(p),
            Err(e) => {
                let _ = writeln!(out, "error: {e:#}");
                return EXIT_USAGE;
            }
        },
        None => None,
    };
    let (bytes, identity) = match super::read_component(&args.component, hub).await {
        Ok(f) => (f.bytes, f.identity),
        Err(e) => {
            let _ = writeln!(out, "error: {e:#}");
            return super::component_exit_code(&e);
        }
    };
    let Ok(host) = super::start_host(HostConfig::new(state_dir.to_path_buf()), out) else {
        return EXIT_USAGE;
    };
    // The shape is shown even for a component the host refuses.
    let shape = host
        .compile(&bytes)
        .await
        .ok()
        .map(|(c, _, _)| check::shape(host.engine(), &c));
    let result = host.inspect(&bytes).await;
    let verdict = match &result {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("refused: {e}"),
    };
    // The policy's word, for a component the contract accepts.
    let admission = match (&policy, &result) {
        (Some(policy), Ok(i)) => Some(
            Host::admit(&i.digest, &i.description, &i.shape, &identity, policy)
                .map(|grants| granted_by(&i.shape, &grants))
                .map_err(|e| e.to_string()),
        ),
        _ => None,
    };
    if args.json {
        let value = serde_json::json!({
            "component": args.component.clone(),
            "verdict": verdict,
            "ok": result.is_ok(),
            "kind": result.as_ref().ok().map(|i| i.kind),
            "digest": result.as_ref().ok().map(|i| i.digest.clone()),
            "description": result.as_ref().ok().map(|i| serde_json::json!({
                "name": i.description.name,
                "version": i.description.version,
                "summary": i.description.summary,
                "revertible": i.description.revertible,
                "params_schema": serde_json::from_str::<serde_json::Value>(&i.description.params_schema).ok(),
            })),
            "shape": shape,
            "identity": identity.label(),
            "policy": admission.as_ref().map(|a| match a {
                Ok(lines) => serde_json::json!({"loads": true, "grants": lines}),
                Err(why) => serde_json::json!({"loads": false, "reason": why}),
            }),
        });
        let _ = writeln!(out, "{value:#}");
    } else {
        let _ = writeln!(out, "component    {}", args.component);
        if let Ok(i) = &result {
            let d = &i.description;
            let _ = writeln!(out, "digest       {}", i.digest);
            let _ = writeln!(out, "kind         {}", i.kind);
            let _ = writeln!(out, "name         {} {}", d.name, d.version);
            let _ = writeln!(out, "summary      {}", d.summary);
            let _ = writeln!(
                out,
                "revertible   {}",
                if d.revertible {
                    "yes"
                } else {
                    "no: its effect cannot be undone"
                }
            );
            let _ = writeln!(out, "params       {}", d.params_schema);
        }
        if let Some(s) = &shape {
            let caps: Vec<String> = s.capabilities.iter().map(|c| c.to_string()).collect();
            let _ = writeln!(out, "capabilities {}", caps.join(", "));
            let _ = writeln!(out, "exports      {}", s.exports.join(", "));
            let _ = writeln!(out, "imports      {}", s.imports.join("\n             "));
        }
        let _ = writeln!(out, "verdict      {verdict}");
        match &admission {
            Some(Ok(lines)) => {
                let _ = writeln!(out, "policy       loads it as {}", identity.label());
                for line in lines {
                    let _ = writeln!(out, "             {line}");
                }
            }
            Some(Err(why)) => {
                let _ = writeln!(out, "policy       refused: {why}");
            }
            None => {}
        }
    }
    match (result, admission) {
        (Err(LoadError::Host(_)), _) => EXIT_USAGE,
        (Err(_), _) | (Ok(_), Some(Err(_))) => EXIT_REFUSED,
        (Ok(_), _) => EXIT_OK,
    }
}

/// For each capability the component imports, the grants that give it (log and rollback are
/// everyone's).
fn granted_by(shape: &Shape, grants: &Grants) -> Vec<String> {
    shape
        .capabilities
        .iter()
        .map(|c| match c {
            Capability::Log | Capability::Rollback => format!("{c}: every component has it"),
            _ => format!("{c}: granted by {}", grants.rules_text()),
        })
        .collect()
}
