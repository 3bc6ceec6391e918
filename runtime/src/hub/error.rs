//! Why the hub refused something.

/// A refusal or failure of the hub. Every message names the hub, package, URL or key concerned
/// and the precise reason, so an operator can act on it without reading code.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Downloaded or cached bytes do not hash to the digest the index declares.
    #[error("{what}: digest mismatch: the index says {expected}, the bytes hash to {actual}")]
    DigestMismatch {
        /// What was checked (package@version from URL).
        what: String,
        /// The digest the index declares.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// Downloaded or cached bytes are not the size the index declares.
    #[error("{what}: size mismatch: the index says {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What was checked.
        what: String,
        /// The size the index declares.
        expected: u64,
        /// The size received (or "more than ..." as a number when the download was cut off).
        actual: u64,
    },
    /// No signature file, or an empty one, while signatures are required.
    #[error(
        "index {index}: no signature from a trusted key (no signatures in {index}.sig), and {required} required; \
         sign it and trust the key ([[hub.trusted_keys]]), or set required_signatures = 0 for this source to accept it unsigned"
    )]
    MissingSignature {
        /// The index location.
        index: String,
        /// How many signatures the configuration requires.
        required: usize,
    },
    /// A signature made with a trusted key id does not verify: the index or its signature
    /// was altered.
    #[error(
        "index {index}: the signature by trusted key `{key_id}` does not verify; the index or its signature was altered"
    )]
    BadSignature {
        /// The index location.
        index: String,
        /// The trusted key id the signature claims.
        key_id: String,
    },
    /// Every signature was made by a key the configuration does not trust.
    #[error(
        "index {index}: no signature from a trusted key: signed only by keys that are not trusted: {key_ids}"
    )]
    UntrustedSigner {
        /// The index location.
        index: String,
        /// The key ids found, comma separated.
        key_ids: String,
    },
    /// Fewer valid signatures from distinct trusted keys than required.
    #[error(
        "index {index}: {valid} valid signature(s) from distinct trusted keys, {required} required"
    )]
    NotEnoughSignatures {
        /// The index location.
        index: String,
        /// Valid signatures from distinct trusted keys.
        valid: usize,
        /// How many the configuration requires.
        required: usize,
    },
    /// The signature file is not a JSON list of `{key_id, signature}`.
    #[error("index {index}: malformed signature file: {reason}")]
    MalformedSignature {
        /// The index location.
        index: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A source other than the bundled hub serves an index with the bundled hub's id.
    #[error(
        "index {index}: hub id `{hub}` is reserved for the bundled hub; another source cannot use it"
    )]
    ReservedHubId {
        /// The index location.
        index: String,
        /// The hub id it claims.
        hub: String,
    },
    /// Nothing could be verified: no trusted keys are configured.
    #[error(
        "{index}: nothing was verified: no trusted keys are configured (add [[hub.trusted_keys]] to the --config file)"
    )]
    NoTrust {
        /// What was to be verified.
        index: String,
    },
    /// The index has a lower serial than one already seen for the same hub id.
    #[error(
        "hub `{hub}`: index serial {got} is lower than serial {seen} already seen; refusing a rollback to an older index"
    )]
    Rollback {
        /// The hub id.
        hub: String,
        /// The highest serial seen before.
        seen: u64,
        /// The serial of the index offered.
        got: u64,
    },
    /// The index has the serial of an index already seen, but different bytes.
    #[error(
        "hub `{hub}`: serial {serial} was already seen with different content; a changed index must get a higher serial"
    )]
    SerialReused {
        /// The hub id.
        hub: String,
        /// The reused serial.
        serial: u64,
    },
    /// The index is past its `expires` time.
    #[error(
        "hub `{hub}`: index expired at {expires}; refusing it (allow_expired = true, or --allow-expired, accepts it)"
    )]
    Expired {
        /// The hub id.
        hub: String,
        /// The `expires` field.
        expires: String,
    },
    /// A URL in the index points outside the hub's directory or uses a refused scheme.
    #[error("{package}@{version}: URL `{url}` escapes the hub: {reason}")]
    PathEscape {
        /// The package name.
        package: String,
        /// The release version.
        version: String,
        /// The URL as written in the index.
        url: String,
        /// Why it is refused.
        reason: String,
    },
    /// The matching release is yanked and was not pinned exactly.
    #[error(
        "{package}@{version} is yanked ({reason}); pin it exactly (name@={version}, a digest, or [hub.pins]) to use it anyway"
    )]
    Yanked {
        /// The package name.
        package: String,
        /// The yanked version.
        version: String,
        /// The reason given in the index.
        reason: String,
    },
    /// Nothing matches the reference.
    #[error("no package matches `{reference}`: {reason}")]
    NotFound {
        /// The reference asked for.
        reference: String,
        /// What was looked at.
        reason: String,
    },
    /// The reference does not parse.
    #[error("invalid package reference `{reference}`: {reason}")]
    BadReference {
        /// The reference given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The package is refused by the configured allow/deny patterns.
    #[error("{package} is refused by curation: {reason}")]
    Denied {
        /// The package name.
        package: String,
        /// Which rule refused it.
        reason: String,
    },
    /// The release declares a capability above the configured ceiling.
    #[error(
        "{package}@{version} declares capability `{capability}`, which is above the configured capability ceiling [{ceiling}]"
    )]
    AboveCeiling {
        /// The package name.
        package: String,
        /// The release version.
        version: String,
        /// The capability declared.
        capability: String,
        /// The configured ceiling, comma separated.
        ceiling: String,
    },
    /// The component imports an interface its declared capabilities do not cover.
    #[error(
        "{package}@{version} imports `{import}`, beyond its declared capabilities [{declared}]"
    )]
    UndeclaredImport {
        /// The package name.
        package: String,
        /// The release version.
        version: String,
        /// The offending import.
        import: String,
        /// The declared capabilities, comma separated.
        declared: String,
    },
    /// A component `hub build` made was refused by the host it was described in: an export or
    /// import outside the contract, imports beyond what its `describe()` declares, a trap.
    #[error("{package}@{version}: the built component is refused: {reason}")]
    BuiltRefused {
        /// The package name.
        package: String,
        /// The version built.
        version: String,
        /// What the host said.
        reason: String,
    },
    /// The component's imports could not be read.
    #[error("{package}@{version}: cannot read the component's imports: {reason}")]
    Inspect {
        /// The package name.
        package: String,
        /// The release version.
        version: String,
        /// The inspector's error.
        reason: String,
    },
    /// The index is not valid JSON, does not follow the schema, or is inconsistent.
    #[error("index {index} is invalid: {reason}")]
    InvalidIndex {
        /// The index location.
        index: String,
        /// The first problems found.
        reason: String,
    },
    /// The index does not support this runtime version.
    #[error("hub `{hub}` supports runtime {required}, this runtime is {running}")]
    UnsupportedRuntime {
        /// The hub id.
        hub: String,
        /// The index's `runtime` requirement.
        required: String,
        /// This runtime's version.
        running: String,
    },
    /// A download failed (connection, HTTP status, timeout).
    #[error("fetching {url}: {reason}")]
    Fetch {
        /// The URL or path.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A download is larger than its limit.
    #[error("{url}: larger than the limit of {limit} bytes")]
    TooLarge {
        /// The URL or path.
        url: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// Offline, and the thing is not in the cache.
    #[error("{what}: not in the cache, and offline")]
    NotCached {
        /// What was wanted.
        what: String,
    },
    /// The configuration is invalid.
    #[error("hub configuration: {0}")]
    Config(String),
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl HubError {
    /// An [`HubError::Io`] naming what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        HubError::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether this is a refusal for security reasons (integrity, authenticity, freshness,
    /// policy), as opposed to a transport, I/O or usage problem.
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            HubError::Fetch { .. }
                | HubError::NotCached { .. }
                | HubError::Config(_)
                | HubError::Io { .. }
                | HubError::BadReference { .. }
                | HubError::NotFound { .. }
        )
    }
}
