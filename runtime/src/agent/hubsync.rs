//! The agent's hubs, kept in sync: a periodic sync builds a fresh [`Hub`] from the
//! configuration and replaces the current one only when it loaded at least one index, so a
//! failed sync keeps the last good index (and says so in [`Hubs::last_sync`]).

use super::metrics::Metrics;
use crate::hub::{Hub, HubConfig, HubError, Kind, catalog};
use serde::Serialize;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The shortest interval between periodic syncs: a smaller setting would hammer the sources.
pub const MIN_SYNC_INTERVAL: Duration = Duration::from_secs(10);

/// One index in use, as `GET /v1/status` and `POST /v1/hub/sync` show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IndexInUse {
    /// The hub id.
    pub hub: String,
    /// Its serial.
    pub serial: u64,
    /// Where it was configured to come from.
    pub source: String,
    /// Whether it is the cached copy rather than what the source just served.
    pub from_cache: bool,
    /// Packages it lists.
    pub packages: usize,
}

/// What the last sync did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SyncStatus {
    /// When it ended, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Whether it loaded at least one index (and so replaced the index set).
    pub ok: bool,
    /// Sources that failed or fell back to the cache, one sentence each.
    pub problems: Vec<String>,
    /// The indexes in use now (the last good ones after a failed sync).
    pub indexes: Vec<IndexInUse>,
    /// Syncs that failed in a row since the last good one.
    pub failures_in_a_row: u64,
}

/// The hub set the agent resolves references in right now.
pub struct Hubs {
    config: HubConfig,
    current: RwLock<Option<Arc<Hub>>>,
    last: Mutex<SyncStatus>,
    /// One sync at a time: a manual sync during a periodic one waits for it.
    syncing: tokio::sync::Mutex<()>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A source as viewers may see it: an URL without credentials, query or fragment (a private
/// hub's URL may carry a secret).
fn shown_source(source: &crate::hub::Source) -> String {
    match source {
        crate::hub::Source::Http(url) => {
            let mut url = url.clone();
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        other => other.to_string(),
    }
}

fn in_use(hub: Option<&Hub>) -> Vec<IndexInUse> {
    hub.map(|h| {
        h.indexes()
            .iter()
            .map(|l| IndexInUse {
                hub: l.index.hub.id.clone(),
                serial: l.index.serial,
                source: shown_source(&l.source),
                from_cache: l.from_cache,
                packages: l.index.packages.len(),
            })
            .collect()
    })
    .unwrap_or_default()
}

impl Hubs {
    /// Opens the hubs (a first sync); problems are warnings.
    pub async fn open(config: HubConfig) -> (Hubs, Vec<String>) {
        let hubs = Hubs {
            config,
            current: RwLock::new(None),
            last: Mutex::new(SyncStatus {
                at_ms: 0,
                ok: false,
                problems: Vec::new(),
                indexes: Vec::new(),
                failures_in_a_row: 0,
            }),
            syncing: tokio::sync::Mutex::new(()),
        };
        let status = hubs.sync().await;
        (hubs, status.problems)
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    /// The hub set now (`None` when nothing could ever be loaded).
    pub fn current(&self) -> Option<Arc<Hub>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// What the last sync did.
    pub fn last_sync(&self) -> SyncStatus {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Syncs now on a fresh [`Hub`] built from the configuration; it replaces the current one
    /// only when it loaded at least one index. Returns what it did.
    pub async fn sync(&self) -> SyncStatus {
        let _one = self.syncing.lock().await;
        let (ok, problems) = match crate::hub::open_hub(self.config.clone()).await {
            Ok((hub, problems)) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(hub));
                (true, problems)
            }
            Err(e) => {
                let mut problems = vec![format!("the sync loaded no index: {e}")];
                if self.current().is_some() {
                    problems.push("keeping the last good index set".into());
                }
                (false, problems)
            }
        };
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        *last = SyncStatus {
            at_ms: now_ms(),
            ok,
            problems,
            indexes: in_use(self.current().as_deref()),
            failures_in_a_row: if ok { 0 } else { last.failures_in_a_row + 1 },
        };
        last.clone()
    }

    /// Syncs every `interval` (at least [`MIN_SYNC_INTERVAL`]) until the task is aborted,
    /// counting each outcome in `metrics`.
    pub fn spawn_sync(
        self: Arc<Self>,
        interval: Duration,
        metrics: Arc<Metrics>,
    ) -> tokio::task::JoinHandle<()> {
        let interval = interval.max(MIN_SYNC_INTERVAL);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is at once: `open` has just synced.
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let status = self.sync().await;
                metrics.hub_synced(status.ok);
                if !status.ok {
                    tracing::warn!("hub sync failed: {}", status.problems.join("; "));
                }
            }
        })
    }

    /// The packages of the current indexes matching `query` and `kind` (see
    /// [`catalog::list`]); empty when no index is loaded.
    pub fn list(&self, query: Option<&str>, kind: Option<Kind>) -> Vec<catalog::Listed> {
        self.current()
            .map(|h| catalog::list(&h, query, kind))
            .unwrap_or_default()
    }

    /// The hub set, or the error that says none is loaded.
    pub fn require(&self) -> Result<Arc<Hub>, HubError> {
        self.current().ok_or_else(|| HubError::NotFound {
            reference: "hub index".into(),
            reason: "no hub index is loaded (see GET /v1/status)".into(),
        })
    }
}
