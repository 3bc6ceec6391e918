//! `faultline inspect`: what a component is, what it touches, and whether the host accepts it.

use super::{EXIT_OK, EXIT_REFUSED, EXIT_USAGE};
use crate::host::{HostConfig, LoadError, check};
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
}

/// Runs `faultline inspect`.
pub async fn run(
    args: InspectArgs,
    hub: &crate::hub::HubConfig,
    state_dir: &Path,
    out: &mut dyn Write,
) -> u8 {
    let bytes = match super::read_component(&args.component, hub).await {
        Ok(f) => f.bytes,
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
    }
    match result {
        Ok(_) => EXIT_OK,
        Err(LoadError::Host(_)) => EXIT_USAGE,
        Err(_) => EXIT_REFUSED,
    }
}
