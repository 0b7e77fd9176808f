//! KubeArmor alerts and logs (PascalCase JSON, as `karmor logs --json` and the relay's
//! exporters write them), one event each. Pure functions: no I/O.
//!
//! Alerts (`Type` `MatchedPolicy`, `MatchedHostPolicy`, `MatchedNativePolicy`) are runtime
//! alerts with KubeArmor's `Severity` "1"–"10" mapped by [`SEVERITY`]; logs (`ContainerLog`,
//! `HostLog`) are telemetry of kind `other`. Host events carry no pod fields. A record
//! without `UpdatedTime` and `Timestamp` (KubeArmor's documented container alert has
//! neither) is timed when the hub received it and tagged [`RECEIVED_TIME_TAG`].

use super::{Context, Obj, check_long_name, check_name, cluster, finish};
use chrono::{DateTime, SubsecRound, Utc};
use falconer_model::event::{RECEIVED_TIME_TAG, RESERVED_TAG_PREFIX};
use falconer_store::{Event, Kind, Severity, Workload, dedup_key};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

/// KubeArmor's severity 1 (lowest) … 10 (highest) on our scale.
pub const SEVERITY: [(u8, Severity); 10] = [
    (1, Severity::Informational),
    (2, Severity::Informational),
    (3, Severity::Notice),
    (4, Severity::Notice),
    (5, Severity::Warning),
    (6, Severity::Warning),
    (7, Severity::Error),
    (8, Severity::Critical),
    (9, Severity::Alert),
    (10, Severity::Emergency),
];

/// An alert without a severity (default posture, some native policies): a blocked action is
/// a warning, anything else a notice. Logs are informational.
pub const UNRATED_BLOCK: Severity = Severity::Warning;
pub const UNRATED_ALERT: Severity = Severity::Notice;
pub const LOG: Severity = Severity::Informational;

const ALERT_TYPES: &[&str] = &["MatchedPolicy", "MatchedHostPolicy", "MatchedNativePolicy"];
const LOG_TYPES: &[&str] = &["ContainerLog", "HostLog"];

/// The severity of an alert's `Severity` text; `None` when KubeArmor gave none.
pub fn severity(text: Option<&str>) -> Result<Option<Severity>, String> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty() && *t != "-") else {
        return Ok(None);
    };
    text.parse::<u8>()
        .ok()
        .and_then(|n| SEVERITY.iter().find(|(level, _)| *level == n))
        .map(|(_, s)| Some(*s))
        .ok_or_else(|| format!("field `Severity`: `{text}` is not a KubeArmor severity 1–10"))
}

pub fn parse(raw: &RawValue, ctx: &Context<'_>) -> Result<Event, String> {
    let item = Obj::read(raw, "")?;
    let kind_text = item.required("Type")?;
    let alert = if ALERT_TYPES.contains(&kind_text.as_ref()) {
        true
    } else if LOG_TYPES.contains(&kind_text.as_ref()) {
        false
    } else {
        return Err(format!(
            "field `Type`: `{kind_text}` is not a KubeArmor alert ({}) or log ({})",
            ALERT_TYPES.join(", "),
            LOG_TYPES.join(", ")
        ));
    };
    let given = time(&item)?;
    let time = given.unwrap_or(ctx.received_at);
    let action = item.string("Action")?;
    let severity_text = item.text("Severity")?;
    let (severity, severity_raw) = match (alert, severity(severity_text.as_deref())?) {
        (true, Some(s)) => (s, severity_text.unwrap_or_default()),
        (true, None) if action.as_deref() == Some("Block") => {
            (UNRATED_BLOCK, severity_text.unwrap_or_default())
        }
        (true, None) => (UNRATED_ALERT, severity_text.unwrap_or_default()),
        (false, _) => (LOG, severity_text.unwrap_or_default()),
    };
    let host = matches!(kind_text.as_ref(), "MatchedHostPolicy" | "HostLog");
    let name = |key: &str| -> Result<Option<String>, String> {
        let value = item.string(key)?;
        if let Some(v) = &value {
            check_name(key, v)?;
        }
        Ok(value)
    };
    let node = name("HostName")?;
    let (namespace, pod, container) = if host {
        (None, None, None)
    } else {
        (
            name("NamespaceName")?,
            name("PodName")?,
            name("ContainerName")?,
        )
    };
    let image = match item.string("ContainerImage")? {
        Some(image) if !host => {
            check_long_name("ContainerImage", &image)?;
            Some(image)
        }
        _ => None,
    };
    let workload = match item.obj("Owner")? {
        Some(owner) if !host => match (owner.string("Ref")?, owner.string("Name")?) {
            (Some(kind), Some(name)) => Some(Workload { kind, name }),
            _ => None,
        },
        _ => None,
    };
    let policy = item.string("PolicyName")?;
    let operation = item.string("Operation")?;
    let resource = item.string("Resource")?;
    let process = item.string("ProcessName")?;
    let result = item.string("Result")?;
    let rule = match (&policy, alert) {
        (Some(policy), _) => policy.clone(),
        (None, true) => "DefaultPosture".to_owned(),
        (None, false) => kind_text.to_string(),
    };
    check_long_name("PolicyName", &rule)?;
    let message = match item.string("Message")? {
        Some(message) => message,
        None => format!(
            "{} {} by {}: {}",
            operation.as_deref().unwrap_or("Operation"),
            resource.as_deref().unwrap_or("-"),
            process.as_deref().unwrap_or("unknown process"),
            result.as_deref().unwrap_or("-"),
        ),
    };
    let mut tags: Vec<String> = match item.strings("ATags")? {
        tags if !tags.is_empty() => tags,
        _ => item
            .string("Tags")?
            .map(|t| {
                t.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    };
    // The hub's tags are the hub's: none comes from the payload.
    tags.retain(|t| !t.starts_with(RESERVED_TAG_PREFIX));
    if given.is_none() {
        tags.push(RECEIVED_TIME_TAG.to_owned());
    }
    let cluster_name = item.string("ClusterName")?;
    let cluster = cluster(ctx, cluster_name.as_deref(), "ClusterName")?;
    // A relay may deliver an alert twice; these fields identify it. Without a time of its
    // own, an alert is told from an identical later one by when it was received (a retried
    // POST of it is then stored twice: better than merging two alerts into one).
    let text = |key: &str| item.raw(key).map_or("", |r| r.get());
    let received = match given {
        Some(_) => String::new(),
        None => ctx.received_at.to_rfc3339(),
    };
    let dedup = dedup_key(
        "kubearmor",
        &[
            text("UpdatedTime").as_bytes(),
            text("Timestamp").as_bytes(),
            text("HostName").as_bytes(),
            text("NamespaceName").as_bytes(),
            text("PodName").as_bytes(),
            text("ContainerID").as_bytes(),
            text("HostPID").as_bytes(),
            text("PID").as_bytes(),
            text("Type").as_bytes(),
            text("PolicyName").as_bytes(),
            text("Operation").as_bytes(),
            text("Resource").as_bytes(),
            text("Data").as_bytes(),
            text("Result").as_bytes(),
            text("HashID").as_bytes(),
            received.as_bytes(),
        ],
    );
    // The flat record is the structured fields; KubeArmor has no nesting worth keeping apart.
    let fields: Map<String, Value> =
        serde_json::from_str(raw.get()).map_err(|e| format!("not a JSON object: {e}"))?;
    let event = Event {
        id: Uuid::now_v7(),
        dedup_key: Some(dedup),
        time,
        received_at: ctx.received_at,
        source: "kubearmor".into(),
        source_version: None,
        kind: if alert {
            Kind::RuntimeAlert
        } else {
            Kind::Other
        },
        severity,
        severity_raw,
        rule,
        message,
        tags,
        cluster,
        namespace,
        pod,
        container,
        image,
        node,
        workload,
        fields: super::to_fields(&Value::Object(fields))?,
        raw: Some(raw.to_owned()),
        group: None,
        suppressed: None,
    };
    finish(event, raw.get())
}

/// `UpdatedTime` (RFC 3339, microseconds) when present, else `Timestamp` (Unix seconds);
/// `None` when the record has neither.
fn time(item: &Obj<'_>) -> Result<Option<DateTime<Utc>>, String> {
    if let Some(text) = item.str("UpdatedTime")? {
        return DateTime::parse_from_rfc3339(&text)
            .map(|t| Some(t.with_timezone(&Utc).trunc_subsecs(6)))
            .map_err(|_| format!("field `UpdatedTime`: `{text}` is not an RFC 3339 timestamp"));
    }
    match item.i64("Timestamp")? {
        Some(seconds) => DateTime::from_timestamp(seconds, 0)
            .map(Some)
            .ok_or_else(|| format!("field `Timestamp`: {seconds} is out of range")),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context<'static> {
        Context {
            cluster: None,
            default_cluster: "home",
            received_at: Utc::now(),
        }
    }

    fn parse_text(text: &str) -> Result<Event, String> {
        parse(&RawValue::from_string(text.to_owned()).unwrap(), &ctx())
    }

    fn fixture(name: &str) -> Event {
        let path = format!(
            "{}/../tests/fixtures/kubearmor/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        parse_text(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn the_severity_table_covers_one_to_ten_in_rising_order() {
        let mut previous = Severity::Debug;
        for n in 1..=10u8 {
            let s = severity(Some(&n.to_string())).unwrap().unwrap();
            assert!(s <= previous, "{n} is less severe than {}", n - 1);
            previous = s;
        }
        // The table of docs/sources.md.
        use Severity::*;
        let documented = [
            Informational,
            Informational,
            Notice,
            Notice,
            Warning,
            Warning,
            Error,
            Critical,
            Alert,
            Emergency,
        ];
        for (n, expected) in (1..=10).zip(documented) {
            assert_eq!(
                severity(Some(&n.to_string())).unwrap(),
                Some(expected),
                "{n}"
            );
        }
        assert_eq!(severity(Some(" 7 ")).unwrap(), Some(Error));
        assert_eq!(severity(Some("-")).unwrap(), None);
        assert_eq!(severity(None).unwrap(), None);
        for bad in ["0", "11", "high", "5.5"] {
            assert!(severity(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_matched_policy_alert_is_a_runtime_alert_in_its_pod() {
        let e = fixture("matched-policy-block.json");
        assert_eq!(e.source, "kubearmor");
        assert_eq!(e.kind, Kind::RuntimeAlert);
        assert_eq!(e.severity, Severity::Warning);
        assert_eq!(e.severity_raw, "5");
        assert_eq!(e.rule, "block-pkg-mgr");
        assert_eq!(e.message, "package manager run in container");
        assert_eq!(e.cluster, "prod-eu");
        assert_eq!(e.namespace.as_deref(), Some("shop"));
        assert_eq!(e.pod.as_deref(), Some("web-1"));
        assert_eq!(e.container.as_deref(), Some("web"));
        assert_eq!(e.image.as_deref(), Some("registry.example/shop/web:1.4.2"));
        assert_eq!(e.node.as_deref(), Some("node-a"));
        assert_eq!(e.tags, ["NIST", "MITRE"]);
        assert_eq!(
            e.workload,
            Some(Workload {
                kind: "Deployment".into(),
                name: "web".into()
            })
        );
        assert_eq!(e.time.to_rfc3339(), "2026-05-04T10:11:12.345678+00:00");
    }

    #[test]
    fn a_host_policy_alert_has_no_pod_fields_and_a_unicode_message() {
        let e = fixture("matched-host-policy-unicode.json");
        assert_eq!(e.pod, None);
        assert_eq!(e.namespace, None);
        assert_eq!(e.container, None);
        assert_eq!(e.node.as_deref(), Some("node-b"));
        assert_eq!(e.severity, Severity::Critical);
        assert!(e.message.contains("überwacht"), "{}", e.message);
        assert_eq!(e.tags, ["PCI", "Ⅱ"], "ATags win over Tags");
    }

    #[test]
    fn a_container_log_is_informational_telemetry_timed_by_its_unix_timestamp() {
        let e = fixture("container-log-timestamp-only.json");
        assert_eq!(e.kind, Kind::Other);
        assert_eq!(e.severity, Severity::Informational);
        assert_eq!(e.rule, "ContainerLog");
        assert_eq!(e.time.timestamp(), 1_777_889_472);
        assert_eq!(e.cluster, "home", "no ClusterName: the hub's cluster");
        assert!(e.message.starts_with("File /etc/passwd by /bin/cat"));
    }

    #[test]
    fn a_default_posture_alert_without_severity_is_rated_by_its_action() {
        let e = fixture("default-posture-null-severity.json");
        assert_eq!(e.rule, "DefaultPosture");
        assert_eq!(e.severity, UNRATED_BLOCK);
        assert_eq!(e.severity_raw, "");
        let mut audit: Value = serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/../tests/fixtures/kubearmor/default-posture-null-severity.json",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap();
        audit["Action"] = "Audit".into();
        assert_eq!(
            parse_text(&audit.to_string()).unwrap().severity,
            UNRATED_ALERT
        );
    }

    #[test]
    fn malformed_records_are_refused_naming_the_field() {
        let cases = [
            ("[]", "expected a JSON object"),
            (r#"{"Timestamp":1}"#, "field `Type` is missing"),
            (
                r#"{"Type":"Weird","Timestamp":1}"#,
                "field `Type`: `Weird` is not a KubeArmor alert",
            ),
            (
                r#"{"Type":"MatchedPolicy","Timestamp":"soon"}"#,
                "field `Timestamp`: expected a whole number, got a string",
            ),
            (
                r#"{"Type":"MatchedPolicy","Timestamp":1,"Severity":"11"}"#,
                "field `Severity`: `11` is not a KubeArmor severity",
            ),
            (
                r#"{"Type":"MatchedPolicy","Timestamp":1,"PodName":["x"]}"#,
                "field `PodName`: expected a string, got an array",
            ),
            (
                r#"{"Type":"HostLog","Timestamp":99999999999999999}"#,
                "field `Timestamp`: 99999999999999999 is out of range",
            ),
        ];
        for (text, expected) in cases {
            let error = parse_text(text).unwrap_err();
            assert!(error.starts_with(expected), "{text}: {error}");
        }
    }

    #[test]
    fn an_alert_without_a_time_is_timed_when_received_and_says_so() {
        let context = ctx();
        let path = format!(
            "{}/../tests/fixtures/kubearmor/container-alert-no-time.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let e = parse(&RawValue::from_string(text.clone()).unwrap(), &context).unwrap();
        assert_eq!(e.time, context.received_at);
        assert_eq!(e.rule, "ksp-block-shell");
        assert_eq!(e.pod.as_deref(), Some("checkout-5d8f7-x2x9q"));
        assert_eq!(e.tags, ["MITRE", RECEIVED_TIME_TAG]);
        // An alert with a time of its own has no such tag, and one sent with the tag
        // does not keep it.
        let forged = parse_text(
            r#"{"Type":"MatchedPolicy","Timestamp":1,"ATags":["falconer.io/time=received"]}"#,
        )
        .unwrap();
        assert!(forged.tags.is_empty(), "{:?}", forged.tags);
        // Two identical alerts without a time, received apart, are two events.
        let later = Context {
            received_at: context.received_at + chrono::TimeDelta::seconds(1),
            ..ctx()
        };
        let again = parse(&RawValue::from_string(text).unwrap(), &later).unwrap();
        assert_ne!(e.dedup_key, again.dedup_key);
    }

    #[test]
    fn the_same_alert_twice_has_one_dedup_key() {
        let text = r#"{"Type":"MatchedPolicy","Timestamp":1,"HostPID":7,"PolicyName":"p"}"#;
        let other = r#"{"Type":"MatchedPolicy","Timestamp":1,"HostPID":8,"PolicyName":"p"}"#;
        let key = |t| parse_text(t).unwrap().dedup_key;
        assert_eq!(key(text), key(text));
        assert_ne!(key(text), key(other));
    }
}
