//! Curation: which packages an agent accepts (allow/deny name patterns, the capability
//! ceiling) and whether a component's actual imports stay within what it declares.

use super::build::Described;
use super::{Capability, HubConfig, HubError, Release};

/// Inspects components for the hub: reads the interfaces they import, and asks them what they
/// are. The component host implements it (it owns the Wasm parser and runs guests); the hub
/// calls it on every pulled component, and `hub build` on every component it publishes.
pub trait ComponentImports: Send + Sync {
    /// The fully qualified interfaces `wasm` imports, e.g. `faultline:contract/process@0.1.0`
    /// or `wasi:cli/environment@0.2.6`.
    fn imported_interfaces(&self, wasm: &[u8]) -> anyhow::Result<Vec<String>>;

    /// Loads `wasm` with nothing granted and returns what its `describe()` says, with its kind
    /// and contract. Blocks the calling thread until the guest answers: call it from the
    /// blocking pool or a plain thread, not from an async task.
    fn describe(&self, wasm: &[u8]) -> anyhow::Result<Described>;
}

/// Refuses a package whose name a `deny` pattern matches, or that no `allow` pattern matches
/// (when there are any).
pub(crate) fn check_name(config: &HubConfig, name: &str) -> Result<(), HubError> {
    if let Some(pattern) = config.deny.iter().find(|p| glob_match(p, name)) {
        return Err(HubError::Denied {
            package: name.to_string(),
            reason: format!("deny pattern `{pattern}` matches"),
        });
    }
    if !config.allow.is_empty() && !config.allow.iter().any(|p| glob_match(p, name)) {
        return Err(HubError::Denied {
            package: name.to_string(),
            reason: format!(
                "no allow pattern matches (allow = [{}])",
                config.allow.join(", ")
            ),
        });
    }
    Ok(())
}

/// Refuses a release that declares a capability outside the configured ceiling.
pub(crate) fn check_ceiling(
    config: &HubConfig,
    name: &str,
    release: &Release,
) -> Result<(), HubError> {
    let Some(ceiling) = &config.capabilities else {
        return Ok(());
    };
    match release
        .capabilities
        .iter()
        .find(|c| !ceiling.contains(&c.interface))
    {
        Some(c) => Err(HubError::AboveCeiling {
            package: name.to_string(),
            version: release.version.to_string(),
            capability: c.interface.to_string(),
            ceiling: join(ceiling.iter().copied()),
        }),
        None => Ok(()),
    }
}

/// Refuses a component whose `imports` go beyond the release's declared capabilities.
/// WASI imports are always allowed (the host links them to an empty context); the contract's
/// `types` interface carries no functions; every other contract interface must be declared and
/// of the release's contract version; anything else is refused.
pub fn check_imports(name: &str, release: &Release, imports: &[String]) -> Result<(), HubError> {
    let refuse = |import: &str| HubError::UndeclaredImport {
        package: name.to_string(),
        version: release.version.to_string(),
        import: import.to_string(),
        declared: join(release.capabilities.iter().map(|c| c.interface)),
    };
    for import in imports {
        if import.starts_with("wasi:") {
            continue;
        }
        let Some(rest) = import.strip_prefix("faultline:contract/") else {
            return Err(refuse(import));
        };
        let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
        if version != release.contract_version() {
            return Err(HubError::UndeclaredImport {
                package: name.to_string(),
                version: release.version.to_string(),
                import: import.to_string(),
                declared: format!("contract {}", release.contract),
            });
        }
        if interface == "types" {
            continue;
        }
        match Capability::from_interface(interface) {
            Some(c) if release.declares(c) => {}
            _ => return Err(refuse(import)),
        }
    }
    Ok(())
}

fn join(caps: impl Iterator<Item = Capability>) -> String {
    caps.map(Capability::interface)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Matches `name` against a glob (`*` any run of characters, `?` any one; globset syntax).
/// Patterns are checked when the configuration is read, so one that does not compile here
/// matches nothing rather than everything.
pub(crate) fn glob_match(pattern: &str, name: &str) -> bool {
    globset::Glob::new(pattern).is_ok_and(|g| g.compile_matcher().is_match(name))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::hub::{CapabilityDecl, Digest};

    fn release(caps: &[Capability]) -> Release {
        Release {
            version: semver::Version::new(1, 0, 0),
            digest: Digest::of(b""),
            size: 1,
            urls: vec!["a.wasm".into()],
            contract: "faultline:contract@0.1.0".into(),
            capabilities: caps
                .iter()
                .map(|c| CapabilityDecl {
                    interface: *c,
                    scope: None,
                })
                .collect(),
            params_schema: Default::default(),
            revertible: true,
            yanked: None,
            deprecated: None,
            extra: Default::default(),
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("network-*", "network-delay"));
        assert!(!glob_match("network-*", "process-kill"));
        assert!(glob_match("p?ocess-*e", "process-pause"));
        assert!(glob_match("*-kill", "process-kill"));
        assert!(!glob_match("*-kill", "process-killer"));
    }

    #[test]
    fn imports_must_be_declared() {
        let r = release(&[Capability::Process, Capability::Log]);
        let ok = [
            "wasi:cli/environment@0.2.6".to_string(),
            "faultline:contract/types@0.1.0".into(),
            "faultline:contract/process@0.1.0".into(),
        ];
        check_imports("p", &r, &ok).unwrap();
        let err = check_imports("p", &r, &["faultline:contract/network@0.1.0".into()]).unwrap_err();
        assert!(
            err.to_string()
                .contains("imports `faultline:contract/network@0.1.0`"),
            "{err}"
        );
        let err = check_imports("p", &r, &["faultline:contract/process@0.2.0".into()]).unwrap_err();
        assert!(matches!(err, HubError::UndeclaredImport { .. }));
        let err = check_imports("p", &r, &["evil:pkg/thing".into()]).unwrap_err();
        assert!(matches!(err, HubError::UndeclaredImport { .. }));
    }
}
