//! The two databases behind one closed enum; each module speaks its own SQL dialect.

use crate::delivery::{ConsumerRecord, DeadLetter, Lag, Position, Progress, Start};
use crate::error::StoreError;
use crate::event::{Cluster, Event, Stored};
use crate::events::{EventQuery, Page};
use crate::finding::{FindingPage, FindingQuery, ReportOutcome, ReportWrite};
use crate::postgres::Postgres;
use crate::risk::{HistoryAnswer, HistoryQuery, RiskPage, RiskQuery, RiskRun, RiskWindow};
use crate::sqlite::Sqlite;
use crate::stats::{EventStats, EventStatsQuery, FindingStatsQuery, TargetCount};
use crate::triage::{Changed, GroupDetail, GroupPage, GroupQuery, Suppression, Transition};
use uuid::Uuid;

#[derive(Clone)]
pub(crate) enum Backend {
    Postgres(Postgres),
    Sqlite(Sqlite),
}

/// Each method forwards to the database's own implementation.
macro_rules! delegate {
    ($($(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        impl Backend {
            $(
                $(#[$doc])*
                pub async fn $name(&self $(, $arg: $ty)*) -> Result<$ret, StoreError> {
                    match self {
                        Backend::Postgres(db) => db.$name($($arg),*).await,
                        Backend::Sqlite(db) => db.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

delegate! {
    /// Inserts events (dedup keys unique within `events`) and applies reports, in one
    /// transaction.
    fn write(&self, events: &[&Event], reports: &[ReportWrite<'_>]) -> (Vec<Stored>, Vec<ReportOutcome>);
    fn findings(&self, query: &FindingQuery) -> FindingPage;
    fn event(&self, id: Uuid) -> Option<Event>;
    fn events(&self, query: &EventQuery) -> Page;
    fn clusters(&self) -> Vec<Cluster>;
    fn ping(&self) -> ();
    fn consumer(&self, name: &str) -> Option<ConsumerRecord>;
    fn consumers(&self) -> Vec<ConsumerRecord>;
    fn create_consumer(&self, name: &str, start: Start) -> ConsumerRecord;
    fn events_after(&self, position: Position, limit: u32) -> Vec<(Position, Event)>;
    fn lag(&self, position: Position) -> Lag;
    fn save_progress(&self, name: &str, position: Position, progress: &Progress) -> ();
    fn dead_letters(&self, name: &str, after: i64, limit: u32) -> Vec<DeadLetter>;
    fn request_replay(&self, name: &str, ids: Option<&[i64]>) -> u64;
    fn replays(&self, name: &str, limit: u32) -> Vec<(DeadLetter, Option<Event>)>;
    fn finish_replay(&self, name: &str, delivered: &[i64], failed: &[(i64, String)]) -> ();
    /// Scores risk unless another analyst is computing (`None`).
    fn compute_risk(&self, window: RiskWindow, retention_secs: i64, model: crate::RiskModel) -> Option<RiskRun>;
    fn risk_scores(&self, query: &RiskQuery) -> RiskPage;
    /// Removes the events received before the cutoff that no consumer in `holders` still
    /// needs, unless another hub is doing it (`None`).
    fn enforce_retention(&self, cutoff: chrono::DateTime<chrono::Utc>, holders: &[ConsumerRecord]) -> Option<crate::retention::RetentionRun>;
    /// When the latest computation finished, if any has.
    fn risk_computed_at(&self) -> Option<chrono::DateTime<chrono::Utc>>;
    fn risk_history(&self, query: &HistoryQuery) -> HistoryAnswer;
    fn event_stats(&self, query: &EventStatsQuery) -> EventStats;
    fn finding_stats(&self, query: &FindingStatsQuery) -> Vec<TargetCount>;
    fn groups(&self, query: &GroupQuery) -> GroupPage;
    fn group(&self, id: &str) -> Option<GroupDetail>;
    /// A person's change of a group, with its history row, in one transaction.
    fn change_group(&self, id: &str, transition: Transition, actor: &str, comment: Option<&str>, now: chrono::DateTime<chrono::Utc>) -> Changed;
    fn create_suppression(&self, suppression: &Suppression) -> ();
    /// Suppressions not expired at the time given (all of them without one), oldest first.
    fn suppressions(&self, active_at: Option<chrono::DateTime<chrono::Utc>>) -> Vec<Suppression>;
    fn delete_suppression(&self, id: Uuid) -> bool;
    /// Forgets empty groups last seen before the cutoff and suppressions expired before it.
    fn forget_triage(&self, cutoff: chrono::DateTime<chrono::Utc>) -> (u64, u64);
}

impl Backend {
    pub async fn close(&self) {
        match self {
            Backend::Postgres(db) => db.close().await,
            Backend::Sqlite(db) => db.close().await,
        }
    }
}
