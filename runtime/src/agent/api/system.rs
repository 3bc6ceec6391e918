//! The agent itself: liveness, readiness, metrics, the document, its status and the
//! emergency stop.

use super::Document;
use super::extract::{Caller, OptionalBody};
use crate::agent::auth::Role;
use crate::agent::error::{ApiError, ErrorBody};
use crate::agent::hubsync::SyncStatus;
use crate::agent::{App, EmergencyStopped};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always true: the process serves.
    pub ok: bool,
}

/// `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// Whether the agent takes work.
    pub ready: bool,
    /// Why not, when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /v1/status`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentStatus {
    /// Whether new runs and experiments are accepted.
    pub accepting: bool,
    /// Why they are refused (an emergency stop, a shutdown), when they are.
    pub refusing: Option<String>,
    /// Labels fleets select this agent by.
    pub labels: BTreeMap<String, String>,
    /// The agent's version.
    pub version: String,
    /// The last hub sync and the indexes in use.
    pub hub: SyncStatus,
}

/// The body of `POST /v1/emergency-stop` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmergencyStopBody {
    /// Why, for the record and for whoever tries to start something next.
    #[schema(max_length = 1024)]
    pub reason: Option<String>,
}

/// `DELETE /v1/emergency-stop`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cleared {
    /// Whether an emergency stop was active.
    pub cleared: bool,
}

/// The longest emergency-stop reason kept.
const MAX_REASON: usize = 1024;

/// Liveness: 200 while the process serves.
#[utoipa::path(get, path = "/healthz", tag = "agent", security(()),
    responses((status = 200, description = "the process serves", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { ok: true })
}

/// Readiness: recovered, a hub index loaded, not shutting down.
#[utoipa::path(get, path = "/readyz", tag = "agent", security(()),
    responses(
        (status = 200, description = "ready for work", body = Readiness),
        (status = 503, description = "not ready, and why", body = Readiness)))]
pub async fn readyz(State(app): State<App>) -> Response {
    match app.ready() {
        Ok(()) => Json(Readiness {
            ready: true,
            reason: None,
        })
        .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                ready: false,
                reason: Some(reason),
            }),
        )
            .into_response(),
    }
}

/// Prometheus metrics, in the OpenMetrics text format when the scraper asks for it, else in
/// the text format 0.0.4.
#[utoipa::path(get, path = "/metrics", tag = "agent",
    responses(
        (status = 200, description = "the metrics", content_type = "text/plain", body = String),
        (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn metrics(State(app): State<App>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let content_type = if openmetrics {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; version=0.0.4; charset=utf-8"
    };
    ([(header::CONTENT_TYPE, content_type)], app.metrics.encode()).into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "agent",
    responses(
        (status = 200, description = "the OpenAPI 3.1 document", body = Object),
        (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn openapi(Extension(doc): Extension<Document>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.as_str().to_owned(),
    )
        .into_response()
}

/// Whether runs are accepted, the labels, the version and the last hub sync.
#[utoipa::path(get, path = "/v1/status", tag = "agent",
    responses(
        (status = 200, description = "the agent's state", body = AgentStatus),
        (status = 401, description = "no valid token", body = ErrorBody)))]
pub async fn status(State(app): State<App>) -> Json<AgentStatus> {
    let refusing = app.agent.refusing();
    Json(AgentStatus {
        accepting: refusing.is_none(),
        refusing,
        labels: (*app.labels).clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        hub: app.hubs.last_sync(),
    })
}

/// Emergency stop: reverts every run and experiment at once, answers once all are reverted,
/// and refuses new ones (409) until it is cleared.
#[utoipa::path(post, path = "/v1/emergency-stop", tag = "agent",
    request_body(content = Option<EmergencyStopBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "everything is reverted", body = EmergencyStopped),
        (status = 400, description = "the body is not valid", body = ErrorBody),
        (status = 403, description = "only an admin stops everything", body = ErrorBody)))]
pub async fn emergency_stop(
    State(app): State<App>,
    caller: Caller,
    OptionalBody(body): OptionalBody<EmergencyStopBody>,
) -> Result<Json<EmergencyStopped>, ApiError> {
    caller.needs(Role::Admin, "set the emergency stop")?;
    let reason = body
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| format!("requested through the API by {}", caller.0.name));
    if reason.len() > MAX_REASON {
        return Err(ApiError::bad_request(format!(
            "field `reason` is {} bytes, more than the {MAX_REASON} allowed",
            reason.len()
        )));
    }
    tracing::warn!("emergency stop by {}: {reason}", caller.0.name);
    Ok(Json(app.emergency_stop(&reason).await))
}

/// Clears the emergency stop: runs and experiments are accepted again.
#[utoipa::path(delete, path = "/v1/emergency-stop", tag = "agent",
    responses(
        (status = 200, description = "cleared", body = Cleared),
        (status = 403, description = "only an admin clears it", body = ErrorBody)))]
pub async fn clear_emergency_stop(
    State(app): State<App>,
    caller: Caller,
) -> Result<Json<Cleared>, ApiError> {
    caller.needs(Role::Admin, "clear the emergency stop")?;
    tracing::warn!("emergency stop cleared by {}", caller.0.name);
    Ok(Json(Cleared {
        cleared: app.clear_emergency_stop().await,
    }))
}
