//! `/v1/runs`: single-fault runs — one hub component injected, held for a duration (or until
//! stopped, or until its lease lapses), then reverted.

use super::extract::{Body, Caller, Id, shown};
use crate::agent::auth::Role;
use crate::agent::error::{ApiError, ErrorBody};
use crate::agent::run::{Run, RunView};
use crate::agent::{App, RunRequest, StartError};
use crate::execution::StopReason;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;

/// The body of `POST /v1/runs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// A hub reference (`name`, `name@^1`, `sha256:<hex>`); never a path.
    #[schema(example = "process-pause")]
    pub component: String,
    /// The fault's parameters (a JSON object); default `{}`.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// How long to hold the fault, like `30s` (default), at most 7 days.
    pub duration: Option<String>,
    /// Revert unless a heartbeat comes within this long of the last one (at least 1s).
    pub lease: Option<String>,
}

/// `201` of `POST /v1/runs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Started {
    /// The run's id.
    pub id: String,
    /// `injecting`.
    pub status: String,
}

/// `GET /v1/runs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    /// Every run the agent holds, oldest first.
    pub runs: Vec<RunView>,
}

/// `POST /v1/runs/{id}/heartbeat`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Renewed {
    /// The id.
    pub id: String,
    /// Always true.
    pub renewed: bool,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// The longest `duration` or `lease` a run may ask for, as on the command line.
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

fn duration(field: &str, text: &str) -> Result<Duration, ApiError> {
    let d = humantime::parse_duration(text).map_err(|e| {
        ApiError::bad_request(format!(
            "field `{field}`: {:?} is not a duration (like \"30s\"): {e}",
            shown(text)
        ))
    })?;
    if d > MAX_DURATION {
        return Err(ApiError::bad_request(format!(
            "field `{field}`: {:?} is longer than the 7 days a run may last",
            shown(text)
        )));
    }
    Ok(d)
}

/// The run `id`, when `caller` may act on it: a run belongs to the team of the token that
/// started it; another team's is refused (403) as for experiments.
fn find(app: &App, caller: &Caller, id: &str) -> Result<Run, ApiError> {
    let run = app
        .agent
        .run(id)
        .ok_or_else(|| ApiError::not_found(format!("no run with id {id:?}")))?;
    if !caller.0.acts_for(Some(&run.team)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "run {id} belongs to team {:?}; {} {:?} of team {:?} acts only for its own team",
                run.team,
                caller.0.role.as_str(),
                caller.0.name,
                caller.0.team
            ),
        ));
    }
    Ok(run)
}

/// Starts a run: `component` is resolved in the hubs, loaded, checked against the policy and
/// its parameters validated before anything is injected.
#[utoipa::path(post, path = "/v1/runs", tag = "runs", request_body = StartRun,
    responses(
        (status = 201, description = "started", body = Started),
        (status = 400, description = "the request is not valid", body = ErrorBody),
        (status = 403, description = "a viewer cannot start runs", body = ErrorBody),
        (status = 409, description = "an emergency stop refuses new runs", body = ErrorBody),
        (status = 415, description = "the body is not JSON", body = ErrorBody),
        (status = 422, description = "the component or the policy refuses it", body = ErrorBody),
        (status = 503, description = "too many runs in flight", body = ErrorBody)))]
pub async fn start(
    State(app): State<App>,
    caller: Caller,
    Body(body): Body<StartRun>,
) -> Result<(StatusCode, Json<Started>), ApiError> {
    caller.needs(Role::Runner, "start a run")?;
    let request = RunRequest {
        component: body.component,
        params: body.params,
        duration: duration("duration", body.duration.as_deref().unwrap_or("30s"))?,
        lease: body
            .lease
            .as_deref()
            .map(|l| duration("lease", l))
            .transpose()?,
        team: caller.0.team.clone(),
        started_by: caller.0.name.clone(),
    };
    match app.agent.start(request).await {
        Ok(id) => {
            tracing::info!("run {id} started by {}", caller.0.name);
            Ok((
                StatusCode::CREATED,
                Json(Started {
                    id,
                    status: "injecting".into(),
                }),
            ))
        }
        Err(e) => Err(start_error(e)),
    }
}

fn start_error(e: StartError) -> ApiError {
    let status = match &e {
        StartError::Refused(_) => StatusCode::CONFLICT,
        StartError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        StartError::Invalid(_) => StatusCode::BAD_REQUEST,
        StartError::ComponentRefused(_) => StatusCode::UNPROCESSABLE_ENTITY,
        StartError::Host(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let message = match e {
        StartError::Host(e) => format!("{e:#}"),
        e => e.to_string(),
    };
    ApiError::new(status, message)
}

/// Every run the agent holds (the finished ones it still keeps too), oldest first.
#[utoipa::path(get, path = "/v1/runs", tag = "runs",
    responses((status = 200, description = "the runs", body = RunList)))]
pub async fn list(State(app): State<App>, caller: Caller) -> Json<RunList> {
    let mut runs = app.agent.runs();
    runs.retain(|r| caller.0.acts_for(Some(&r.team)));
    Json(RunList { runs })
}

/// One run.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "the run's id", min_length = 1, max_length = 64, pattern = r"^[0-9A-Za-z._-]+$")),
    responses(
        (status = 200, description = "the run", body = RunView),
        (status = 400, description = "the id is not valid", body = ErrorBody),
        (status = 404, description = "no such run", body = ErrorBody)))]
pub async fn get(
    State(app): State<App>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<RunView>, ApiError> {
    Ok(Json(find(&app, &caller, &id)?.view()))
}

/// Renews a run's lease.
#[utoipa::path(post, path = "/v1/runs/{id}/heartbeat", tag = "runs",
    params(("id" = String, Path, description = "the run's id", min_length = 1, max_length = 64, pattern = r"^[0-9A-Za-z._-]+$")),
    responses(
        (status = 200, description = "renewed", body = Renewed),
        (status = 403, description = "a viewer cannot renew", body = ErrorBody),
        (status = 404, description = "no such run", body = ErrorBody),
        (status = 409, description = "the run has ended", body = ErrorBody)))]
pub async fn heartbeat(
    State(app): State<App>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<Renewed>, ApiError> {
    caller.needs(Role::Runner, "renew a run's lease")?;
    let run = find(&app, &caller, &id)?;
    if run.handle.heartbeat() {
        return Ok(Json(Renewed { id, renewed: true }));
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "run {id} has ended ({}); there is no lease to renew",
            serde_json::json!(run.view().status)
        ),
    ))
}

/// Stops a run: reverts it now and answers with its final state once it is reverted.
#[utoipa::path(post, path = "/v1/runs/{id}/stop", tag = "runs",
    params(("id" = String, Path, description = "the run's id", min_length = 1, max_length = 64, pattern = r"^[0-9A-Za-z._-]+$")),
    responses(
        (status = 200, description = "reverted", body = RunView),
        (status = 403, description = "a viewer cannot stop runs", body = ErrorBody),
        (status = 404, description = "no such run", body = ErrorBody)))]
pub async fn stop(
    State(app): State<App>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<RunView>, ApiError> {
    caller.needs(Role::Runner, "stop a run")?;
    let run = find(&app, &caller, &id)?;
    run.handle.stop(StopReason::UserStop);
    run.handle.finished().await;
    tracing::info!("run {id} stopped by {}", caller.0.name);
    Ok(Json(run.view()))
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
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(
            r.message.contains("longer than the 7 days"),
            "{}",
            r.message
        );
        assert!(r.message.contains("field `lease`"), "{}", r.message);
        assert_eq!(
            duration("lease", "soon").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
