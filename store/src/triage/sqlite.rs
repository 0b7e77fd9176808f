//! Groups and suppressions on SQLite: reads on the reader pool, changes on the one writer.
//! The groups themselves are updated in the events' transaction (`events/sqlite.rs`).

use super::{
    Changed, GroupDetail, GroupPage, GroupQuery, Suppression, Transition, change_from_row,
    change_parts, changes_sql, forget_parts, group_from_row, group_sql, insert_suppression_parts,
    listing_parts, page, recent_events_sql, suppression_from_row, suppressions_parts,
    transition_parts,
};
use crate::error::StoreError;
use crate::sql;
use crate::sqlite::{Sqlite, numbered};
use chrono::{DateTime, Utc};
use uuid::Uuid;

impl Sqlite {
    pub async fn groups(&self, query: &GroupQuery) -> Result<GroupPage, StoreError> {
        let (head, parts) = listing_parts(query);
        let rows = sql::build::<sqlx::Sqlite>(head, parts)
            .build()
            .fetch_all(&self.readers)
            .await?;
        page(&rows, query.limit)
    }

    pub async fn group(&self, id: &str) -> Result<Option<GroupDetail>, StoreError> {
        // fetch_all, not fetch_optional: see `Sqlite::event`.
        let rows = sqlx::query(&numbered(&group_sql()))
            .bind(id)
            .fetch_all(&self.readers)
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let group = group_from_row(row)?;
        let changes = sqlx::query(&numbered(&changes_sql()))
            .bind(id)
            .fetch_all(&self.readers)
            .await?
            .iter()
            .map(change_from_row)
            .collect::<Result<_, _>>()?;
        let events = sqlx::query(&numbered(&recent_events_sql()))
            .bind(id)
            .fetch_all(&self.readers)
            .await?
            .iter()
            .map(|r| crate::events::from_row(r, false))
            .collect::<Result<_, _>>()?;
        Ok(Some(GroupDetail {
            group,
            changes,
            events,
        }))
    }

    pub async fn change_group(
        &self,
        id: &str,
        transition: Transition,
        actor: &str,
        comment: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Changed, StoreError> {
        let mut tx = self.writer.begin().await.map_err(StoreError::connecting)?;
        let updated = sql::build::<sqlx::Sqlite>("", transition_parts(id, transition, now))
            .build()
            .fetch_all(&mut *tx)
            .await?;
        let Some(row) = updated.first() else {
            let state: Vec<String> =
                sqlx::query_scalar("SELECT state FROM alert_groups WHERE id = ?1")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
            return match state.first() {
                None => Ok(Changed::Missing),
                Some(s) => Ok(Changed::NotAllowed(s.parse().map_err(StoreError::Corrupt)?)),
            };
        };
        let group = group_from_row(row)?;
        sql::build::<sqlx::Sqlite>(
            "",
            change_parts(id, now, actor, transition.target(), comment),
        )
        .build()
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Changed::Done(group))
    }

    pub async fn create_suppression(&self, s: &Suppression) -> Result<(), StoreError> {
        sql::build::<sqlx::Sqlite>("", insert_suppression_parts(s)?)
            .build()
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn suppressions(
        &self,
        active_at: Option<DateTime<Utc>>,
    ) -> Result<Vec<Suppression>, StoreError> {
        let (head, parts) = suppressions_parts(active_at);
        sql::build::<sqlx::Sqlite>(head, parts)
            .build()
            .fetch_all(&self.readers)
            .await?
            .iter()
            .map(suppression_from_row)
            .collect()
    }

    pub async fn delete_suppression(&self, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM suppressions WHERE id = ?1")
            .bind(id.to_string())
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Forgets groups none of whose events is left and that were not seen since `cutoff`,
    /// and suppressions expired before it: (groups, suppressions) removed.
    pub async fn forget_triage(&self, cutoff: DateTime<Utc>) -> Result<(u64, u64), StoreError> {
        let mut tx = self.writer.begin().await.map_err(StoreError::connecting)?;
        let mut removed = [0u64; 3];
        for (n, parts) in forget_parts(cutoff).into_iter().enumerate() {
            removed[n] = sql::build::<sqlx::Sqlite>("", parts)
                .build()
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok((removed[1], removed[2]))
    }
}
