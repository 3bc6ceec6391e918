//! The agent's own connections are never in a fault's blast radius: in the agent's network
//! namespace a network fault spares TCP traffic to and from the endpoints the host protects
//! (`Host::protect_endpoint`, `Host::spare_hub_sources`), measured with real packets, and undo
//! leaves the rules and qdiscs exactly as they were.
//!
//! The host-namespace test confines its fault to one loopback address of its own
//! (127.0.0.77/32, every port), so other programs' loopback traffic on this machine is left
//! alone while it runs. Whole-interface faults run in a throwaway namespace that a test thread
//! joined first: for that thread's calls it is the agent's own namespace (`Namespace::Host`).

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use faultline::capability::network::linux::{Effect, Namespace, NetworkBackend, Protocol, Traffic};
use faultline_tests::netns::{NetPair, network_state};

/// The loopback address the host-namespace test owns.
const OWN_LOOPBACK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 77);
/// The loopback address the end-to-end test's agent owns: its own, so that the two blackholes,
/// which may run at once, never cut each other's servers.
const AGENT_LOOPBACK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 78);
/// Held by the tests that change the host namespace's rules: each compares the whole ruleset
/// before and after, which the other's fault would change.
static HOST_RULES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A TCP server answering each connection: `Echo` writes back what it reads (a request/answer
/// exchange), `Count` reads to the end and answers with the number of bytes (a bulk upload).
#[derive(Clone, Copy)]
enum Serve {
    Echo,
    Count,
}

struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves on `listener` (bound by the caller, in whatever namespace it wants).
    fn start(listener: TcpListener, serve: Serve) -> Server {
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        std::thread::spawn(move || {
                            conn.set_nonblocking(false).unwrap();
                            conn.set_read_timeout(Some(Duration::from_secs(30)))
                                .unwrap();
                            let mut buf = vec![0u8; 64 << 10];
                            let mut total: u64 = 0;
                            loop {
                                match conn.read(&mut buf) {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => {
                                        total += n as u64;
                                        if matches!(serve, Serve::Echo)
                                            && conn.write_all(&buf[..n]).is_err()
                                        {
                                            return;
                                        }
                                    }
                                }
                            }
                            if let Serve::Count = serve {
                                let _ = conn.write_all(&total.to_be_bytes());
                            }
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        Server {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request/answer exchange over a fresh connection; its time, or why it failed.
fn exchange(addr: SocketAddr, timeout: Duration) -> std::io::Result<Duration> {
    let start = Instant::now();
    let mut conn = TcpStream::connect_timeout(&addr, timeout)?;
    conn.set_read_timeout(Some(timeout))?;
    conn.write_all(b"are you there?")?;
    let mut answer = [0u8; 14];
    conn.read_exact(&mut answer)?;
    assert_eq!(&answer, b"are you there?");
    Ok(start.elapsed())
}

/// How many of `count` exchanges succeed, each given `timeout`.
fn exchanges(addr: SocketAddr, count: u32, timeout: Duration) -> u32 {
    (0..count)
        .filter(|_| exchange(addr, timeout).is_ok())
        .count() as u32
}

/// Uploads `bytes` to a counting server; the time it took, or why it failed.
fn upload(addr: SocketAddr, bytes: usize, timeout: Duration) -> std::io::Result<Duration> {
    let start = Instant::now();
    let mut conn = TcpStream::connect_timeout(&addr, timeout)?;
    conn.set_write_timeout(Some(timeout))?;
    conn.set_read_timeout(Some(timeout))?;
    let chunk = vec![0x5au8; 16 << 10];
    let mut sent = 0;
    while sent < bytes {
        let n = chunk.len().min(bytes - sent);
        conn.write_all(&chunk[..n])?;
        sent += n;
    }
    conn.shutdown(std::net::Shutdown::Write)?;
    let mut count = [0u8; 8];
    conn.read_exact(&mut count)?;
    assert_eq!(u64::from_be_bytes(count), bytes as u64);
    Ok(start.elapsed())
}

/// Applies a change through `backend`, runs `measure` while it holds, undoes it, and checks
/// presence on the way and that the namespace ends exactly as it began. `enter` runs each
/// backend call on the thread it must run on.
fn with_change<R>(
    backend: &NetworkBackend,
    ns: Option<&str>,
    enter: &dyn Fn(&mut (dyn FnMut() + Send)),
    tag: &str,
    traffic: &Traffic,
    effect: &Effect,
    measure: impl FnOnce() -> R,
) -> R {
    let before = network_state(ns, "lo");
    let mut inverse = None;
    enter(&mut || {
        let i = backend.prepare(tag, traffic, effect).unwrap();
        assert!(!backend.is_present(&i).unwrap());
        backend.apply(tag, traffic, effect, &i).unwrap();
        assert!(backend.is_present(&i).unwrap());
        inverse = Some(i);
    });
    let inverse = inverse.unwrap();
    let during = network_state(ns, "lo");
    assert_ne!(during, before, "the change is not visible");
    let result = measure();
    enter(&mut || {
        backend.undo(&inverse).unwrap();
        assert!(!backend.is_present(&inverse).unwrap());
        backend.undo(&inverse).unwrap();
    });
    assert_eq!(
        network_state(ns, "lo"),
        before,
        "undo left something behind"
    );
    result
}

/// Runs `f` on a thread that joined namespace `ns`.
fn within(ns: &str, f: &mut (dyn FnMut() + Send)) {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    });
}

fn here(f: &mut (dyn FnMut() + Send)) {
    f()
}

/// Everything leaving `lo`, in the namespace of the thread that applies it: the agent's own.
fn all_on_lo() -> Traffic {
    Traffic {
        namespace: Namespace::Host,
        interfaces: vec!["lo".into()],
        destinations: vec![],
        ports: vec![],
        protocol: Protocol::Any,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_blackhole_spares_the_agents_api_and_hub() {
    if !faultline_tests::privileged("a_host_blackhole_spares_the_agents_api_and_hub") {
        return;
    }
    let api = Server::start(TcpListener::bind((OWN_LOOPBACK, 0)).unwrap(), Serve::Echo);
    let hub = Server::start(TcpListener::bind((OWN_LOOPBACK, 0)).unwrap(), Serve::Echo);
    let bystander = Server::start(TcpListener::bind((OWN_LOOPBACK, 0)).unwrap(), Serve::Echo);
    let (host, _dir) = faultline_tests::host();
    // As the agent does at start: its API's listen address, then its hubs' addresses.
    host.protect_endpoint(api.addr);
    let hubs = faultline::hub::HubConfig::from_toml_str(
        &format!(
            "[hub]\nsources = [\"bundled\", {{ url = \"http://{}/hub-index.json\", required_signatures = 0 }}, {{ url = \"https://hub.invalid/hub-index.json\", required_signatures = 0 }}]",
            hub.addr
        ),
        std::path::Path::new("/"),
    )
    .unwrap();
    let started = Instant::now();
    let (spared, problems) = host.spare_hub_sources(&hubs).await;
    // A name that does not resolve (in time) is reported, not waited on for long.
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("hub.invalid"), "{problems:?}");
    assert_eq!(spared, vec![hub.addr]);
    let backend = &host.backends().network;
    assert_eq!(backend.protected(), vec![api.addr, hub.addr]);
    // No await from here on: the rest runs on this thread.
    let _rules = HOST_RULES.lock().unwrap_or_else(|p| p.into_inner());

    let every_port = Traffic {
        namespace: Namespace::Host,
        interfaces: vec!["lo".into()],
        destinations: vec![format!("{OWN_LOOPBACK}/32")],
        ports: vec![],
        protocol: Protocol::Any,
    };
    let short = Duration::from_millis(300);
    for (tag, effect) in [
        ("brhole", Effect::Blackhole),
        ("brloss", Effect::Loss { percent: 100.0 }),
    ] {
        let (api_ok, hub_ok, bystander_ok) = tokio::task::block_in_place(|| {
            with_change(backend, None, &here, tag, &every_port, &effect, || {
                (
                    exchanges(api.addr, 20, Duration::from_secs(2)),
                    exchanges(hub.addr, 20, Duration::from_secs(2)),
                    exchanges(bystander.addr, 5, short),
                )
            })
        });
        eprintln!(
            "{effect:?} on lo to {OWN_LOOPBACK}: api {api_ok}/20, hub {hub_ok}/20, other port {bystander_ok}/5 exchanges"
        );
        assert_eq!(
            bystander_ok, 0,
            "{effect:?} let an unprotected port through"
        );
        assert_eq!(api_ok, 20, "{effect:?} reached the agent's API");
        assert_eq!(hub_ok, 20, "{effect:?} reached the agent's hub");
        // After undo everything flows again.
        assert_eq!(exchanges(bystander.addr, 5, Duration::from_secs(2)), 5);
        assert_eq!(exchanges(api.addr, 5, Duration::from_secs(2)), 5);
    }
}

#[test]
fn a_bandwidth_cap_on_the_agents_namespace_spares_its_port() {
    if !faultline_tests::privileged("a_bandwidth_cap_on_the_agents_namespace_spares_its_port") {
        return;
    }
    let pair = NetPair::new("brbw");
    let bind = |port: u16| {
        let mut listener = None;
        within(&pair.a, &mut || {
            listener = Some(TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap())
        });
        listener.unwrap()
    };
    let agent = Server::start(bind(0), Serve::Count);
    let other = Server::start(bind(0), Serve::Count);
    let backend = NetworkBackend::new();
    // The agent listens on every address: the port alone is spared.
    backend.protect(SocketAddr::from((Ipv4Addr::UNSPECIFIED, agent.addr.port())));
    let rate_kbit: u32 = 400;
    let enter = |f: &mut (dyn FnMut() + Send)| within(&pair.a, f);
    let (spared, capped) = with_change(
        &backend,
        Some(&pair.a),
        &enter,
        "brbw1",
        &all_on_lo(),
        &Effect::Bandwidth {
            rate_kbit: u64::from(rate_kbit),
        },
        || {
            let mut got = None;
            within(&pair.a, &mut || {
                let spared = upload(agent.addr, 4 << 20, Duration::from_secs(20)).unwrap();
                let capped = upload(other.addr, 100_000, Duration::from_secs(20)).unwrap();
                got = Some((spared, capped));
            });
            got.unwrap()
        },
    );
    let kbit = |bytes: f64, d: Duration| bytes * 8.0 / 1000.0 / d.as_secs_f64();
    let spared_rate = kbit(f64::from(4u32 << 20), spared);
    let capped_rate = kbit(100_000.0, capped);
    eprintln!(
        "bandwidth cap {rate_kbit} kbit/s on lo: the agent's port {spared_rate:.0} kbit/s ({spared:?} for 4 MiB), another port {capped_rate:.0} kbit/s ({capped:?} for 100 kB)"
    );
    // 100 kB at 400 kbit/s is 2 s, less the first burst (15 kB): well over 1.2 s.
    assert!(
        capped >= Duration::from_millis(1200),
        "not capped: {capped:?}"
    );
    assert!(capped_rate < f64::from(rate_kbit) * 1.5, "{capped_rate}");
    // Capped, 4 MiB would take 84 s.
    assert!(
        spared < Duration::from_secs(3),
        "the agent's port was capped: {spared:?}"
    );
    assert!(spared_rate > f64::from(rate_kbit) * 20.0, "{spared_rate}");
}

#[test]
fn a_delay_on_the_agents_namespace_spares_its_port() {
    if !faultline_tests::privileged("a_delay_on_the_agents_namespace_spares_its_port") {
        return;
    }
    let pair = NetPair::new("brdl");
    let mut listeners = Vec::new();
    within(&pair.a, &mut || {
        listeners = vec![
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap(),
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap(),
        ]
    });
    let other = Server::start(listeners.pop().unwrap(), Serve::Echo);
    let agent = Server::start(listeners.pop().unwrap(), Serve::Echo);
    let backend = NetworkBackend::new();
    backend.protect(agent.addr);
    let enter = |f: &mut (dyn FnMut() + Send)| within(&pair.a, f);
    let (spared, delayed) = with_change(
        &backend,
        Some(&pair.a),
        &enter,
        "brdl1",
        &all_on_lo(),
        &Effect::Delay {
            delay_ms: 150,
            jitter_ms: 0,
        },
        || {
            let timeout = Duration::from_secs(5);
            let mut got = None;
            within(&pair.a, &mut || {
                got = Some((
                    exchange(agent.addr, timeout).unwrap(),
                    exchange(other.addr, timeout).unwrap(),
                ));
            });
            got.unwrap()
        },
    );
    eprintln!(
        "delay 150 ms on lo: an exchange with the agent's port took {spared:?}, with another port {delayed:?}"
    );
    // Connect and one exchange cross lo at least four times, each delayed.
    assert!(
        delayed >= Duration::from_millis(450),
        "not delayed: {delayed:?}"
    );
    assert!(
        spared < Duration::from_millis(100),
        "the agent's port was delayed: {spared:?}"
    );
}

#[test]
fn a_fault_in_another_namespace_spares_nothing() {
    if !faultline_tests::privileged("a_fault_in_another_namespace_spares_nothing") {
        return;
    }
    let pair = NetPair::new("brns");
    let mut listener = None;
    within(&pair.a, &mut || {
        listener = Some(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap())
    });
    let server = Server::start(listener.unwrap(), Serve::Echo);
    let backend = NetworkBackend::new();
    // Even the very address and port: the agent has no socket in that namespace.
    backend.protect(server.addr);
    let traffic = Traffic {
        namespace: Namespace::Named(pair.a.clone()),
        interfaces: vec!["lo".into()],
        destinations: vec![],
        ports: vec![],
        protocol: Protocol::Any,
    };
    let connect = || {
        let mut got = None;
        within(&pair.a, &mut || {
            got = Some(exchanges(server.addr, 3, Duration::from_millis(300)))
        });
        got.unwrap()
    };
    let during = with_change(
        &backend,
        Some(&pair.a),
        &here,
        "brns1",
        &traffic,
        &Effect::Blackhole,
        connect,
    );
    assert_eq!(during, 0, "a fault in another namespace spared a port");
    assert_eq!(connect(), 3);
}

/// End to end, the way an operator meets it: an agent listening on this test's loopback
/// address (127.0.0.78) runs an experiment whose blackhole covers that whole address (every port), in the
/// host namespace. The experiment's own host spares the agent's API like the agent's host does:
/// while the fault holds, the API keeps answering (status, the record, the stop) and another
/// port of the same address is cut; after the stop both flow.
#[test]
fn an_experiment_blackholing_the_agents_address_leaves_its_api_reachable() {
    use faultline::agent::auth::Role;
    use faultline_tests::agent::{Options, TestAgent};
    if !faultline_tests::privileged(
        "an_experiment_blackholing_the_agents_address_leaves_its_api_reachable",
    ) {
        return;
    }
    let _rules = HOST_RULES.lock().unwrap_or_else(|p| p.into_inner());
    let bystander = Server::start(TcpListener::bind((AGENT_LOOPBACK, 0)).unwrap(), Serve::Echo);
    let policy = format!(
        "[[grant]]\ncomponent = \"network-blackhole@^0.1\"\ncapabilities = [\"network\"]\nnetwork = {{ namespaces = [\"host\"], interfaces = [\"lo\"], destinations = [\"{AGENT_LOOPBACK}/32\"] }}\n"
    );
    let agent = TestAgent::start(Options {
        listen: Some(format!("{AGENT_LOOPBACK}:0")),
        ..Options::with_policy(policy)
    });
    let experiment = format!(
        "apiVersion: faultline/v1\nkind: Experiment\nname: cut the agent's address\nteam: red\nlanes:\n  - steps:\n      - name: cut\n        fault: network-blackhole@^0.1\n        params: {{ destinations: [\"{AGENT_LOOPBACK}/32\"] }}\n        duration: 60s\n        targets: {{ interfaces: [lo] }}\n"
    );
    let runner = agent.runner_of("red").to_string();
    let body = serde_json::json!({ "experiment": experiment }).to_string();
    let (code, started) = agent.call_as(&runner, "POST", "/v1/experiments", &body);
    assert_eq!(code, 201, "{started}\n{}", agent.output());
    let id = started["id"].as_str().unwrap().to_string();
    let record = format!("/v1/experiments/{id}");
    // The API answers throughout: the record shows the fault held.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, r) = agent.call_as(&runner, "GET", &record, "");
        assert_eq!(code, 200, "{r}");
        if r["faults"][0]["status"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "never injected: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let cut = exchanges(bystander.addr, 3, Duration::from_millis(300));
    let mut answered = 0;
    for _ in 0..10 {
        let (code, _) = agent.call_as(&runner, "GET", "/v1/status", "");
        answered += u32::from(code == 200);
    }
    eprintln!(
        "while the experiment blackholes {AGENT_LOOPBACK}: the agent's API answered {answered}/10, another port {cut}/3 exchanges"
    );
    assert_eq!(
        cut, 0,
        "the blackhole let another port of the address through"
    );
    assert_eq!(
        answered, 10,
        "the experiment's blackhole reached the agent's API"
    );
    let (code, ended) = agent.call_as(&runner, "POST", &format!("{record}/stop"), "");
    assert_eq!(code, 200, "{ended}");
    assert_eq!(ended["faults"][0]["status"], "stopped", "{ended}");
    assert_eq!(exchanges(bystander.addr, 5, Duration::from_secs(2)), 5);
    let _ = Role::Viewer;
}
