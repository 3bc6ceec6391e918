//! The agent's transport against the real binary on loopback: tokens, TLS, the Unix socket,
//! the Host/Origin guard, body limits, slow and idle clients, the connection cap, and a fault
//! in flight that still reverts on time.

use faultline::agent::auth::Role;
use faultline_tests::agent::{Options, TestAgent};
use std::time::Duration;

#[test]
fn requests_without_a_valid_token_get_401_naming_why() {
    let agent = TestAgent::start(Options::default());
    let (code, v) =
        agent.raw(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    assert_eq!((code, v["ok"].as_bool()), (200, Some(true)), "{v}");
    let status = |auth: &str| {
        let raw = format!(
            "GET /v1/status HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
        );
        agent.raw(raw.as_bytes())
    };
    let cases = [
        ("", "no bearer token"),
        (
            "Authorization: Bearer flt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n",
            "the token is not valid",
        ),
        (
            "Authorization: Basic dXNlcjpwYXNz\r\n",
            "malformed Authorization header",
        ),
        (
            "Authorization: Bearer\r\n",
            "malformed Authorization header",
        ),
    ];
    for (auth, needle) in cases {
        let (code, v) = status(auth);
        assert_eq!(code, 401, "{auth:?}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains(needle),
            "{auth:?}: {v}"
        );
    }
    let (code, v) = status(&format!(
        "Authorization: Bearer {}\r\n",
        agent.token(Role::Viewer)
    ));
    assert_eq!((code, v["accepting"].as_bool()), (200, Some(true)), "{v}");
}
