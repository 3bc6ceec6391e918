//! Bearer tokens: random, stored hashed, each with a role and a team.
//!
//! STUB (owner: transport helper): the types are the contract other modules build on.

use serde::{Deserialize, Serialize};

/// What a token may do; each role may do what the roles before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads: executions, logs, the hub, metrics, the live view.
    Viewer,
    /// Also starts, heartbeats and stops experiments and runs of its team; pulls from the hub.
    Runner,
    /// Also sets and clears the emergency stop, syncs hubs; acts for every team.
    Admin,
}

/// Who is calling: the verified token's name, role and team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The token's name (never the token).
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its team.
    pub team: String,
}

impl Principal {
    /// Whether this principal may act (start, stop, heartbeat, read) on something owned by
    /// `team`: an admin for every team, anyone else only for its own.
    pub fn acts_for(&self, team: Option<&str>) -> bool {
        self.role == Role::Admin || team == Some(self.team.as_str())
    }
}

use crate::agent::error::ApiError;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// One entry of the tokens file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// A name for people and logs.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its team.
    pub team: String,
    /// SHA-256 of the token, hex.
    pub sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

/// The tokens the agent accepts, by hash.
#[derive(Debug, Default)]
pub struct Tokens {
    by_hash: HashMap<String, Principal>,
}

impl Tokens {
    /// Reads a tokens file (TOML, `[[token]]` tables). Sync: call from the blocking pool or
    /// before the runtime serves.
    pub fn load(path: &Path) -> anyhow::Result<Tokens> {
        let text = std::fs::read_to_string(path)?;
        let file: TokensFile = toml::from_str(&text)?;
        Ok(Tokens::from_entries(file.token))
    }

    /// Tokens from entries.
    pub fn from_entries(entries: Vec<TokenEntry>) -> Tokens {
        let by_hash = entries
            .into_iter()
            .map(|e| {
                (
                    e.sha256.to_ascii_lowercase(),
                    Principal {
                        name: e.name,
                        role: e.role,
                        team: e.team,
                    },
                )
            })
            .collect();
        Tokens { by_hash }
    }

    /// The principal a presented token stands for.
    pub fn verify(&self, token: &str) -> Option<Principal> {
        let hash = hex::encode(Sha256::digest(token.as_bytes()));
        self.by_hash.get(&hash).cloned()
    }
}

/// Middleware: a request without a valid `Authorization: Bearer` token gets 401 with a JSON
/// reason; with one, the [`Principal`] is added to its extensions.
pub async fn authenticate(
    State(tokens): State<Arc<Tokens>>,
    mut request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "a bearer token is required")
            .into_response();
    };
    match tokens.verify(token.trim()) {
        Some(p) => {
            request.extensions_mut().insert(p);
            next.run(request).await
        }
        None => ApiError::new(StatusCode::UNAUTHORIZED, "the token is not valid").into_response(),
    }
}
