//! Where an index comes from, and where its relative artefact URLs point.

use std::fmt;
use std::path::{Path, PathBuf};

use reqwest::Url;

use super::{HubError, INDEX_FILE};

/// The word that names the bundled hub in `sources`.
pub const BUNDLED: &str = "bundled";

/// An index location: the bundled hub, a local file or an http(s) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The hub compiled into the binary (`"bundled"` in `sources`); its trust is built in.
    Bundled,
    /// A local `hub-index.json` (from a path or a `file://` URL).
    Path(PathBuf),
    /// An `http://` or `https://` URL of `hub-index.json`.
    Http(Url),
}

/// Where an artefact is to be read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// An artefact compiled into the binary, by its URL in the bundled index.
    Bundled(String),
    /// A local file inside the hub's directory.
    Path(PathBuf),
    /// An http(s) URL.
    Http(Url),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Bundled(url) => write!(f, "bundled:{url}"),
            Location::Path(p) => write!(f, "{}", p.display()),
            Location::Http(u) => write!(f, "{u}"),
        }
    }
}

impl Source {
    /// Parses a configured source: `bundled`, `http(s)://…`, `file://…`, or a path. A
    /// directory (or a URL ending in `/`) means the `hub-index.json` inside it.
    pub fn parse(text: &str) -> Result<Self, HubError> {
        let bad = |reason: String| HubError::Config(format!("source `{text}`: {reason}"));
        if text == BUNDLED {
            return Ok(Source::Bundled);
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            let mut url = Url::parse(text).map_err(|e| bad(e.to_string()))?;
            if url.path().ends_with('/') {
                url = url.join(INDEX_FILE).map_err(|e| bad(e.to_string()))?;
            }
            return Ok(Source::Http(url));
        }
        let path = if text.starts_with("file://") {
            Url::parse(text)
                .map_err(|e| bad(e.to_string()))?
                .to_file_path()
                .map_err(|()| bad("not a local file URL".into()))?
        } else if text.contains("://") {
            return Err(bad(
                "only paths, file://, http:// and https:// are supported".into(),
            ));
        } else {
            PathBuf::from(text)
        };
        Ok(Source::Path(if path.is_dir() {
            path.join(INDEX_FILE)
        } else {
            path
        }))
    }

    /// Whether this is the bundled hub.
    pub fn is_bundled(&self) -> bool {
        matches!(self, Source::Bundled)
    }

    /// The signature file's location, beside the index.
    pub(crate) fn signature(&self) -> Location {
        match self {
            Source::Bundled => Location::Bundled(format!("{INDEX_FILE}.sig")),
            Source::Path(p) => Location::Path(signature_path(p)),
            Source::Http(u) => {
                let mut sig = u.clone();
                let path = format!("{}.sig", u.path());
                sig.set_path(&path);
                Location::Http(sig)
            }
        }
    }

    /// The index's location.
    pub(crate) fn index(&self) -> Location {
        match self {
            Source::Bundled => Location::Bundled(INDEX_FILE.to_string()),
            Source::Path(p) => Location::Path(p.clone()),
            Source::Http(u) => Location::Http(u.clone()),
        }
    }

    /// A stable key for per-source cache state.
    pub(crate) fn key(&self) -> String {
        self.to_string()
    }

    /// Resolves an artefact URL from the index against this source. Refuses URLs that would
    /// leave the hub's directory: absolute paths, `..` segments, backslashes, and schemes other
    /// than http(s). `package` and `version` name the release in the error.
    pub(crate) fn artifact(
        &self,
        url: &str,
        package: &str,
        version: &str,
    ) -> Result<Location, HubError> {
        let escape = |reason: &str| HubError::PathEscape {
            package: package.to_string(),
            version: version.to_string(),
            url: url.to_string(),
            reason: reason.to_string(),
        };
        match check_artifact_url(url) {
            Err(reason) => Err(escape(reason)),
            Ok(UrlForm::Absolute(u)) => Ok(Location::Http(u)),
            Ok(UrlForm::Relative) => match self {
                Source::Bundled => Ok(Location::Bundled(url.to_string())),
                Source::Path(index) => {
                    let dir = index.parent().unwrap_or(Path::new("."));
                    Ok(Location::Path(dir.join(url)))
                }
                Source::Http(index) => index
                    .join(url)
                    .map(Location::Http)
                    .map_err(|e| escape(&e.to_string())),
            },
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Bundled => f.write_str("the bundled hub"),
            Source::Path(p) => write!(f, "{}", p.display()),
            Source::Http(u) => write!(f, "{u}"),
        }
    }
}

/// The detached signature file of the index at `index`: the same name with `.sig` appended
/// (`hub-index.json.sig` for the usual name).
pub fn signature_path(index: &Path) -> PathBuf {
    let mut name = index.as_os_str().to_os_string();
    name.push(".sig");
    PathBuf::from(name)
}

/// The accepted forms of an artefact URL.
pub(crate) enum UrlForm {
    /// http(s), used as is.
    Absolute(Url),
    /// Relative to the index, inside its directory.
    Relative,
}

/// Classifies an artefact URL, or says why it escapes the hub.
pub(crate) fn check_artifact_url(url: &str) -> Result<UrlForm, &'static str> {
    match Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => return Ok(UrlForm::Absolute(u)),
        Ok(_) => return Err("only relative paths and http(s) URLs are allowed"),
        Err(_) => {}
    }
    if url.starts_with('/') {
        return Err("absolute paths are not allowed");
    }
    if url.contains('\\') {
        return Err("backslashes are not allowed");
    }
    if url.contains('?') || url.contains('#') {
        return Err("queries and fragments are not allowed in relative URLs");
    }
    let decoded = url
        .to_ascii_lowercase()
        .replace("%2e", ".")
        .replace("%2f", "/");
    if decoded
        .split('/')
        .any(|segment| segment == ".." || segment.is_empty())
    {
        return Err("`..` and empty path segments are not allowed");
    }
    Ok(UrlForm::Relative)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn relative_urls_stay_inside_the_hub() {
        for bad in [
            "../x.wasm",
            "a/../../x.wasm",
            "/etc/passwd",
            "file:///etc/passwd",
            "%2e%2e/x.wasm",
            "a\\..\\x",
            "//evil.example/x",
            "a//b",
        ] {
            assert!(check_artifact_url(bad).is_err(), "{bad} accepted");
        }
        for good in [
            "x.wasm",
            "components/x-0.1.0.wasm",
            "https://cdn.example/x.wasm",
        ] {
            assert!(check_artifact_url(good).is_ok(), "{good} refused");
        }
    }

    #[test]
    fn http_sources_resolve_relative_urls_and_signatures() {
        let source = Source::parse("http://127.0.0.1:8/hub/").unwrap();
        assert_eq!(source.to_string(), "http://127.0.0.1:8/hub/hub-index.json");
        assert_eq!(
            source.signature().to_string(),
            "http://127.0.0.1:8/hub/hub-index.json.sig"
        );
        let loc = source.artifact("components/a.wasm", "a", "1.0.0").unwrap();
        assert_eq!(loc.to_string(), "http://127.0.0.1:8/hub/components/a.wasm");
    }
}
