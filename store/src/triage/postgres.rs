//! Groups and suppressions on PostgreSQL. The groups themselves are updated by the events'
//! insert statement (`events/postgres.rs`); here are the reads and the changes people make.

use super::{
    Changed, GroupDetail, GroupPage, GroupQuery, Suppression, Transition, change_from_row,
    change_parts, changes_sql, forget_parts, group_from_row, group_sql, insert_suppression_parts,
    listing_parts, page, recent_events_sql, suppression_from_row, suppressions_parts,
    transition_parts,
};
use crate::error::StoreError;
use crate::postgres::Postgres;
use crate::sql;
use chrono::{DateTime, Utc};
use sqlx::Acquire;
use uuid::Uuid;

impl Postgres {
    pub async fn groups(&self, query: &GroupQuery) -> Result<GroupPage, StoreError> {
        let (head, parts) = listing_parts(query);
        let rows = sql::build::<sqlx::Postgres>(head, parts)
            .build()
            .fetch_all(&mut *self.connection().await?)
            .await?;
        page(&rows, query.limit)
    }

    pub async fn group(&self, id: &str) -> Result<Option<GroupDetail>, StoreError> {
        let mut conn = self.connection().await?;
        let Some(row) = sqlx::query(&group_sql())
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
        else {
            return Ok(None);
        };
        let group = group_from_row(&row)?;
        let changes = sqlx::query(&changes_sql())
            .bind(id)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(change_from_row)
            .collect::<Result<_, _>>()?;
        let events = sqlx::query(&recent_events_sql())
            .bind(id)
            .fetch_all(&mut *conn)
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
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await.map_err(StoreError::connecting)?;
        let updated = sql::build::<sqlx::Postgres>("", transition_parts(id, transition, now))
            .build()
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = updated else {
            let state: Option<String> =
                sqlx::query_scalar("SELECT state FROM alert_groups WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            return match state {
                None => Ok(Changed::Missing),
                Some(s) => Ok(Changed::NotAllowed(s.parse().map_err(StoreError::Corrupt)?)),
            };
        };
        let group = group_from_row(&row)?;
        sql::build::<sqlx::Postgres>(
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
        sql::build::<sqlx::Postgres>("", insert_suppression_parts(s)?)
            .build()
            .execute(&mut *self.connection().await?)
            .await?;
        Ok(())
    }

    pub async fn suppressions(
        &self,
        active_at: Option<DateTime<Utc>>,
    ) -> Result<Vec<Suppression>, StoreError> {
        let (head, parts) = suppressions_parts(active_at);
        sql::build::<sqlx::Postgres>(head, parts)
            .build()
            .fetch_all(&mut *self.connection().await?)
            .await?
            .iter()
            .map(suppression_from_row)
            .collect()
    }

    pub async fn delete_suppression(&self, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM suppressions WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *self.connection().await?)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Forgets groups none of whose events is left and that were not seen since `cutoff`,
    /// and suppressions expired before it: (groups, suppressions) removed.
    pub async fn forget_triage(&self, cutoff: DateTime<Utc>) -> Result<(u64, u64), StoreError> {
        let mut conn = self.connection().await?;
        let mut tx = conn.begin().await.map_err(StoreError::connecting)?;
        let mut removed = [0u64; 3];
        for (n, parts) in forget_parts(cutoff).into_iter().enumerate() {
            removed[n] = sql::build::<sqlx::Postgres>("", parts)
                .build()
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok((removed[1], removed[2]))
    }
}
