//! Events: the write path (each database's own: PostgreSQL partitions by day and inserts from
//! column arrays, SQLite inserts in chunks on its one writer), reading one event, and listing
//! them with the filters of `GET /api/v1/events` and keyset pagination, which both databases
//! answer with the same SQL and the same row mapping.

use crate::error::StoreError;
use crate::event::{Cluster, Event, Kind, Severity};
use crate::sql::{self, Columns, Dialect, Part};
use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;
use uuid::Uuid;

mod postgres;
mod sqlite;

/// Filters for listing events, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventQuery {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub source: Option<String>,
    pub kind: Option<Kind>,
    /// Events at least this severe.
    pub min_severity: Option<Severity>,
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub rule: Option<String>,
    /// Case-insensitive substring of the message (ASCII case folding on both databases).
    pub text: Option<String>,
    /// Events of this alert group.
    pub group: Option<String>,
    /// `Some(false)`: only events no suppression matched; `Some(true)`: only suppressed ones.
    pub suppressed: Option<bool>,
    /// Continue after this position (from a previous page's `next`).
    pub after: Option<Cursor>,
    pub limit: u32,
}

/// A position in the (time desc, id desc) order of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub time: DateTime<Utc>,
    pub id: Uuid,
}

impl Cursor {
    /// Opaque text for clients: `<microseconds>_<uuid>`.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.time.timestamp_micros(), self.id.simple())
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let (micros, id) = text.split_once('_')?;
        Some(Cursor {
            time: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: Uuid::try_parse(id).ok()?,
        })
    }

    pub fn of(event: &Event) -> Cursor {
        Cursor {
            time: event.time,
            id: event.id,
        }
    }
}

/// One page of events and where the next one starts (none when this is the last).
#[derive(Debug, Clone)]
pub struct Page {
    pub events: Vec<Event>,
    pub next: Option<Cursor>,
}

/// Columns of a listing (no `raw`) and of a single event (with it), in the order the
/// row mappers read them.
pub(crate) const LIST_COLUMNS: &str = "id, dedup_key, time, received_at, source, source_version, \
     kind, severity, severity_raw, rule, message, tags, cluster, namespace, pod, container, \
     image, node, workload_kind, workload_name, fields, group_id, suppressed";

/// One event with its raw payload (`$1`: its id).
pub(crate) fn event_sql() -> String {
    format!("SELECT {LIST_COLUMNS}, raw FROM events WHERE id = $1")
}

const CLUSTERS: &str = "SELECT name, first_seen, last_seen, events FROM clusters ORDER BY name";

/// An event listing: the WHERE clause (after `WHERE TRUE`) and ORDER/LIMIT. The column
/// names and SQL are the same on both databases; only the binds differ in type.
fn listing_parts(q: &EventQuery) -> Vec<Part> {
    use Part::*;
    let mut parts = Vec::new();
    let mut eq = |column: &'static str, value: &Option<String>| {
        if let Some(v) = value {
            parts.push(Sql(column));
            parts.push(Text(v.clone()));
        }
    };
    eq(" AND source = ", &q.source);
    eq(" AND cluster = ", &q.cluster);
    eq(" AND namespace = ", &q.namespace);
    eq(" AND pod = ", &q.pod);
    eq(" AND rule = ", &q.rule);
    eq(" AND group_id = ", &q.group);
    match q.suppressed {
        Some(true) => parts.push(Sql(" AND suppressed IS NOT NULL")),
        Some(false) => parts.push(Sql(" AND suppressed IS NULL")),
        None => {}
    }
    if let Some(kind) = q.kind {
        parts.push(Sql(" AND kind = "));
        parts.push(Text(kind.as_str().to_string()));
    }
    if let Some(severity) = q.min_severity {
        parts.push(Sql(" AND severity <= "));
        parts.push(Int(severity.rank().into()));
    }
    if let Some(since) = q.since {
        parts.push(Sql(" AND time >= "));
        parts.push(Time(since));
    }
    if let Some(until) = q.until {
        parts.push(Sql(" AND time < "));
        parts.push(Time(until));
    }
    if let Some(text) = &q.text {
        parts.push(Sql(" AND lower(message) LIKE lower("));
        parts.push(Text(format!("%{}%", escape_like(text))));
        parts.push(Sql(") ESCAPE '\\'"));
    }
    if let Some(after) = q.after {
        parts.push(Sql(" AND (time < "));
        parts.push(Time(after.time));
        parts.push(Sql(" OR (time = "));
        parts.push(Time(after.time));
        parts.push(Sql(" AND id < "));
        parts.push(Id(after.id));
        parts.push(Sql("))"));
    }
    parts.push(Sql(" ORDER BY time DESC, id DESC LIMIT "));
    // One more than asked, to learn whether another page follows.
    parts.push(Int(i64::from(q.limit) + 1));
    parts
}

fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The query of an event listing on `DB`.
pub(crate) fn listing<DB: Dialect>(q: &EventQuery) -> QueryBuilder<'static, DB> {
    sql::build(
        format!("SELECT {LIST_COLUMNS} FROM events WHERE TRUE"),
        listing_parts(q),
    )
}

/// Cuts the one-extra row off a listing and turns it into the next cursor.
fn into_page(mut events: Vec<Event>, limit: u32) -> Page {
    let limit = limit as usize;
    let next = if events.len() > limit {
        events.truncate(limit);
        events.last().map(Cursor::of)
    } else {
        None
    };
    Page { events, next }
}

/// The page of a listing's rows.
pub(crate) fn page<R: Columns>(rows: &[R], limit: u32) -> Result<Page, StoreError> {
    let events = rows
        .iter()
        .map(|r| from_row(r, false))
        .collect::<Result<_, _>>()?;
    Ok(into_page(events, limit))
}

/// An event from the columns of [`LIST_COLUMNS`], and `raw` when `with_raw`.
pub(crate) fn from_row<R: Columns>(row: &R, with_raw: bool) -> Result<Event, StoreError> {
    Ok(Event {
        id: row.id("id")?,
        dedup_key: row.plain("dedup_key")?,
        time: row.time("time")?,
        received_at: row.time("received_at")?,
        source: row.plain("source")?,
        source_version: row.plain("source_version")?,
        kind: sql::kind(&row.plain::<String>("kind")?)?,
        severity: sql::severity(row.rank("severity")?)?,
        severity_raw: row.plain("severity_raw")?,
        rule: row.plain("rule")?,
        message: row.plain("message")?,
        tags: row.json("tags")?,
        cluster: row.plain("cluster")?,
        namespace: row.plain("namespace")?,
        pod: row.plain("pod")?,
        container: row.plain("container")?,
        image: row.plain("image")?,
        node: row.plain("node")?,
        workload: sql::workload(row.plain("workload_kind")?, row.plain("workload_name")?),
        fields: row.json("fields")?,
        raw: sql::raw(if with_raw { row.plain("raw")? } else { None })?,
        group: row.plain("group_id")?,
        suppressed: row
            .plain::<Option<String>>("suppressed")?
            .map(|id| crate::sqlite::parse_id(&id))
            .transpose()?,
    })
}

fn cluster_from_row<R: Columns>(row: &R) -> Result<Cluster, StoreError> {
    Ok(Cluster {
        name: row.plain("name")?,
        first_seen: row.time("first_seen")?,
        last_seen: row.time("last_seen")?,
        events: row.plain("events")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_through_its_text() {
        let cursor = Cursor {
            time: DateTime::from_timestamp_micros(1_777_889_472_123_456).unwrap(),
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
    }

    #[test]
    fn malformed_cursors_are_refused() {
        for text in [
            "",
            "abc",
            "12_notauuid",
            "x_0190f5a1b2c37d4e8f90a1b2c3d4e5f6",
            "_",
        ] {
            assert_eq!(Cursor::decode(text), None, "{text}");
        }
    }

    #[test]
    fn like_wildcards_in_search_text_are_matched_literally() {
        assert_eq!(escape_like(r"100%_a\b"), r"100\%\_a\\b");
    }
}
