//! Writing each consumer's delivery state into its Setting's `status.consumers` (server-side
//! apply under the field manager `falconer-hub`; see `settings` for the whole picture).

use super::settings::{FIELD_MANAGER, Observed, pending};
use crate::declared::{ConsumerReport, Origin};
use crate::error::DeliveryError;
use falconer_model::crd::{ConsumerStatus, Setting};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// `status.consumers` of each existing Setting: one entry per consumer it declares, from the
/// watcher's problems (which win: they say what runs now), else the engine's report, else
/// `Pending`. In spec order, `updatedAt` unset. Reports of consumers or Settings that no
/// longer exist are dropped; a Setting without consumers gets an empty list, so entries the
/// hub wrote before are removed.
pub fn statuses(
    observed: &Observed,
    reports: &[(Origin, ConsumerReport)],
) -> BTreeMap<String, Vec<ConsumerStatus>> {
    let by_key = |list: &[(Origin, ConsumerReport)]| {
        let mut found: BTreeMap<(String, String), ConsumerReport> = BTreeMap::new();
        for (origin, report) in list {
            if let Origin::Setting(setting) = origin {
                found
                    .entry((setting.clone(), report.name.clone()))
                    .or_insert_with(|| report.clone());
            }
        }
        found
    };
    let problems = by_key(&observed.problems);
    let engine = by_key(reports);
    observed
        .settings
        .iter()
        .map(|(setting, declared)| {
            let consumers = declared
                .iter()
                .map(|name| {
                    let key = (setting.clone(), name.clone());
                    let mut report = problems
                        .get(&key)
                        .or_else(|| engine.get(&key))
                        .cloned()
                        .unwrap_or_else(|| pending(name));
                    report.updated_at = None;
                    report
                })
                .collect();
            (setting.clone(), consumers)
        })
        .collect()
}

/// The server-side apply body for one Setting: only `status.consumers`, each stamped `now`.
pub fn status_patch(consumers: &[ConsumerStatus], now: &Time) -> Value {
    let consumers: Vec<ConsumerStatus> = consumers
        .iter()
        .map(|c| ConsumerStatus {
            updated_at: Some(now.clone()),
            ..c.clone()
        })
        .collect();
    // With no consumers, `status` is applied empty: the hub then owns no entry, and the API
    // server removes those it owned before.
    let status = if consumers.is_empty() {
        json!({})
    } else {
        json!({ "consumers": consumers })
    };
    json!({
        "apiVersion": Setting::api_version(&()),
        "kind": Setting::kind(&()),
        "status": status,
    })
}

/// Writes `status.consumers` of Settings, each only when it changed since the last write.
pub struct StatusWriter {
    /// Untyped, so the API server's answer (the whole Setting) is never parsed: a Setting
    /// this hub cannot read does not make its status write look failed.
    api: Api<DynamicObject>,
    written: BTreeMap<String, Vec<ConsumerStatus>>,
}

impl StatusWriter {
    pub fn new(client: Client) -> StatusWriter {
        StatusWriter {
            api: Api::all_with(client, &ApiResource::erase::<Setting>(&())),
            written: BTreeMap::new(),
        }
    }

    /// Writes what changed; returns how many Settings were written. Every Setting is tried;
    /// on failures the first error is returned and the failed ones are tried again next call.
    pub async fn write(
        &mut self,
        observed: &Observed,
        reports: &[(Origin, ConsumerReport)],
    ) -> Result<usize, DeliveryError> {
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        self.write_at(observed, reports, &now).await
    }

    pub(super) async fn write_at(
        &mut self,
        observed: &Observed,
        reports: &[(Origin, ConsumerReport)],
        now: &Time,
    ) -> Result<usize, DeliveryError> {
        let wanted = statuses(observed, reports);
        self.written
            .retain(|setting, _| wanted.contains_key(setting));
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let mut count = 0;
        let mut first_error = None;
        for (setting, consumers) in wanted {
            if self.written.get(&setting) == Some(&consumers) {
                continue;
            }
            let body = status_patch(&consumers, now);
            match self
                .api
                .patch_status(&setting, &params, &Patch::Apply(&body))
                .await
            {
                Ok(_) => {
                    count += 1;
                    self.written.insert(setting, consumers);
                }
                // Deleted since the watcher saw it.
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    self.written.remove(&setting);
                }
                Err(source) => {
                    tracing::warn!(setting, error = %source, "Cannot write the Setting's consumer status; trying again with the next report.");
                    self.written.remove(&setting);
                    first_error.get_or_insert(DeliveryError::Kube {
                        doing: format!("writing status.consumers of Setting {setting}"),
                        message: source.to_string(),
                    });
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(count),
        }
    }
}
