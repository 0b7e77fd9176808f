//! Events forwarded by another hub's `falconer` sink (multi-cluster: many clusters, one
//! central hub): each item is the normalized event as the query API shows it, raw payload
//! included. The event keeps its cluster, source and severity; this hub gives it a new id,
//! and recognises a re-forwarded event by its dedup key.

use crate::sources::falco::{Context, scrub_event};
use chrono::SubsecRound;
use falconer_store::{Event, dedup_key};
use serde_json::value::RawValue;
use uuid::Uuid;

pub fn parse(raw: &RawValue, ctx: &Context<'_>) -> Result<Event, String> {
    let mut event: Event = serde_json::from_str(raw.get())
        .map_err(|e| format!("not an event forwarded by a Falconer hub: {e}"))?;
    for (field, value) in [("rule", &event.rule), ("source", &event.source)] {
        if value.trim().is_empty() {
            return Err(format!("field `{field}` is empty"));
        }
    }
    falconer_model::names::check_cluster_name(&event.cluster)
        .map_err(|e| format!("field `cluster`: {e}"))?;
    let forwarded_id = event.id;
    event.id = Uuid::now_v7();
    event.received_at = ctx.received_at;
    event.time = event.time.trunc_subsecs(6);
    // An event without a natural key is still the same event when forwarded again.
    event.dedup_key = Some(
        event
            .dedup_key
            .unwrap_or_else(|| dedup_key("falconer", &[forwarded_id.as_bytes()])),
    );
    if event.raw.is_none() {
        event.raw = Some(raw.to_owned());
    }
    if raw.get().contains("\\u0000") {
        scrub_event(&mut event)?;
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn ctx() -> Context<'static> {
        Context {
            cluster: Some("ignored"),
            default_cluster: "central",
            received_at: Utc::now(),
        }
    }

    const FORWARDED: &str = r#"{"id":"0193f5a1-b2c3-7d4e-8f90-a1b2c3d4e5f6","time":"2026-05-04T10:11:12.123456789Z","received_at":"2026-05-04T10:11:13Z","source":"kubearmor","kind":"runtime_alert","severity":"critical","severity_raw":"8","rule":"block-shell","message":"m","tags":[],"cluster":"edge-1","namespace":"shop","fields":{"a":1},"raw":{"Severity":"8"}}"#;

    #[test]
    fn a_forwarded_event_keeps_its_cluster_source_and_raw_payload_but_gets_a_new_id() {
        let raw = RawValue::from_string(FORWARDED.into()).unwrap();
        let e = parse(&raw, &ctx()).unwrap();
        assert_eq!(e.cluster, "edge-1");
        assert_eq!(e.source, "kubearmor");
        assert_eq!(e.severity_raw, "8");
        assert_eq!(e.raw.unwrap().get(), r#"{"Severity":"8"}"#);
        assert_ne!(e.id.to_string(), "0193f5a1-b2c3-7d4e-8f90-a1b2c3d4e5f6");
        assert_eq!(e.time.to_rfc3339(), "2026-05-04T10:11:12.123456+00:00");
    }

    #[test]
    fn forwarding_the_same_event_twice_gives_the_same_dedup_key() {
        let raw = RawValue::from_string(FORWARDED.into()).unwrap();
        let a = parse(&raw, &ctx()).unwrap();
        let b = parse(&raw, &ctx()).unwrap();
        assert!(a.dedup_key.is_some());
        assert_eq!(a.dedup_key, b.dedup_key);
    }

    #[test]
    fn something_else_is_refused_with_the_reason() {
        let raw = RawValue::from_string(r#"{"rule":"r"}"#.into()).unwrap();
        assert!(
            parse(&raw, &ctx())
                .unwrap_err()
                .starts_with("not an event forwarded")
        );
    }
}
