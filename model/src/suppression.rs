//! Suppressions: a known, accepted alert pattern silenced until it expires. Matching events
//! are still stored and counted in their group, with `suppressed: <id>`; consumers do not
//! receive them unless they set `includeSuppressed` (docs/triage.md).

use crate::matcher::Filter;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Most characters of a suppression's reason.
pub const MAX_REASON: usize = 1000;
/// How far ahead a suppression may expire unless `store.max_suppression_days` says otherwise.
pub const DEFAULT_MAX_DAYS: u32 = 90;

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
    /// Checks a suppression made now: a condition, a reason, an expiry in the future and at
    /// most `max_days` ahead. `at` prefixes the field names of the errors.
    pub fn validate(&self, at: &str, now: DateTime<Utc>, max_days: u32) -> Result<(), String> {
        self.validate_declared(at, now, max_days)?;
        if self.expires <= now {
            return Err(format!(
                "{}: {} is not in the future",
                field(at, "expires"),
                self.expires.to_rfc3339()
            ));
        }
        Ok(())
    }

    /// Checks a suppression declared in a Setting: as [`Self::validate`], except that an
    /// expiry in the past is no error (the suppression has simply ended).
    pub fn validate_declared(
        &self,
        at: &str,
        now: DateTime<Utc>,
        max_days: u32,
    ) -> Result<(), String> {
        self.validate_shape(at)?;
        let latest = now + chrono::Duration::days(i64::from(max_days));
        if self.expires > latest {
            return Err(format!(
                "{}: at most {max_days} days ahead ({}), not {}",
                field(at, "expires"),
                latest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                self.expires.to_rfc3339()
            ));
        }
        Ok(())
    }

    /// Checks what does not depend on the time: a condition and a reason.
    pub fn validate_shape(&self, at: &str) -> Result<(), String> {
        if self.filter.is_empty() {
            return Err(format!(
                "{}: give at least one condition (an empty match would silence every event)",
                field(at, "match")
            ));
        }
        self.filter.validate(&field(at, "match"))?;
        let reason = self.reason.trim();
        if reason.is_empty() || self.reason.chars().count() > MAX_REASON {
            return Err(format!(
                "{}: must have 1 to {MAX_REASON} characters",
                field(at, "reason")
            ));
        }
        Ok(())
    }
}

fn field(at: &str, name: &str) -> String {
    match at {
        "" => name.to_string(),
        _ => format!("{at}.{name}"),
    }
}

/// The origin of the suppressions of a Setting.
pub fn setting_origin(setting: &str) -> String {
    format!("Setting {setting}")
}

/// Whether a stored suppression came from a Setting (and is the Settings' to remove).
pub fn is_declared(origin: &str) -> bool {
    origin.starts_with("Setting ")
}

/// A suppression of a Setting (`spec.suppressions`), kept under GitOps.
#[cfg_attr(feature = "crd", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeclaredSuppression {
    /// Unique within the Setting; with the Setting's name it identifies the suppression.
    #[cfg_attr(
        feature = "crd",
        schemars(
            length(min = 1, max = 63),
            regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
        )
    )]
    pub name: String,
    /// The events to silence, in the match language of consumer filters (docs/filters.md).
    #[serde(rename = "match")]
    pub filter: Filter,
    /// Why these events are accepted (1–1000 characters).
    #[cfg_attr(feature = "crd", schemars(length(min = 1, max = 1000)))]
    pub reason: String,
    /// When the suppression ends (RFC 3339), at most `store.max_suppression_days` ahead.
    #[cfg_attr(feature = "crd", schemars(with = "String"))]
    pub expires: DateTime<Utc>,
}

impl DeclaredSuppression {
    pub fn spec(&self) -> SuppressionSpec {
        SuppressionSpec {
            filter: self.filter.clone(),
            reason: self.reason.clone(),
            expires: self.expires,
        }
    }

    /// The stored suppression of this entry of Setting `setting`. Its id is derived from the
    /// Setting, the name and the content, so every replica stores the same one and an edit
    /// replaces it.
    pub fn stored(&self, setting: &str, created_at: DateTime<Utc>) -> Suppression {
        use sha2::Digest;
        let mut hash = sha2::Sha256::new();
        for part in [
            setting,
            &self.name,
            &serde_json::to_string(self).unwrap_or_default(),
        ] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&hash.finalize()[..16]);
        Suppression {
            id: uuid::Builder::from_custom_bytes(bytes).into_uuid(),
            filter: self.filter.clone(),
            reason: self.reason.trim().to_string(),
            expires: self.expires,
            created_at,
            created_by: setting_origin(setting),
            origin: setting_origin(setting),
        }
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
