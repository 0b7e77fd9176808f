//! Aggregates on SQLite: times are already microseconds, severities integers.

use super::{
    EventStats, EventStatsQuery, FindingStatsQuery, SourceCount, TargetCount, bucket_query,
    buckets, rule_query, rules, source_query, target_query, targets,
};
use crate::error::StoreError;
use crate::sqlite::{Sqlite, micros};

impl Sqlite {
    pub async fn event_stats(&self, q: &EventStatsQuery) -> Result<EventStats, StoreError> {
        let rows = bucket_query::<sqlx::Sqlite>(
            q,
            "SELECT (time - ",
            " AS bucket, severity, count(*) FROM events WHERE TRUE",
        )
        .build_query_as()
        .fetch_all(&self.readers)
        .await?;
        let buckets = buckets(rows)?;
        let rows: Vec<(String, i64, i64)> = source_query::<sqlx::Sqlite>(q)
            .build_query_as()
            .fetch_all(&self.readers)
            .await?;
        let by_source = rows
            .into_iter()
            .map(|(source, count, last)| {
                Ok(SourceCount {
                    source,
                    count,
                    last: micros(last)?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        let rows = rule_query::<sqlx::Sqlite>(q)
            .build_query_as()
            .fetch_all(&self.readers)
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
        let rows = target_query::<sqlx::Sqlite>(q, "severity")
            .build_query_as()
            .fetch_all(&self.readers)
            .await?;
        targets(rows)
    }
}
