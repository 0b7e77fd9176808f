//! Triage (docs/triage.md): alert groups and suppressions. The writer files every event under
//! its group and the first suppression that matches it ([`Triage::stamp`]) before the
//! database inserts it; each database then updates the groups in the same transaction as the
//! events. This module holds what both share: the SQL of listings, transitions and
//! suppressions as typed parts, and the row mapping.

pub use falconer_model::group::{
    AlertGroup, GroupChange, GroupCursor, GroupField, GroupPage, GroupQuery, GroupState, Transition,
};
pub use falconer_model::suppression::{Suppression, SuppressionSpec};

use crate::error::StoreError;
use crate::event::Event;
use crate::sql::{self, Columns, Part};
use chrono::{DateTime, Utc};
use falconer_model::group;
use falconer_model::matcher::Matcher;
use std::sync::{Arc, RwLock};
use uuid::Uuid;

pub(crate) mod postgres;
pub(crate) mod sqlite;

/// Recent events shown with a group.
pub const RECENT_EVENTS: u32 = 20;
/// Most suppressions active at once: each is tested against every event stored.
pub const MAX_ACTIVE_SUPPRESSIONS: usize = 1000;
/// The actor of a change no person made (a new event reopening a resolved group).
pub const HUB_ACTOR: &str = "falconer";

/// How the writer files events: the group key, and the active suppressions (refreshed from
/// the database when they change and every few seconds, so other replicas' and expired ones
/// are followed).
pub struct Triage {
    group_by: Vec<GroupField>,
    active: RwLock<Arc<Vec<Active>>>,
}

struct Active {
    id: Uuid,
    expires: DateTime<Utc>,
    matcher: Matcher,
}

impl Triage {
    pub fn new(group_by: Vec<GroupField>) -> Triage {
        Triage {
            group_by,
            active: RwLock::new(Arc::new(Vec::new())),
        }
    }

    /// Files the event: its group id, and the first suppression (oldest first) that was
    /// active when it was received and matches it.
    pub fn stamp(&self, event: &mut Event) {
        event.group = Some(group::group_id(event, &self.group_by));
        let active = self.snapshot();
        event.suppressed = active
            .iter()
            .find(|s| s.expires > event.received_at && s.matcher.matches(event))
            .map(|s| s.id);
    }

    fn snapshot(&self) -> Arc<Vec<Active>> {
        match self.active.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the active suppressions (oldest first).
    pub fn set_active(&self, suppressions: &[Suppression]) {
        let active: Vec<Active> = suppressions
            .iter()
            .map(|s| Active {
                id: s.id,
                expires: s.expires,
                matcher: Matcher::new(&s.filter),
            })
            .collect();
        match self.active.write() {
            Ok(mut guard) => *guard = Arc::new(active),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(active),
        }
    }
}

/// The outcome of a person's change of a group.
#[derive(Debug, Clone, PartialEq)]
pub enum Changed {
    Done(AlertGroup),
    /// No group has that id.
    Missing,
    /// The group is in a state the transition does not start from.
    NotAllowed(GroupState),
}

/// A group with its history and recent events.
#[derive(Debug, Clone)]
pub struct GroupDetail {
    pub group: AlertGroup,
    pub changes: Vec<GroupChange>,
    pub events: Vec<Event>,
}

pub(crate) const GROUP_COLUMNS: &str = "id, rule, source, severity, cluster, namespace, \
    workload, count, suppressed, first_seen, last_seen, state, state_changed_at";

const CHANGE_COLUMNS: &str = "at, actor, state, comment";

const SUPPRESSION_COLUMNS: &str = "id, match_json, reason, expires, created_at, created_by, origin";

/// A group listing: most recently seen first, keyset-paginated.
pub(crate) fn listing_parts(q: &GroupQuery) -> (String, Vec<Part>) {
    use Part::*;
    let mut parts = Vec::new();
    let mut eq = |column: &'static str, value: Option<String>| {
        if let Some(v) = value {
            parts.push(Sql(column));
            parts.push(Text(v));
        }
    };
    eq(" AND state = ", q.state.map(|s| s.as_str().to_string()));
    eq(" AND source = ", q.source.clone());
    eq(" AND cluster = ", q.cluster.clone());
    eq(" AND namespace = ", q.namespace.clone());
    eq(" AND rule = ", q.rule.clone());
    if let Some(severity) = q.min_severity {
        parts.push(Sql(" AND severity <= "));
        parts.push(Int(severity.rank().into()));
    }
    if let Some(since) = q.since {
        parts.push(Sql(" AND last_seen >= "));
        parts.push(Time(since));
    }
    if let Some(until) = q.until {
        parts.push(Sql(" AND last_seen < "));
        parts.push(Time(until));
    }
    if let Some(after) = &q.after {
        parts.push(Sql(" AND (last_seen < "));
        parts.push(Time(after.last_seen));
        parts.push(Sql(" OR (last_seen = "));
        parts.push(Time(after.last_seen));
        parts.push(Sql(" AND id < "));
        parts.push(Text(after.id.clone()));
        parts.push(Sql("))"));
    }
    parts.push(Sql(" ORDER BY last_seen DESC, id DESC LIMIT "));
    parts.push(Int(i64::from(q.limit) + 1));
    (
        format!("SELECT {GROUP_COLUMNS} FROM alert_groups WHERE TRUE"),
        parts,
    )
}

/// The page of a listing's rows (one more than the limit asked, to know whether another
/// page follows).
pub(crate) fn page<R: Columns>(rows: &[R], limit: u32) -> Result<GroupPage, StoreError> {
    let mut groups = rows
        .iter()
        .map(group_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next = if groups.len() > limit as usize {
        groups.truncate(limit as usize);
        groups.last().map(|g| GroupCursor {
            last_seen: g.last_seen,
            id: g.id.clone(),
        })
    } else {
        None
    };
    Ok(GroupPage { groups, next })
}

pub(crate) fn group_sql() -> String {
    format!("SELECT {GROUP_COLUMNS} FROM alert_groups WHERE id = $1")
}

pub(crate) fn changes_sql() -> String {
    format!("SELECT {CHANGE_COLUMNS} FROM alert_group_changes WHERE group_id = $1 ORDER BY seq")
}

pub(crate) fn recent_events_sql() -> String {
    format!(
        "SELECT {} FROM events WHERE group_id = $1 ORDER BY time DESC, id DESC LIMIT {RECENT_EVENTS}",
        crate::events::LIST_COLUMNS
    )
}

/// The update of a transition: the group's new state, if it is in one the transition
/// starts from.
pub(crate) fn transition_parts(id: &str, transition: Transition, now: DateTime<Utc>) -> Vec<Part> {
    use Part::*;
    let mut parts = vec![
        Sql("UPDATE alert_groups SET state = "),
        Text(transition.target().as_str().to_string()),
        Sql(", state_changed_at = "),
        Time(now),
        Sql(" WHERE id = "),
        Text(id.to_string()),
        Sql(" AND state IN ("),
    ];
    let from: Vec<GroupState> = GroupState::ALL
        .into_iter()
        .filter(|s| transition.allowed_from(*s))
        .collect();
    for (i, state) in from.into_iter().enumerate() {
        if i > 0 {
            parts.push(Sql(", "));
        }
        parts.push(Text(state.as_str().to_string()));
    }
    parts.push(Sql(") RETURNING "));
    parts.push(Sql(GROUP_COLUMNS));
    parts
}

/// The history row of a change.
pub(crate) fn change_parts(
    id: &str,
    at: DateTime<Utc>,
    actor: &str,
    state: GroupState,
    comment: Option<&str>,
) -> Vec<Part> {
    use Part::*;
    let mut parts = vec![
        Sql("INSERT INTO alert_group_changes (group_id, at, actor, state, comment) VALUES ("),
        Text(id.to_string()),
        Sql(", "),
        Time(at),
        Sql(", "),
        Text(actor.to_string()),
        Sql(", "),
        Text(state.as_str().to_string()),
        Sql(", "),
    ];
    match comment {
        Some(c) => parts.push(Text(c.to_string())),
        None => parts.push(Sql("NULL")),
    }
    parts.push(Sql(")"));
    parts
}

pub(crate) fn insert_suppression_parts(s: &Suppression) -> Result<Vec<Part>, StoreError> {
    use Part::*;
    let json = serde_json::to_string(&s.filter)
        .map_err(|e| StoreError::Database(format!("encoding a suppression's match: {e}")))?;
    Ok(vec![
        Sql(
            "INSERT INTO suppressions (id, match_json, reason, expires, created_at, created_by, \
             origin) VALUES (",
        ),
        Text(s.id.to_string()),
        Sql(", "),
        Text(json),
        Sql(", "),
        Text(s.reason.clone()),
        Sql(", "),
        Time(s.expires),
        Sql(", "),
        Time(s.created_at),
        Sql(", "),
        Text(s.created_by.clone()),
        Sql(", "),
        Text(s.origin.clone()),
        // Replicas store a Setting's suppressions under the same ids.
        Sql(") ON CONFLICT (id) DO NOTHING"),
    ])
}

/// Suppressions, oldest first: those not expired at `now`, or all of them.
pub(crate) fn suppressions_parts(now: Option<DateTime<Utc>>) -> (String, Vec<Part>) {
    let mut parts = Vec::new();
    if let Some(now) = now {
        parts.push(Part::Sql(" WHERE expires > "));
        parts.push(Part::Time(now));
    }
    parts.push(Part::Sql(" ORDER BY created_at, id"));
    (
        format!("SELECT {SUPPRESSION_COLUMNS} FROM suppressions"),
        parts,
    )
}

pub(crate) fn group_from_row<R: Columns>(row: &R) -> Result<AlertGroup, StoreError> {
    Ok(AlertGroup {
        id: row.plain("id")?,
        rule: row.plain("rule")?,
        source: row.plain("source")?,
        severity: sql::severity(row.rank("severity")?)?,
        cluster: row.plain("cluster")?,
        namespace: row.plain("namespace")?,
        workload: row.plain("workload")?,
        count: row.plain("count")?,
        suppressed: row.plain("suppressed")?,
        first_seen: row.time("first_seen")?,
        last_seen: row.time("last_seen")?,
        state: group_state(&row.plain::<String>("state")?)?,
        state_changed_at: row.time("state_changed_at")?,
    })
}

pub(crate) fn change_from_row<R: Columns>(row: &R) -> Result<GroupChange, StoreError> {
    Ok(GroupChange {
        at: row.time("at")?,
        actor: row.plain("actor")?,
        state: group_state(&row.plain::<String>("state")?)?,
        comment: row.plain("comment")?,
    })
}

pub(crate) fn suppression_from_row<R: Columns>(row: &R) -> Result<Suppression, StoreError> {
    let id: String = row.plain("id")?;
    let filter: String = row.plain("match_json")?;
    Ok(Suppression {
        id: Uuid::try_parse(&id)
            .map_err(|e| StoreError::Corrupt(format!("suppression id `{id}`: {e}")))?,
        filter: serde_json::from_str(&filter)
            .map_err(|e| StoreError::Corrupt(format!("suppression {id} match: {e}")))?,
        reason: row.plain("reason")?,
        expires: row.time("expires")?,
        created_at: row.time("created_at")?,
        created_by: row.plain("created_by")?,
        origin: row.plain("origin")?,
    })
}

fn group_state(text: &str) -> Result<GroupState, StoreError> {
    text.parse().map_err(StoreError::Corrupt)
}

/// The `workload` of a group for an event: the owner, else its pod or node.
pub(crate) fn workload_of(event: &Event) -> Option<String> {
    Some(GroupField::Workload.value(event)).filter(|w| !w.is_empty())
}

/// The statements that forget triage state older than `cutoff`, in order: the history of
/// groups none of whose events is left, those groups, and suppressions expired before it.
pub(crate) fn forget_parts(cutoff: DateTime<Utc>) -> [Vec<Part>; 3] {
    use Part::*;
    const GONE: &str = "SELECT g.id FROM alert_groups g WHERE g.last_seen < ";
    const EMPTY: &str = " AND NOT EXISTS (SELECT 1 FROM events e WHERE e.group_id = g.id)";
    [
        vec![
            Sql("DELETE FROM alert_group_changes WHERE group_id IN ("),
            Sql(GONE),
            Time(cutoff),
            Sql(EMPTY),
            Sql(")"),
        ],
        vec![
            Sql("DELETE FROM alert_groups WHERE id IN ("),
            Sql(GONE),
            Time(cutoff),
            Sql(EMPTY),
            Sql(")"),
        ],
        vec![
            Sql("DELETE FROM suppressions WHERE expires < "),
            Time(cutoff),
        ],
    ]
}
