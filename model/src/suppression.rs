//! Suppressions: a known, accepted alert pattern silenced until it expires. Matching events
//! are still stored and counted in their group, with `suppressed: <id>`; consumers do not
//! receive them unless they set `includeSuppressed` (docs/triage.md).

use crate::matcher::Filter;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Most characters of a suppression's reason.
pub const MAX_REASON: usize = 1000;

/// A suppression as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suppression {
    pub id: Uuid,
    /// Which events it silences (the filter language of docs/filters.md).
    #[serde(rename = "match")]
    pub filter: Filter,
    pub reason: String,
    pub expires: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// The credential's name, or the Setting that declares it.
    pub created_by: String,
    /// `api`, or `setting:<namespace>/<name>`.
    pub origin: String,
}

/// The body of `POST /api/v1/suppressions`, and a Setting's `suppressions` entry.
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SuppressionSpec {
    /// Which events to silence; at least one condition.
    #[serde(rename = "match")]
    pub filter: Filter,
    /// Why, for whoever finds it later (1 to 1000 characters).
    pub reason: String,
    /// When it stops matching (RFC 3339), at most the hub's `triage.max_suppression_days`
    /// ahead.
    #[cfg_attr(feature = "crd", schemars(with = "String"))]
    pub expires: DateTime<Utc>,
}

impl SuppressionSpec {
    /// What a suppression must be, naming the field under `at` (`""` for a request body).
    pub fn validate(&self, at: &str, now: DateTime<Utc>, max_days: u32) -> Result<(), String> {
        let field = |name: &str| match at {
            "" => name.to_string(),
            _ => format!("{at}.{name}"),
        };
        if self.filter.is_empty() {
            return Err(format!(
                "{}: give at least one condition (an empty match would silence every event)",
                field("match")
            ));
        }
        self.filter.validate(&field("match"))?;
        let reason = self.reason.trim();
        if reason.is_empty() || self.reason.chars().count() > MAX_REASON {
            return Err(format!(
                "{}: must have 1 to {MAX_REASON} characters",
                field("reason")
            ));
        }
        if self.expires <= now {
            return Err(format!(
                "{}: {} is not in the future",
                field("expires"),
                self.expires.to_rfc3339()
            ));
        }
        let latest = now + chrono::Duration::days(i64::from(max_days));
        if self.expires > latest {
            return Err(format!(
                "{}: at most {max_days} days ahead ({}), not {}",
                field("expires"),
                latest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                self.expires.to_rfc3339()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(value: serde_json::Value) -> SuppressionSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_suppression_needs_a_condition_a_reason_and_an_expiry_within_the_maximum() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let ok = serde_json::json!({"match": {"rules": ["Read sensitive file*"]},
            "reason": "backup job", "expires": "2026-12-31T00:00:00Z"});
        assert_eq!(spec(ok.clone()).validate("", now, 90), Ok(()));
        let cases = [
            (
                "match",
                serde_json::json!({}),
                "match: give at least one condition",
            ),
            (
                "reason",
                serde_json::json!(" "),
                "reason: must have 1 to 1000",
            ),
            (
                "expires",
                serde_json::json!("2026-11-30T00:00:00Z"),
                "expires: 2026-11-30T00:00:00+00:00 is not in the future",
            ),
            (
                "expires",
                serde_json::json!("2027-06-01T00:00:00Z"),
                "expires: at most 90 days ahead (2027-03-01T00:00:00Z)",
            ),
        ];
        for (key, value, expected) in cases {
            let mut body = ok.clone();
            body[key] = value;
            let error = spec(body).validate("", now, 90).unwrap_err();
            assert!(error.starts_with(expected), "{key}: {error}");
        }
        let mut nested = ok.clone();
        nested["match"] = serde_json::json!({"fields": {"proc.name": {}}});
        assert!(
            spec(nested)
                .validate("suppressions[2]", now, 90)
                .unwrap_err()
                .starts_with("suppressions[2].match.fields[\"proc.name\"]:")
        );
    }
}
