//! Event queries: the filters of `GET /api/v1/events` and keyset pagination, shared by both
//! databases as a list of SQL parts with typed binds.

use crate::event::{Event, Kind, Severity};
use chrono::{DateTime, Utc};
use uuid::Uuid;

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

pub(crate) enum Part {
    Sql(&'static str),
    Text(String),
    Time(DateTime<Utc>),
    Int(i64),
    Id(Uuid),
}

/// The WHERE clause (after `WHERE TRUE`) and ORDER/LIMIT of an event listing. The column
/// names and SQL are the same on both databases; only the binds differ in type.
pub(crate) fn listing_parts(q: &EventQuery) -> Vec<Part> {
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

/// Cuts the one-extra row off a listing and turns it into the next cursor.
pub(crate) fn into_page(mut events: Vec<Event>, limit: u32) -> Page {
    let limit = limit as usize;
    let next = if events.len() > limit {
        events.truncate(limit);
        events.last().map(Cursor::of)
    } else {
        None
    };
    Page { events, next }
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
