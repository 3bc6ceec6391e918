//! `tcp-probe`: connects over TCP (`wasi:sockets`) within a timeout and passes when the
//! connection is accepted; optionally sends bytes and expects bytes back.
//!
//! Refused, timed out, a name that does not resolve or an answer without the expected bytes is
//! a *failed* check (`ok: false`); a connect the host denies (`access-denied`) or bad
//! parameters are an error (the probe could not run).

use faultline_sdk::{Capability, Error, HumanDuration, Outcome, Probe, ProbeContext};
use schemars::JsonSchema;
use serde::Deserialize;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use wasip2::clocks::monotonic_clock::subscribe_duration;
use wasip2::io::poll::{Pollable, poll};
use wasip2::io::streams::StreamError;
use wasip2::sockets::instance_network::instance_network;
use wasip2::sockets::ip_name_lookup::resolve_addresses;
use wasip2::sockets::network::{
    ErrorCode, IpAddress, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
    Network,
};
use wasip2::sockets::tcp_create_socket::create_tcp_socket;

/// Bytes read at most while waiting for `expect`.
const READ_CAP: usize = 64 * 1024;

fn five_seconds() -> HumanDuration {
    HumanDuration::from_secs(5)
}

/// Parameters of `tcp-probe`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// A host name or an address.
    host: String,
    /// The port.
    port: u16,
    /// How long the connect (and, with `expect`, the answer) may take.
    #[serde(default = "five_seconds")]
    timeout: HumanDuration,
    /// Text to send once connected.
    #[serde(default)]
    send: Option<String>,
    /// Text the peer's answer must contain (read up to 64 KiB).
    #[serde(default)]
    expect: Option<String>,
}

impl Params {
    fn timeout(&self) -> Result<Duration, Error> {
        let d = self.timeout.get();
        if d.is_zero() {
            return Err(Error::Invalid("timeout: must be more than 0".into()));
        }
        Ok(d)
    }
}

/// Why the check cannot pass.
enum Stop {
    /// The service failed it.
    Failed(String),
    /// The probe could not run.
    Error(Error),
}

fn code_text(e: ErrorCode) -> String {
    format!("{e:?}").to_lowercase()
}

/// Waits for `p` until `deadline`; false on timeout.
fn wait(p: &Pollable, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    let timer = subscribe_duration(u64::try_from(left.as_nanos()).unwrap_or(u64::MAX));
    let ready = poll(&[p, &timer]);
    ready.contains(&0)
}

fn resolve(network: &Network, host: &str, deadline: Instant) -> Result<Vec<IpAddress>, Stop> {
    if let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(vec![match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                IpAddress::Ipv4((o[0], o[1], o[2], o[3]))
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                IpAddress::Ipv6((s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]))
            }
        }]);
    }
    let stream = resolve_addresses(network, host).map_err(|e| match e {
        ErrorCode::AccessDenied => Stop::Error(Error::Denied(format!("resolving {host}"))),
        ErrorCode::InvalidArgument => {
            Stop::Error(Error::Invalid(format!("host: {host:?} is not a name")))
        }
        e => Stop::Failed(format!("cannot resolve {host}: {}", code_text(e))),
    })?;
    let mut found = Vec::new();
    loop {
        match stream.resolve_next_address() {
            Ok(Some(a)) => found.push(a),
            Ok(None) => break,
            Err(ErrorCode::WouldBlock) => {
                if !wait(&stream.subscribe(), deadline) {
                    return Err(Stop::Failed(format!("resolving {host} timed out")));
                }
            }
            Err(e) => {
                return Err(Stop::Failed(format!(
                    "cannot resolve {host}: {}",
                    code_text(e)
                )));
            }
        }
    }
    if found.is_empty() {
        return Err(Stop::Failed(format!("{host} resolves to no address")));
    }
    Ok(found)
}

fn socket_address(ip: IpAddress, port: u16) -> (IpAddressFamily, IpSocketAddress) {
    match ip {
        IpAddress::Ipv4(address) => (
            IpAddressFamily::Ipv4,
            IpSocketAddress::Ipv4(Ipv4SocketAddress { port, address }),
        ),
        IpAddress::Ipv6(address) => (
            IpAddressFamily::Ipv6,
            IpSocketAddress::Ipv6(Ipv6SocketAddress {
                port,
                flow_info: 0,
                address,
                scope_id: 0,
            }),
        ),
    }
}

fn run(params: &Params) -> Result<String, Stop> {
    let limit = params.timeout().map_err(Stop::Error)?;
    let start = Instant::now();
    let deadline = start + limit;
    let network = instance_network();
    let addresses = resolve(&network, &params.host, deadline)?;
    let (family, address) = socket_address(addresses[0], params.port);
    let target = format!("{}:{}", params.host, params.port);
    let socket = create_tcp_socket(family).map_err(|e| {
        Stop::Error(Error::Failed(format!(
            "cannot create a socket: {}",
            code_text(e)
        )))
    })?;
    let connect_error = |e: ErrorCode| match e {
        ErrorCode::AccessDenied => Stop::Error(Error::Denied(format!(
            "connecting to {target}: access denied by the host's policy (see the agent's log for the rule)"
        ))),
        ErrorCode::ConnectionRefused => Stop::Failed(format!("{target}: connection refused")),
        ErrorCode::Timeout => Stop::Failed(format!("{target}: timed out")),
        e => Stop::Failed(format!("{target}: {}", code_text(e))),
    };
    socket
        .start_connect(&network, address)
        .map_err(connect_error)?;
    let (input, output) = loop {
        match socket.finish_connect() {
            Ok(streams) => break streams,
            Err(ErrorCode::WouldBlock) => {
                if !wait(&socket.subscribe(), deadline) {
                    return Err(Stop::Failed(format!(
                        "{target}: no connection within {limit:?}"
                    )));
                }
            }
            Err(e) => return Err(connect_error(e)),
        }
    };
    let connected = start.elapsed();
    if let Some(text) = &params.send {
        output
            .blocking_write_and_flush(text.as_bytes())
            .map_err(|e| Stop::Failed(format!("{target}: sending: {e:?}")))?;
    }
    let Some(expect) = &params.expect else {
        return Ok(format!("{target} accepted in {connected:?}"));
    };
    let mut got = Vec::new();
    loop {
        if contains(&got, expect.as_bytes()) {
            return Ok(format!(
                "{target} answered with {expect:?} in {:?}",
                start.elapsed()
            ));
        }
        if got.len() >= READ_CAP {
            break;
        }
        match input.read((READ_CAP - got.len()) as u64) {
            Ok(chunk) if chunk.is_empty() => {
                if !wait(&input.subscribe(), deadline) {
                    return Err(Stop::Failed(format!(
                        "{target}: {expect:?} not received within {limit:?} (got {:?})",
                        String::from_utf8_lossy(&got)
                    )));
                }
            }
            Ok(chunk) => got.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(Stop::Failed(format!(
                    "{target}: reading: {}",
                    e.to_debug_string()
                )));
            }
        }
    }
    Err(Stop::Failed(format!(
        "{target}: answer does not contain {expect:?} (got {:?})",
        String::from_utf8_lossy(&got[..got.len().min(200)])
    )))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

struct TcpProbe;

impl Probe for TcpProbe {
    type Params = Params;

    const SUMMARY: &'static str = "Checks that a TCP port accepts connections (and answers)";
    const CAPABILITIES: &'static [Capability] = &[Capability::Outbound];

    fn validate(params: &Params) -> Result<(), Error> {
        if params.host.is_empty() {
            return Err(Error::Invalid("host: must not be empty".into()));
        }
        if params.port == 0 {
            return Err(Error::Invalid("port: 0 is not a port".into()));
        }
        params.timeout().map(|_| ())
    }

    fn check(params: Params, _: &ProbeContext) -> Result<Outcome, Error> {
        let start = Instant::now();
        match run(&params) {
            Ok(message) => Ok(Outcome {
                ok: true,
                message,
                value: Some(start.elapsed().as_secs_f64() * 1000.0),
            }),
            Err(Stop::Failed(message)) => Ok(Outcome {
                ok: false,
                message,
                value: None,
            }),
            Err(Stop::Error(e)) => Err(e),
        }
    }
}

faultline_sdk::export_probe!(TcpProbe);
