//! `/v1/experiments`: experiment files validated, started (with an optional lease), listed,
//! read (live while they run), followed as a Server-Sent Events stream, renewed and stopped.
//! The team checks are the manager's ([`crate::agent::experiments::Experiments`]: a runner
//! acts only for its team, an admin for all); the role checks are here.

use super::extract::{Body, Caller, Id, Query, shown};
use crate::agent::App;
use crate::agent::auth::Role;
use crate::agent::error::{ApiError, ErrorBody};
use crate::agent::experiments::{Checked, ExperimentError, Live, StartRequest};
use crate::experiment::record::{LogEntry, Record};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use utoipa::{IntoParams, ToSchema};

/// The largest experiment file accepted.
pub const MAX_EXPERIMENT: usize = 1 << 20;
/// The longest file name accepted.
const MAX_FILE_NAME: usize = 255;
/// Summaries listed when `limit` is not given, and the most one call lists.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;
/// Record events on the stream come at most this often.
const RECORD_EVERY: Duration = Duration::from_millis(250);
/// Keep-alive comments on the stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The body of `POST /v1/experiments/validate`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateBody {
    /// The experiment file's text, YAML or JSON, at most 1 MiB.
    pub experiment: String,
    /// A name for the file in messages and the record (never opened); default
    /// `experiment.yaml`.
    pub file: Option<String>,
}

/// The body of `POST /v1/experiments`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartBody {
    /// The experiment file's text, YAML or JSON, at most 1 MiB.
    pub experiment: String,
    /// A name for the file in messages and the record (never opened).
    pub file: Option<String>,
    /// Revert everything unless `POST .../heartbeat` comes within this long of the last one,
    /// like `30s` (at least 1s).
    pub lease: Option<String>,
}

/// `201` of `POST /v1/experiments`.
#[derive(Debug, Serialize, ToSchema)]
pub struct StartedExperiment {
    /// The execution id.
    pub id: String,
    /// What the pre-run checks found.
    #[schema(value_type = Object)]
    pub checked: Checked,
}

/// The query of `GET /v1/experiments`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// How many, newest first (default 50, at most 1000).
    pub limit: Option<usize>,
}

/// `GET /v1/experiments`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExperimentList {
    /// Summaries, newest first.
    #[schema(value_type = Vec<Object>)]
    pub executions: Vec<crate::experiment::store::Summary>,
}

/// `GET /v1/experiments/{id}/log`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogLines {
    /// The lines, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub lines: Vec<LogEntry>,
}

/// `POST /v1/experiments/{id}/heartbeat`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeaseRenewed {
    /// The id.
    pub id: String,
    /// Always true.
    pub renewed: bool,
}

/// The status and message an [`ExperimentError`] answers with, about `id` when there is one.
fn refusal(e: ExperimentError, id: Option<&str>) -> ApiError {
    match e {
        ExperimentError::Invalid(problems) => ApiError::with_problems(
            StatusCode::BAD_REQUEST,
            format!("the experiment is not valid: {}", problems.join("; ")),
            problems,
        ),
        ExperimentError::Refused(problems) => ApiError::with_problems(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the pre-run checks failed: {}", problems.join("; ")),
            problems,
        ),
        e @ ExperimentError::Forbidden(_) => ApiError::forbidden(e.to_string()),
        e @ ExperimentError::Stopped(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        e @ ExperimentError::Busy(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        ExperimentError::NotFound(other) => ApiError::not_found(format!(
            "no execution with id {:?}",
            id.map(str::to_string).unwrap_or(other)
        )),
        e @ ExperimentError::Ended(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        ExperimentError::Host(e) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
        }
    }
}

/// Checks the text and the file name before anything parses them.
fn file_of(experiment: &str, file: Option<String>) -> Result<String, ApiError> {
    if experiment.len() > MAX_EXPERIMENT {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "field `experiment` is {} bytes, more than the 1 MiB an experiment may be",
                experiment.len()
            ),
        ));
    }
    let file = file.unwrap_or_else(|| "experiment.yaml".into());
    if file.is_empty()
        || file.len() > MAX_FILE_NAME
        || file
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(ApiError::bad_request(format!(
            "field `file`: {:?} is not a file name (1 to {MAX_FILE_NAME} bytes, no `/`, no control characters)",
            shown(&file)
        )));
    }
    Ok(file)
}

fn lease_of(text: Option<&str>) -> Result<Option<Duration>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    let d = humantime::parse_duration(text).map_err(|e| {
        ApiError::bad_request(format!(
            "field `lease`: {:?} is not a duration (like \"30s\"): {e}",
            shown(text)
        ))
    })?;
    if d < crate::agent::MIN_LEASE {
        return Err(ApiError::bad_request(format!(
            "field `lease`: {:?} is shorter than the minimum of 1s",
            shown(text)
        )));
    }
    if d > Duration::from_secs(24 * 3600) {
        return Err(ApiError::bad_request(format!(
            "field `lease`: {:?} is longer than a day",
            shown(text)
        )));
    }
    Ok(Some(d))
}

/// Parses an experiment and runs its pre-run checks (components, targets, grants) without
/// running anything.
#[utoipa::path(post, path = "/v1/experiments/validate", tag = "experiments",
    request_body = ValidateBody,
    responses(
        (status = 200, description = "the checks passed", body = Object),
        (status = 400, description = "the file is not valid: every problem, located", body = ErrorBody),
        (status = 403, description = "a viewer, or a runner of another team", body = ErrorBody),
        (status = 413, description = "the file is over 1 MiB", body = ErrorBody),
        (status = 415, description = "the body is not JSON", body = ErrorBody),
        (status = 422, description = "the pre-run checks failed", body = ErrorBody)))]
pub async fn validate(
    State(app): State<App>,
    caller: Caller,
    Body(body): Body<ValidateBody>,
) -> Result<Json<Checked>, ApiError> {
    caller.needs(Role::Runner, "validate an experiment")?;
    let file = file_of(&body.experiment, body.file)?;
    app.experiments
        .validate(&body.experiment, &file, app.hubs.current(), &caller.0)
        .await
        .map(Json)
        .map_err(|e| refusal(e, None))
}

/// Starts an experiment once its pre-run checks pass. A runner starts only experiments whose
/// `team:` is its own; one without `team:` only an admin starts.
#[utoipa::path(post, path = "/v1/experiments", tag = "experiments",
    request_body = StartBody,
    responses(
        (status = 201, description = "started", body = StartedExperiment),
        (status = 400, description = "the file is not valid: every problem, located", body = ErrorBody),
        (status = 403, description = "a viewer, or a runner of another team", body = ErrorBody),
        (status = 409, description = "an emergency stop refuses new runs", body = ErrorBody),
        (status = 413, description = "the file is over 1 MiB", body = ErrorBody),
        (status = 415, description = "the body is not JSON", body = ErrorBody),
        (status = 422, description = "the pre-run checks failed", body = ErrorBody),
        (status = 503, description = "too many experiments in flight", body = ErrorBody)))]
pub async fn start(
    State(app): State<App>,
    caller: Caller,
    Body(body): Body<StartBody>,
) -> Result<(StatusCode, Json<StartedExperiment>), ApiError> {
    caller.needs(Role::Runner, "start an experiment")?;
    let file = file_of(&body.experiment, body.file)?;
    let lease = lease_of(body.lease.as_deref())?;
    let request = StartRequest {
        text: body.experiment,
        file,
        lease,
        by: caller.0.clone(),
    };
    let (id, checked) = app
        .experiments
        .start(request, app.hubs.current())
        .await
        .map_err(|e| refusal(e, None))?;
    tracing::info!("experiment {id} started by {}", caller.0.name);
    Ok((StatusCode::CREATED, Json(StartedExperiment { id, checked })))
}

/// Executions, newest first: running and stored, those of the caller's team (an admin sees
/// all).
#[utoipa::path(get, path = "/v1/experiments", tag = "experiments", params(ListQuery),
    responses(
        (status = 200, description = "summaries", body = ExperimentList),
        (status = 400, description = "the query is not valid", body = ErrorBody)))]
pub async fn list(
    State(app): State<App>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Json<ExperimentList>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "`limit` is {limit}; it must be 1 to {MAX_LIMIT}"
        )));
    }
    let executions = app
        .experiments
        .list(limit, &caller.0)
        .await
        .map_err(|e| refusal(e, None))?;
    Ok(Json(ExperimentList { executions }))
}

/// One execution's record: live while it runs, else from the history.
#[utoipa::path(get, path = "/v1/experiments/{id}", tag = "experiments",
    params(("id" = String, Path, description = "the execution id", min_length = 1, max_length = 64, pattern = r"^[0-9A-Za-z._-]+$")),
    responses(
        (status = 200, description = "the record", body = Object),
        (status = 400, description = "the id is not valid", body = ErrorBody),
        (status = 403, description = "another team's execution", body = ErrorBody),
        (status = 404, description = "no such execution", body = ErrorBody)))]
pub async fn get(
    State(app): State<App>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<Record>, ApiError> {
    app.experiments
        .get(&id, &caller.0)
        .await
        .map(Json)
        .map_err(|e| refusal(e, Some(&id)))
}

/// One execution's log lines so far.
#[utoipa::path(get, path = "/v1/experiments/{id}/log", tag = "experiments",
    params(("id" = String, Path, description = "the execution id", min_length = 1, max_length = 64, pattern = r"^[0-9A-Za-z._-]+$")),
    responses(
        (status = 200, description = "the log", body = LogLines),
        (status = 400, description = "the id is not valid", body = ErrorBody),
        (status = 403, description = "another team's execution", body = ErrorBody),
        (status = 404, description = "no such execution", body = ErrorBody)))]
pub async fn log(
    State(app): State<App>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<LogLines>, ApiError> {
    let lines = app
        .experiments
        .log(&id, &caller.0)
        .await
        .map_err(|e| refusal(e, Some(&id)))?;
    Ok(Json(LogLines { lines }))
}

/// Renews a running experiment's lease.
#[utoipa::path(post, path = "/v1/experiments/{id}/heartbeat", tag = "experiments",
    params(("id" = String, Path, description = "the execution id", min_length = 1, max_length = 64, pattern = r"^[0-9A-Za-z._-]+$")),
    responses(
        (status = 200, description = "renewed", body = LeaseRenewed),
        (status = 403, description = "a viewer, or a runner of another team", body = ErrorBody),
        (status = 404, description = "no such execution", body = ErrorBody),
        (status = 409, description = "it has ended", body = ErrorBody)))]
pub async fn heartbeat(
    State(app): State<App>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<LeaseRenewed>, ApiError> {
    caller.needs(Role::Runner, "renew an experiment's lease")?;
    app.experiments
        .heartbeat(&id, &caller.0)
        .map_err(|e| refusal(e, Some(&id)))?;
    Ok(Json(LeaseRenewed { id, renewed: true }))
}

/// Stops a running experiment; answers with the final record once everything is reverted.
#[utoipa::path(post, path = "/v1/experiments/{id}/stop", tag = "experiments",
    params(("id" = String, Path, description = "the execution id", min_length = 1, max_length = 64, pattern = r"^[0-9A-Za-z._-]+$")),
    responses(
        (status = 200, description = "stopped and reverted: the final record", body = Object),
        (status = 403, description = "a viewer, or a runner of another team", body = ErrorBody),
        (status = 404, description = "no such execution", body = ErrorBody),
        (status = 409, description = "it has ended", body = ErrorBody)))]
pub async fn stop(
    State(app): State<App>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<Record>, ApiError> {
    caller.needs(Role::Runner, "stop an experiment")?;
    let record = app
        .experiments
        .stop(&id, &caller.0)
        .await
        .map_err(|e| refusal(e, Some(&id)))?;
    tracing::info!("experiment {id} stopped by {}", caller.0.name);
    Ok(Json(record))
}

/// The execution as Server-Sent Events: `record` (the full record) first; then `log` (one
/// line each) as they come and `record` whenever the record changes (at most every 250 ms);
/// finally `end` with the final record, and the stream closes. An ended execution: `record`,
/// every stored `log` line, `end`. A client that falls behind gets `lagged` `{"missed": N}`.
/// Keep-alive comments every 15 s.
#[utoipa::path(get, path = "/v1/experiments/{id}/events", tag = "experiments",
    params(("id" = String, Path, description = "the execution id", min_length = 1, max_length = 64, pattern = r"^[0-9A-Za-z._-]+$")),
    responses(
        (status = 200, description = "the event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "the id is not valid", body = ErrorBody),
        (status = 403, description = "another team's execution", body = ErrorBody),
        (status = 404, description = "no such execution", body = ErrorBody)))]
pub async fn events(
    State(app): State<App>,
    caller: Caller,
    Id(id): Id,
) -> Result<Response, ApiError> {
    let (tx, rx) = mpsc::channel(64);
    match app
        .experiments
        .live(&id, &caller.0)
        .map_err(|e| refusal(e, Some(&id)))?
    {
        Some(live) => {
            // The first record is read now: the client sees it even if the run ends at once.
            let first = live.record.borrow().clone();
            tokio::spawn(follow(app, caller, id, first, live, tx));
        }
        None => {
            let record = app
                .experiments
                .get(&id, &caller.0)
                .await
                .map_err(|e| refusal(e, Some(&id)))?;
            let lines = app
                .experiments
                .log(&id, &caller.0)
                .await
                .map_err(|e| refusal(e, Some(&id)))?;
            tokio::spawn(replay(record, lines, tx));
        }
    }
    Ok(Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

type Events = mpsc::Sender<Result<Event, Infallible>>;

fn json_event(name: &str, value: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(value)
        .unwrap_or_else(|e| {
            Event::default()
                .event("error")
                .data(format!("cannot encode the {name} event: {e}"))
        })
}

/// Sends an event; false once the client has gone.
async fn send(tx: &Events, event: Event) -> bool {
    tx.send(Ok(event)).await.is_ok()
}

async fn replay(record: Record, lines: Vec<LogEntry>, tx: Events) {
    if !send(&tx, json_event("record", &record)).await {
        return;
    }
    for line in &lines {
        if !send(&tx, json_event("log", line)).await {
            return;
        }
    }
    send(&tx, json_event("end", &record)).await;
}

async fn follow(app: App, caller: Caller, id: String, first: Record, live: Live, tx: Events) {
    let Live {
        record: mut records,
        log: mut lines,
    } = live;
    if !send(&tx, json_event("record", &first)).await {
        return;
    }
    let mut last_sent = tokio::time::Instant::now();
    let mut pending = false;
    let mut log_open = true;
    loop {
        if records.borrow().status.is_final() {
            break;
        }
        let wait =
            (last_sent + RECORD_EVERY).saturating_duration_since(tokio::time::Instant::now());
        tokio::select! {
            line = lines.recv(), if log_open => match line {
                Ok(line) => {
                    if !send(&tx, json_event("log", &line)).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    if !send(&tx, json_event("lagged", &serde_json::json!({ "missed": missed }))).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => log_open = false,
            },
            changed = records.changed() => match changed {
                Ok(()) => pending = true,
                // The run's task has let go of the record: it has ended.
                Err(_) => break,
            },
            _ = tokio::time::sleep(wait), if pending => {
                pending = false;
                last_sent = tokio::time::Instant::now();
                let now = records.borrow_and_update().clone();
                if !send(&tx, json_event("record", &now)).await {
                    return;
                }
            }
            _ = tx.closed() => return,
        }
    }
    // Lines already sent before the end are delivered before `end`.
    while let Ok(line) = lines.try_recv() {
        if !send(&tx, json_event("log", &line)).await {
            return;
        }
    }
    // The final record as stored (it may say more than the last live one).
    let last = records.borrow().clone();
    let end = match app.experiments.get(&id, &caller.0).await {
        Ok(r) if r.status.is_final() => r,
        _ => last,
    };
    send(&tx, json_event("end", &end)).await;
}
