//! The API's extractors: who calls ([`Caller`], with the role checks), a validated id
//! ([`Id`]), a JSON body ([`Body`], [`OptionalBody`]) and a query ([`Query`]). Each rejection
//! is an [`ApiError`] naming the problem and its place, so no request reaches a handler — or
//! a lookup — with an id or a body it could not use.

use crate::agent::auth::{Principal, Role};
use crate::agent::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

/// The longest id (execution, run, package name) a path may carry.
pub const MAX_ID: usize = 64;

/// Text of the caller's to show in a message: at most 64 characters, no control characters.
pub fn shown(text: &str) -> String {
    let mut s: String = text
        .chars()
        .take(MAX_ID)
        .filter(|c| !c.is_control())
        .collect();
    if text.chars().count() > MAX_ID {
        s.push('…');
    }
    s
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Viewer => "viewer",
        Role::Runner => "runner",
        Role::Admin => "admin",
    }
}

/// The verified caller ([`crate::agent::auth::authenticate`] put it in the request).
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    /// Refuses (403) unless the caller has at least `role`; `to` says what for
    /// ("start a run").
    pub fn needs(&self, role: Role, to: &str) -> Result<(), ApiError> {
        if self.0.role >= role {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "to {to} needs the {} role; token {:?} has the {} role",
            role_name(role),
            self.0.name,
            role_name(self.0.role)
        )))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "a bearer token is required"))
    }
}

/// Checks an id from a path: 1 to 64 characters of `[0-9A-Za-z._-]`, not only dots.
pub fn valid_id(what: &str, id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !id.bytes().all(|b| b == b'.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{what} {:?} is not valid: an id is 1 to {MAX_ID} characters of [0-9A-Za-z._-]",
            shown(id)
        )))
    }
}

/// The one `{id}` (or `{name}`) of a path, percent-decoded and checked by [`valid_id`].
#[derive(Debug, Clone)]
pub struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(id) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| {
                    ApiError::bad_request(format!("the id in the path: {}", e.body_text()))
                })?;
        valid_id("id", &id)?;
        Ok(Id(id))
    }
}

/// Parses a JSON body into `T`; an error names the field (`a.b[2]`), the line and column.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::bad_request(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::bad_request(format!("invalid JSON body: field `{path}`: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

fn is_json(parts: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let ct = parts
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    let essence = ct
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if essence == "application/json" {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        match ct {
            Some(c) => format!(
                "the body must be JSON: Content-Type is {:?}, send application/json",
                shown(c)
            ),
            None => "the body must be JSON: send Content-Type: application/json".into(),
        },
    ))
}

async fn bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(request, state)
        .await
        .map_err(|e| ApiError::new(e.status(), format!("the body: {}", e.body_text())))
}

/// A JSON body, with `Content-Type: application/json` (else 415).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        is_json(request.headers())?;
        let body = bytes(request, state).await?;
        parse(&body).map(Body)
    }
}

/// A JSON body that may be left out: an empty body is `T::default()`.
#[derive(Debug)]
pub struct OptionalBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let headers = request.headers().clone();
        let body = bytes(request, state).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalBody(T::default()));
        }
        is_json(&headers)?;
        parse(&body).map(OptionalBody)
    }
}

/// A query string, parsed into `T`; an error names the parameter.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::bad_request(format!("the query string: {}", e.body_text())))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_are_short_and_plain() {
        assert!(valid_id("id", "01JABCDEF.run-1_x").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "../../etc/passwd",
            "a/b",
            "a\0b",
            "é",
            &"x".repeat(65),
        ] {
            let e = valid_id("id", bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad:?}");
            assert!(e.message.contains("[0-9A-Za-z._-]"), "{}", e.message);
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct B {
        reason: Option<String>,
        inner: Option<Vec<u32>>,
    }

    #[test]
    fn body_errors_name_the_field_and_place() {
        let e = parse::<B>(br#"{"reason": "x", "inner": [1, "two"]}"#).unwrap_err();
        assert!(e.message.contains("field `inner[1]`"), "{}", e.message);
        assert!(e.message.contains("column"), "{}", e.message);
        let e = parse::<B>(br#"{"reasn": "x"}"#).unwrap_err();
        assert!(e.message.contains("unknown field `reasn`"), "{}", e.message);
        let e = parse::<B>(b"{\"reason\": \n").unwrap_err();
        assert!(e.message.contains("line 2"), "{}", e.message);
        let e = parse::<B>(br#"{} {}"#).unwrap_err();
        assert!(e.message.contains("trailing"), "{}", e.message);
    }

    #[test]
    fn shown_text_is_bounded_and_printable() {
        assert_eq!(shown("a\u{0}b"), "ab");
        assert_eq!(shown(&"y".repeat(100)).chars().count(), MAX_ID + 1);
    }
}
