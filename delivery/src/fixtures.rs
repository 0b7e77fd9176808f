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
