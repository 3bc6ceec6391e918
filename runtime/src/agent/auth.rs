//! Bearer tokens: random, stored hashed, each with a role and a team.
//!
//! A token is `flt_` followed by 32 random bytes in unpadded base64url; the tokens file keeps
//! only its SHA-256 (`[[token]] name role team sha256`), so reading the file does not give a
//! token. The file must belong to root or to the agent's user and be neither writable by
//! others nor readable by the world. Tokens are never logged; errors name the entry, never the
//! token.

use crate::agent::config::line_col;
use crate::agent::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The prefix of every token (so secret scanners and people recognise one).
pub const TOKEN_PREFIX: &str = "flt_";
/// The longest `Authorization` header looked at; a token is 47 bytes.
pub const MAX_AUTHORIZATION: usize = 512;
/// The largest tokens file read.
pub const MAX_TOKENS_FILE: u64 = 1 << 20;

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

impl Role {
    /// `viewer`, `runner` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Runner => "runner",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "runner" => Ok(Role::Runner),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "role {other:?} is not one of viewer, runner, admin"
            )),
        }
    }
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

#[derive(Debug, Default, Deserialize, Serialize)]
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

/// A new random token: `flt_` + 32 bytes from the OS's generator, base64url.
pub fn mint() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The hex SHA-256 a tokens file keeps for `token`.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Checks a name or team: 1 to 64 characters of letters, digits, `-`, `_`, `.`, `@`.
fn check_word(what: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {:?} must be 1 to 64 letters, digits, '-', '_', '.' or '@'",
            value.chars().take(80).collect::<String>()
        ))
    }
}

fn check_entries(entries: &[TokenEntry]) -> Result<(), String> {
    let mut names = std::collections::BTreeSet::new();
    let mut hashes = std::collections::BTreeSet::new();
    for (i, e) in entries.iter().enumerate() {
        let which = format!("token #{} ({:?})", i + 1, e.name);
        check_word("name", &e.name).map_err(|m| format!("{which}: {m}"))?;
        check_word("team", &e.team).map_err(|m| format!("{which}: {m}"))?;
        if e.sha256.len() != 64 || !e.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{which}: sha256 must be 64 hex digits (the SHA-256 of the token, never the token)"
            ));
        }
        if !names.insert(e.name.as_str()) {
            return Err(format!("{which}: the name is used twice"));
        }
        if !hashes.insert(e.sha256.to_ascii_lowercase()) {
            return Err(format!("{which}: the same token hash is listed twice"));
        }
    }
    Ok(())
}

/// Refuses a tokens file others may change or the world may read: someone who can write it
/// grants themselves admin; hashes of short tokens could be guessed offline.
fn check_file_mode(path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt as _;
    let uid = meta.uid();
    let me = nix::unistd::geteuid().as_raw();
    if uid != 0 && uid != me {
        return Err(format!(
            "{} belongs to uid {uid}, neither root nor the agent's user ({me}): refusing tokens others control",
            path.display()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "{} has mode {mode:04o}: writable by group or others, who could grant themselves admin; chmod 600 it",
            path.display()
        ));
    }
    if mode & 0o004 != 0 {
        return Err(format!(
            "{} has mode {mode:04o}: readable by everyone; chmod 600 it",
            path.display()
        ));
    }
    Ok(())
}

/// Reads and parses a tokens file; errors name the file and, when known, line and column.
fn read_file(path: &Path, check_mode: bool) -> anyhow::Result<TokensFile> {
    let meta = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("cannot read tokens file {}: {e}", path.display()))?;
    if !meta.is_file() {
        anyhow::bail!("tokens file {} is not a regular file", path.display());
    }
    if check_mode {
        check_file_mode(path, &meta).map_err(anyhow::Error::msg)?;
    }
    let bytes = crate::component::read_bounded(path, MAX_TOKENS_FILE, "tokens file")?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("tokens file {} is not UTF-8 text", path.display()))?;
    let file: TokensFile = toml::from_str(&text).map_err(|e| {
        let at = e
            .span()
            .map(|s| {
                let (l, c) = line_col(&text, s.start);
                format!(":{l}:{c}")
            })
            .unwrap_or_default();
        anyhow::anyhow!("{}{at}: {}", path.display(), e.message())
    })?;
    check_entries(&file.token).map_err(|m| anyhow::anyhow!("{}: {m}", path.display()))?;
    Ok(file)
}

impl Tokens {
    /// Reads a tokens file (TOML, `[[token]]` tables): at most 1 MiB, owned by root or the
    /// agent's user, not writable by group or others, not world-readable. Sync: call from the
    /// blocking pool or before the runtime serves.
    pub fn load(path: &Path) -> anyhow::Result<Tokens> {
        Ok(Tokens::from_entries(read_file(path, true)?.token))
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

    /// How many tokens are accepted.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether no token is accepted.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The principal a presented token stands for.
    pub fn verify(&self, token: &str) -> Option<Principal> {
        self.by_hash.get(&hash(token)).cloned()
    }

    /// The principal an `Authorization` header value stands for, or why not (the 401 message).
    pub fn authorize(&self, header: Option<&HeaderValue>) -> Result<Principal, &'static str> {
        let Some(value) = header else {
            return Err("no bearer token: send `Authorization: Bearer <token>`");
        };
        if value.len() > MAX_AUTHORIZATION {
            return Err("malformed Authorization header: longer than 512 bytes");
        }
        let text = value
            .to_str()
            .map_err(|_| "malformed Authorization header: not visible ASCII")?;
        let Some((scheme, token)) = text.split_once(' ') else {
            return Err("malformed Authorization header: expected `Bearer <token>`");
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err("malformed Authorization header: expected `Bearer <token>`");
        }
        let token = token.trim();
        if token.is_empty() || token.contains(' ') {
            return Err("malformed Authorization header: expected `Bearer <token>`");
        }
        self.verify(token).ok_or("the token is not valid")
    }
}

/// A 401 answer naming `reason`, with `WWW-Authenticate: Bearer`.
pub fn unauthorized(reason: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, reason).into_response();
    let challenge = if reason.starts_with("no bearer") {
        HeaderValue::from_static("Bearer")
    } else {
        HeaderValue::from_static("Bearer error=\"invalid_token\"")
    };
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, challenge);
    response
}

/// Middleware: a request without a valid `Authorization: Bearer` token gets 401 with a JSON
/// reason; with one, the [`Principal`] is added to its extensions.
pub async fn authenticate(
    State(tokens): State<Arc<Tokens>>,
    mut request: Request,
    next: Next,
) -> Response {
    match tokens.authorize(request.headers().get(header::AUTHORIZATION)) {
        Ok(p) => {
            request.extensions_mut().insert(p);
            next.run(request).await
        }
        Err(reason) => unauthorized(reason),
    }
}

/// The entries of a tokens file, for `faultline agent token list` (no file: none). Sync.
pub fn list(path: &Path) -> anyhow::Result<Vec<TokenEntry>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    Ok(read_file(path, true)?.token)
}

/// Mints a token, appends its hashed entry to the tokens file (created 0600 when missing;
/// replaced atomically) and returns the token, which is stored nowhere. Sync.
pub fn add(path: &Path, name: &str, role: Role, team: &str) -> anyhow::Result<String> {
    check_word("name", name).map_err(anyhow::Error::msg)?;
    check_word("team", team).map_err(anyhow::Error::msg)?;
    let mut file = if path.exists() {
        read_file(path, true)?
    } else {
        TokensFile::default()
    };
    if file.token.iter().any(|e| e.name == name) {
        anyhow::bail!(
            "{}: a token named {name:?} exists; revoke it first or choose another name",
            path.display()
        );
    }
    let token = mint();
    file.token.push(TokenEntry {
        name: name.to_string(),
        role,
        team: team.to_string(),
        sha256: hash(&token),
    });
    write_file(path, &file)?;
    Ok(token)
}

/// Removes the token named `name`; errors when there is none. Sync.
pub fn revoke(path: &Path, name: &str) -> anyhow::Result<TokenEntry> {
    let mut file = read_file(path, true)?;
    let Some(i) = file.token.iter().position(|e| e.name == name) else {
        anyhow::bail!("{}: no token named {name:?}", path.display());
    };
    let gone = file.token.remove(i);
    write_file(path, &file)?;
    Ok(gone)
}

/// Writes the file through a 0600 temporary file in the same directory, synced, renamed over.
fn write_file(path: &Path, file: &TokensFile) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let text = format!(
        "# Faultline agent tokens: SHA-256 hashes only. Managed by `faultline agent token`.\n{}",
        toml::to_string(file)?
    );
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tokens-")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(|e| anyhow::anyhow!("cannot write in {}: {e}", dir.display()))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| anyhow::anyhow!("cannot replace {}: {}", path.display(), e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn minted_tokens_are_prefixed_random_base64url() {
        let (a, b) = (mint(), mint());
        assert_ne!(a, b);
        assert!(a.starts_with("flt_") && a.len() == 4 + 43, "{a}");
        assert!(
            a[4..]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn the_header_is_checked_before_any_token_is_looked_up() {
        let token = mint();
        let tokens = Tokens::from_entries(vec![TokenEntry {
            name: "ci".into(),
            role: Role::Runner,
            team: "red".into(),
            sha256: hash(&token),
        }]);
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(
            tokens
                .authorize(Some(&h(&format!("Bearer {token}"))))
                .unwrap()
                .name,
            "ci"
        );
        assert_eq!(
            tokens
                .authorize(Some(&h(&format!("bearer  {token}"))))
                .unwrap()
                .team,
            "red"
        );
        assert!(
            tokens
                .authorize(None)
                .unwrap_err()
                .starts_with("no bearer token")
        );
        assert_eq!(
            tokens.authorize(Some(&h("Bearer flt_nope"))).unwrap_err(),
            "the token is not valid"
        );
        for bad in ["Basic abc", "Bearer", "Bearer a b", token.as_str()] {
            assert!(
                tokens
                    .authorize(Some(&h(bad)))
                    .unwrap_err()
                    .starts_with("malformed"),
                "{bad}"
            );
        }
        let long = format!("Bearer {}", "a".repeat(600));
        assert!(
            tokens
                .authorize(Some(&h(&long)))
                .unwrap_err()
                .contains("longer than 512")
        );
    }

    #[test]
    fn add_list_revoke_keep_only_hashes_in_a_0600_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        let t = add(&path, "alice", Role::Admin, "red").unwrap();
        add(&path, "bob", Role::Viewer, "blue").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&t) && !text.contains(&t[4..]), "{text}");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let loaded = Tokens::load(&path).unwrap();
        assert_eq!(loaded.verify(&t).unwrap().role, Role::Admin);
        assert!(
            add(&path, "alice", Role::Viewer, "red")
                .unwrap_err()
                .to_string()
                .contains("exists")
        );
        assert_eq!(list(&path).unwrap().len(), 2);
        assert_eq!(revoke(&path, "alice").unwrap().name, "alice");
        assert!(Tokens::load(&path).unwrap().verify(&t).is_none());
        assert!(revoke(&path, "alice").is_err());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Tokens::load(&path).unwrap_err().to_string();
        assert!(e.contains("readable by everyone"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o620)).unwrap();
        let e = Tokens::load(&path).unwrap_err().to_string();
        assert!(e.contains("writable by group or others"), "{e}");
    }

    #[test]
    fn bad_entries_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.toml");
        std::fs::write(
            &path,
            "[[token]]\nname = \"a\"\nrole = \"god\"\nteam = \"r\"\nsha256 = \"00\"\n",
        )
        .unwrap();
        let e = read_file(&path, false).unwrap_err().to_string();
        assert!(e.contains("tokens.toml:3:8"), "{e}");
        std::fs::write(
            &path,
            "[[token]]\nname = \"a\"\nrole = \"admin\"\nteam = \"r\"\nsha256 = \"00\"\n",
        )
        .unwrap();
        let e = read_file(&path, false).unwrap_err().to_string();
        assert!(
            e.contains("token #1 (\"a\"): sha256 must be 64 hex digits"),
            "{e}"
        );
    }
}
