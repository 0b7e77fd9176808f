//! Kubernetes audit events as Falco's k8saudit plugin reports them (Falco `source: k8s_audit`,
//! fields `ka.*`). `crate::sources::falco` parses the alert; this fills what the audit fields tell
//! about the Kubernetes context: the target's namespace, the pod (or the owning workload)
//! it acted on. The user, verb and resource stay in `fields` under Falco's names
//! (`ka.user.name`, `ka.verb`, `ka.target.resource`, …), where rules and queries find them.

use falconer_store::{Event, Kind, Workload};
use serde::Deserialize;
use std::borrow::Cow;

/// The `ka.*` fields that name the request's target.
#[derive(Deserialize)]
struct Target<'a> {
    #[serde(rename = "ka.target.namespace", borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(rename = "ka.target.name", borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(rename = "ka.target.resource", borrow, default)]
    resource: Option<Cow<'a, str>>,
}

/// Workload resources and the kind they name.
const WORKLOADS: &[(&str, &str)] = &[
    ("deployments", "Deployment"),
    ("statefulsets", "StatefulSet"),
    ("daemonsets", "DaemonSet"),
    ("replicasets", "ReplicaSet"),
    ("jobs", "Job"),
    ("cronjobs", "CronJob"),
];

/// Fills namespace, pod and workload of a Falco k8s_audit alert from its `ka.target.*`
/// fields, where the alert's own Kubernetes fields left them empty. Other alerts are left as
/// they are, without reading their fields.
pub fn complete(event: &mut Event) {
    if event.kind != Kind::Audit || !event.fields.get().contains("\"ka.target.") {
        return;
    }
    // Fields that are not strings (null, or a type the rule did not expect) are ignored.
    let Ok(target) = serde_json::from_str::<Target<'_>>(event.fields.get()) else {
        return;
    };
    let real = |v: &Option<Cow<'_, str>>| {
        v.as_deref()
            .filter(|s| !s.is_empty() && *s != "<NA>" && s.len() <= 253)
            .map(str::to_owned)
    };
    if event.namespace.is_none() {
        event.namespace = real(&target.namespace);
    }
    let (Some(resource), Some(name)) = (real(&target.resource), real(&target.name)) else {
        return;
    };
    if resource == "pods" {
        if event.pod.is_none() {
            event.pod = Some(name);
        }
    } else if let Some((_, kind)) = WORKLOADS.iter().find(|(r, _)| *r == resource)
        && event.workload.is_none()
    {
        event.workload = Some(Workload {
            kind: (*kind).to_owned(),
            name,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::falco;
    use chrono::Utc;
    use serde_json::value::RawValue;

    fn parse(text: &str) -> Event {
        let raw = RawValue::from_string(text.to_owned()).unwrap();
        let ctx = falco::Context {
            cluster: None,
            default_cluster: "home",
            received_at: Utc::now(),
        };
        let mut event = falco::parse(&raw, &ctx).unwrap();
        complete(&mut event);
        event
    }

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../tests/fixtures/falco/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn an_exec_into_a_pod_names_its_namespace_pod_user_verb_and_resource() {
        let e = parse(&fixture("k8saudit-exec.json"));
        assert_eq!(e.kind, Kind::Audit);
        assert_eq!(e.namespace.as_deref(), Some("shop"));
        assert_eq!(e.pod.as_deref(), Some("web-1"));
        let fields: serde_json::Value = serde_json::from_str(e.fields.get()).unwrap();
        assert_eq!(fields["ka.user.name"], "alice@example.org");
        assert_eq!(fields["ka.verb"], "create");
        assert_eq!(fields["ka.target.resource"], "pods");
    }

    #[test]
    fn a_change_to_a_deployment_names_the_workload_not_a_pod() {
        let e = parse(&fixture("k8saudit-deployment-null-namespace.json"));
        assert_eq!(e.pod, None);
        assert_eq!(e.namespace, None, "a null namespace stays unknown");
        assert_eq!(
            e.workload,
            Some(Workload {
                kind: "Deployment".into(),
                name: "web".into()
            })
        );
    }

    #[test]
    fn syscall_alerts_are_left_alone_even_with_ka_fields() {
        let e = parse(
            r#"{"time":"2026-05-04T10:11:12Z","rule":"r","priority":"Notice","source":"syscall","output_fields":{"ka.target.namespace":"x","ka.target.name":"p","ka.target.resource":"pods"}}"#,
        );
        assert_eq!(e.namespace, None);
        assert_eq!(e.pod, None);
    }

    #[test]
    fn the_alerts_own_kubernetes_fields_win_over_the_audit_target() {
        let e = parse(
            r#"{"time":"2026-05-04T10:11:12Z","rule":"r","priority":"Notice","source":"k8s_audit","output_fields":{"k8s.ns.name":"own","ka.target.namespace":"target","ka.target.name":7,"ka.target.resource":"pods"}}"#,
        );
        assert_eq!(e.namespace.as_deref(), Some("own"));
        assert_eq!(e.pod, None, "a non-string target name is ignored");
    }
}
