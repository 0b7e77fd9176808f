//! Test fixtures shared by the delivery tests.

use falconer_store::Event;

/// A Falco-like warning event in namespace `shop`, cluster `prod`, with the given rule.
pub fn event(rule: &str) -> Event {
    let text = serde_json::json!({
        "id": uuid::Uuid::now_v7(),
        "time": "2026-05-04T10:11:12Z",
        "received_at": "2026-05-04T10:11:12Z",
        "source": "falco",
        "kind": "runtime_alert",
        "severity": "warning",
        "severity_raw": "Warning",
        "rule": rule,
        "message": "A shell was spawned",
        "tags": ["container", "shell"],
        "cluster": "prod",
        "namespace": "shop",
        "pod": "web-1",
        "fields": {"proc.name": "bash"},
        "raw": {"rule": rule}
    })
    .to_string();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("test event: {e}"))
}

/// A Secret's keys and values, as the declared consumer hands them to a sink.
pub fn secrets(pairs: &[(&str, &str)]) -> crate::declared::Secrets {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), crate::declared::SecretValue(v.to_string())))
        .collect()
}

/// `consumer` declared with `secrets`, outside any cluster, without a file directory or a
/// dashboard: what a sink's `build` is given in its unit tests.
pub fn declared<'a>(
    consumer: &'a falconer_model::crd::Consumer,
    secrets: &'a crate::declared::Secrets,
) -> crate::sinks::Declared<'a> {
    crate::sinks::Declared {
        name: &consumer.name,
        consumer,
        secrets,
        home: None,
        file_dir: None,
        dashboard: None,
    }
}
