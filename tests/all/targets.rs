//! Experiment targets resolved on this host: real `sleep` processes with distinct command lines,
//! a throwaway cgroup (`TestCgroup`), a throwaway pair of network namespaces (`NetPair`), and
//! policies parsed from TOML for the covering grant. Everything made here is removed on drop.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use faultline::capability::process::linux as proc;
use faultline::experiment::spec::{Select, Targets};
use faultline::experiment::target::{Accepts, Kind, Resolved, covering_grant, resolve};
use faultline::policy::{Grants, Identity, Policy};
use faultline_tests::Sleeper;
use faultline_tests::cgroups::TestCgroup;
use faultline_tests::netns::{A_IF, NetPair};
use serde_json::json;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A token no other process's command line holds: this test process's pid and a counter.
fn token() -> String {
    format!(
        "{}{:04}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Starts `program args…` and waits until `/proc` shows it exec'd (until then the child is a
/// copy of this test process, with its command line).
fn start(program: &str, args: &[&str]) -> Sleeper {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    let sleeper = Sleeper(child);
    let want = args.last().copied().unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(5);
    let execd = || {
        proc::info(sleeper.pid())
            .is_some_and(|p| p.cmdline.last().map(String::as_str) == Some(want))
    };
    while !execd() {
        assert!(
            Instant::now() < deadline,
            "{program} {args:?} did not start"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    sleeper
}

/// `sleep 3000.<token><i>` for each `i`: a command line only these processes have.
fn sleepers(token: &str, n: usize) -> Vec<Sleeper> {
    (0..n)
        .map(|i| start("sleep", &[&format!("3000.{token}{i}")]))
        .collect()
}

const PROCESS: Accepts = Accepts {
    pid: true,
    cgroup_key: None,
    netns: false,
    interfaces: false,
};
const CGROUP_FAULT: Accepts = Accepts {
    pid: true,
    cgroup_key: Some("path"),
    netns: false,
    interfaces: false,
};
const STRESS: Accepts = Accepts {
    pid: false,
    cgroup_key: Some("cgroup"),
    netns: false,
    interfaces: false,
};
const NETWORK: Accepts = Accepts {
    pid: true,
    cgroup_key: None,
    netns: true,
    interfaces: true,
};

fn pids(resolved: &[Resolved]) -> Vec<u32> {
    resolved.iter().map(|r| r.process.unwrap().0).collect()
}

fn sorted(sleepers: &[Sleeper]) -> Vec<u32> {
    let mut v: Vec<u32> = sleepers.iter().map(Sleeper::pid).collect();
    v.sort_unstable();
    v
}

fn cmdline(token: &str) -> Targets {
    Targets {
        cmdlines: vec![format!(r"^sleep 3000\.{token}[0-9]+$")],
        ..Targets::default()
    }
}

fn grants(policy: &str, component: &str) -> Grants {
    let policy = Policy::parse(policy).unwrap();
    let digest = format!("sha256:{}", "b".repeat(64));
    policy.grants_for(&Identity::from_hub(
        "bundled",
        component,
        "0.1.1".parse().unwrap(),
        &digest,
    ))
}

#[test]
fn processes_resolve_by_pid_name_and_cmdline() {
    let token = token();
    let group = sleepers(&token, 2);
    // `sleep` under a name of its own: `/proc/<pid>/comm` is the name exec was given, here a
    // symlink's (a copy would be written by us, and exec'ing a file another thread's fork may
    // still hold open for writing fails with ETXTBSY).
    let dir = tempfile::tempdir().unwrap();
    let name = format!("tg{}", &token[token.len().saturating_sub(10)..]);
    let exe = dir.path().join(&name);
    std::os::unix::fs::symlink("/bin/sleep", &exe).unwrap();
    let named = start(exe.to_str().unwrap(), &["3000"]);

    let by_pid = resolve(
        &Targets {
            pids: vec![group[0].pid()],
            ..Targets::default()
        },
        PROCESS,
    )
    .unwrap();
    let p = proc::info(group[0].pid()).unwrap();
    assert_eq!(
        by_pid,
        [Resolved {
            label: format!("pid {} (sleep)", p.pid),
            params: json!({ "pid": p.pid }).as_object().unwrap().clone(),
            process: Some((p.pid, p.start_time)),
            kind: Kind::Process,
        }]
    );

    let by_name = resolve(
        &Targets {
            names: vec![name.clone()],
            ..Targets::default()
        },
        PROCESS,
    )
    .unwrap();
    assert_eq!(pids(&by_name), [named.pid()]);
    assert_eq!(by_name[0].label, format!("pid {} ({name})", named.pid()));

    let by_cmdline = resolve(&cmdline(&token), PROCESS).unwrap();
    assert_eq!(pids(&by_cmdline), sorted(&group));

    // Criteria add up: a pid OR a name OR a cmdline, each process once, in pid order.
    let mut all = Targets {
        pids: vec![named.pid(), group[1].pid()],
        names: vec![name],
        ..cmdline(&token)
    };
    let mut want = sorted(&group);
    want.push(named.pid());
    want.sort_unstable();
    assert_eq!(pids(&resolve(&all, PROCESS).unwrap()), want);

    // A cgroup fault and a network fault take the same processes as `pid`, meaning its cgroup
    // or its namespace.
    let as_cgroup = resolve(&cmdline(&token), CGROUP_FAULT).unwrap();
    assert!(as_cgroup.iter().all(|r| r.kind == Kind::CgroupOf));

    // A fault without `pid` cannot take processes: the error names what it does take.
    all.pids.clear();
    let e = resolve(&all, STRESS).unwrap_err();
    assert_eq!(
        e,
        "targets.names, targets.cmdlines select processes, but the fault takes no `pid` \
         parameter (it takes `cgroup`)"
    );
}

#[test]
fn dead_pids_empty_selections_and_the_test_process_itself_resolve_to_nothing() {
    let mut gone = start("sleep", &["3000"]);
    let dead = gone.pid();
    gone.0.kill().unwrap();
    gone.0.wait().unwrap();
    let by_dead = Targets {
        pids: vec![dead],
        ..Targets::default()
    };
    assert_eq!(resolve(&by_dead, PROCESS).unwrap(), []);
    let nothing = cmdline(&format!("{}-none", token()));
    assert_eq!(resolve(&nothing, PROCESS).unwrap(), []);
    assert_eq!(resolve(&Targets::default(), PROCESS).unwrap(), []);

    // Never ourselves nor an ancestor: named by pid it is an error, matched by a pattern it is
    // left out.
    let me = proc::info(std::process::id()).unwrap();
    for pid in [me.pid, me.ppid, 1] {
        let e = resolve(
            &Targets {
                pids: vec![pid],
                ..Targets::default()
            },
            PROCESS,
        )
        .unwrap_err();
        assert!(e.contains("never"), "{pid}: {e}");
    }
    let own_cmdline = Targets {
        cmdlines: vec![format!("^{}$", regex_escape(&me.cmdline.join(" ")))],
        names: vec![me.name.chars().take(15).collect()],
        ..Targets::default()
    };
    let found = pids(&resolve(&own_cmdline, PROCESS).unwrap());
    assert!(
        !found.contains(&me.pid) && !found.contains(&me.ppid),
        "{found:?}"
    );
    // A thread of this process is no target either.
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        tx.send(nix::unistd::gettid().as_raw().unsigned_abs())
            .unwrap();
        let _ = stop_rx.recv();
    });
    let tid = rx.recv().unwrap();
    let e = resolve(
        &Targets {
            pids: vec![tid],
            ..Targets::default()
        },
        PROCESS,
    )
    .unwrap_err();
    stop_tx.send(()).unwrap();
    thread.join().unwrap();
    assert!(e.contains("is a thread of the agent"), "{e}");
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = r"\.+*?()|[]{}^$#&-~".contains(c);
            special.then_some('\\').into_iter().chain(Some(c))
        })
        .collect()
}

#[test]
fn the_blast_radius_counts_and_rounds_percent_up_lowest_pids_first() {
    let token = token();
    let group = sleepers(&token, 3);
    let all = sorted(&group);
    let with = |select: Select| {
        pids(
            &resolve(
                &Targets {
                    select: Some(select),
                    ..cmdline(&token)
                },
                PROCESS,
            )
            .unwrap(),
        )
    };
    let table = [
        (Select::Percent(10.0), 1),
        (Select::Percent(50.0), 2),
        (Select::Percent(100.0), 3),
        (Select::Count(2), 2),
        (Select::Count(7), 3),
        (Select::All, 3),
    ];
    for (select, n) in table {
        assert_eq!(with(select), all[..n], "{select:?}");
    }
    for (select, want) in [
        (
            Select::Percent(0.0),
            "targets.select.percent: 0 is not a percentage above 0 and at most 100",
        ),
        (
            Select::Percent(150.0),
            "targets.select.percent: 150 is not a percentage above 0 and at most 100",
        ),
        (
            Select::Count(0),
            "targets.select.count: 0 processes; give at least 1",
        ),
    ] {
        let t = Targets {
            select: Some(select),
            ..cmdline(&token)
        };
        assert_eq!(resolve(&t, PROCESS).unwrap_err(), want);
    }
}

#[test]
fn more_targets_than_a_step_may_have_is_an_error_unless_select_limits_them() {
    let token = token();
    let _group = sleepers(&token, 257);
    let started = Instant::now();
    let e = resolve(&cmdline(&token), PROCESS).unwrap_err();
    eprintln!(
        "a cmdline regex over all {} processes resolved in {:?}",
        proc::list().len(),
        started.elapsed()
    );
    assert!(
        e.starts_with("257 processes are selected, more than the 256 targets one step may have")
            && e.contains("select"),
        "{e}"
    );
    let limited = Targets {
        select: Some(Select::Count(10)),
        ..cmdline(&token)
    };
    assert_eq!(resolve(&limited, PROCESS).unwrap().len(), 10);
}

#[test]
fn hostile_targets_are_refused_with_the_place_and_the_problem() {
    let cases: [(Targets, &str); 6] = [
        (
            Targets {
                cmdlines: vec!["a".repeat(10 << 10)],
                ..Targets::default()
            },
            "targets.cmdlines[0]: the regex is 10240 bytes, more than the 1024 allowed",
        ),
        (
            // Small text, huge automaton: refused by the size limit, not compiled for minutes.
            Targets {
                cmdlines: vec!["ok".to_string(), "(a{1000}){1000}".to_string()],
                ..Targets::default()
            },
            "targets.cmdlines[1]: \"(a{1000}){1000}\" is not a regex",
        ),
        (
            Targets {
                cgroup: Some("/a/../etc".to_string()),
                ..Targets::default()
            },
            "targets.cgroup: \"/a/../etc\" contains `..`",
        ),
        (
            Targets {
                netns: Some("../x".to_string()),
                interfaces: vec!["v0".to_string()],
                ..Targets::default()
            },
            "targets.netns: \"../x\" is not a network namespace name",
        ),
        (
            Targets {
                interfaces: vec!["eth0/../x".to_string()],
                ..Targets::default()
            },
            "targets.interfaces[0]: \"eth0/../x\" is not an interface name",
        ),
        (
            Targets {
                pids: vec![0],
                ..Targets::default()
            },
            "targets.pids[0]: 0 is not a process id",
        ),
    ];
    for (targets, want) in cases {
        let started = Instant::now();
        let e = resolve(&targets, NETWORK).unwrap_err();
        assert!(e.starts_with(want), "got: {e}\nwant: {want}");
        assert!(started.elapsed() < Duration::from_secs(2), "{want}");
    }
}

#[test]
fn a_cgroup_resolves_when_it_exists_and_its_processes_when_asked() {
    if !faultline_tests::privileged("a_cgroup_resolves_when_it_exists_and_its_processes_when_asked")
    {
        return;
    }
    let cg = TestCgroup::new(&["cpu", "freezer"], true);
    let path = cg.path().to_string();
    let by_path = Targets {
        cgroup: Some(format!("{path}/")),
        ..Targets::default()
    };
    let t = resolve(&by_path, CGROUP_FAULT).unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].label, format!("cgroup {path}"));
    assert_eq!(t[0].params, *json!({ "path": path }).as_object().unwrap());
    assert_eq!(t[0].process, None);
    // A stress fault names its cgroup parameter `cgroup`.
    let t = resolve(&by_path, STRESS).unwrap();
    assert_eq!(t[0].params, *json!({ "cgroup": path }).as_object().unwrap());
    // A process fault cannot take a cgroup, but it can take the processes inside one.
    let e = resolve(&by_path, PROCESS).unwrap_err();
    assert!(e.starts_with("targets.cgroup: the fault takes no cgroup parameter (it takes `pid`); to act on processes inside the cgroup, add pids, names or cmdlines"), "{e}");
    let outside = start("sleep", &["3000"]);
    let inside = Targets {
        names: vec!["sleep".to_string()],
        ..by_path.clone()
    };
    assert_eq!(pids(&resolve(&inside, PROCESS).unwrap()), [cg.pid()]);
    drop(outside);

    let missing = Targets {
        cgroup: Some(format!("{path}-missing")),
        ..Targets::default()
    };
    let e = resolve(&missing, CGROUP_FAULT).unwrap_err();
    assert!(
        e.starts_with(&format!(
            "targets.cgroup: cgroup {path}-missing does not exist now"
        )),
        "{e}"
    );
    let root = Targets {
        cgroup: Some("/".to_string()),
        ..Targets::default()
    };
    assert_eq!(
        resolve(&root, CGROUP_FAULT).unwrap_err(),
        "targets.cgroup: the root cgroup is never a target"
    );

    // Covered by a subtree holding it, or not.
    let policy = |subtree: &str| {
        format!(
            "[[grant]]\ncomponent = \"cgroup-freeze@^0.1\"\ncapabilities = [\"cgroup\"]\ncgroup = {{ subtrees = [\"{subtree}\"] }}\n"
        )
    };
    let t = resolve(&by_path, CGROUP_FAULT).unwrap();
    let covered = grants(&policy(&path), "cgroup-freeze");
    assert_eq!(
        covering_grant(&covered, &t[0]).unwrap(),
        format!("grant 1 (cgroup-freeze@^0.1): cgroup.subtrees = [\"{path}\"]")
    );
    let elsewhere = grants(&policy("/elsewhere"), "cgroup-freeze");
    assert_eq!(
        covering_grant(&elsewhere, &t[0]).unwrap_err(),
        format!(
            "no grant covers cgroup {path} (no granted cgroup subtree holds it); rules \
             consulted: grant 1 (cgroup-freeze@^0.1)"
        )
    );
    // A cgroup fault given a process: the subtree must hold the process's cgroup.
    let of_pid = resolve(&inside, CGROUP_FAULT).unwrap();
    assert_eq!(of_pid[0].kind, Kind::CgroupOf);
    let rule = covering_grant(&covered, &of_pid[0]).unwrap();
    assert_eq!(
        rule,
        format!(
            "grant 1 (cgroup-freeze@^0.1): cgroup.subtrees = [\"{path}\"] holds its cgroup {path}"
        )
    );
    assert!(covering_grant(&elsewhere, &of_pid[0]).is_err());
}

#[test]
fn a_network_namespace_resolves_its_interfaces_and_refuses_missing_ones() {
    if !faultline_tests::privileged(
        "a_network_namespace_resolves_its_interfaces_and_refuses_missing_ones",
    ) {
        return;
    }
    let pair = NetPair::new("tgt");
    let net = |interfaces: &[&str]| Targets {
        netns: Some(pair.a.clone()),
        interfaces: interfaces.iter().map(|i| i.to_string()).collect(),
        ..Targets::default()
    };
    let t = resolve(&net(&[A_IF, "lo"]), NETWORK).unwrap();
    assert_eq!(
        t,
        [Resolved {
            label: format!("netns {}: {A_IF}, lo", pair.a),
            params: json!({ "netns": pair.a, "interfaces": [A_IF, "lo"] })
                .as_object()
                .unwrap()
                .clone(),
            process: None,
            kind: Kind::Network {
                netns: Some(pair.a.clone()),
                interfaces: vec![A_IF.to_string(), "lo".to_string()],
            },
        }]
    );
    let e = resolve(&net(&[A_IF, "v9"]), NETWORK).unwrap_err();
    assert!(
        e.starts_with(&format!(
            "targets.interfaces: netns {} has no interface \"v9\" (it has ",
            pair.a
        )),
        "{e}"
    );
    let e = resolve(&net(&[]), NETWORK).unwrap_err();
    assert!(e.contains("list them"), "{e}");
    let missing = Targets {
        netns: Some(format!("{}-gone", pair.a)),
        ..net(&[A_IF])
    };
    let e = resolve(&missing, NETWORK).unwrap_err();
    assert!(e.contains("does not exist (no /run/netns/"), "{e}");
    // A process fault takes no namespace.
    let e = resolve(&net(&[A_IF]), PROCESS).unwrap_err();
    assert_eq!(
        e,
        "targets.netns: the fault takes no `netns` parameter (it takes `pid`)"
    );

    // Processes and a named namespace: not both.
    let token = token();
    let both = Targets {
        cmdlines: cmdline(&token).cmdlines,
        ..net(&[A_IF])
    };
    let e = resolve(&both, NETWORK).unwrap_err();
    assert!(
        e.starts_with("a step targets processes or a network, not both"),
        "{e}"
    );
    // Processes with interfaces and no netns: the interfaces of each process's own namespace.
    let arg = format!("3000.{token}0");
    let in_a = start("ip", &["netns", "exec", &pair.a, "sleep", &arg]);
    let on_host = start("sleep", &[&format!("3000.{token}1")]);
    let own = Targets {
        interfaces: vec![A_IF.to_string()],
        ..cmdline(&token)
    };
    let e = resolve(&own, NETWORK).unwrap_err();
    assert!(
        e.starts_with(&format!(
            "targets.interfaces: pid {} (sleep) has no interface \"{A_IF}\"",
            on_host.pid()
        )),
        "{e}"
    );
    drop(on_host);
    let t = resolve(&own, NETWORK).unwrap();
    assert_eq!(pids(&t), [in_a.pid()]);
    assert_eq!(
        t[0].params,
        *json!({ "pid": in_a.pid(), "interfaces": [A_IF] })
            .as_object()
            .unwrap()
    );
    assert_eq!(t[0].kind, Kind::NetworkOf(vec![A_IF.to_string()]));

    // Covered by a grant of this namespace (by glob) and these interfaces, or not.
    let policy = format!(
        r#"
        [[grant]]
        component = "network-delay@^0.1"
        capabilities = ["network"]
        network = {{ namespaces = ["named:flt-tgt-*"], interfaces = ["v*"] }}
        [[grant]]
        component = "network-delay@^0.1"
        capabilities = ["network", "process"]
        process = {{ pids = [{}] }}
        network = {{ namespaces = ["pid"], interfaces = ["{A_IF}"] }}
        "#,
        in_a.pid()
    );
    let g = grants(&policy, "network-delay");
    let named = resolve(&net(&[A_IF]), NETWORK).unwrap();
    assert_eq!(
        covering_grant(&g, &named[0]).unwrap(),
        "grant 1 (network-delay@^0.1): network.namespaces = [\"named:flt-tgt-*\"], \
         network.interfaces = [\"v*\"]"
    );
    let lo = resolve(&net(&["lo"]), NETWORK).unwrap();
    let e = covering_grant(&g, &lo[0]).unwrap_err();
    assert_eq!(
        e,
        format!(
            "no grant covers netns {}: lo (no network scope grants this namespace and these \
             interfaces); rules consulted: grant 1 (network-delay@^0.1), grant 2 \
             (network-delay@^0.1)",
            pair.a
        )
    );
    assert_eq!(
        covering_grant(&g, &t[0]).unwrap(),
        format!(
            "grant 2 (network-delay@^0.1): pids = [{}]; grant 2 (network-delay@^0.1): \
             network.namespaces = [\"pid\"], network.interfaces = [\"{A_IF}\"]",
            in_a.pid()
        )
    );
}

#[test]
fn the_covering_grant_names_the_rule_and_criterion_or_the_rules_consulted() {
    let token = token();
    let group = sleepers(&token, 2);
    let (a, b) = (group[0].pid(), group[1].pid());
    let policy = format!(
        r#"
        [[grant]]
        component = "process-pause@^0.1"
        capabilities = ["process"]
        process = {{ pids = [{a}], signals = ["stop", "cont"] }}
        [[grant]]
        component = "process-kill"
        capabilities = ["process"]
        process = {{ cmdlines = ["^sleep 3000\\.{token}"] }}
        "#
    );
    let resolved = resolve(&cmdline(&token), PROCESS).unwrap();
    let target = |pid: u32| {
        resolved
            .iter()
            .find(|r| r.process.unwrap().0 == pid)
            .unwrap()
    };
    let pause = grants(&policy, "process-pause");
    assert_eq!(
        covering_grant(&pause, target(a)).unwrap(),
        format!("grant 1 (process-pause@^0.1): pids = [{a}]")
    );
    assert_eq!(
        covering_grant(&pause, target(b)).unwrap_err(),
        format!(
            "no grant covers pid {b} (sleep) (no process scope matches it); rules consulted: \
             grant 1 (process-pause@^0.1)"
        )
    );
    let kill = grants(&policy, "process-kill");
    assert_eq!(
        covering_grant(&kill, target(b)).unwrap(),
        format!("grant 2 (process-kill): cmdlines = [\"^sleep 3000\\\\.{token}\"]")
    );
    let nobody = grants(&policy, "process-slow");
    let e = covering_grant(&nobody, target(a)).unwrap_err();
    assert!(
        e.ends_with("rules consulted: no grant in the policy matches process-slow@0.1.1"),
        "{e}"
    );
    // A target whose process exited since it was resolved is covered by nothing.
    drop(group);
    let e = covering_grant(&pause, target(a)).unwrap_err();
    assert!(e.starts_with(&format!("pid {a} (sleep) is gone")), "{e}");
}
