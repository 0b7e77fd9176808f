//! Delivery settings of the hub (`delivery:` in the configuration file).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Events read from the store per step of a consumer.
    pub read_batch: u32,
    /// How often an idle consumer looks for events committed by other hub replicas (its own
    /// hub's commits wake it at once).
    pub poll_interval_ms: u64,
    /// First wait after a failed send; doubles per failure.
    pub backoff_initial_ms: u64,
    /// Longest wait between retries.
    pub backoff_max_ms: u64,
    /// How often lag is measured for metrics and status.
    pub status_interval_secs: u64,
    /// The directory `file` consumers write under (their `file.path` must be inside it);
    /// default `store.data_dir`. The database files in it are never written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_dir: Option<std::path::PathBuf>,
    /// The dashboard's public base URL (`ui.external_url`, set by the application): chat
    /// messages link to the event there.
    #[serde(skip)]
    pub dashboard_url: Option<String>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            read_batch: 1_000,
            poll_interval_ms: 1_000,
            backoff_initial_ms: 500,
            backoff_max_ms: 60_000,
            status_interval_secs: 10,
            file_dir: None,
            dashboard_url: None,
        }
    }
}

impl DeliveryConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (key, value) in [
            ("delivery.read_batch", u64::from(self.read_batch)),
            ("delivery.poll_interval_ms", self.poll_interval_ms),
            ("delivery.backoff_initial_ms", self.backoff_initial_ms),
            ("delivery.backoff_max_ms", self.backoff_max_ms),
            ("delivery.status_interval_secs", self.status_interval_secs),
        ] {
            if value == 0 {
                return Err(format!("{key}: must be greater than 0"));
            }
        }
        if self.read_batch > 10_000 {
            return Err("delivery.read_batch: must be at most 10000".into());
        }
        if let Some(dir) = &self.file_dir
            && !dir.is_absolute()
        {
            return Err(format!(
                "delivery.file_dir: `{}` must be an absolute path",
                dir.display()
            ));
        }
        if self.backoff_max_ms < self.backoff_initial_ms {
            return Err("delivery.backoff_max_ms: must not be below backoff_initial_ms".into());
        }
        Ok(())
    }
}
