//! The live execution view: a web page the agent serves under `/ui`.
//!
//! `GET /ui/` lists the executions, `GET /ui/executions/{id}` plays one: its lanes and steps on
//! a timeline (SVG) with a marker at the current time, its faults' states, its probes' checks
//! as marks, the tail of its log, and its status, end state and score once it ends. It follows
//! a running execution live over `GET /v1/experiments/{id}/events` (opening the stream again
//! with backoff when it breaks, filling in the log from `GET /v1/experiments/{id}/log`), and
//! replays any execution: play, pause, speed and seek show the run as it was at the marker.
//!
//! The routes serve a static shell and its two assets (`/ui/view.js`, `/ui/view.css`), the
//! same bytes for every caller: the shell holds no data and needs no token. The script takes
//! the token from the URL fragment (`#token=...`, which it then removes from the address) or
//! from a form, keeps it in `sessionStorage` and sends it as `Authorization: Bearer` on every
//! API call made with `fetch` (the event stream too: `EventSource` cannot send headers). It
//! puts every string of the API in the page as text, never as markup.
//!
//! Every answer carries a strict Content-Security-Policy ([`CSP`]: only the agent's own
//! script, style and API, no inline script or style, no frames, no forms posting anywhere),
//! `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY` and `Referrer-Policy:
//! no-referrer`. The look is the HTML report's ([`crate::experiment::report`]): its style
//! sheet, badges and timeline colours are served as they are.
//!
//! ```
//! use axum::body::Body;
//! use axum::http::Request;
//! use tower::ServiceExt as _;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let page = faultline::agent::view::router::<()>()
//!     .oneshot(Request::get("/ui/executions/01JDZ8X3V9Q6Y2K7M4N5P8R0ST").body(Body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(page.status(), 200);
//! assert_eq!(page.headers()["x-frame-options"], "DENY");
//! # });
//! ```
//!
//! Stable hooks for tests (set by the script): `#connection[data-state]` (`connecting`, `live`,
//! `retrying`, `ended`, `denied`, `missing`), `#problem[data-status]` (the HTTP status and the
//! API's reason), `#name`, `#status[data-status]`, `#end-state[data-end-state]`,
//! `#score[data-score]`, `#timeline` with `#marker[data-at-ms]` (milliseconds since the run's
//! start), `g.row.lane[data-lane]`, `g.fault[data-fault][data-status]`,
//! `g.row.probe[data-probe]` with `.mark[data-verdict][data-moment][data-at-ms]`, `#faults
//! tr[data-fault-row]`, `#log li[data-level]`, the replay's `#controls[data-mode]` (`follow`,
//! `replay`) with `#play`, `#speed`, `#seek`, `#follow`, and on the list `#executions
//! tr[data-execution]`.

use crate::experiment::report::style;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::LazyLock;

/// The Content-Security-Policy of every answer under `/ui`: the page runs only the agent's own
/// script, loads only its own style sheet, talks only to its own origin, and cannot be framed.
pub const CSP: &str = "default-src 'self'; connect-src 'self'; script-src 'self'; \
                       style-src 'self'; img-src 'self'; object-src 'none'; base-uri 'none'; \
                       form-action 'none'; frame-ancestors 'none'";

/// The longest execution id the player accepts in its path (ids are ULIDs, 26 characters).
pub const MAX_ID: usize = 64;

/// The page both routes serve: the script picks the list or the player from the path.
const SHELL: &str = include_str!("view/shell.html");
const SCRIPT: &str = include_str!("view/view.js");
const OWN_STYLE: &str = include_str!("view/view.css");

/// The report's sheet, its badges, the timeline's colours, then the view's own rules.
static STYLE: LazyLock<String> = LazyLock::new(|| {
    [
        style::PAGE,
        style::BADGES,
        &style::timeline_css(),
        OWN_STYLE,
    ]
    .concat()
});

/// The routes of the view's static page and assets (under `/ui`); they need no state and no
/// token (the API calls the page makes do).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(to_index))
        .route("/ui/", get(shell))
        .route("/ui/executions/{id}", get(player))
        .route("/ui/view.js", get(script))
        .route("/ui/view.css", get(css))
}

/// An answer with the view's security headers; nothing under `/ui` is cached stale.
fn answer(status: StatusCode, content_type: &'static str, body: impl IntoResponse) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-cache"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn to_index() -> Response {
    let mut response = answer(
        StatusCode::PERMANENT_REDIRECT,
        "text/plain; charset=utf-8",
        "",
    );
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/ui/"));
    response
}

async fn shell() -> Response {
    answer(StatusCode::OK, "text/html; charset=utf-8", SHELL)
}

/// The player's shell, for an id of the shape of one; whether the execution exists, and
/// whether the caller may see it, the API answers the script.
async fn player(Path(id): Path<String>) -> Response {
    if is_id(&id) {
        return shell().await;
    }
    // The id is not echoed: whatever it holds stays out of the answer.
    let body = serde_json::json!({
        "error": format!(
            "the execution id in /ui/executions/{{id}} must be 1 to {MAX_ID} ASCII letters and digits"
        )
    });
    answer(StatusCode::NOT_FOUND, "application/json", body.to_string())
}

/// Whether `id` has the shape of an execution id: 1 to [`MAX_ID`] ASCII letters and digits.
fn is_id(id: &str) -> bool {
    (1..=MAX_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

async fn script() -> Response {
    answer(StatusCode::OK, "text/javascript; charset=utf-8", SCRIPT)
}

async fn css() -> Response {
    answer(StatusCode::OK, "text/css; charset=utf-8", STYLE.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = router::<()>()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (
            parts.status,
            parts.headers,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn every_answer_carries_the_security_headers_and_its_type() {
        for (path, status, kind) in [
            ("/ui/", 200, "text/html; charset=utf-8"),
            (
                "/ui/executions/01JDZ8X3V9Q6Y2K7M4N5P8R0ST",
                200,
                "text/html; charset=utf-8",
            ),
            ("/ui/view.js", 200, "text/javascript; charset=utf-8"),
            ("/ui/view.css", 200, "text/css; charset=utf-8"),
            ("/ui/executions/a%3Cb%3E", 404, "application/json"),
            ("/ui", 308, "text/plain; charset=utf-8"),
        ] {
            let (got, headers, body) = get(path).await;
            assert_eq!(got.as_u16(), status, "{path}: {body}");
            assert_eq!(headers["content-type"], kind, "{path}");
            assert_eq!(headers["content-security-policy"], CSP, "{path}");
            assert_eq!(headers["x-content-type-options"], "nosniff");
            assert_eq!(headers["x-frame-options"], "DENY");
            assert_eq!(headers["referrer-policy"], "no-referrer");
        }
        let (_, headers, _) = get("/ui").await;
        assert_eq!(headers["location"], "/ui/");
    }

    #[tokio::test]
    async fn a_path_that_is_no_id_gets_a_404_that_does_not_echo_it() {
        let long = format!("/ui/executions/{}", "A".repeat(MAX_ID + 1));
        for path in [
            "/ui/executions/%3Cimg%20src%3Dx%3E",
            "/ui/executions/..%2F..%2Fetc",
            "/ui/executions/a-b",
            long.as_str(),
        ] {
            let (status, _, body) = get(path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            let error: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert!(error["error"].as_str().unwrap().contains("execution id"));
            assert!(!body.contains("img") && !body.contains("etc") && !body.contains("AAAA"));
        }
        let exact = format!("/ui/executions/{}", "A".repeat(MAX_ID));
        assert_eq!(get(&exact).await.0, StatusCode::OK);
    }

    #[test]
    fn csp_allows_only_the_agent_itself() {
        let directives: Vec<&str> = CSP.split("; ").collect();
        assert!(directives.contains(&"default-src 'self'"));
        assert!(directives.contains(&"connect-src 'self'"));
        assert!(directives.contains(&"script-src 'self'"));
        assert!(directives.contains(&"frame-ancestors 'none'"));
        assert!(!CSP.contains("unsafe") && !CSP.contains('*') && !CSP.contains("data:"));
    }

    #[test]
    fn the_shell_has_no_inline_script_or_style_and_no_data() {
        let lower = SHELL.to_lowercase();
        // Exactly one script element, the view's, and it is empty.
        assert_eq!(lower.matches("<script").count(), 1);
        assert!(lower.contains(r#"<script src="/ui/view.js" defer></script>"#));
        assert!(!lower.contains("<style") && !lower.contains(" style="));
        for handler in [
            " onload",
            " onerror",
            " onclick",
            " onsubmit",
            "javascript:",
        ] {
            assert!(!lower.contains(handler), "{handler}");
        }
        assert!(lower.contains(r#"<link rel="stylesheet" href="/ui/view.css">"#));
    }

    /// The script builds the page with DOM calls only: nothing parses a string as HTML or
    /// runs one as code.
    #[test]
    fn the_script_never_parses_strings_as_markup_or_code() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setTimeout('",
            "setTimeout(\"",
            "createContextualFragment",
            "DOMParser",
            ".style.cssText",
            "setAttribute('style'",
            "setAttribute('on",
            "new EventSource",
            "localStorage",
        ] {
            assert!(!SCRIPT.contains(sink), "view.js uses {sink}");
        }
        assert!(SCRIPT.contains("textContent"));
        assert!(SCRIPT.contains("sessionStorage"));
        assert!(SCRIPT.contains("'Authorization'"));
    }

    #[test]
    fn the_style_sheet_loads_nothing_and_has_the_report_look() {
        let css = STYLE.to_lowercase();
        for loader in ["url(", "@import", "http", "//"] {
            assert!(!css.contains(loader), "the style sheet has `{loader}`");
        }
        assert!(css.contains("svg#timeline"), "the report's sheet");
        assert!(css.contains(".s-completed-with-error"), "the badges");
        assert!(css.contains("#timeline .bar.fault.running { fill: #1e88e5; }"));
        assert!(css.contains("#timeline .marker"), "the view's own rules");
    }
}
