//! The agent's hubs, kept in sync: a periodic sync replaces the index set only when it
//! succeeds, so a failed sync keeps the last good index.
//!
//! STUB (owner: api helper).

use crate::hub::{Hub, HubConfig};
use std::sync::{Arc, RwLock};

/// The hub set the agent resolves references in right now.
pub struct Hubs {
    config: HubConfig,
    current: RwLock<Option<Arc<Hub>>>,
}

impl Hubs {
    /// Opens the hubs (a first sync); problems are warnings.
    pub async fn open(config: HubConfig) -> (Hubs, Vec<String>) {
        let (hub, problems) = match crate::hub::open_hub(config.clone()).await {
            Ok((h, p)) => (Some(Arc::new(h)), p),
            Err(e) => (None, vec![e.to_string()]),
        };
        (
            Hubs {
                config,
                current: RwLock::new(hub),
            },
            problems,
        )
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
}
