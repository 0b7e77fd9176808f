//! The normalized event every source is parsed into (DESIGN.md §2).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Prefix of the tag the hub adds to an event posted by a credential bound to the event's
/// cluster (`falconer.io/bound-sender=<credential name>`). Tags with the reserved prefix
/// `falconer.io/` are removed from every incoming event first, so no sender can forge it.
pub const BOUND_SENDER_TAG: &str = "falconer.io/bound-sender=";
/// Tags starting with this are the hub's own.
pub const RESERVED_TAG_PREFIX: &str = "falconer.io/";
/// The tag of an event whose source gave no time (a KubeArmor alert without `Timestamp` and
/// `UpdatedTime`): its `time` is when the hub received it.
pub const RECEIVED_TIME_TAG: &str = "falconer.io/time=received";

/// One normalized security event, as stored and as served by the query API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// UUID v7 assigned by the hub when the event was received.
    pub id: Uuid,
    /// Stable 128-bit key derived from the source's natural key ([`dedup_key`]); a retried
    /// POST of the same alert maps to the same key and is stored once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<Uuid>,
    /// When the event happened, as the source says (microsecond precision).
    pub time: DateTime<Utc>,
    /// When the hub received it.
    pub received_at: DateTime<Utc>,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
    pub kind: Kind,
    pub severity: Severity,
    /// The source's own severity text, unchanged.
    pub severity_raw: String,
    pub rule: String,
    pub message: String,
    /// The source's tags (Falco's rule tags, …), and the hub's provenance tag
    /// ([`BOUND_SENDER_TAG`]) when a credential bound to the event's cluster posted it.
    pub tags: Vec<String>,
    pub cluster: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    /// The source's structured fields (Falco `output_fields`): a JSON object, kept as text so
    /// ingest never rebuilds it.
    pub fields: Box<serde_json::value::RawValue>,
    /// The payload exactly as received. Omitted from list responses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<Box<serde_json::value::RawValue>>,
    /// The alert group the hub filed the event under when it stored it
    /// ([`crate::group::group_id`] of the store's `group_by`); absent before that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The suppression that matched the event when it was stored: it is kept and counted,
    /// but not delivered to consumers that do not ask for suppressed events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<Uuid>,
}

/// The dedup key of a source's natural key (e.g. Falco: time, rule, hostname, output): the
/// first 128 bits of SHA-256 over the source name and the parts, each NUL-terminated.
/// Fixed-size, so the unique index stays small and fast.
pub fn dedup_key(source: &str, parts: &[&[u8]]) -> Uuid {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    hash.update(source.as_bytes());
    hash.update([0]);
    for part in parts {
        hash.update(part);
        hash.update([0]);
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::from_bytes(bytes)
}

/// The owning workload of a pod, when known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub kind: String,
    pub name: String,
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

string_enum! {
    /// What an event is about.
    Kind {
        RuntimeAlert = "runtime_alert",
        Vulnerability = "vulnerability",
        Misconfiguration = "misconfiguration",
        Secret = "secret",
        Audit = "audit",
        Other = "other",
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown kind `{s}`; expected one of {}", names(Kind::ALL)))
    }
}

string_enum! {
    /// Falco's eight levels, most severe first; every source maps onto this scale.
    Severity {
        Emergency = "emergency",
        Alert = "alert",
        Critical = "critical",
        Error = "error",
        Warning = "warning",
        Notice = "notice",
        Informational = "informational",
        Debug = "debug",
    }
}

impl Severity {
    /// 0 = emergency … 7 = debug, Falco's own numbering; smaller is more severe.
    pub fn rank(self) -> i16 {
        self as i16
    }

    pub fn from_rank(rank: i16) -> Option<Severity> {
        usize::try_from(rank)
            .ok()
            .and_then(|r| Severity::ALL.get(r).copied())
    }
}

impl FromStr for Severity {
    type Err = String;
    /// Case-insensitive, with Falco's aliases (`info`, `warn`, `err`, `crit`, `emerg`).
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.trim().to_ascii_lowercase();
        let found = match lower.as_str() {
            "info" => Some(Severity::Informational),
            "warn" => Some(Severity::Warning),
            "err" => Some(Severity::Error),
            "crit" => Some(Severity::Critical),
            "emerg" => Some(Severity::Emergency),
            other => Severity::ALL.iter().copied().find(|v| v.as_str() == other),
        };
        found.ok_or_else(|| {
            format!(
                "unknown severity `{s}`; expected one of {}",
                names(Severity::ALL)
            )
        })
    }
}

fn names<T: fmt::Display>(all: &[T]) -> String {
    all.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the store did with one event of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// The event's id; for a duplicate, the id of the copy stored earlier.
    pub id: Uuid,
    pub duplicate: bool,
}

/// A cluster the hub has received events from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cluster {
    pub name: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// Events stored for this cluster (duplicates not counted).
    pub events: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_parses_falco_names_and_aliases_in_any_case() {
        assert_eq!("Critical".parse(), Ok(Severity::Critical));
        assert_eq!("INFO".parse(), Ok(Severity::Informational));
        assert_eq!("Informational".parse(), Ok(Severity::Informational));
        assert_eq!("warn".parse(), Ok(Severity::Warning));
        assert!("severe".parse::<Severity>().is_err());
    }

    #[test]
    fn severity_rank_follows_falco_numbering() {
        assert_eq!(Severity::Emergency.rank(), 0);
        assert_eq!(Severity::Debug.rank(), 7);
        for s in Severity::ALL {
            assert_eq!(Severity::from_rank(s.rank()), Some(*s));
        }
        assert_eq!(Severity::from_rank(8), None);
        assert_eq!(Severity::from_rank(-1), None);
    }

    #[test]
    fn kind_round_trips_through_its_text() {
        for k in Kind::ALL {
            assert_eq!(k.as_str().parse(), Ok(*k));
        }
        assert!("alert".parse::<Kind>().is_err());
    }
}
