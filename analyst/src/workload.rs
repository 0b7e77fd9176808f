//! Which workload a pod belongs to: the owner its events named when they named one, else
//! what Kubernetes' naming conventions reveal of the pod's name.

use falconer_store::Workload;

/// The characters Kubernetes uses for generated name suffixes (`rand.SafeEncodeString`: no
/// vowels, no digits 0, 1 or 3, so no words form by accident).
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn is_safe(text: &str) -> bool {
    text.bytes().all(|b| SAFE.contains(&b))
}

/// A pod's random suffix: five safe characters.
fn is_pod_suffix(text: &str) -> bool {
    text.len() == 5 && is_safe(text)
}

/// A ReplicaSet's pod-template-hash: 6 to 10 safe characters with at least one digit or
/// (for the all-letter ones) at least 8 characters, so `web-backend` is not taken for one.
fn is_template_hash(text: &str) -> bool {
    (6..=10).contains(&text.len())
        && is_safe(text)
        && (text.bytes().any(|b| b.is_ascii_digit()) || text.len() >= 8)
}

/// A CronJob's Job suffix: the scheduled time in minutes since the epoch (8 digits or more).
fn is_schedule(text: &str) -> bool {
    text.len() >= 8 && text.bytes().all(|b| b.is_ascii_digit())
}

/// A StatefulSet ordinal: a small whole number without leading zeros.
fn is_ordinal(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 5
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'))
}

/// The owner of `pod`: `named` (from the event) when given — a ReplicaSet named
/// `<deployment>-<hash>` becomes its Deployment, a Job named `<cronjob>-<schedule>` its
/// CronJob — else derived from the pod's name:
///
/// | pod name | workload |
/// |---|---|
/// | `web-7d4b9c8f5-x2x7k` | Deployment `web` |
/// | `backup-28745160-h7rqz` | CronJob `backup` |
/// | `db-0` | StatefulSet `db` |
/// | `agent-x2x7k` | DaemonSet `agent` (a Job's pods look the same; events naming their owner tell them apart) |
/// | `debug` | Pod `debug` |
pub fn owner(pod: &str, named: Option<&Workload>) -> Workload {
    if let Some(named) = named {
        return normalize(named);
    }
    let workload = |kind: &str, name: &str| Workload {
        kind: kind.to_owned(),
        name: name.to_owned(),
    };
    let parts: Vec<&str> = pod.split('-').collect();
    let n = parts.len();
    if n >= 3 && is_pod_suffix(parts[n - 1]) {
        let base = parts[..n - 2].join("-");
        if is_schedule(parts[n - 2]) {
            return workload("CronJob", &base);
        }
        if is_template_hash(parts[n - 2]) {
            return workload("Deployment", &base);
        }
    }
    if n >= 2 && !parts[..n - 1].join("-").is_empty() {
        let base = parts[..n - 1].join("-");
        if is_pod_suffix(parts[n - 1]) {
            return workload("DaemonSet", &base);
        }
        if is_ordinal(parts[n - 1]) {
            return workload("StatefulSet", &base);
        }
    }
    workload("Pod", pod)
}

/// An owner as the events named it, lifted to the object users manage.
fn normalize(named: &Workload) -> Workload {
    let lifted = |kind: &str| {
        named.name.rsplit_once('-').and_then(|(base, suffix)| {
            let fits = match kind {
                "Deployment" => is_template_hash(suffix),
                _ => is_schedule(suffix),
            };
            (fits && !base.is_empty()).then(|| Workload {
                kind: kind.to_owned(),
                name: base.to_owned(),
            })
        })
    };
    let lifted = match named.kind.as_str() {
        "ReplicaSet" => lifted("Deployment"),
        "Job" => lifted("CronJob"),
        _ => None,
    };
    lifted.unwrap_or_else(|| named.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_name(w: Workload) -> (String, String) {
        (w.kind, w.name)
    }

    #[test]
    fn pod_names_reveal_their_workloads() {
        let cases = [
            ("web-7d4b9c8f5-x2x7k", "Deployment", "web"),
            (
                "shop-frontend-5f6b8d7c9d-lq4zn",
                "Deployment",
                "shop-frontend",
            ),
            ("coredns-76f75df574-9gkbv", "Deployment", "coredns"),
            ("backup-28745160-h7rqz", "CronJob", "backup"),
            ("nightly-report-29011440-5wz2m", "CronJob", "nightly-report"),
            ("postgres-0", "StatefulSet", "postgres"),
            ("kafka-broker-12", "StatefulSet", "kafka-broker"),
            ("falco-x2x7k", "DaemonSet", "falco"),
            ("kube-proxy-9vxz4", "DaemonSet", "kube-proxy"),
            ("debug", "Pod", "debug"),
            ("web-backend", "Pod", "web-backend"),
            ("release-v1", "Pod", "release-v1"),
            ("etcd-01", "Pod", "etcd-01"),
            ("-0", "Pod", "-0"),
        ];
        for (pod, kind, name) in cases {
            assert_eq!(
                kind_name(owner(pod, None)),
                (kind.to_string(), name.to_string()),
                "{pod}"
            );
        }
    }

    #[test]
    fn an_owner_named_by_the_event_wins_over_the_pod_name() {
        let named = Workload {
            kind: "DaemonSet".into(),
            name: "falco".into(),
        };
        assert_eq!(owner("falco-7d4b9c8f5-x2x7k", Some(&named)), named);
    }

    #[test]
    fn a_named_replicaset_or_cronjob_job_is_lifted_to_its_deployment_or_cronjob() {
        let rs = Workload {
            kind: "ReplicaSet".into(),
            name: "web-7d4b9c8f5".into(),
        };
        assert_eq!(
            kind_name(owner("x", Some(&rs))),
            ("Deployment".into(), "web".into())
        );
        let job = Workload {
            kind: "Job".into(),
            name: "backup-28745160".into(),
        };
        assert_eq!(
            kind_name(owner("x", Some(&job))),
            ("CronJob".into(), "backup".into())
        );
        let plain = Workload {
            kind: "Job".into(),
            name: "migrate".into(),
        };
        assert_eq!(owner("x", Some(&plain)), plain);
    }
}
