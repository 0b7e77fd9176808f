//! The two databases behind one closed enum; each module speaks its own SQL dialect.

use crate::error::StoreError;
use crate::event::{Cluster, Event, Stored};
use crate::finding::{FindingPage, FindingQuery, ReportOutcome, ReportWrite};
use crate::postgres::Postgres;
use crate::query::{EventQuery, Page};
use crate::sqlite::Sqlite;
use uuid::Uuid;

#[derive(Clone)]
pub(crate) enum Backend {
    Postgres(Postgres),
    Sqlite(Sqlite),
}

impl Backend {
    /// Inserts events (dedup keys unique within `events`) and applies reports, in one
    /// transaction.
    pub async fn write(
        &self,
        events: &[&Event],
        reports: &[ReportWrite<'_>],
    ) -> Result<(Vec<Stored>, Vec<ReportOutcome>), StoreError> {
        match self {
            Backend::Postgres(db) => db.write(events, reports).await,
            Backend::Sqlite(db) => db.write(events, reports).await,
        }
    }

    pub async fn findings(&self, query: &FindingQuery) -> Result<FindingPage, StoreError> {
        match self {
            Backend::Postgres(db) => db.findings(query).await,
            Backend::Sqlite(db) => db.findings(query).await,
        }
    }

    pub async fn event(&self, id: Uuid) -> Result<Option<Event>, StoreError> {
        match self {
            Backend::Postgres(db) => db.event(id).await,
            Backend::Sqlite(db) => db.event(id).await,
        }
    }

    pub async fn events(&self, query: &EventQuery) -> Result<Page, StoreError> {
        match self {
            Backend::Postgres(db) => db.events(query).await,
            Backend::Sqlite(db) => db.events(query).await,
        }
    }

    pub async fn clusters(&self) -> Result<Vec<Cluster>, StoreError> {
        match self {
            Backend::Postgres(db) => db.clusters().await,
            Backend::Sqlite(db) => db.clusters().await,
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Backend::Postgres(db) => db.ping().await,
            Backend::Sqlite(db) => db.ping().await,
        }
    }

    pub async fn close(&self) {
        match self {
            Backend::Postgres(db) => db.close().await,
            Backend::Sqlite(db) => db.close().await,
        }
    }
}

/// Columns of a listing (no `raw`) and of a single event (with it), in the order the
/// row mappers read them.
pub(crate) const LIST_COLUMNS: &str = "id, dedup_key, time, received_at, source, source_version, \
     kind, severity, severity_raw, rule, message, tags, cluster, namespace, pod, container, \
     image, node, workload_kind, workload_name, fields";

/// Builds an event (or a finding) from the text columns both databases share.
pub(crate) struct RowParts {
    pub kind: String,
    pub severity: i64,
    pub workload_kind: Option<String>,
    pub workload_name: Option<String>,
    pub raw: Option<String>,
}

impl RowParts {
    pub fn kind(&self) -> Result<crate::event::Kind, StoreError> {
        self.kind.parse().map_err(StoreError::Corrupt)
    }

    pub fn severity(&self) -> Result<crate::event::Severity, StoreError> {
        i16::try_from(self.severity)
            .ok()
            .and_then(crate::event::Severity::from_rank)
            .ok_or_else(|| StoreError::Corrupt(format!("severity {}", self.severity)))
    }

    pub fn state(state: &str) -> Result<crate::finding::FindingState, StoreError> {
        state.parse().map_err(StoreError::Corrupt)
    }

    pub fn workload(&mut self) -> Option<crate::event::Workload> {
        match (self.workload_kind.take(), self.workload_name.take()) {
            (Some(kind), Some(name)) => Some(crate::event::Workload { kind, name }),
            _ => None,
        }
    }

    pub fn raw(&mut self) -> Result<Option<Box<serde_json::value::RawValue>>, StoreError> {
        self.raw
            .take()
            .map(|raw| {
                serde_json::value::RawValue::from_string(raw)
                    .map_err(|e| StoreError::Corrupt(format!("raw payload: {e}")))
            })
            .transpose()
    }
}
