//! The agent's JSON API, version 1, on axum: every route, its role and team checks, and the
//! OpenAPI 3.1 document built from the same handlers (utoipa-axum's `routes!`), so the
//! document and the router cannot drift.
//!
//! One handler shape: typed extractors in ([`extract`]: the caller, a validated id, a JSON
//! body), a status and JSON out; every error is [`ApiError`] → `{"error": "..."}` naming the
//! problem and its place. The full reference (routes, roles, errors, SSE events) is
//! `docs/agent.md`.
//!
//! | route | role | does |
//! |---|---|---|
//! | `GET /healthz`, `GET /readyz` | none | liveness, readiness |
//! | `GET /metrics`, `GET /openapi.json`, `GET /v1/status` | viewer | metrics, this document, the agent's state |
//! | `GET /v1/hub/packages[/{name}]` | viewer | the hubs' packages |
//! | `POST /v1/hub/pull` | runner | pulls and verifies a component |
//! | `POST /v1/hub/sync` | admin | syncs the hubs now |
//! | `/v1/experiments…` | viewer reads, runner (its team) starts, heartbeats, stops | experiments |
//! | `/v1/runs…` | viewer reads, runner starts, heartbeats, stops | single-fault runs |
//! | `POST`, `DELETE /v1/emergency-stop` | admin | stops everything and refuses new work; clears |

mod experiments;
pub mod extract;
mod hub;
mod runs;
mod system;

use super::App;
use super::auth::authenticate;
use super::error::{ApiError, ErrorBody};
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use utoipa::OpenApi as _;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The document's frame: title, security scheme, shared schemas. The paths come from the
/// router.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Faultline agent API",
        description = "Runs faults and experiments on this host and always reverts them. See docs/agent.md."
    ),
    modifiers(&Bearer),
    components(schemas(ErrorBody)),
    security(("bearer" = []))
)]
struct ApiDoc;

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes that need a token, with their documentation.
fn authenticated() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(system::metrics))
        .routes(routes!(system::openapi))
        .routes(routes!(system::status))
        .routes(routes!(
            system::emergency_stop,
            system::clear_emergency_stop
        ))
        .routes(routes!(hub::list))
        .routes(routes!(hub::show))
        .routes(routes!(hub::pull))
        .routes(routes!(hub::sync))
        .routes(routes!(experiments::validate))
        .routes(routes!(experiments::start, experiments::list))
        .routes(routes!(experiments::get))
        .routes(routes!(experiments::log))
        .routes(routes!(experiments::events))
        .routes(routes!(experiments::heartbeat))
        .routes(routes!(experiments::stop))
        .routes(routes!(runs::start, runs::list))
        .routes(routes!(runs::get))
        .routes(routes!(runs::heartbeat))
        .routes(routes!(runs::stop))
}

/// The routes anyone may call.
fn public() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
}

/// The OpenAPI document of [`router`].
pub fn openapi() -> utoipa::openapi::OpenApi {
    OpenApiRouter::<App>::with_openapi(ApiDoc::openapi())
        .merge(public())
        .merge(authenticated())
        .into_openapi()
}

/// The document as served, rendered once.
#[derive(Clone)]
pub(crate) struct Document(pub(crate) Arc<String>);

/// The agent's whole API: [`authenticate`] on every route but `/healthz`, `/readyz` and the
/// live view's static shell under `/ui` ([`super::view::router`]); unknown paths are 404 and
/// wrong methods 405, both JSON.
pub fn router(app: App) -> axum::Router {
    let (secured, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(authenticated())
        .split_for_parts();
    let (open, open_doc) = public().split_for_parts();
    let mut doc = doc;
    doc.merge(open_doc);
    let rendered = doc
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"the document does not render: {e}\"}}"));
    let secured = secured
        .layer(axum::Extension(Document(Arc::new(rendered))))
        .layer(middleware::from_fn_with_state(
            app.tokens.clone(),
            authenticate,
        ));
    axum::Router::new()
        .merge(open)
        .merge(secured)
        .merge(super::view::router::<App>())
        .fallback(unknown_path)
        .with_state(app)
        .layer(middleware::from_fn(json_errors))
}

async fn unknown_path(request: Request) -> ApiError {
    ApiError::not_found(format!(
        "no such route: {} {}",
        request.method(),
        extract::shown(request.uri().path())
    ))
}

/// Errors axum makes itself (a method the route does not serve, and the like) have no JSON
/// body: they get one here, so every error a client sees is `{"error": ...}`.
async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = extract::shown(request.uri().path());
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        format!("{method} is not allowed on {path} (the Allow header lists what is)")
    } else {
        format!(
            "{} on {method} {path}",
            status.canonical_reason().unwrap_or("error")
        )
    };
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut fixed = ApiError::new(status, message).into_response();
    if let Some(allow) = allow {
        fixed.headers_mut().insert(header::ALLOW, allow);
    }
    fixed
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_bearer_security_and_every_route() {
        let doc = openapi();
        let json = serde_json::to_value(&doc).unwrap();
        assert!(
            json["openapi"].as_str().unwrap().starts_with("3.1"),
            "{json}"
        );
        assert_eq!(
            json["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let paths: Vec<&String> = json["paths"].as_object().unwrap().keys().collect();
        for p in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.json",
            "/v1/status",
            "/v1/hub/packages",
            "/v1/hub/packages/{name}",
            "/v1/hub/pull",
            "/v1/hub/sync",
            "/v1/experiments/validate",
            "/v1/experiments",
            "/v1/experiments/{id}",
            "/v1/experiments/{id}/log",
            "/v1/experiments/{id}/events",
            "/v1/experiments/{id}/heartbeat",
            "/v1/experiments/{id}/stop",
            "/v1/runs",
            "/v1/runs/{id}",
            "/v1/runs/{id}/heartbeat",
            "/v1/runs/{id}/stop",
            "/v1/emergency-stop",
        ] {
            assert!(
                paths.contains(&&p.to_string()),
                "{p} missing from {paths:?}"
            );
        }
        // The probes answer without a token.
        assert_eq!(
            json["paths"]["/healthz"]["get"]["security"],
            serde_json::json!([{}])
        );
    }
}
