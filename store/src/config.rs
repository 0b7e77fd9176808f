//! Store configuration: which database, and the bounds of the group-commit writer.

use falconer_model::group::GroupField;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Directory for the embedded SQLite database (`falconer.db`).
    pub data_dir: PathBuf,
    /// PostgreSQL URL (`postgres://user:password@host:5432/db`). Unset: embedded SQLite.
    pub database_url: Option<DatabaseUrl>,
    /// Connections for queries (PostgreSQL), besides the writer's own.
    pub max_connections: u32,
    /// How long to wait for a connection before answering "store unavailable".
    pub connect_timeout_ms: u64,
    /// Most events one commit takes; concurrent requests beyond it wait for the next commit.
    /// 1000 commits as fast as 2000 here and keeps each writer's statement buffer (and the
    /// pooled connections' buffers, which keep their size) half as large: see BENCHMARKS.md.
    pub batch_max_events: usize,
    /// How long the writer waits for more requests before committing a batch that is not
    /// full. 0 commits whatever is queued at once; batches still form while a commit runs.
    pub batch_max_wait_ms: u64,
    /// Events accepted but not yet committed (queued or being written). Beyond it ingest
    /// answers 429: memory stays bounded under overload and nothing accepted is dropped.
    pub queue_max_events: usize,
    /// Transactions written at once. PostgreSQL overlaps them (one fills while another
    /// commits); SQLite has one writer whatever is set here.
    pub writers: usize,
    /// A commit that has not finished by then fails its requests with 503 (a retry is safe:
    /// duplicates are recognised).
    pub commit_timeout_ms: u64,
    /// SQLite: how long a write waits for a lock held by another process.
    pub sqlite_busy_timeout_ms: u64,
    /// How long events are kept after the hub received them: `<n>h`, `<n>d`, `<n>w`, or
    /// `forever`. A Setting's `spec.retention` overrides it. Events a consumer has not
    /// delivered yet are kept until it has. PostgreSQL drops whole days.
    pub retention: String,
    /// How often retention runs (the first time a minute after start) and, on PostgreSQL,
    /// makes the partitions of the week ahead.
    pub retention_interval_secs: u64,
    /// The fields an alert group is keyed by (docs/triage.md): any of rule, source,
    /// severity, cluster, namespace, workload, node, pod. Changing it starts new groups.
    pub group_by: Vec<GroupField>,
    /// How far ahead a suppression may expire, in days.
    pub max_suppression_days: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            data_dir: PathBuf::from("./falconer-data"),
            database_url: None,
            max_connections: 8,
            connect_timeout_ms: 5_000,
            batch_max_events: 1_000,
            batch_max_wait_ms: 0,
            queue_max_events: 20_000,
            writers: 2,
            commit_timeout_ms: 30_000,
            sqlite_busy_timeout_ms: 5_000,
            retention: "30d".into(),
            retention_interval_secs: 3_600,
            group_by: falconer_model::group::DEFAULT_GROUP_BY.to_vec(),
            max_suppression_days: falconer_model::suppression::DEFAULT_MAX_DAYS,
        }
    }
}

impl StoreConfig {
    /// Checks the bounds serde cannot express; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(url) = &self.database_url
            && !(url.0.starts_with("postgres://") || url.0.starts_with("postgresql://"))
        {
            return Err("store.database_url: expected a postgres:// or postgresql:// URL".into());
        }
        if self.group_by.is_empty() || self.group_by.len() > 8 {
            return Err("store.group_by: give 1 to 8 fields".into());
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = self.group_by.iter().find(|f| !seen.insert(**f)) {
            return Err(format!(
                "store.group_by: `{}` is given twice",
                twice.as_str()
            ));
        }
        if !(1..=3650).contains(&self.max_suppression_days) {
            return Err("store.max_suppression_days: must be 1 to 3650".into());
        }
        let positive = [
            ("store.max_connections", self.max_connections as u64),
            ("store.connect_timeout_ms", self.connect_timeout_ms),
            ("store.batch_max_events", self.batch_max_events as u64),
            ("store.queue_max_events", self.queue_max_events as u64),
            ("store.writers", self.writers as u64),
            ("store.commit_timeout_ms", self.commit_timeout_ms),
            (
                "store.retention_interval_secs",
                self.retention_interval_secs,
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(format!("{key}: must be greater than 0"));
            }
        }
        if self.writers > 16 {
            return Err("store.writers: must be at most 16".into());
        }
        if self.batch_max_wait_ms > 1_000 {
            return Err("store.batch_max_wait_ms: must be at most 1000".into());
        }
        crate::retention::parse_age(&self.retention)
            .map_err(|e| format!("store.retention: {e}"))?;
        Ok(())
    }

    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("falconer.db")
    }
}

/// A PostgreSQL URL. It may carry a password, so `Debug` and `Serialize` mask it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(pub String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The same server and options with another database name (`postgres://h/a?x` with
    /// `b` is `postgres://h/b?x`): tests and benchmarks create a database of their own.
    pub fn with_database(&self, name: &str) -> DatabaseUrl {
        let url = self.0.as_str();
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, format!("?{query}")),
            None => (url, String::new()),
        };
        let scheme_end = base.find("://").map_or(0, |i| i + 3);
        let host_end = base[scheme_end..]
            .find('/')
            .map_or(base.len(), |i| scheme_end + i);
        DatabaseUrl(format!("{}/{name}{query}", &base[..host_end]))
    }

    /// The URL with any password (in the authority or as `?password=`) replaced by `***`.
    pub fn masked(&self) -> String {
        let url = self.0.as_str();
        let mut out = url.to_string();
        if let Some(start) = url.find("://").map(|i| i + 3) {
            let end = url[start..]
                .find(['/', '?'])
                .map_or(url.len(), |i| start + i);
            if let Some(at) = url[start..end].rfind('@').map(|i| start + i)
                && let Some(colon) = url[start..at].find(':').map(|i| start + i)
            {
                out = format!("{}***{}", &url[..=colon], &url[at..]);
            }
        }
        match out.split_once('?') {
            Some((head, query)) => {
                let pairs: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                        _ => pair.to_string(),
                    })
                    .collect();
                format!("{head}?{}", pairs.join("&"))
            }
            None => out,
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.masked())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_database_on_the_same_server_keeps_the_options() {
        let url = DatabaseUrl("postgres://u:p@h:5432/postgres?sslmode=disable".into());
        assert_eq!(
            url.with_database("t1").0,
            "postgres://u:p@h:5432/t1?sslmode=disable"
        );
        assert_eq!(
            DatabaseUrl("postgres://h".into()).with_database("t2").0,
            "postgres://h/t2"
        );
    }

    #[test]
    fn database_url_masks_the_password_but_keeps_user_and_host() {
        let url = DatabaseUrl("postgres://falconer:s3cret@db.example:5432/falconer".into());
        assert_eq!(
            url.masked(),
            "postgres://falconer:***@db.example:5432/falconer"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(!serde_json::to_string(&url).unwrap().contains("s3cret"));
    }

    #[test]
    fn database_url_masks_a_password_given_as_query_parameter() {
        let url = DatabaseUrl("postgres://db/falconer?sslmode=require&password=s3cret".into());
        assert_eq!(
            url.masked(),
            "postgres://db/falconer?sslmode=require&password=***"
        );
    }

    #[test]
    fn database_url_without_password_is_shown_unchanged() {
        let url = DatabaseUrl("postgres://postgres@127.0.0.1:5432/postgres".into());
        assert_eq!(url.masked(), url.0);
    }

    #[test]
    fn default_config_is_valid_and_a_zero_bound_is_named() {
        assert_eq!(StoreConfig::default().validate(), Ok(()));
        let config = StoreConfig {
            queue_max_events: 0,
            ..StoreConfig::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .starts_with("store.queue_max_events")
        );
    }

    #[test]
    fn a_retention_that_is_not_an_age_or_forever_is_refused_naming_the_key() {
        for good in ["12h", "30d", "2w", "forever"] {
            let config = StoreConfig {
                retention: good.into(),
                ..StoreConfig::default()
            };
            assert_eq!(config.validate(), Ok(()), "{good}");
        }
        let config = StoreConfig {
            retention: "1y".into(),
            ..StoreConfig::default()
        };
        let error = config.validate().unwrap_err();
        assert!(error.starts_with("store.retention: `1y`"), "{error}");
    }
}
