//! What a fault step acts on, resolved on this host at the moment of the pre-run check, and
//! the grant of the policy that covers each target.

use super::spec::Targets;
use crate::policy::Grants;

/// The target keys a fault's parameters accept, read from its parameter schema.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accepts {
    /// `pid`.
    pub pid: bool,
    /// `path` (cgroup faults) or `cgroup` (stress faults): the cgroup key, if any.
    pub cgroup_key: Option<&'static str>,
    /// `netns`.
    pub netns: bool,
    /// `interfaces`.
    pub interfaces: bool,
}

impl Accepts {
    /// What a fault's parameter schema (a JSON Schema object) accepts.
    pub fn of_schema(schema: &serde_json::Value) -> Accepts {
        let _ = schema;
        todo!("Accepts::of_schema")
    }
}

/// One resolved target.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// For people: `pid 4242 (demo-service)`, `cgroup /x`, `netns a: veth0`.
    pub label: String,
    /// The parameters it adds to the step's (`pid`, `path`, `netns`, `interfaces`).
    pub params: serde_json::Map<String, serde_json::Value>,
    /// A process target's pid and start time (to refuse a pid reused since the check).
    pub process: Option<(u32, u64)>,
}

/// Resolves a step's targets on this host: the processes, cgroup or interfaces they name now,
/// the blast radius applied. An empty result is not an error here (the caller applies
/// `on_empty`); a target the fault cannot take is.
pub fn resolve(targets: &Targets, accepts: Accepts) -> Result<Vec<Resolved>, String> {
    let _ = (targets, accepts);
    todo!("resolve")
}

/// The rule of `grants` that covers `target`, or why none does.
pub fn covering_grant(grants: &Grants, target: &Resolved) -> Result<String, String> {
    let _ = (grants, target);
    todo!("covering_grant")
}
