//! Cilium Tetragon JSON export lines (`process_exec`, `process_kprobe`, `process_lsm`, …),
//! one event each. Pure functions: no I/O.
//!
//! Tetragon has no severity. It is derived by [`TetragonConfig::severity_rules`]: the first
//! rule whose every given condition (policy name, a tag, the action, the event type) holds
//! decides; the defaults rate enforcement (SIGKILL, override) critical, process lifecycle
//! informational or debug, and anything else a policy raised a notice.

use super::{Context, Obj, check_long_name, check_name, cluster, finish, glob};
use chrono::{DateTime, SubsecRound, Utc};
use falconer_store::{Event, Kind, Severity, Workload, dedup_key};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

/// The event types of Tetragon's export; an export line holds exactly one.
pub const EVENT_TYPES: &[&str] = &[
    "process_exec",
    "process_exit",
    "process_kprobe",
    "process_tracepoint",
    "process_uprobe",
    "process_lsm",
    "process_usdt",
    "process_loader",
    "process_throttle",
    "rate_limit_info",
];

/// `sources.tetragon` in the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TetragonConfig {
    /// Checked in order; the first matching rule gives the severity. Setting this list
    /// replaces the defaults (`--print-config` shows them). Nothing matching: informational.
    pub severity_rules: Vec<SeverityRule>,
}

/// One severity rule: every condition given must hold. Patterns are globs (`*`),
/// case-insensitive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityRule {
    /// The TracingPolicy's name (`policy_name`); an event without one never matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Any of the policy's tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The action Tetragon took, e.g. `KPROBE_ACTION_SIGKILL` (`*SIGKILL` matches every hook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The event type, e.g. `process_exec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    pub severity: Severity,
}

impl SeverityRule {
    fn new(
        condition: fn(&mut SeverityRule) -> &mut Option<String>,
        pattern: &str,
        severity: Severity,
    ) -> SeverityRule {
        let mut rule = SeverityRule {
            policy: None,
            tag: None,
            action: None,
            event: None,
            severity,
        };
        *condition(&mut rule) = Some(pattern.to_owned());
        rule
    }

    fn matches(&self, facts: &Facts<'_>) -> bool {
        let one = |pattern: &Option<String>, value: Option<&str>| match pattern {
            None => true,
            Some(pattern) => value.is_some_and(|v| glob(pattern, v)),
        };
        one(&self.policy, facts.policy)
            && one(&self.action, facts.action)
            && one(&self.event, Some(facts.event))
            && self
                .tag
                .as_ref()
                .is_none_or(|pattern| facts.tags.iter().any(|t| glob(pattern, t)))
    }

    /// How the rule reads in `fields` and the docs, e.g. `action=*SIGKILL`.
    fn describe(&self) -> String {
        [
            ("policy", &self.policy),
            ("tag", &self.tag),
            ("action", &self.action),
            ("event", &self.event),
        ]
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| format!("{name}={v}")))
        .collect::<Vec<_>>()
        .join(",")
    }
}

impl Default for TetragonConfig {
    fn default() -> Self {
        use Severity::*;
        let action = |p: &str, s| SeverityRule::new(|r| &mut r.action, p, s);
        let tag = |p: &str, s| SeverityRule::new(|r| &mut r.tag, p, s);
        let event = |p: &str, s| SeverityRule::new(|r| &mut r.event, p, s);
        TetragonConfig {
            severity_rules: vec![
                // Tetragon stopped something: enforcement policies fire on real attempts.
                action("*SIGKILL", Critical),
                action("*OVERRIDE", Critical),
                action("*NOTIFYENFORCER", Critical),
                action("*SIGNAL", Error),
                tag("*privilege*escalation*", Error),
                tag("*process*injection*", Error),
                event("process_exec", Informational),
                event("process_exit", Debug),
                event("process_loader", Debug),
                event("process_throttle", Informational),
                event("rate_limit_info", Informational),
                // Any other event was raised by a TracingPolicy someone wrote to be told.
                SeverityRule::new(|r| &mut r.policy, "*", Notice),
            ],
        }
    }
}

/// What severity rules look at.
pub struct Facts<'a> {
    pub event: &'a str,
    pub policy: Option<&'a str>,
    pub action: Option<&'a str>,
    pub tags: &'a [String],
}

/// The severity of an event and the rule that gave it (`None`: no rule matched).
pub fn severity(config: &TetragonConfig, facts: &Facts<'_>) -> (Severity, Option<String>) {
    config
        .severity_rules
        .iter()
        .find(|rule| rule.matches(facts))
        .map_or((Severity::Informational, None), |rule| {
            (rule.severity, Some(rule.describe()))
        })
}

pub fn parse(raw: &RawValue, ctx: &Context<'_>, config: &TetragonConfig) -> Result<Event, String> {
    let item = Obj::read(raw, "")?;
    let present: Vec<&str> = EVENT_TYPES
        .iter()
        .copied()
        .filter(|t| item.has(t))
        .collect();
    let event_type = match present.as_slice() {
        [one] => *one,
        [] => {
            return Err(format!(
                "no Tetragon event in the line; expected one of {}",
                EVENT_TYPES.join(", ")
            ));
        }
        several => {
            return Err(format!(
                "several Tetragon events in one line ({}); expected one",
                several.join(", ")
            ));
        }
    };
    let inner = item
        .obj(event_type)?
        .ok_or_else(|| format!("field `{event_type}` is missing"))?;
    let time_text = item.required("time")?;
    let time = DateTime::parse_from_rfc3339(&time_text)
        .map_err(|_| format!("field `time`: `{time_text}` is not an RFC 3339 timestamp"))?
        .with_timezone(&Utc)
        .trunc_subsecs(6);
    let node = item.string("node_name")?;
    if let Some(node) = &node {
        check_name("node_name", node)?;
    }
    let cluster_name = item.string("cluster_name")?;
    let cluster = cluster(ctx, cluster_name.as_deref(), "cluster_name")?;

    let process = inner.obj("process")?;
    let parent = inner.obj("parent")?;
    let pod = match &process {
        Some(process) => process.obj("pod")?,
        None => None,
    };
    let container = match &pod {
        Some(pod) => pod.obj("container")?,
        None => None,
    };
    let image = match &container {
        Some(container) => match container.obj("image")? {
            Some(image) => image.string("name")?,
            None => None,
        },
        None => None,
    };
    if let Some(image) = &image {
        check_long_name(
            &format!("{event_type}.process.pod.container.image.name"),
            image,
        )?;
    }
    let pod_name = |key: &str| -> Result<Option<String>, String> {
        match &pod {
            Some(pod) => {
                let value = pod.string(key)?;
                if let Some(v) = &value {
                    check_name(&pod.path_of(key), v)?;
                }
                Ok(value)
            }
            None => Ok(None),
        }
    };
    let namespace = pod_name("namespace")?;
    let pod_value = pod_name("name")?;
    let workload = match (pod_name("workload_kind")?, pod_name("workload")?) {
        (Some(kind), Some(name)) => Some(Workload { kind, name }),
        _ => None,
    };
    let container_name = match &container {
        Some(container) => container.string("name")?,
        None => None,
    };

    let policy = inner.string("policy_name")?;
    if let Some(policy) = &policy {
        check_long_name(&inner.path_of("policy_name"), policy)?;
    }
    let action = inner.string("action")?;
    let tags = inner.strings("tags")?;
    let function = inner.string("function_name")?;
    let (severity, rule_used) = severity(
        config,
        &Facts {
            event: event_type,
            policy: policy.as_deref(),
            action: action.as_deref(),
            tags: &tags,
        },
    );
    let binary = match &process {
        Some(p) => p.string("binary")?,
        None => None,
    };
    let arguments = match &process {
        Some(p) => p.string("arguments")?,
        None => None,
    };
    let exec_id = match &process {
        Some(p) => p.string("exec_id")?,
        None => None,
    };
    let message = match inner.string("message")? {
        Some(message) => message,
        None => {
            let mut text = event_type.to_owned();
            if let Some(function) = &function {
                text.push(' ');
                text.push_str(function);
                text.push(':');
            }
            for part in [&binary, &arguments].into_iter().flatten() {
                text.push(' ');
                text.push_str(part);
            }
            text
        }
    };

    let mut fields = Map::new();
    fields.insert("event".into(), event_type.into());
    let copy = |fields: &mut Map<String, Value>, obj: &Obj<'_>, keys: &[&str], into: &str| {
        let mut out = Map::new();
        for key in keys {
            if let Some(value) = obj.value(key) {
                out.insert((*key).into(), value);
            }
        }
        if !out.is_empty() {
            fields.insert(into.into(), Value::Object(out));
        }
    };
    let process_keys = [
        "binary",
        "arguments",
        "pid",
        "uid",
        "cwd",
        "exec_id",
        "parent_exec_id",
        "flags",
        "start_time",
    ];
    if let Some(p) = &process {
        copy(&mut fields, p, &process_keys, "process");
    }
    if let Some(p) = &parent {
        copy(&mut fields, p, &process_keys, "parent");
    }
    for key in [
        "function_name",
        "action",
        "args",
        "return",
        "policy_name",
        "signal",
        "status",
        "path",
    ] {
        if let Some(value) = inner.value(key) {
            fields.insert(key.into(), value);
        }
    }
    if let Some(labels) = pod.as_ref().and_then(|p| p.value("pod_labels")) {
        fields.insert("pod_labels".into(), labels);
    }
    if let Some(labels) = item.value("node_labels") {
        fields.insert("node_labels".into(), labels);
    }
    if let Some(rule) = rule_used {
        fields.insert("falconer.severity_rule".into(), rule.into());
    }

    let dedup = dedup_key(
        "tetragon",
        &[
            event_type.as_bytes(),
            time_text.as_bytes(),
            exec_id.as_deref().unwrap_or("").as_bytes(),
            function.as_deref().unwrap_or("").as_bytes(),
            policy.as_deref().unwrap_or("").as_bytes(),
            node.as_deref().unwrap_or("").as_bytes(),
        ],
    );
    let event = Event {
        id: Uuid::now_v7(),
        dedup_key: Some(dedup),
        time,
        received_at: ctx.received_at,
        source: "tetragon".into(),
        source_version: None,
        kind: if policy.is_some() {
            Kind::RuntimeAlert
        } else {
            Kind::Other
        },
        severity,
        // Tetragon rates nothing itself.
        severity_raw: String::new(),
        rule: policy.unwrap_or_else(|| event_type.to_owned()),
        message,
        tags,
        cluster,
        namespace,
        pod: pod_value,
        container: container_name,
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
        parse(
            &RawValue::from_string(text.to_owned()).unwrap(),
            &ctx(),
            &TetragonConfig::default(),
        )
    }

    fn fixture(name: &str) -> Event {
        let path = format!(
            "{}/../tests/fixtures/tetragon/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        parse_text(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn rate(event: &str, policy: Option<&str>, action: Option<&str>, tags: &[&str]) -> Severity {
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        severity(
            &TetragonConfig::default(),
            &Facts {
                event,
                policy,
                action,
                tags: &tags,
            },
        )
        .0
    }

    #[test]
    fn default_rules_rate_enforcement_attack_tags_lifecycle_and_policy_events() {
        use Severity::*;
        let p = Some("sensitive-files");
        let table = [
            (
                "process_kprobe",
                p,
                Some("KPROBE_ACTION_SIGKILL"),
                &[][..],
                Critical,
            ),
            ("process_lsm", p, Some("LSM_ACTION_OVERRIDE"), &[], Critical),
            (
                "process_kprobe",
                p,
                Some("KPROBE_ACTION_NOTIFYENFORCER"),
                &[],
                Critical,
            ),
            (
                "process_tracepoint",
                p,
                Some("TRACEPOINT_ACTION_SIGNAL"),
                &[],
                Error,
            ),
            (
                "process_kprobe",
                p,
                Some("KPROBE_ACTION_POST"),
                &["observability.privilege_escalation"],
                Error,
            ),
            ("process_uprobe", p, None, &["process-injection"], Error),
            (
                "process_kprobe",
                p,
                Some("KPROBE_ACTION_POST"),
                &["credentials"],
                Notice,
            ),
            ("process_exec", None, None, &[], Informational),
            ("process_exit", None, None, &[], Debug),
            ("process_loader", None, None, &[], Debug),
            ("process_throttle", None, None, &[], Informational),
            ("rate_limit_info", None, None, &[], Informational),
            (
                "process_kprobe",
                None,
                Some("KPROBE_ACTION_POST"),
                &[],
                Informational,
            ),
        ];
        for (event, policy, action, tags, expected) in table {
            assert_eq!(
                rate(event, policy, action, tags),
                expected,
                "{event} {policy:?} {action:?} {tags:?}"
            );
        }
    }

    #[test]
    fn configured_rules_replace_the_defaults_and_the_first_match_wins() {
        let config: TetragonConfig = serde_json::from_value(serde_json::json!({
            "severity_rules": [
                {"policy": "sensitive-*", "tag": "credentials", "severity": "alert"},
                {"policy": "sensitive-*", "severity": "warning"}
            ]
        }))
        .unwrap();
        let tags = ["credentials".to_string()];
        let facts = |tags| Facts {
            event: "process_kprobe",
            policy: Some("sensitive-files"),
            action: Some("KPROBE_ACTION_SIGKILL"),
            tags,
        };
        assert_eq!(severity(&config, &facts(&tags)).0, Severity::Alert);
        assert_eq!(severity(&config, &facts(&[])).0, Severity::Warning);
        assert!(
            serde_json::from_value::<TetragonConfig>(serde_json::json!({
                "severity_rules": [{"polcy": "x", "severity": "alert"}]
            }))
            .is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn a_kprobe_of_a_policy_is_a_runtime_alert_in_its_pod_and_workload() {
        let e = fixture("kprobe-sensitive-file.json");
        assert_eq!(e.source, "tetragon");
        assert_eq!(e.kind, Kind::RuntimeAlert);
        assert_eq!(e.rule, "sensitive-files");
        assert_eq!(e.severity, Severity::Notice);
        assert_eq!(e.severity_raw, "");
        assert_eq!(e.namespace.as_deref(), Some("shop"));
        assert_eq!(e.pod.as_deref(), Some("web-1"));
        assert_eq!(e.container.as_deref(), Some("web"));
        assert_eq!(e.image.as_deref(), Some("registry.example/shop/web:1.4.2"));
        assert_eq!(e.node.as_deref(), Some("node-a"));
        assert_eq!(e.cluster, "prod-eu");
        assert_eq!(
            e.workload,
            Some(Workload {
                kind: "Deployment".into(),
                name: "web".into()
            })
        );
        assert_eq!(e.tags, ["credentials"]);
        assert_eq!(
            e.message,
            "process_kprobe security_file_permission: /usr/bin/cat /etc/shadow"
        );
        let fields: Value = serde_json::from_str(e.fields.get()).unwrap();
        assert_eq!(fields["process"]["binary"], "/usr/bin/cat");
        assert_eq!(fields["falconer.severity_rule"], "policy=*");
        assert_eq!(fields["args"][0]["file_arg"]["path"], "/etc/shadow");
    }

    #[test]
    fn an_enforced_lsm_hook_is_critical() {
        let e = fixture("lsm-override-sigkill.json");
        assert_eq!(e.severity, Severity::Critical);
        assert_eq!(e.rule, "block-bpf");
    }

    #[test]
    fn a_host_exec_has_no_pod_and_is_informational_telemetry() {
        let e = fixture("exec-host-no-pod.json");
        assert_eq!(e.kind, Kind::Other);
        assert_eq!(e.rule, "process_exec");
        assert_eq!(e.severity, Severity::Informational);
        assert_eq!(e.pod, None);
        assert_eq!(e.namespace, None);
        assert_eq!(e.cluster, "home");
    }

    #[test]
    fn malformed_lines_are_refused_naming_the_field() {
        let cases = [
            (r#"{"time":"2026-05-04T10:11:12Z"}"#, "no Tetragon event"),
            (
                r#"{"process_exec":{},"process_exit":{},"time":"2026-05-04T10:11:12Z"}"#,
                "several Tetragon events",
            ),
            (r#"{"process_exec":{}}"#, "field `time` is missing"),
            (
                r#"{"process_exec":[],"time":"2026-05-04T10:11:12Z"}"#,
                "field `process_exec`: expected an object, got an array",
            ),
            (
                r#"{"process_exec":{"process":{"pod":{"name":5}}},"time":"2026-05-04T10:11:12Z"}"#,
                "field `process_exec.process.pod.name`: expected a string, got a number",
            ),
            (
                r#"{"process_kprobe":{"tags":"x"},"time":"2026-05-04T10:11:12Z"}"#,
                "field `process_kprobe.tags`: expected an array, got a string",
            ),
            (
                r#"{"process_exec":{},"time":"later"}"#,
                "field `time`: `later` is not an RFC 3339 timestamp",
            ),
        ];
        for (text, expected) in cases {
            let error = parse_text(text).unwrap_err();
            assert!(error.starts_with(expected), "{text}: {error}");
        }
    }
}
