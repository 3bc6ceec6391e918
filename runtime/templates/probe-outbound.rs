//! `{{name}}`: passes when an HTTP GET answers with a 2xx status within the timeout.

use faultline_sdk::{Capability, Error, HumanDuration, Outcome, Probe, ProbeContext, http};
use schemars::JsonSchema;
use serde::Deserialize;

fn five_seconds() -> HumanDuration {
    HumanDuration::from_secs(5)
}

/// Parameters: they become the probe's JSON Schema, which the host checks before `validate`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// The URL to GET, e.g. `http://127.0.0.1:8080/health`.
    url: String,
    /// The longest wait for the connection and for each part of the answer.
    #[serde(default = "five_seconds")]
    timeout: HumanDuration,
}

struct {{Type}};

impl Probe for {{Type}} {
    type Params = Params;

    const SUMMARY: &'static str = "{{summary}}";
    const CAPABILITIES: &'static [Capability] = &[{{capabilities}}];

    /// Checks parameters beyond their types, with no side effects.
    fn validate(params: &Params) -> Result<(), Error> {
        http::Url::parse(&params.url).map_err(|e| Error::invalid(format!("`url`: {e}")))?;
        Ok(())
    }

    /// Checks once. A server that refuses or is slow fails the check (`ok: false`); a request
    /// the host denies is an error: the probe could not judge.
    fn check(params: Params, _: &ProbeContext) -> Result<Outcome, Error> {
        let url = http::Url::parse(&params.url).map_err(Error::invalid)?;
        let request = http::Request::get(url, params.timeout.get());
        let response = match http::send(&request, 0, http::Rest::Stop) {
            Ok(r) => r,
            Err(failure) => return failure.outcome(&params.url),
        };
        Ok(Outcome {
            ok: (200..300).contains(&response.status),
            message: format!("{} answered {} in {:?}", params.url, response.status, response.elapsed),
            value: Some(response.elapsed.as_secs_f64() * 1000.0),
        })
    }
}

faultline_sdk::export_probe!({{Type}});

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_sdk::testing::MockHost;
    use std::time::Duration;

    fn answer(status: u16) -> Result<http::Response, http::Failure> {
        Ok(http::Response {
            status,
            body: Vec::new(),
            cut: false,
            elapsed: Duration::from_millis(12),
        })
    }

    #[test]
    fn a_2xx_answer_passes_and_a_5xx_fails() {
        let host = MockHost::new().on_http(|_| answer(200));
        let outcome = host
            .check::<{{Type}}>(serde_json::json!({ "url": "http://127.0.0.1:8080/health" }))
            .unwrap();
        assert!(outcome.ok, "{}", outcome.message);
        drop(host);

        let host = MockHost::new().on_http(|_| answer(503));
        let outcome = host
            .check::<{{Type}}>(serde_json::json!({ "url": "http://127.0.0.1:8080/health" }))
            .unwrap();
        assert!(!outcome.ok);
        assert!(outcome.message.contains("503"), "{}", outcome.message);
    }

    #[test]
    fn a_silent_server_fails_the_check_and_a_denial_is_an_error() {
        let host = MockHost::new().on_http(|_| Err(http::Failure::Service("timed out".into())));
        let outcome = host
            .check::<{{Type}}>(serde_json::json!({ "url": "http://127.0.0.1:8080/" }))
            .unwrap();
        assert!(!outcome.ok);
        drop(host);

        let host = MockHost::new(); // no answer configured: every request is denied
        let e = host
            .check::<{{Type}}>(serde_json::json!({ "url": "http://127.0.0.1:8080/" }))
            .unwrap_err();
        assert!(matches!(e, Error::Denied(_)), "{e:?}");
    }
}
