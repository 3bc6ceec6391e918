//! A probe written against the 0.1.0 `faultline:contract/outbound` interface (`tcp-connect`,
//! `http-get`): it must keep working, through the same client and checks as `wasi:http`.

use faultline_sdk::{Capability, Error, Outcome, Probe, ProbeContext, outbound};
use schemars::JsonSchema;
use serde::Deserialize;

/// Parameters.
#[derive(Deserialize, JsonSchema)]
struct Params {
    /// `http-get` this URL, or `tcp-connect` to `host`:`port` when no URL is given.
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    host: String,
    #[serde(default)]
    port: u16,
}

struct OldOutbound;

impl Probe for OldOutbound {
    type Params = Params;

    const SUMMARY: &'static str = "Uses the 0.1.0 outbound interface";
    const CAPABILITIES: &'static [Capability] = &[Capability::Outbound];

    fn check(params: Params, _: &ProbeContext) -> Result<Outcome, Error> {
        match params.url {
            Some(url) => {
                let r = outbound::http_get(&url, 2000)?;
                Ok(Outcome {
                    ok: r.status == 200,
                    message: format!("{} {}", r.status, String::from_utf8_lossy(&r.body)),
                    value: Some(r.body.len() as f64),
                })
            }
            None => {
                let us = outbound::tcp_connect(&params.host, params.port, 2000)?;
                Ok(Outcome {
                    ok: true,
                    message: format!("connected in {us} us"),
                    value: Some(us as f64),
                })
            }
        }
    }
}

faultline_sdk::export_probe!(OldOutbound);
