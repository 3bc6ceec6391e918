//! The agent's JSON API, version 1. One handler shape: a request in, a status and JSON out;
//! every error is `{"error": "..."}` with a message that names the problem.
//!
//! | route | does |
//! |---|---|
//! | `POST /v1/runs` `{component, params?, duration?, lease?}` | starts a run → `201 {id, status}`; `component` is a hub reference, never a path |
//! | `GET /v1/runs` | every run |
//! | `GET /v1/runs/{id}` | one run's status |
//! | `POST /v1/runs/{id}/heartbeat` | renews its lease |
//! | `POST /v1/runs/{id}/stop` | reverts it now; answers once it is reverted |
//! | `POST /v1/emergency-stop` `{reason?}` | reverts everything, refuses new runs (409) |
//! | `DELETE /v1/emergency-stop` | accepts runs again |
//! | `GET /v1/status` | whether runs are refused, and why |

use super::http::{Request, Response};
use super::{Agent, RunRequest, StartError};
use crate::execution::StopReason;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// The body of `POST /v1/runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    component: String,
    #[serde(default = "empty_object")]
    params: serde_json::Value,
    duration: Option<String>,
    lease: Option<String>,
}

/// The body of `POST /v1/emergency-stop` (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmergencyBody {
    reason: Option<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body)
        .map_err(|e| Response::error(400, format!("invalid JSON body: {e}")))
}

/// The longest `duration` or `lease` a run may ask for, as on the command line.
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

fn duration(field: &str, text: &str) -> Result<Duration, Response> {
    let d = humantime::parse_duration(text).map_err(|e| {
        Response::error(
            400,
            format!("{field} {text:?} is not a duration (like \"30s\"): {e}"),
        )
    })?;
    if d > MAX_DURATION {
        return Err(Response::error(
            400,
            format!("{field} {text:?} is longer than the 7 days a run may last"),
        ));
    }
    Ok(d)
}

/// Answers one request.
pub async fn handle(agent: Arc<Agent>, request: Request) -> Response {
    match route(&agent, &request).await {
        Ok(r) | Err(r) => r,
    }
}

async fn route(agent: &Arc<Agent>, request: &Request) -> Result<Response, Response> {
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let method = request.method.as_str();
    match (method, segments.as_slice()) {
        ("POST", ["v1", "runs"]) => start(agent, &request.body).await,
        ("GET", ["v1", "runs"]) => Ok(Response::json(
            200,
            serde_json::json!({ "runs": agent.runs() }),
        )),
        ("GET", ["v1", "runs", id]) => {
            let run = find(agent, id)?;
            Ok(Response::json(200, serde_json::json!(run.view())))
        }
        ("POST", ["v1", "runs", id, "heartbeat"]) => {
            let run = find(agent, id)?;
            if run.handle.heartbeat() {
                Ok(Response::json(
                    200,
                    serde_json::json!({ "id": id, "renewed": true }),
                ))
            } else {
                Err(Response::error(
                    409,
                    format!(
                        "run {id} has ended ({}); there is no lease to renew",
                        serde_json::json!(run.view().status)
                    ),
                ))
            }
        }
        ("POST", ["v1", "runs", id, "stop"]) => {
            let run = find(agent, id)?;
            run.handle.stop(StopReason::UserStop);
            run.handle.finished().await;
            Ok(Response::json(200, serde_json::json!(run.view())))
        }
        ("POST", ["v1", "emergency-stop"]) => {
            let body: EmergencyBody = if request.body.iter().all(u8::is_ascii_whitespace) {
                EmergencyBody::default()
            } else {
                parse(&request.body)?
            };
            let reason = body
                .reason
                .unwrap_or_else(|| "requested through the API".into());
            let done = agent.emergency_stop(&reason).await;
            Ok(Response::json(200, serde_json::json!(done)))
        }
        ("DELETE", ["v1", "emergency-stop"]) => {
            let was = agent.clear_emergency_stop().await;
            Ok(Response::json(200, serde_json::json!({ "cleared": was })))
        }
        ("GET", ["v1", "status"]) => Ok(Response::json(
            200,
            serde_json::json!({ "accepting": agent.refusing().is_none(), "refusing": agent.refusing() }),
        )),
        (_, ["v1", "runs"])
        | (_, ["v1", "runs", _])
        | (_, ["v1", "runs", _, "heartbeat" | "stop"])
        | (_, ["v1", "emergency-stop"])
        | (_, ["v1", "status"]) => Err(Response::error(
            405,
            format!("{method} is not allowed on {}", request.path),
        )),
        _ => Err(Response::error(
            404,
            format!("no such route: {method} {}", request.path),
        )),
    }
}

fn find(agent: &Agent, id: &str) -> Result<super::run::Run, Response> {
    agent.run(id).ok_or_else(|| {
        // The id is the caller's own text: quote it only when it is short and printable.
        let shown: String = id.chars().take(64).filter(|c| !c.is_control()).collect();
        Response::error(404, format!("no run with id {shown:?}"))
    })
}

async fn start(agent: &Arc<Agent>, body: &[u8]) -> Result<Response, Response> {
    let body: StartBody = parse(body)?;
    let request = RunRequest {
        component: body.component,
        params: body.params,
        duration: duration("duration", body.duration.as_deref().unwrap_or("30s"))?,
        lease: body
            .lease
            .as_deref()
            .map(|l| duration("lease", l))
            .transpose()?,
    };
    match agent.start(request).await {
        Ok(id) => Ok(Response::json(
            201,
            serde_json::json!({ "id": id, "status": "injecting" }),
        )),
        Err(e @ StartError::Refused(_)) => Err(Response::error(409, e.to_string())),
        Err(e @ StartError::Busy(_)) => Err(Response::error(503, e.to_string())),
        Err(e @ StartError::Invalid(_)) => Err(Response::error(400, e.to_string())),
        Err(e @ StartError::ComponentRefused(_)) => Err(Response::error(422, e.to_string())),
        Err(StartError::Host(e)) => Err(Response::error(500, format!("{e:#}"))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_past_seven_days_are_refused_before_they_reach_an_instant() {
        assert_eq!(duration("lease", "10s").unwrap(), Duration::from_secs(10));
        assert_eq!(duration("duration", "7d").unwrap(), MAX_DURATION);
        // Added to an `Instant`, this would overflow and panic the run's task.
        let r = duration("lease", "400000000000y").unwrap_err();
        assert_eq!(r.status, 400);
        assert!(
            r.body.to_string().contains("longer than the 7 days"),
            "{}",
            r.body
        );
        assert_eq!(duration("lease", "soon").unwrap_err().status, 400);
    }
}
