//! Findings on PostgreSQL: a report's findings are upserted from column arrays in one
//! statement; reports of one scope apply one at a time (a transaction advisory lock, taken by
//! the writer).

use super::{
    FIX_ABSENT, INSERT_FINDINGS, ON_FINDING_CONFLICT, SCOPE_UPSERT, listing, open_findings, page,
};
use crate::error::StoreError;
use crate::event::Event;
use crate::finding::{FindingPage, FindingQuery, ReportOutcome, ReportWrite};
use crate::postgres::Postgres;
use sqlx::PgConnection;
use std::sync::LazyLock;
use uuid::Uuid;

/// Opens or refreshes the findings a report shows, from column arrays in one statement.
static UPSERT_FINDINGS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{INSERT_FINDINGS}SELECT key, $1, $2, scope, kind, rule, severity, severity_raw, \
         message, namespace, image, node, fields::jsonb, 'open', $3, $3, NULL, event_id, $4 \
         FROM UNNEST($5::uuid[], $6::text[], $7::text[], $8::text[], $9::int2[], $10::text[], \
         $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::uuid[]) \
         AS t(key, scope, kind, rule, severity, severity_raw, message, namespace, image, node, \
         fields, event_id){ON_FINDING_CONFLICT}"
    )
});

impl Postgres {
    pub async fn findings(&self, query: &FindingQuery) -> Result<FindingPage, StoreError> {
        let rows = listing::<sqlx::Postgres>(query)
            .build()
            .fetch_all(&mut *self.connection().await?)
            .await?;
        page(&rows, query.limit)
    }
}

/// Applies one report inside the writer's transaction: scopes first (skipping those a newer
/// report already set), then the findings it shows, then the fixes. Returns the outcome and
/// the (observation, key) pairs it upserted.
pub(crate) async fn apply_report(
    conn: &mut PgConnection,
    write: &ReportWrite<'_>,
) -> Result<(ReportOutcome, Vec<(usize, Uuid)>), StoreError> {
    let report = write.report;
    let run = Uuid::now_v7();
    let mut applied = Vec::with_capacity(report.scopes.len());
    for scope in &report.scopes {
        let row: Option<i32> = sqlx::query_scalar(SCOPE_UPSERT)
            .bind(&report.cluster)
            .bind(&report.source)
            .bind(scope)
            .bind(report.time)
            .fetch_optional(&mut *conn)
            .await?;
        applied.push(row.is_some());
    }
    let open = open_findings(report, &applied);
    if !open.is_empty() {
        let observation = |i: usize| &report.observations[i];
        let event = |i: usize| &report.observations[i].event;
        let text =
            |f: fn(&Event) -> &str| open.iter().map(|&(i, _)| f(event(i))).collect::<Vec<_>>();
        let opt = |f: fn(&Event) -> Option<&str>| {
            open.iter().map(|&(i, _)| f(event(i))).collect::<Vec<_>>()
        };
        sqlx::query(&UPSERT_FINDINGS)
            .bind(&report.cluster)
            .bind(&report.source)
            .bind(report.time)
            .bind(run)
            .bind(open.iter().map(|&(_, key)| key).collect::<Vec<_>>())
            .bind(
                open.iter()
                    .map(|&(i, _)| report.scopes[observation(i).scope].as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(text(|e| e.kind.as_str()))
            .bind(text(|e| &e.rule))
            .bind(
                open.iter()
                    .map(|&(i, _)| event(i).severity.rank())
                    .collect::<Vec<_>>(),
            )
            .bind(text(|e| &e.severity_raw))
            .bind(text(|e| &e.message))
            .bind(opt(|e| e.namespace.as_deref()))
            .bind(opt(|e| e.image.as_deref()))
            .bind(opt(|e| e.node.as_deref()))
            .bind(text(|e| e.fields.get()))
            .bind(open.iter().map(|&(i, _)| event(i).id).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
    }
    let mut fixed = 0;
    for (scope, applied) in report.scopes.iter().zip(&applied) {
        if *applied {
            fixed += sqlx::query(FIX_ABSENT)
                .bind(&report.cluster)
                .bind(&report.source)
                .bind(scope)
                .bind(report.time)
                .bind(run)
                .execute(&mut *conn)
                .await?
                .rows_affected();
        }
    }
    let outcome = ReportOutcome {
        stale: !applied.contains(&true),
        open: open.len() as u64,
        fixed,
    };
    Ok((outcome, open))
}
