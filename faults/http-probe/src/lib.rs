//! `http-probe`: sends an HTTP request through `wasi:http` and passes when the status is one
//! of the expected ones, the body matches (regex, JSON pointer) and the response came in time.
//! With `requests` above 1 it sends that many at `rate` per second and passes when the share
//! that passed reaches `success_rate` (none completed is a failure).
//!
//! A service that answers wrong, refuses or times out is a *failed* check (`ok: false`); a
//! request the host denies or parameters that make no sense are an error (the probe could not
//! run).

use faultline_sdk::{Capability, Error, HumanDuration, Outcome, Probe, ProbeContext, http};
use schemars::JsonSchema;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Bytes of a body kept for the regex and the JSON pointer; the rest is read and dropped.
const KEPT_BODY: usize = 1 << 20;

/// An expected status: a code (`204`) or a range (`"200-299"`).
#[derive(Deserialize, JsonSchema, Clone)]
#[serde(untagged)]
enum StatusSpec {
    /// One status code.
    Code(u16),
    /// `"200-299"` or `"404"`.
    Text(String),
}

/// A comparison of the JSON value at `pointer` in the response body.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct JsonCheck {
    /// A JSON pointer (RFC 6901), `/status` or `/items/0/id`.
    pointer: String,
    /// `==`, `!=`, `<`, `<=`, `>`, `>=` (numbers), `contains` (strings, arrays) or `exists`.
    #[serde(default = "equals")]
    op: String,
    /// The value compared with; not needed for `exists`.
    #[serde(default)]
    value: serde_json::Value,
}

fn equals() -> String {
    "==".into()
}
fn get() -> String {
    "GET".into()
}
fn two_hundreds() -> Vec<StatusSpec> {
    vec![StatusSpec::Text("200-299".into())]
}
fn five_seconds() -> HumanDuration {
    HumanDuration::from_secs(5)
}
fn one() -> u32 {
    1
}
fn one_per_second() -> f64 {
    1.0
}
fn all() -> f64 {
    100.0
}

/// Parameters of `http-probe`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
struct Params {
    /// The URL, `http://` or `https://` (TLS certificates are always verified).
    url: String,
    /// The method.
    #[serde(default = "get")]
    method: String,
    /// Request headers.
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// The request body.
    #[serde(default)]
    body: Option<String>,
    /// Expected status codes and ranges; 2xx by default.
    #[serde(default = "two_hundreds")]
    status_codes: Vec<StatusSpec>,
    /// A regex the body must match (in its first MiB).
    #[serde(default)]
    body_regex: Option<String>,
    /// A comparison of a JSON value in the body.
    #[serde(default)]
    json: Option<JsonCheck>,
    /// The longest a whole response may take (`"500ms"`); none by default.
    #[serde(default)]
    max_response_time: Option<HumanDuration>,
    /// Per-request timeout for connecting, the first byte and between bytes.
    #[serde(default = "five_seconds")]
    timeout: HumanDuration,
    /// How many requests to send.
    #[serde(default = "one")]
    requests: u32,
    /// Requests per second when sending more than one.
    #[serde(default = "one_per_second")]
    rate: f64,
    /// The share of requests that must pass, in percent.
    #[serde(default = "all")]
    success_rate: f64,
}

/// Parameters checked and compiled.
struct Plan {
    request: http::Request,
    statuses: Vec<(u16, u16)>,
    regex: Option<regex_lite::Regex>,
    json: Option<JsonCheck>,
    max_time: Option<Duration>,
    requests: u32,
    interval: Duration,
    success_rate: f64,
}

fn invalid(what: String) -> Error {
    Error::Invalid(what)
}

fn status_range(spec: &StatusSpec) -> Result<(u16, u16), Error> {
    let (a, b) = match spec {
        StatusSpec::Code(c) => (*c, *c),
        StatusSpec::Text(t) => {
            let (a, b) = t.split_once('-').unwrap_or((t, t));
            let code = |s: &str| {
                s.trim().parse::<u16>().map_err(|_| {
                    invalid(format!(
                        "status_codes: {t:?} is not a code or a range like \"200-299\""
                    ))
                })
            };
            (code(a)?, code(b)?)
        }
    };
    if !(100..=599).contains(&a) || !(100..=599).contains(&b) || a > b {
        return Err(invalid(format!(
            "status_codes: {a}-{b} is not a range of HTTP status codes"
        )));
    }
    Ok((a, b))
}

impl Params {
    fn plan(&self) -> Result<Plan, Error> {
        let statuses = self
            .status_codes
            .iter()
            .map(status_range)
            .collect::<Result<Vec<_>, _>>()?;
        if statuses.is_empty() {
            return Err(invalid(
                "status_codes: list at least one code or range".into(),
            ));
        }
        let regex = match &self.body_regex {
            Some(r) => Some(
                regex_lite::Regex::new(r)
                    .map_err(|e| invalid(format!("body_regex: {r:?} is not a regex: {e}")))?,
            ),
            None => None,
        };
        if let Some(j) = &self.json {
            if !(j.pointer.is_empty() || j.pointer.starts_with('/')) {
                return Err(invalid(format!(
                    "json.pointer: {:?} is not a JSON pointer (it starts with `/`)",
                    j.pointer
                )));
            }
            let ops = ["==", "!=", "<", "<=", ">", ">=", "contains", "exists"];
            if !ops.contains(&j.op.as_str()) {
                return Err(invalid(format!(
                    "json.op: {:?} is not one of {}",
                    j.op,
                    ops.join(" ")
                )));
            }
            if ["<", "<=", ">", ">="].contains(&j.op.as_str()) && !j.value.is_number() {
                return Err(invalid(format!(
                    "json.value: {} must be a number for {}",
                    j.value, j.op
                )));
            }
        }
        if self.requests == 0 || self.requests > 10_000 {
            return Err(invalid(format!(
                "requests: {} is not between 1 and 10000",
                self.requests
            )));
        }
        if !(self.rate > 0.0 && self.rate <= 1000.0) {
            return Err(invalid(format!(
                "rate: {} is not between 0 and 1000 per second",
                self.rate
            )));
        }
        if !(0.0..=100.0).contains(&self.success_rate) {
            return Err(invalid(format!(
                "success_rate: {} is not a percentage",
                self.success_rate
            )));
        }
        let timeout = self.timeout.get();
        let url = http::Url::parse(&self.url).map_err(|e| invalid(format!("url: {e}")))?;
        let method =
            http::Method::parse(&self.method).map_err(|e| invalid(format!("method: {e}")))?;
        if timeout.is_zero() {
            return Err(invalid("timeout: must be more than 0".into()));
        }
        let request = http::Request {
            method,
            url,
            headers: self.headers.clone().into_iter().collect(),
            body: self.body.clone().unwrap_or_default().into_bytes(),
            timeout,
        };
        Ok(Plan {
            request,
            statuses,
            regex,
            json: self.json.as_ref().map(|j| JsonCheck {
                pointer: j.pointer.clone(),
                op: j.op.clone(),
                value: j.value.clone(),
            }),
            max_time: self.max_response_time.map(HumanDuration::get),
            requests: self.requests,
            interval: Duration::from_secs_f64(1.0 / self.rate),
            success_rate: self.success_rate,
        })
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn number(v: &serde_json::Value) -> Option<f64> {
    v.as_f64()
}

/// Why one response does not pass, or `None` when it does.
fn judge(plan: &Plan, status: u16, body: &[u8], elapsed: Duration) -> Option<String> {
    if !plan
        .statuses
        .iter()
        .any(|(a, b)| (*a..=*b).contains(&status))
    {
        return Some(format!("status {status} is not expected"));
    }
    if let Some(max) = plan.max_time
        && elapsed > max
    {
        return Some(format!("took {:.1} ms, more than {max:?}", ms(elapsed)));
    }
    if let Some(re) = &plan.regex {
        let text = String::from_utf8_lossy(body);
        if !re.is_match(&text) {
            return Some(format!("body does not match /{}/", re.as_str()));
        }
    }
    if let Some(j) = &plan.json {
        let doc: serde_json::Value = match serde_json::from_slice(body) {
            Ok(d) => d,
            Err(e) => return Some(format!("body is not JSON: {e}")),
        };
        let found = doc.pointer(&j.pointer);
        let ok = match (j.op.as_str(), found) {
            ("exists", f) => f.is_some(),
            (_, None) => return Some(format!("nothing at JSON pointer {}", j.pointer)),
            ("==", Some(f)) => *f == j.value,
            ("!=", Some(f)) => *f != j.value,
            ("contains", Some(serde_json::Value::String(s))) => {
                j.value.as_str().is_some_and(|v| s.contains(v))
            }
            ("contains", Some(serde_json::Value::Array(a))) => a.contains(&j.value),
            (op, Some(f)) => match (number(f), number(&j.value)) {
                (Some(a), Some(b)) => match op {
                    "<" => a < b,
                    "<=" => a <= b,
                    ">" => a > b,
                    ">=" => a >= b,
                    _ => false,
                },
                _ => false,
            },
        };
        if !ok {
            let shown = found.map_or("nothing".to_string(), |f| f.to_string());
            return Some(format!(
                "{} is {shown}, not {} {}",
                j.pointer, j.op, j.value
            ));
        }
    }
    None
}

struct HttpProbe;

impl Probe for HttpProbe {
    type Params = Params;

    const SUMMARY: &'static str = "Checks an HTTP endpoint: status, body and response time";
    const CAPABILITIES: &'static [Capability] = &[Capability::Outbound];

    fn validate(params: &Params) -> Result<(), Error> {
        params.plan().map(|_| ())
    }

    fn check(params: Params, _: &ProbeContext) -> Result<Outcome, Error> {
        let plan = params.plan()?;
        let start = Instant::now();
        let (mut passed, mut completed) = (0u32, 0u32);
        let mut last = String::new();
        let mut total_ms = 0.0;
        for i in 0..plan.requests {
            // Requests go out at the rate, measured from the start (a slow answer is not made
            // up for by sending the next one later).
            let due = plan.interval * i;
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            match http::send(&plan.request, KEPT_BODY, http::Rest::Drain) {
                Ok(http::Response {
                    status,
                    body,
                    elapsed,
                    ..
                }) => {
                    completed += 1;
                    total_ms += elapsed.as_secs_f64() * 1000.0;
                    match judge(&plan, status, &body, elapsed) {
                        None => {
                            passed += 1;
                            last = format!("status {status} in {:.1} ms", ms(elapsed));
                        }
                        Some(why) => last = why,
                    }
                }
                // The host refused the request: the probe cannot run, whatever the service does.
                Err(failure) => last = failure.service()?,
            }
        }
        let total = plan.requests;
        let share = f64::from(passed) * 100.0 / f64::from(total);
        let ok = completed > 0 && share >= plan.success_rate;
        let mean = if completed > 0 {
            total_ms / f64::from(completed)
        } else {
            0.0
        };
        let message = if total == 1 {
            format!("{} {}: {last}", plan.request.method, params.url)
        } else {
            format!(
                "{passed} of {total} requests passed ({share:.1}%, {:.1}% required), {completed} completed, mean {mean:.1} ms; last: {last}",
                plan.success_rate
            )
        };
        Ok(Outcome {
            ok,
            message,
            value: Some(if total == 1 { mean } else { share }),
        })
    }
}

faultline_sdk::export_probe!(HttpProbe);
