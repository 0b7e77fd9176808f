//! Findings on SQLite: a report's findings are upserted in chunks of multi-row INSERTs on the
//! one writer, which also keeps reports of one scope from applying at once.

use super::{
    FIX_ABSENT, INSERT_FINDINGS, ON_FINDING_CONFLICT, SCOPE_UPSERT, listing, open_findings, page,
};
use crate::error::StoreError;
use crate::event::Stored;
use crate::finding::{FindingPage, FindingQuery, ReportOutcome, ReportWrite};
use crate::sqlite::{ROWS_PER_STATEMENT, Sqlite, numbered};
use sqlx::{QueryBuilder, SqliteConnection};
use uuid::Uuid;

impl Sqlite {
    pub async fn findings(&self, query: &FindingQuery) -> Result<FindingPage, StoreError> {
        let rows = listing::<sqlx::Sqlite>(query)
            .build()
            .fetch_all(&self.readers)
            .await?;
        page(&rows, query.limit)
    }
}

/// Applies one report inside the writer's transaction: scopes first (skipping those a newer
/// report already set), then the findings it shows, then the fixes.
pub(crate) async fn apply_report(
    tx: &mut SqliteConnection,
    write: &ReportWrite<'_>,
    stored: &[Stored],
) -> Result<ReportOutcome, StoreError> {
    let report = write.report;
    let run = Uuid::now_v7();
    let time = report.time.timestamp_micros();
    let mut applied = Vec::with_capacity(report.scopes.len());
    let scope_upsert = numbered(SCOPE_UPSERT);
    for scope in &report.scopes {
        let row: Option<i64> = sqlx::query_scalar(&scope_upsert)
            .bind(&report.cluster)
            .bind(&report.source)
            .bind(scope)
            .bind(time)
            .fetch_optional(&mut *tx)
            .await?;
        applied.push(row.is_some());
    }
    let open = open_findings(report, &applied);
    // 19 binds per row.
    for chunk in open.chunks(ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::new(INSERT_FINDINGS);
        insert.push_values(chunk, |mut row, &(i, key)| {
            let observation = &report.observations[i];
            let e = &observation.event;
            row.push_bind(key)
                .push_bind(report.cluster.as_str())
                .push_bind(report.source.as_str())
                .push_bind(report.scopes[observation.scope].as_str())
                .push_bind(e.kind.as_str())
                .push_bind(e.rule.as_str())
                .push_bind(e.severity.rank())
                .push_bind(e.severity_raw.as_str())
                .push_bind(e.message.as_str())
                .push_bind(e.namespace.as_deref())
                .push_bind(e.image.as_deref())
                .push_bind(e.node.as_deref())
                .push_bind(e.fields.get())
                .push_bind("open")
                .push_bind(time)
                .push_bind(time)
                .push_bind(None::<i64>)
                .push_bind(stored[write.slots[i]].id.to_string())
                .push_bind(run);
        });
        insert.push(ON_FINDING_CONFLICT);
        insert.build().execute(&mut *tx).await?;
    }
    let fix = numbered(FIX_ABSENT);
    let mut fixed = 0;
    for (scope, applied) in report.scopes.iter().zip(&applied) {
        if *applied {
            fixed += sqlx::query(&fix)
                .bind(&report.cluster)
                .bind(&report.source)
                .bind(scope)
                .bind(time)
                .bind(run)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
    }
    Ok(ReportOutcome {
        stale: !applied.contains(&true),
        open: open.len() as u64,
        fixed,
    })
}
