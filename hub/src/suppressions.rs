//! Suppressions of Settings (`spec.suppressions`): the hub stores the ones the Settings
//! declare and removes the ones they no longer declare, whenever the Settings change (and
//! every half minute, so a failed write is tried again). Every replica does the same; the
//! ids are derived from the Setting and the entry, so they agree.

use falconer_delivery::declared::Observed;
use falconer_store::{Store, StoreError, Suppression};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::time::Duration;
use tokio::sync::watch;

/// How often the declared suppressions are written again without a change of Settings.
const RESYNC: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    /// stored, refused (invalid: the log says why)
    state: &'static str,
}

pub struct DeclaredSuppressions {
    store: Store,
    settings: watch::Receiver<Observed>,
    declared: Family<StateLabel, Gauge>,
}

impl DeclaredSuppressions {
    pub fn new(
        store: Store,
        settings: watch::Receiver<Observed>,
        registry: &mut Registry,
    ) -> DeclaredSuppressions {
        let declared = Family::<StateLabel, Gauge>::default();
        registry.register(
            "falconer_declared_suppressions",
            "Suppressions of Settings: stored, or refused as invalid (the log says why)",
            declared.clone(),
        );
        DeclaredSuppressions {
            store,
            settings,
            declared,
        }
    }

    /// The suppressions to store from what the Settings declare, and the refused ones'
    /// reasons (each naming the Setting and field).
    pub fn wanted(
        observed: &Observed,
        now: chrono::DateTime<chrono::Utc>,
        max_days: u32,
    ) -> (Vec<Suppression>, Vec<String>) {
        let mut wanted = Vec::new();
        let mut refused = Vec::new();
        for (i, (setting, declared)) in observed.suppressions.iter().enumerate() {
            let index = observed.suppressions[..i]
                .iter()
                .filter(|(s, _)| s == setting)
                .count();
            let at = format!("Setting {setting} spec.suppressions[{index}]");
            let duplicate = observed.suppressions[..i]
                .iter()
                .any(|(s, d)| s == setting && d.name == declared.name);
            if duplicate {
                refused.push(format!("{at}.name: `{}` is used twice", declared.name));
                continue;
            }
            match declared.spec().validate_declared(&at, now, max_days) {
                Ok(()) => wanted.push(declared.stored(setting, now)),
                Err(reason) => refused.push(reason),
            }
        }
        (wanted, refused)
    }

    async fn sync_once(&self) -> Result<(), StoreError> {
        let observed = self.settings.borrow().clone();
        if !observed.synced {
            return Ok(());
        }
        let now = chrono::Utc::now();
        let (wanted, refused) = Self::wanted(&observed, now, self.store.max_suppression_days());
        for reason in &refused {
            tracing::warn!(%reason, "Ignoring a Setting's suppression");
        }
        let stored = wanted.len();
        let (created, deleted) = self.store.sync_declared_suppressions(wanted).await?;
        if created > 0 || deleted > 0 {
            tracing::info!(created, deleted, "Stored the suppressions of the Settings");
        }
        let gauge = |state| self.declared.get_or_create(&StateLabel { state }).clone();
        gauge("stored").set(i64::try_from(stored).unwrap_or(i64::MAX));
        gauge("refused").set(i64::try_from(refused.len()).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Follows the Settings until the task is dropped.
    pub async fn run(mut self) {
        loop {
            if let Err(error) = self.sync_once().await {
                tracing::warn!(%error, "Could not store the suppressions of the Settings; trying again");
            }
            tokio::select! {
                changed = self.settings.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep(RESYNC) => {}
            }
        }
    }
}
