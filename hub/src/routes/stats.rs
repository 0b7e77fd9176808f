//! The aggregates API behind the dashboard: events over time by severity, by source and by
//! rule; findings per image or node, open and fixed.

use crate::error::HubError;
use crate::routes::params::Params;
use crate::state::AppState;
use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse};
use chrono::{Duration, Utc};
use falconer_store::{
    EventStatsQuery, FindingState, FindingStatsQuery, Kind, Severity, TargetCount, TargetKind,
};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

pub(crate) const EVENT_STATS_PARAMS: &[&str] = &["from", "to", "cluster", "kind", "bucket", "top"];
pub(crate) const FINDING_STATS_PARAMS: &[&str] = &["cluster", "kind", "top"];

/// Most buckets one answer may hold.
pub const MAX_BUCKETS: i64 = 1000;
const DEFAULT_SPAN_HOURS: i64 = 24;
const DEFAULT_TOP: u32 = 10;
const MAX_TOP: u32 = 100;
const DEFAULT_TARGETS: u32 = 50;
const MAX_TARGETS: u32 = 500;
/// Bucket sizes chosen when none is asked for: the smallest giving at most 60 buckets.
const STEPS: &[i64] = &[
    60,
    300,
    900,
    1800,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86_400,
    7 * 86_400,
];
const MAX_BUCKET_SECS: i64 = 31 * 86_400;
const MICROS: i64 = 1_000_000;

/// `GET /api/v1/stats/events`
pub async fn events(request: HttpRequest, state: Data<AppState>) -> Result<HttpResponse, HubError> {
    let params = Params::parse(request.query_string(), EVENT_STATS_PARAMS)?;
    let to = params.time("to")?.unwrap_or_else(Utc::now);
    let from = params
        .time("from")?
        .unwrap_or(to - Duration::hours(DEFAULT_SPAN_HOURS));
    if from >= to {
        return Err(HubError::bad("to", "must be later than `from`"));
    }
    // Microseconds, as stored: a window of 90.5 s in 1 s buckets needs 91 of them.
    let span = (to - from).num_microseconds().unwrap_or(i64::MAX);
    let bucket_secs = match params.text("bucket")? {
        Some(text) => parse_bucket(text)?,
        None => STEPS
            .iter()
            .copied()
            .find(|step| buckets_of(span, step * MICROS) <= 60)
            .unwrap_or(MAX_BUCKET_SECS),
    };
    let buckets = buckets_of(span, bucket_secs * MICROS);
    if buckets > MAX_BUCKETS {
        return Err(HubError::bad(
            "bucket",
            format!(
                "gives {buckets} buckets from `from` to `to`; at most {MAX_BUCKETS} are allowed"
            ),
        ));
    }
    let query = EventStatsQuery {
        from,
        to,
        cluster: params.text("cluster")?.map(str::to_owned),
        kind: params.parsed::<Kind>("kind")?,
        bucket_micros: bucket_secs * MICROS,
        top: top(&params, DEFAULT_TOP, MAX_TOP)?,
    };
    let stats = state.store.event_stats(query).await?;

    let mut dense: Vec<BTreeMap<Severity, i64>> = vec![BTreeMap::new(); buckets as usize];
    let mut by_severity: BTreeMap<Severity, i64> = BTreeMap::new();
    for count in &stats.buckets {
        if let Some(slot) = usize::try_from(count.index)
            .ok()
            .and_then(|i| dense.get_mut(i))
        {
            *slot.entry(count.severity).or_default() += count.count;
        }
        *by_severity.entry(count.severity).or_default() += count.count;
    }
    let total: i64 = by_severity.values().sum();
    let buckets: Vec<Value> = dense
        .iter()
        .enumerate()
        .map(|(i, counts)| {
            json!({
                "start": from + Duration::seconds(bucket_secs * i as i64),
                "total": counts.values().sum::<i64>(),
                "counts": severity_map(counts),
            })
        })
        .collect();
    let by_source: Vec<Value> = stats
        .by_source
        .iter()
        .map(|s| json!({"source": s.source, "count": s.count, "last": s.last}))
        .collect();
    let by_rule: Vec<Value> = stats
        .by_rule
        .iter()
        .map(|r| json!({"rule": r.rule, "count": r.count}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "from": from,
        "to": to,
        "bucket_seconds": bucket_secs,
        "total": total,
        "by_severity": severity_map(&by_severity),
        "buckets": buckets,
        "by_source": by_source,
        "by_rule": by_rule,
    })))
}

/// Buckets of `step` needed to cover `span` (both positive).
fn buckets_of(span: i64, step: i64) -> i64 {
    span / step + i64::from(span % step != 0)
}

/// `GET /api/v1/stats/findings`
pub async fn findings(
    request: HttpRequest,
    state: Data<AppState>,
) -> Result<HttpResponse, HubError> {
    let params = Params::parse(request.query_string(), FINDING_STATS_PARAMS)?;
    let query = FindingStatsQuery {
        cluster: params.text("cluster")?.map(str::to_owned),
        kind: params.parsed::<Kind>("kind")?,
    };
    let top = top(&params, DEFAULT_TARGETS, MAX_TARGETS)?;
    let counts = state.store.finding_stats(query).await?;
    Ok(HttpResponse::Ok().json(summarize_findings(&counts, top as usize)))
}

#[derive(Default)]
struct Target {
    open: BTreeMap<Severity, i64>,
    fixed: i64,
}

impl Target {
    fn open_total(&self) -> i64 {
        self.open.values().sum()
    }
}

/// Totals, and the `top` targets with the most severe open findings first.
fn summarize_findings(counts: &[TargetCount], top: usize) -> Value {
    let mut targets: BTreeMap<(TargetKind, &str), Target> = BTreeMap::new();
    for c in counts {
        let target = targets
            .entry((c.target_kind, c.target.as_str()))
            .or_default();
        match c.state {
            FindingState::Open => *target.open.entry(c.severity).or_default() += c.count,
            FindingState::Fixed => target.fixed += c.count,
        }
    }
    let mut open: BTreeMap<Severity, i64> = BTreeMap::new();
    let mut fixed = 0;
    for target in targets.values() {
        for (severity, n) in &target.open {
            *open.entry(*severity).or_default() += n;
        }
        fixed += target.fixed;
    }
    let total_targets = targets.len();
    let mut ranked: Vec<((TargetKind, &str), Target)> = targets.into_iter().collect();
    // Severity is ordered most severe first, so comparing the open counts severity by severity
    // puts a target with one critical before one with many warnings.
    let weight = |t: &Target| -> Vec<i64> {
        Severity::ALL
            .iter()
            .map(|s| t.open.get(s).copied().unwrap_or(0))
            .collect()
    };
    ranked.sort_by(|(ka, a), (kb, b)| {
        weight(b)
            .cmp(&weight(a))
            .then(b.fixed.cmp(&a.fixed))
            .then(ka.cmp(kb))
    });
    let items: Vec<Value> = ranked
        .iter()
        .take(top)
        .map(|((kind, name), t)| {
            json!({
                "kind": kind.as_str(),
                "target": name,
                "open": t.open_total(),
                "fixed": t.fixed,
                "open_by_severity": severity_map(&t.open),
            })
        })
        .collect();
    json!({
        "open": open.values().sum::<i64>(),
        "fixed": fixed,
        "open_by_severity": severity_map(&open),
        "total_targets": total_targets,
        "targets": items,
    })
}

/// `{"critical": 3, ...}` without zeros.
fn severity_map(counts: &BTreeMap<Severity, i64>) -> Value {
    let mut map = Map::new();
    for (severity, n) in counts {
        if *n > 0 {
            map.insert(severity.as_str().to_string(), json!(n));
        }
    }
    Value::Object(map)
}

fn top(params: &Params, default: u32, max: u32) -> Result<u32, HubError> {
    match params.text("top")? {
        None => Ok(default),
        Some(v) => v
            .parse()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| HubError::bad("top", format!("must be a whole number from 1 to {max}"))),
    }
}

/// `90`, `90s`, `5m`, `1h`, `1d`: a whole number of seconds from 1 s to 31 days.
fn parse_bucket(text: &str) -> Result<i64, HubError> {
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let multiplier = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => 0,
    };
    digits
        .parse::<i64>()
        .ok()
        .filter(|_| multiplier > 0 && digits.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.checked_mul(multiplier))
        .filter(|secs| (1..=MAX_BUCKET_SECS).contains(secs))
        .ok_or_else(|| {
            HubError::bad(
                "bucket",
                "must be a duration such as 60s, 5m, 1h or 1d, from 1 second to 31 days",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_durations_take_seconds_minutes_hours_and_days() {
        assert_eq!(parse_bucket("90").unwrap(), 90);
        assert_eq!(parse_bucket("90s").unwrap(), 90);
        assert_eq!(parse_bucket("5m").unwrap(), 300);
        assert_eq!(parse_bucket("2h").unwrap(), 7200);
        assert_eq!(parse_bucket("1d").unwrap(), 86_400);
        for bad in [
            "",
            "0",
            "-5m",
            "5w",
            "m",
            "1.5h",
            "32d",
            "+5m",
            "99999999999999999999",
        ] {
            assert!(parse_bucket(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_with_the_most_severe_open_findings_come_first() {
        let count = |target: &str, state, severity, count| TargetCount {
            target_kind: TargetKind::Image,
            target: target.to_string(),
            state,
            severity,
            count,
        };
        let counts = vec![
            count("many-warnings", FindingState::Open, Severity::Warning, 40),
            count("one-critical", FindingState::Open, Severity::Critical, 1),
            count("one-critical", FindingState::Fixed, Severity::Error, 2),
            count("all-fixed", FindingState::Fixed, Severity::Critical, 5),
        ];
        let summary = summarize_findings(&counts, 2);
        assert_eq!(summary["open"], 41);
        assert_eq!(summary["fixed"], 7);
        assert_eq!(summary["total_targets"], 3);
        assert_eq!(
            summary["open_by_severity"],
            json!({"critical": 1, "warning": 40})
        );
        let names: Vec<&str> = summary["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["target"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["one-critical", "many-warnings"]);
        assert_eq!(summary["targets"][0]["fixed"], 2);
    }
}
