//! Checks a component against the contract before anything runs: what it exports and what it
//! imports.

use crate::contract;
use crate::policy::Capability;
use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

/// What kind of plug-in a component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Exports `describe`, `validate`, `inject`, `revert`.
    Fault,
    /// Exports `describe`, `validate`, `check`.
    Probe,
}

impl Kind {
    /// The exports the contract requires.
    pub fn required_exports(self) -> &'static [&'static str] {
        match self {
            Kind::Fault => &["describe", "validate", "inject", "revert"],
            Kind::Probe => &["describe", "validate", "check"],
        }
    }

    /// Exports the contract allows beside the required ones: a fault may export `tick` (world
    /// `ticking-fault`, since 0.1.1) to be called while it is held.
    pub fn optional_exports(self) -> &'static [&'static str] {
        match self {
            Kind::Fault => &["tick"],
            Kind::Probe => &[],
        }
    }

    /// Whether this kind may import `capability` (the capability registry says).
    pub fn may_import(self, capability: Capability) -> bool {
        crate::capability::registry::<()>()
            .iter()
            .find(|r| r.capability == capability)
            .is_some_and(|r| match self {
                Kind::Fault => r.faults,
                Kind::Probe => r.probes,
            })
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Fault => "fault",
            Kind::Probe => "probe",
        })
    }
}

/// What a component exports and imports, and what the contract makes of it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Shape {
    /// Whether it exports `tick`: a fault the host calls while it is held.
    pub ticks: bool,
    /// Export names.
    pub exports: Vec<String>,
    /// Import names (`faultline:contract/process@0.1.0`, `wasi:io/streams@0.2.3`…).
    pub imports: Vec<String>,
    /// The contract capabilities it imports (`wasi:http` and `wasi:sockets` count as
    /// `outbound`).
    pub capabilities: Vec<Capability>,
}

/// Why a component is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A required export is missing.
    #[error("component does not export '{0}'")]
    MissingExport(String),
    /// Exports a function the contract does not know, or neither a fault nor a probe.
    #[error("component exports {0}, which is neither a fault (inject, revert) nor a probe (check)")]
    UnknownKind(String),
    /// Imports something outside the contract.
    #[error("component imports '{0}', which is outside the contract")]
    OutsideContract(String),
    /// Imports a contract interface its kind may not use.
    #[error("a {kind} may not import '{interface}'")]
    WrongKind {
        /// Fault or probe.
        kind: Kind,
        /// The interface.
        interface: String,
    },
    /// Targets another contract version.
    #[error("component imports '{0}', but this host implements faultline:contract@{v}", v = contract::VERSION)]
    ContractVersion(String),
    /// The policy does not grant an interface it imports.
    #[error(
        "component imports '{interface}', which the policy does not grant to {component} ({rules})"
    )]
    NotGranted {
        /// The interface.
        interface: String,
        /// The component.
        component: String,
        /// The rules consulted.
        rules: String,
    },
    /// Imports an interface its `describe` does not declare.
    #[error("component imports '{0}', which its description does not declare")]
    Undeclared(String),
    /// An export has the wrong type.
    #[error("component exports do not match the contract's types: {0}")]
    ExportTypes(String),
    /// Exports a function the contract reserves for the other kind (a probe exporting `tick`).
    #[error("a {kind} may not export '{export}' (only a fault of world ticking-fault does)")]
    MisplacedExport {
        /// Fault or probe.
        kind: Kind,
        /// The export.
        export: String,
    },
    /// Not a valid component at all.
    #[error("not a valid Wasm component: {0}")]
    Invalid(String),
    /// A hub release whose component describes itself as something else.
    #[error(
        "hub {hub} lists this component as {listed}, but it describes itself as {described}: refused"
    )]
    IdentityMismatch {
        /// The hub's id.
        hub: String,
        /// `name@version` in the hub's index.
        listed: String,
        /// `name@version` from `describe()`.
        described: String,
    },
    /// A probe where a fault was asked for, or the other way round.
    #[error("{component} is a {is}, not a {wanted}")]
    WrongWorld {
        /// The component as it describes itself.
        component: String,
        /// What it is.
        is: Kind,
        /// What was asked for.
        wanted: Kind,
    },
}

/// WASI interfaces Rust's `std` imports. They are linked to an empty context (no files, no
/// environment, no arguments), so importing them grants nothing.
const WASI_ALLOWED: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// WASI interfaces that reach the network: importing one is using the `outbound` capability
/// (probes only, and only when granted). UDP is not among them: no probe may import it.
const WASI_OUTBOUND: &[&str] = &[
    "wasi:http/types",
    "wasi:http/outgoing-handler",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// The contract capability a WASI import uses, if any (`wasi:http/types@0.2.6` → outbound).
pub fn wasi_capability(import: &str) -> Option<Capability> {
    let unversioned = import.split('@').next().unwrap_or(import);
    WASI_OUTBOUND
        .contains(&unversioned)
        .then_some(Capability::Outbound)
}

/// The first import through which a component uses `capability`, for messages.
pub fn import_of(shape: &Shape, capability: Capability) -> Option<&str> {
    shape
        .imports
        .iter()
        .find(|i| {
            wasi_capability(i) == Some(capability)
                || contract_interface(i).and_then(|(iface, _)| Capability::from_interface(iface))
                    == Some(capability)
        })
        .map(String::as_str)
}

/// Reads a component's shape.
pub fn shape(engine: &Engine, component: &Component) -> Shape {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    let mut capabilities: Vec<Capability> = imports
        .iter()
        .filter_map(|i| contract_interface(i))
        .filter_map(|(iface, _)| Capability::from_interface(iface))
        .chain(imports.iter().filter_map(|i| wasi_capability(i)))
        .collect();
    capabilities.sort();
    capabilities.dedup();
    Shape {
        ticks: exports.iter().any(|e| e == "tick"),
        exports,
        imports,
        capabilities,
    }
}

/// `faultline:contract/process@0.1.0` → `("process", "0.1.0")`.
fn contract_interface(import: &str) -> Option<(&str, &str)> {
    let rest = import.strip_prefix(contract::PACKAGE)?.strip_prefix('/')?;
    Some(rest.split_once('@').unwrap_or((rest, "")))
}

/// Whether two versions are compatible in the component model's sense (same major, or same
/// minor for 0.x).
fn compatible(a: &str, b: &str) -> bool {
    match (semver::Version::parse(a), semver::Version::parse(b)) {
        (Ok(a), Ok(b)) if a.major == 0 && b.major == 0 => a.minor == b.minor,
        (Ok(a), Ok(b)) => a.major == b.major,
        _ => false,
    }
}

/// Decides the kind from the exports and checks them all.
pub fn check_exports(engine: &Engine, component: &Component) -> Result<Kind, Refusal> {
    let ty = component.component_type();
    let funcs: Vec<String> = ty
        .exports(engine)
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)))
        .map(|(n, _)| n.to_string())
        .collect();
    let has = |n: &str| funcs.iter().any(|f| f == n);
    let kind = if has("inject") || has("revert") {
        Kind::Fault
    } else if has("check") {
        Kind::Probe
    } else {
        let all: Vec<String> = ty.exports(engine).map(|(n, _)| format!("'{n}'")).collect();
        let list = if all.is_empty() {
            "nothing".to_string()
        } else {
            all.join(", ")
        };
        return Err(Refusal::UnknownKind(list));
    };
    for name in kind.required_exports() {
        if !has(name) {
            return Err(Refusal::MissingExport(name.to_string()));
        }
    }
    // Whether `tick` has the contract's type is checked when the host binds it (`Host::pre`).
    for other in [Kind::Fault, Kind::Probe] {
        for name in other.optional_exports() {
            if other != kind && has(name) && !kind.optional_exports().contains(name) {
                return Err(Refusal::MisplacedExport {
                    kind,
                    export: name.to_string(),
                });
            }
        }
    }
    Ok(kind)
}

/// Checks every import is in the contract for this kind, or harmless WASI.
pub fn check_imports(kind: Kind, shape: &Shape) -> Result<(), Refusal> {
    for import in &shape.imports {
        if let Some((iface, version)) = contract_interface(import) {
            if !compatible(version, contract::VERSION) {
                return Err(Refusal::ContractVersion(import.clone()));
            }
            if iface == "types" {
                continue;
            }
            match Capability::from_interface(iface) {
                Some(c) if kind.may_import(c) => {}
                Some(_) => {
                    return Err(Refusal::WrongKind {
                        kind,
                        interface: import.clone(),
                    });
                }
                None => return Err(Refusal::OutsideContract(import.clone())),
            }
            continue;
        }
        if let Some(c) = wasi_capability(import) {
            if !kind.may_import(c) {
                return Err(Refusal::WrongKind {
                    kind,
                    interface: import.clone(),
                });
            }
            continue;
        }
        let unversioned = import.split('@').next().unwrap_or(import);
        if !WASI_ALLOWED.contains(&unversioned) {
            return Err(Refusal::OutsideContract(import.clone()));
        }
    }
    Ok(())
}

/// The names a component imports at its top level, read by parsing its binary: nothing is
/// compiled, so the hub can check every pull without a Cranelift run (which costs ~100 ms and
/// ~16 MiB of a CLI's peak memory).
pub fn import_names(wasm: &[u8]) -> anyhow::Result<Vec<String>> {
    use wasmparser::{Encoding, Parser, Payload};
    let mut depth = 0usize;
    let mut names = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload? {
            Payload::Version { encoding, .. } if depth == 0 && encoding != Encoding::Component => {
                anyhow::bail!("not a Wasm component (a core module)");
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import?;
                    // Type imports name the types of exports (`description`…): no capability.
                    if let wasmparser::ComponentTypeRef::Type(_) = import.ty {
                        continue;
                    }
                    names.push(match import.name.version_suffix {
                        Some(v) => format!("{}{v}", import.name.name),
                        None => import.name.name.to_string(),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(names)
}
