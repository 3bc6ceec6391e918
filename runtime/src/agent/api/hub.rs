//! `/v1/hub`: the packages of the hubs the agent keeps in sync, pulling one into the cache,
//! and a sync on demand.

use super::extract::{Body, Caller, Id, Query, shown};
use crate::agent::App;
use crate::agent::auth::Role;
use crate::agent::error::{ApiError, ErrorBody};
use crate::agent::hubsync::SyncStatus;
use crate::hub::{HubError, Kind, catalog};
use crate::policy::Identity;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The longest search query or reference accepted.
const MAX_QUERY: usize = 256;

/// The query of `GET /v1/hub/packages`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PackagesQuery {
    /// Words that must all appear in the name, description or categories (case-insensitive).
    pub q: Option<String>,
    /// `fault` or `probe`.
    pub kind: Option<String>,
}

/// `GET /v1/hub/packages`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Packages {
    /// The matching packages, in source priority order.
    #[schema(value_type = Vec<Object>)]
    pub packages: Vec<catalog::Listed>,
}

/// `GET /v1/hub/packages/{name}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PackageView {
    /// The package with all its releases, as its index lists it.
    #[schema(value_type = Object)]
    pub package: crate::hub::Package,
    /// What `pull <name>` would get: hub, version and digest; `null` when nothing resolves.
    #[schema(value_type = Option<Object>)]
    pub resolves_to: Option<serde_json::Value>,
    /// Why it does not resolve (denied, yanked, above the ceiling), when it does not.
    pub refused: Option<String>,
}

/// The body of `POST /v1/hub/pull`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullBody {
    /// `name`, `name@<semver req>`, `name@=<version>` or `sha256:<hex>`.
    #[schema(example = "process-pause")]
    pub reference: String,
}

/// `200` of `POST /v1/hub/pull`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PulledView {
    /// `hub/name@version`: what grants are matched against.
    pub identity: String,
    /// Its digest, `sha256:<hex>`.
    pub digest: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Whether it was already in the cache.
    pub from_cache: bool,
    /// The resolver's warnings (yanked but pinned, deprecated).
    pub warnings: Vec<String>,
}

fn hub_error(e: HubError) -> ApiError {
    let status = match &e {
        HubError::BadReference { .. } => StatusCode::BAD_REQUEST,
        HubError::NotFound { .. } => StatusCode::NOT_FOUND,
        HubError::Fetch { .. } | HubError::NotCached { .. } => StatusCode::BAD_GATEWAY,
        HubError::Io { .. } | HubError::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    ApiError::new(status, e.to_string())
}

/// Lists or searches the packages of the current indexes.
#[utoipa::path(get, path = "/v1/hub/packages", tag = "hub", params(PackagesQuery),
    responses(
        (status = 200, description = "the packages", body = Packages),
        (status = 400, description = "the query is not valid", body = ErrorBody)))]
pub async fn list(
    State(app): State<App>,
    _caller: Caller,
    Query(query): Query<PackagesQuery>,
) -> Result<Json<Packages>, ApiError> {
    if query.q.as_ref().is_some_and(|q| q.len() > MAX_QUERY) {
        return Err(ApiError::bad_request(format!(
            "`q` is longer than {MAX_QUERY} bytes"
        )));
    }
    let kind = match query.kind.as_deref() {
        None | Some("") => None,
        Some("fault") => Some(Kind::Fault),
        Some("probe") => Some(Kind::Probe),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`kind` is {:?}; it must be `fault` or `probe`",
                shown(other)
            )));
        }
    };
    Ok(Json(Packages {
        packages: app.hubs.list(query.q.as_deref(), kind),
    }))
}

/// One package, its releases, and what its name resolves to.
#[utoipa::path(get, path = "/v1/hub/packages/{name}", tag = "hub",
    params(("name" = String, Path, description = "the package name")),
    responses(
        (status = 200, description = "the package", body = PackageView),
        (status = 400, description = "the name is not valid", body = ErrorBody),
        (status = 404, description = "no index lists it", body = ErrorBody)))]
pub async fn show(
    State(app): State<App>,
    _caller: Caller,
    Id(name): Id,
) -> Result<Json<PackageView>, ApiError> {
    let hub = app.hubs.require().map_err(hub_error)?;
    let (package, resolved) = catalog::show(&hub, &name).map_err(hub_error)?;
    let (resolves_to, refused) = match resolved {
        Ok(r) => (
            Some(serde_json::json!({
                "hub": r.hub,
                "version": r.release.version.to_string(),
                "digest": r.release.digest.to_string(),
                "warnings": r.warnings,
            })),
            None,
        ),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(Json(PackageView {
        package,
        resolves_to,
        refused,
    }))
}

/// Pulls a component into the cache, verifying its digest, size and imports.
#[utoipa::path(post, path = "/v1/hub/pull", tag = "hub", request_body = PullBody,
    responses(
        (status = 200, description = "in the cache, verified", body = PulledView),
        (status = 400, description = "the reference is not valid", body = ErrorBody),
        (status = 403, description = "a viewer cannot pull", body = ErrorBody),
        (status = 404, description = "no index lists it", body = ErrorBody),
        (status = 422, description = "refused: digest, signature, curation, policy", body = ErrorBody),
        (status = 502, description = "the download failed", body = ErrorBody)))]
pub async fn pull(
    State(app): State<App>,
    caller: Caller,
    Body(body): Body<PullBody>,
) -> Result<Json<PulledView>, ApiError> {
    caller.needs(Role::Runner, "pull a component")?;
    if body.reference.len() > MAX_QUERY {
        return Err(ApiError::bad_request(format!(
            "field `reference` is longer than {MAX_QUERY} bytes"
        )));
    }
    let hub = app.hubs.require().map_err(hub_error)?;
    let resolved = hub.resolve(&body.reference).map_err(hub_error)?;
    let pulled = hub
        .pull(&resolved, &crate::host::ImportLister::new())
        .await
        .map_err(hub_error)?;
    let identity = Identity::from_hub(
        &pulled.hub,
        &pulled.name,
        pulled.version.clone(),
        &pulled.digest.to_string(),
    );
    Ok(Json(PulledView {
        identity: identity.label(),
        digest: pulled.digest.to_string(),
        bytes: pulled.size,
        from_cache: pulled.from_cache,
        warnings: pulled.warnings,
    }))
}

/// Syncs the hubs now; a sync that loads nothing keeps the last good index set.
#[utoipa::path(post, path = "/v1/hub/sync", tag = "hub",
    responses(
        (status = 200, description = "what the sync did", body = SyncStatus),
        (status = 403, description = "only an admin syncs", body = ErrorBody)))]
pub async fn sync(State(app): State<App>, caller: Caller) -> Result<Json<SyncStatus>, ApiError> {
    caller.needs(Role::Admin, "sync the hubs")?;
    let status = app.hubs.sync().await;
    app.metrics.hub_synced(status.ok);
    Ok(Json(status))
}
