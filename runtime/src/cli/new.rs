//! `faultline new fault|probe NAME`: a crate that builds out of tree with one `cargo build`,
//! with a README, an example policy and tests against the SDK's mock host. The fault template
//! for `process` is the SDK documentation's first example (a test keeps them the same).
//!
//! Exit codes: 0 made; 2 a usage error (a bad name, an existing directory, an unknown
//! capability, no SDK to point at).

use super::{EXIT_OK, EXIT_USAGE};
use crate::host::Kind;
use crate::policy::Capability;
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NewKind {
    /// A fault: `inject` breaks something, `revert` undoes it.
    Fault,
    /// A probe: `check` says whether something is healthy.
    Probe,
}

/// `faultline new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// `fault` or `probe`.
    pub kind: NewKind,
    /// The crate's (and hub package's) name: lower-case letters, digits and `-`.
    pub name: String,
    /// The capability the template's code uses, first; more are declared beside it
    /// (repeatable). Faults: process (default), network, cgroup. Probes: outbound (default),
    /// process.
    #[arg(long = "capability", short = 'c', value_name = "CAPABILITY")]
    pub capabilities: Vec<String>,
    /// Where to make the crate; default `./NAME`. It must not exist, or be empty.
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// One line on what it does (the component's `SUMMARY`).
    #[arg(long)]
    pub summary: Option<String>,
    /// The SDK as a path dependency: the `faults/sdk/` directory of a Faultline checkout. Default:
    /// the SDK this faultline was built from, when it is still there.
    #[arg(long, conflicts_with = "sdk_git")]
    pub sdk_path: Option<PathBuf>,
    /// The SDK as a git dependency: the URL of a Faultline repository.
    #[arg(long)]
    pub sdk_git: Option<String>,
    /// With `--sdk-git`: the tag to build against (default: the repository's default branch).
    #[arg(long, requires = "sdk_git", conflicts_with = "sdk_rev")]
    pub sdk_tag: Option<String>,
    /// With `--sdk-git`: the commit to build against.
    #[arg(long, requires = "sdk_git")]
    pub sdk_rev: Option<String>,
}

/// One file of the template: where it goes and its text with `{{placeholders}}`.
struct File {
    path: &'static str,
    text: &'static str,
}

const COMMON: &[File] = &[
    File {
        path: "Cargo.toml",
        text: include_str!("../../templates/Cargo.toml.tmpl"),
    },
    File {
        path: ".cargo/config.toml",
        text: include_str!("../../templates/config.toml.tmpl"),
    },
    File {
        path: "rust-toolchain.toml",
        text: include_str!("../../templates/rust-toolchain.toml.tmpl"),
    },
    File {
        path: ".gitignore",
        text: include_str!("../../templates/gitignore.tmpl"),
    },
    File {
        path: "README.md",
        text: include_str!("../../templates/README.md.tmpl"),
    },
];

/// A body for `src/lib.rs`: the capability its code uses and what the other files say of it.
struct Body {
    kind: NewKind,
    capability: Capability,
    lib: &'static str,
    summary: &'static str,
    category: &'static str,
    policy: &'static str,
    params_doc: &'static str,
    run: &'static str,
}

const BODIES: &[Body] = &[
    Body {
        kind: NewKind::Fault,
        capability: Capability::Process,
        lib: include_str!("../../templates/fault-process.rs"),
        summary: "Pauses processes for the fault's duration",
        category: "process",
        policy: "capabilities = [\"process\"]\nprocess = { names = [\"app-worker\"], signals = [\"stop\"] }",
        params_doc: "- `pid`, `name` or `cmdline` (a regex over the arguments): which processes, exactly one.\n\
                     - `max_targets`: pause at most this many (0: all).",
        run: "faultline inject {{name}} --policy policy.toml --param name=app-worker --duration 30s",
    },
    Body {
        kind: NewKind::Fault,
        capability: Capability::Network,
        lib: include_str!("../../templates/fault-network.rs"),
        summary: "Delays egress packets for the fault's duration",
        category: "network",
        policy: "capabilities = [\"network\"]\nnetwork = { namespaces = [\"named:app-*\"], interfaces = [\"eth0\"] }",
        params_doc: "- `netns` or `pid`: the network namespace; `interfaces`, optional `destinations`, `ports`, `protocol`.\n\
                     - `delay`: how long each packet is held (`\"100ms\"`).",
        run: "faultline inject {{name}} --policy policy.toml --param netns=app-1 \\\n  --param 'interfaces=[\"eth0\"]' --param delay=200ms --duration 30s",
    },
    Body {
        kind: NewKind::Fault,
        capability: Capability::Cgroup,
        lib: include_str!("../../templates/fault-cgroup.rs"),
        summary: "Caps a cgroup's CPU for the fault's duration",
        category: "cgroup",
        policy: "capabilities = [\"cgroup\"]\ncgroup = { subtrees = [\"/system.slice/app.service\"] }",
        params_doc: "- `pid` or `path`: the cgroup (the one a process is in, or a path below the hierarchy root).\n\
                     - `millicores`: the CPU allowed, in thousandths of a core.",
        run: "faultline inject {{name}} --policy policy.toml --param path=/system.slice/app.service \\\n  --param millicores=250 --duration 30s",
    },
    Body {
        kind: NewKind::Probe,
        capability: Capability::Outbound,
        lib: include_str!("../../templates/probe-outbound.rs"),
        summary: "Passes when an HTTP GET answers 2xx",
        category: "http",
        policy: "capabilities = [\"outbound\"]\noutbound = { destinations = [\"127.0.0.1\"], ports = [8080] }",
        params_doc: "- `url`: what to GET.\n- `timeout`: the longest wait (`\"5s\"`).",
        run: "faultline probe {{name}} --policy policy.toml --param url=http://127.0.0.1:8080/health",
    },
    Body {
        kind: NewKind::Probe,
        capability: Capability::Process,
        lib: include_str!("../../templates/probe-process.rs"),
        summary: "Passes when enough processes are running",
        category: "process",
        policy: "capabilities = [\"process\"]\nprocess = { names = [\"app-worker\"] }",
        params_doc: "- `pid`, `name` or `cmdline`: which processes, exactly one.\n- `min`: how many must run (1).",
        run: "faultline probe {{name}} --policy policy.toml --param name=app-worker",
    },
];

/// The channel of this repository's `rust-toolchain.toml`: the toolchain the SDK is built with.
fn channel() -> &'static str {
    include_str!("../../../rust-toolchain.toml")
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel"))
        .and_then(|v| v.split('"').nth(1))
        .unwrap_or("stable")
}

/// Runs `faultline new`.
pub fn run(args: NewArgs, out: &mut dyn Write) -> u8 {
    match make(&args) {
        Ok((dir, files)) => {
            for f in &files {
                let _ = writeln!(out, "  {}", f.display());
            }
            let _ = writeln!(
                out,
                "made {} `{}` in {}\nnext:\n  cd {}\n  cargo build --release    # the component: target/wasm32-wasip2/release/{}.wasm\n  cargo host-test          # its tests, against the SDK's mock host\n  faultline inspect target/wasm32-wasip2/release/{}.wasm\nthen publish it to a hub and run it by name (README.md says how)",
                if args.kind == NewKind::Fault {
                    "fault"
                } else {
                    "probe"
                },
                args.name,
                dir.display(),
                dir.display(),
                lib_name(&args.name),
                lib_name(&args.name),
            );
            EXIT_OK
        }
        Err(e) => {
            let _ = writeln!(out, "error: {e}");
            EXIT_USAGE
        }
    }
}

fn lib_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Writes the crate; returns its directory and the files written (relative).
fn make(args: &NewArgs) -> Result<(PathBuf, Vec<PathBuf>), String> {
    check_name(&args.name)?;
    let (body, extra) = body_for(args.kind, &args.capabilities)?;
    let sdk = sdk_dependency(args)?;
    let summary = match &args.summary {
        Some(s) if s.trim().is_empty() || s.len() > 200 || s.contains(['"', '\\', '\n']) => {
            return Err(
                "--summary must be one line of 1 to 200 bytes without quotes or backslashes".into(),
            );
        }
        Some(s) => s.clone(),
        None => body.summary.to_string(),
    };
    let dir = args
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map_err(|e| format!("reading {}: {e}", dir.display()))?
            .next()
            .is_some()
    {
        return Err(format!(
            "{} exists and is not empty: give a new directory with --path",
            dir.display()
        ));
    }
    let mut capabilities: Vec<Capability> = Vec::new();
    if args.kind == NewKind::Fault {
        capabilities.extend([Capability::Log, Capability::Rollback]);
    }
    capabilities.push(body.capability);
    capabilities.extend(extra.iter().copied().filter(|c| c.declarable()));
    capabilities.dedup();
    let capability_list = capabilities
        .iter()
        .map(|c| format!("Capability::{}", camel(c.interface())))
        .collect::<Vec<_>>()
        .join(", ");
    let kind = match args.kind {
        NewKind::Fault => "fault",
        NewKind::Probe => "probe",
    };
    let fill = |text: &str| {
        text.replace("{{run_example}}", body.run)
            .replace("{{params_doc}}", body.params_doc)
            .replace("{{name}}", &args.name)
            .replace("{{Type}}", &camel(&args.name))
            .replace("{{lib}}", &lib_name(&args.name))
            .replace("{{summary}}", &summary)
            .replace("{{sdk}}", &sdk)
            .replace("{{kind}}", kind)
            .replace("{{capability}}", body.capability.interface())
            .replace("{{capabilities}}", &capability_list)
            .replace("{{category}}", body.category)
            .replace("{{channel}}", channel())
    };
    let mut files: Vec<(PathBuf, String)> = COMMON
        .iter()
        .map(|f| (PathBuf::from(f.path), fill(f.text)))
        .collect();
    let mut lib = fill(body.lib);
    for c in extra.iter().filter(|c| !c.declarable()) {
        // Declared by importing them (contract 0.1.1): nothing to list, but say so.
        lib = lib.replacen(
            "\nstruct ",
            &format!(
                "\n// `{}` is declared by importing it: call `faultline_sdk::{}` and it is.\nstruct ",
                c.interface(),
                c.interface()
            ),
            1,
        );
    }
    files.push((PathBuf::from("src/lib.rs"), lib));
    files.push((
        PathBuf::from("policy.toml"),
        format!(
            "# What `{name}` may touch on this host: edit the scope to yours. `faultline inspect \
             <component> --policy policy.toml`\n# says whether this policy loads it and why; \
             `faultline policy explain policy.toml` what it reaches now.\n[[grant]]\n\
             component = \"{name}\"   # the hub release by name; a local .wasm file needs \
             \"sha256:<digest>\"\n{}\n",
            body.policy,
            name = args.name
        ),
    ));
    for (path, text) in &files {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        std::fs::write(&full, text).map_err(|e| format!("writing {}: {e}", full.display()))?;
    }
    Ok((dir, files.into_iter().map(|(p, _)| p).collect()))
}

fn check_name(name: &str) -> Result<(), String> {
    const RESERVED: &[&str] = &[
        "test",
        "std",
        "core",
        "alloc",
        "proc-macro",
        "self",
        "super",
        "crate",
    ];
    let mut chars = name.chars();
    let valid = name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !valid {
        return Err(format!(
            "{name:?} is not a package name: lower-case letters, digits and single `-`, starting \
             with a letter, at most 64 (it is the crate's and the hub package's name)"
        ));
    }
    if RESERVED.contains(&name) {
        return Err(format!("{name:?} is reserved by Rust: choose another name"));
    }
    Ok(())
}

/// The body for the first capability, and the capabilities after it.
fn body_for(kind: NewKind, names: &[String]) -> Result<(&'static Body, Vec<Capability>), String> {
    let host_kind = match kind {
        NewKind::Fault => Kind::Fault,
        NewKind::Probe => Kind::Probe,
    };
    let mut parsed = Vec::new();
    for name in names {
        let c = Capability::from_interface(name.trim()).ok_or_else(|| {
            format!(
                "unknown capability `{name}`: one of {}",
                Capability::ALL
                    .iter()
                    .map(|c| c.interface())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        if !host_kind.may_import(c) {
            return Err(format!("a {host_kind} cannot use `{name}`"));
        }
        parsed.push(c);
    }
    let templates: Vec<&Body> = BODIES.iter().filter(|b| b.kind == kind).collect();
    let body = match parsed.first() {
        None => templates[0],
        Some(first) => templates
            .iter()
            .find(|b| b.capability == *first)
            .copied()
            .ok_or_else(|| {
                format!(
                    "no {host_kind} template starts from `{first}`; the first --capability is \
                     one of {} (more after it are declared beside it)",
                    templates
                        .iter()
                        .map(|b| b.capability.interface())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?,
    };
    let extra = parsed
        .into_iter()
        .skip(1)
        .filter(|c| *c != body.capability && !matches!(c, Capability::Log | Capability::Rollback))
        .collect();
    Ok((body, extra))
}

/// The `faultline-sdk = { … }` keys for the dependency, as TOML.
fn sdk_dependency(args: &NewArgs) -> Result<String, String> {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    if let Some(url) = &args.sdk_git {
        let mut keys = format!("git = {}", quote(url));
        if let Some(tag) = &args.sdk_tag {
            keys.push_str(&format!(", tag = {}", quote(tag)));
        }
        if let Some(rev) = &args.sdk_rev {
            keys.push_str(&format!(", rev = {}", quote(rev)));
        }
        return Ok(keys);
    }
    let path = match &args.sdk_path {
        Some(p) => p.clone(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../faults/sdk"),
    };
    let manifest = path.join("Cargo.toml");
    let is_sdk =
        std::fs::read_to_string(&manifest).is_ok_and(|t| t.contains("name = \"faultline-sdk\""));
    if !is_sdk {
        return Err(format!(
            "no Faultline SDK at {}: pass --sdk-path <checkout>/sdk, or --sdk-git <repository \
             URL> [--sdk-tag <tag>]",
            path.display()
        ));
    }
    let path = path
        .canonicalize()
        .map_err(|e| format!("resolving {}: {e}", path.display()))?;
    Ok(format!("path = {}", quote(&path.display().to_string())))
}

/// `my-nap` → `MyNap`; `cgroup` → `Cgroup`.
fn camel(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn args(kind: NewKind, name: &str, caps: &[&str], dir: &Path) -> NewArgs {
        NewArgs {
            kind,
            name: name.into(),
            capabilities: caps.iter().map(|s| s.to_string()).collect(),
            path: Some(dir.join(name)),
            summary: None,
            sdk_path: None,
            sdk_git: None,
            sdk_tag: None,
            sdk_rev: None,
        }
    }

    #[test]
    fn names_capabilities_and_directories_are_checked_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["My-Nap", "9lives", "a--b", "nap-", "test", "", "a b", "a/b"] {
            let e = make(&args(NewKind::Fault, bad, &[], dir.path())).unwrap_err();
            assert!(e.contains("name") || e.contains("reserved"), "{bad}: {e}");
        }
        let e = make(&args(NewKind::Fault, "nap", &["outbound"], dir.path())).unwrap_err();
        assert!(e.contains("a fault cannot use `outbound`"), "{e}");
        let e = make(&args(NewKind::Probe, "up", &["network"], dir.path())).unwrap_err();
        assert!(e.contains("a probe cannot use `network`"), "{e}");
        let e = make(&args(NewKind::Fault, "nap", &["filesystem"], dir.path())).unwrap_err();
        assert!(
            e.contains("no fault template starts from `filesystem`"),
            "{e}"
        );
        let e = make(&args(NewKind::Fault, "nap", &["sockets"], dir.path())).unwrap_err();
        assert!(e.contains("unknown capability `sockets`"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        std::fs::create_dir(dir.path().join("taken")).unwrap();
        std::fs::write(dir.path().join("taken/keep"), "mine").unwrap();
        let e = make(&args(NewKind::Fault, "taken", &[], dir.path())).unwrap_err();
        assert!(e.contains("not empty"), "{e}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("taken/keep")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn the_crate_declares_what_its_code_uses_and_points_at_the_sdk() {
        let dir = tempfile::tempdir().unwrap();
        let (crate_dir, files) = make(&args(
            NewKind::Fault,
            "my-nap",
            &["process", "network", "filesystem"],
            dir.path(),
        ))
        .unwrap();
        assert!(files.contains(&PathBuf::from("src/lib.rs")));
        let lib = std::fs::read_to_string(crate_dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("struct MyNap;"), "{lib}");
        assert!(
            lib.contains(
                "&[Capability::Log, Capability::Rollback, Capability::Process, Capability::Network]"
            ),
            "{lib}"
        );
        assert!(
            lib.contains("`filesystem` is declared by importing it"),
            "{lib}"
        );
        assert!(!lib.contains("{{"), "unfilled placeholder in {lib}");
        let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
        let parsed: toml::Table = toml::from_str(&manifest).unwrap();
        let sdk = &parsed["dependencies"]["faultline-sdk"];
        let sdk_path = PathBuf::from(sdk["path"].as_str().unwrap());
        assert!(sdk_path.join("wit/faultline.wit").is_file(), "{sdk_path:?}");
        assert_eq!(
            sdk["features"].as_array().unwrap()[0].as_str(),
            Some("fault")
        );
        for f in &files {
            let text = std::fs::read_to_string(crate_dir.join(f)).unwrap();
            assert!(
                !text.contains("{{"),
                "unfilled placeholder in {}",
                f.display()
            );
        }
        let policy = crate::policy::Policy::load(&crate_dir.join("policy.toml")).unwrap();
        drop(policy);
    }

    #[test]
    fn a_git_sdk_is_written_as_a_git_dependency() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = args(NewKind::Probe, "up", &[], dir.path());
        a.sdk_git = Some("https://git.example/faultline \"x\"".into());
        a.sdk_tag = Some("v0.1.0".into());
        let (crate_dir, _) = make(&a).unwrap();
        let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
        let parsed: toml::Table = toml::from_str(&manifest).unwrap();
        let sdk = &parsed["dependencies"]["faultline-sdk"];
        assert_eq!(
            sdk["git"].as_str(),
            Some("https://git.example/faultline \"x\"")
        );
        assert_eq!(sdk["tag"].as_str(), Some("v0.1.0"));
        assert_eq!(
            sdk["features"].as_array().unwrap()[0].as_str(),
            Some("probe")
        );
    }

    /// The SDK README's first example is the `process` fault template, word for word (after
    /// the names are filled in), so the documentation never drifts from what `new` makes.
    #[test]
    fn the_sdk_readme_opens_with_the_process_template() {
        let readme = include_str!("../../../faults/sdk/README.md");
        let dir = tempfile::tempdir().unwrap();
        let (crate_dir, _) = make(&args(NewKind::Fault, "process-nap", &[], dir.path())).unwrap();
        let lib = std::fs::read_to_string(crate_dir.join("src/lib.rs")).unwrap();
        let code = lib.split("\n#[cfg(test)]").next().unwrap();
        assert!(
            readme.contains(code.trim()),
            "faults/sdk/README.md must show the process template as `faultline new fault process-nap` \
             makes it:\n{code}"
        );
        let tests = lib.split("\n#[cfg(test)]").nth(1).unwrap();
        assert!(readme.contains(tests.trim()), "and its tests:\n{tests}");
    }
}
