//! Aggregates on PostgreSQL: buckets from the epoch of `timestamptz`, severities cast from
//! `int2`.

use super::{
    EventStats, EventStatsQuery, FindingStatsQuery, SourceCount, TargetCount, bucket_query,
    buckets, rule_query, rules, source_query, target_query, targets,
};
use crate::error::StoreError;
use crate::postgres::Postgres;
use chrono::{DateTime, Utc};

impl Postgres {
    pub async fn event_stats(&self, q: &EventStatsQuery) -> Result<EventStats, StoreError> {
        let mut conn = self.connection().await?;
        let rows = bucket_query::<sqlx::Postgres>(
            q,
            "SELECT ((extract(epoch FROM time) * 1000000)::int8 - ",
            " AS bucket, severity::int8, count(*) FROM events WHERE TRUE",
        )
        .build_query_as()
        .fetch_all(&mut *conn)
        .await?;
        let buckets = buckets(rows)?;
        let rows: Vec<(String, i64, DateTime<Utc>)> = source_query::<sqlx::Postgres>(q)
            .build_query_as()
            .fetch_all(&mut *conn)
            .await?;
        let by_source = rows
            .into_iter()
            .map(|(source, count, last)| SourceCount {
                source,
                count,
                last,
            })
            .collect();
        let rows = rule_query::<sqlx::Postgres>(q)
            .build_query_as()
            .fetch_all(&mut *conn)
            .await?;
        Ok(EventStats {
            buckets,
            by_source,
            by_rule: rules(rows),
        })
    }

    pub async fn finding_stats(
        &self,
        q: &FindingStatsQuery,
    ) -> Result<Vec<TargetCount>, StoreError> {
        let rows = target_query::<sqlx::Postgres>(q, "severity::int8")
            .build_query_as()
            .fetch_all(&mut *self.connection().await?)
            .await?;
        targets(rows)
    }
}
