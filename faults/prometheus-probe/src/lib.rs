//! `prometheus-probe`: runs an instant PromQL query (`GET <url>/api/v1/query`) and compares the
//! scalar it returns, or the value of every series of the vector, with the comparator.
//!
//! Failed (the system is not as expected): a value that does not compare, an empty vector
//! (unless `pass_if_empty`), Prometheus answering `"status": "error"` for a reason other than a
//! malformed query (its message is quoted), a server that refuses, times out or answers
//! something other than the query API. Not applicable (the probe cannot judge): the policy
//! denies the URL, the query is malformed (`bad_data`: the probe's own mistake says nothing
//! about the system), the result is a range vector or a string, or the response passes 1 MiB.

use faultline_sdk::{Capability, Error, HumanDuration, Outcome, Probe, ProbeContext, http};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// The most of a response kept: a larger one is not judged.
const BODY_CAP: usize = 1 << 20;
/// Longest `timeout` accepted: the host also cuts the request at the call's own deadline.
const MAX_TIMEOUT: Duration = Duration::from_secs(600);

fn five_seconds() -> HumanDuration {
    HumanDuration::from_secs(5)
}

/// How each value is compared.
#[derive(Deserialize, JsonSchema, Clone, Copy, PartialEq, Debug)]
enum Comparator {
    /// Equal to `value`.
    #[serde(rename = "==")]
    Eq,
    /// Not equal to `value`.
    #[serde(rename = "!=")]
    Ne,
    /// Less than `value`.
    #[serde(rename = "<")]
    Lt,
    /// At most `value`.
    #[serde(rename = "<=")]
    Le,
    /// More than `value`.
    #[serde(rename = ">")]
    Gt,
    /// At least `value`.
    #[serde(rename = ">=")]
    Ge,
    /// From `min` to `max`, both included.
    #[serde(rename = "between")]
    Between,
}

/// Parameters of `prometheus-probe`.
#[derive(Deserialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
struct Params {
    /// The Prometheus server's base URL (`http://127.0.0.1:9090`); `/api/v1/query` is added.
    url: String,
    /// An instant PromQL query (`up{job="api"}`, `rate(http_errors_total[1m])`).
    query: String,
    /// `==`, `!=`, `<`, `<=`, `>`, `>=` (against `value`) or `between` (`min` to `max`).
    comparator: Comparator,
    /// The value compared against (every comparator but `between`).
    value: Option<f64>,
    /// `between`: the lowest value that passes.
    min: Option<f64>,
    /// `between`: the highest value that passes.
    max: Option<f64>,
    /// Whether an empty vector passes (by default no series means the check fails).
    #[serde(default)]
    pass_if_empty: bool,
    /// How long to wait for the connection and for each part of the answer (`500ms`, `5s`).
    #[serde(default = "five_seconds")]
    timeout: HumanDuration,
}

/// Parameters checked and compiled.
struct Plan {
    /// The server's base URL, without a final `/`.
    base: http::Url,
    timeout: Duration,
    test: Test,
}

/// A comparison with its operands.
#[derive(Clone, Copy)]
enum Test {
    Against(Comparator, f64),
    Between(f64, f64),
}

impl Test {
    fn holds(self, v: f64) -> bool {
        match self {
            Test::Against(c, x) => match c {
                Comparator::Eq => v == x,
                Comparator::Ne => v != x,
                Comparator::Lt => v < x,
                Comparator::Le => v <= x,
                Comparator::Gt => v > x,
                Comparator::Ge => v >= x,
                Comparator::Between => false,
            },
            Test::Between(lo, hi) => lo <= v && v <= hi,
        }
    }

    fn text(self) -> String {
        match self {
            Test::Against(c, x) => {
                let op = match c {
                    Comparator::Eq => "==",
                    Comparator::Ne => "!=",
                    Comparator::Lt => "<",
                    Comparator::Le => "<=",
                    Comparator::Gt => ">",
                    Comparator::Ge => ">=",
                    Comparator::Between => "between",
                };
                format!("{op} {x}")
            }
            Test::Between(lo, hi) => format!("between {lo} and {hi}"),
        }
    }
}

impl Params {
    fn plan(&self) -> Result<Plan, Error> {
        let mut base =
            http::Url::parse(&self.url).map_err(|e| Error::invalid(format!("url: {e}")))?;
        if base.path.contains(['?', '#']) {
            return Err(Error::invalid(format!(
                "url: {:?}: give the server's base URL, without a query",
                self.url
            )));
        }
        base.path.truncate(base.path.trim_end_matches('/').len());
        if self.query.trim().is_empty() {
            return Err(Error::invalid("query is empty"));
        }
        let timeout = self.timeout.get();
        if timeout < Duration::from_millis(1) || timeout > MAX_TIMEOUT {
            return Err(Error::invalid(format!(
                "timeout \"{}\" is out of range (1ms to 10m)",
                self.timeout
            )));
        }
        let test = match (self.comparator, self.value, self.min, self.max) {
            (Comparator::Between, None, Some(lo), Some(hi)) if lo <= hi => Test::Between(lo, hi),
            (Comparator::Between, None, Some(lo), Some(hi)) => {
                return Err(Error::invalid(format!(
                    "between: min {lo} is above max {hi}"
                )));
            }
            (Comparator::Between, _, _, _) => {
                return Err(Error::invalid(
                    "between needs `min` and `max` (and no `value`)",
                ));
            }
            (c, Some(x), None, None) => Test::Against(c, x),
            (_, _, _, _) => {
                return Err(Error::invalid(
                    "this comparator needs `value` (and no `min` or `max`)",
                ));
            }
        };
        Ok(Plan {
            base,
            timeout,
            test,
        })
    }
}

/// A failed check.
fn failed(message: String, value: Option<f64>) -> Result<Outcome, Error> {
    Ok(Outcome {
        ok: false,
        message,
        value,
    })
}

/// A sample's value: Prometheus writes it as a string (`"1"`, `"NaN"`, `"+Inf"`).
fn sample(pair: &Value) -> Option<f64> {
    pair.get(1)?.as_str()?.parse().ok()
}

/// `{job="api", instance="…"}` of a series.
fn labels(series: &Value) -> String {
    let Some(metric) = series.get("metric").and_then(Value::as_object) else {
        return "{}".into();
    };
    let name = metric.get("__name__").and_then(Value::as_str).unwrap_or("");
    let rest: Vec<String> = metric
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={}", v))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}

/// Judges a successful query's `data`.
fn judge(data: &Value, test: Test, pass_if_empty: bool) -> Result<Outcome, Error> {
    let kind = data.get("resultType").and_then(Value::as_str).unwrap_or("");
    let result = data.get("result").unwrap_or(&Value::Null);
    match kind {
        "scalar" => {
            let v = sample(result)
                .ok_or_else(|| Error::failed(format!("unreadable scalar {result}")))?;
            let ok = test.holds(v);
            Ok(Outcome {
                ok,
                message: format!(
                    "scalar {v} is {}{}",
                    if ok { "" } else { "not " },
                    test.text()
                ),
                value: Some(v),
            })
        }
        "vector" => {
            let series = result.as_array().cloned().unwrap_or_default();
            if series.is_empty() {
                return Ok(Outcome {
                    ok: pass_if_empty,
                    message: format!(
                        "no series{}",
                        if pass_if_empty {
                            " (pass_if_empty)"
                        } else {
                            ": nothing to compare"
                        }
                    ),
                    value: Some(0.0),
                });
            }
            let mut wrong = Vec::new();
            let mut first = None;
            for s in &series {
                let v = s
                    .get("value")
                    .and_then(sample)
                    .ok_or_else(|| Error::failed(format!("unreadable sample in {s}")))?;
                first.get_or_insert(v);
                if !test.holds(v) {
                    wrong.push((labels(s), v));
                }
            }
            if wrong.is_empty() {
                let message = if series.len() == 1 {
                    format!(
                        "{} = {} is {}",
                        labels(&series[0]),
                        first.unwrap_or_default(),
                        test.text()
                    )
                } else {
                    format!("all {} series are {}", series.len(), test.text())
                };
                return Ok(Outcome {
                    ok: true,
                    message,
                    value: first,
                });
            }
            let shown: Vec<String> = wrong
                .iter()
                .take(5)
                .map(|(l, v)| format!("{l} = {v}"))
                .collect();
            let more = if wrong.len() > 5 {
                format!(" and {} more", wrong.len() - 5)
            } else {
                String::new()
            };
            failed(
                format!(
                    "{} of {} series not {}: {}{more}",
                    wrong.len(),
                    series.len(),
                    test.text(),
                    shown.join(", ")
                ),
                Some(wrong[0].1),
            )
        }
        "matrix" => Err(Error::invalid(
            "the query returns a range vector (`[…]` selector): compare an instant vector, e.g. with `rate(…[1m])` or `max_over_time(…[1m])`",
        )),
        other => Err(Error::invalid(format!(
            "the query returns a {other:?}, not a number or a vector of numbers"
        ))),
    }
}

struct PrometheusProbe;

impl Probe for PrometheusProbe {
    type Params = Params;

    const SUMMARY: &'static str =
        "Runs an instant PromQL query and compares the scalar, or every series, with a value";
    const CAPABILITIES: &'static [Capability] = &[Capability::Outbound];

    fn validate(params: &Params) -> Result<(), Error> {
        params.plan().map(|_| ())
    }

    fn check(params: Params, _: &ProbeContext) -> Result<Outcome, Error> {
        let plan = params.plan()?;
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", &params.query)
            .finish();
        let url = http::Url {
            path: format!("{}/api/v1/query?{query}", plan.base.path),
            ..plan.base
        };
        let mut request = http::Request::get(url, plan.timeout);
        request.headers = vec![("accept".into(), "application/json".into())];
        let response = match http::send(&request, BODY_CAP, http::Rest::Stop) {
            Ok(r) => r,
            Err(failure) => return failure.outcome(&params.url),
        };
        if response.cut {
            return Err(Error::invalid(format!(
                "the answer is larger than {} KiB: narrow the query",
                BODY_CAP / 1024
            )));
        }
        let answer: Value = match serde_json::from_slice(&response.body) {
            Ok(v) => v,
            Err(_) => {
                return failed(
                    format!(
                        "{} answered HTTP {} without a query API response",
                        params.url, response.status
                    ),
                    None,
                );
            }
        };
        match answer.get("status").and_then(Value::as_str) {
            Some("success") => judge(
                answer.get("data").unwrap_or(&Value::Null),
                plan.test,
                params.pass_if_empty,
            ),
            Some("error") => {
                let kind = answer
                    .get("errorType")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let message = answer.get("error").and_then(Value::as_str).unwrap_or("");
                if kind == "bad_data" {
                    // The query itself is wrong: the system was not judged.
                    Err(Error::invalid(format!(
                        "prometheus refused the query: {message}"
                    )))
                } else {
                    failed(format!("prometheus error ({kind}): {message}"), None)
                }
            }
            _ => failed(
                format!(
                    "{} answered HTTP {} without a query API status",
                    params.url, response.status
                ),
                None,
            ),
        }
    }
}

faultline_sdk::export_probe!(PrometheusProbe);
