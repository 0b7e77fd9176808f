//! kube-bench's objects: a ServiceAccount and a CronJob whose pod runs kube-bench against the
//! node it lands on (host PID namespace and the node's Kubernetes directories, read-only),
//! then posts the JSON report to the hub as `source=kube-bench`.

use super::{
    Agent, Child, empty_dir, host_path, metadata, mount, object_name, service_account, upload,
};
use falconer_model::crd::Policy;
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, SecurityContext};
use kube::api::ObjectMeta;

/// Where the report is written and read.
pub const REPORT_DIR: &str = "/reports";

/// Host directories kube-bench reads its checks from: (volume, host path, mount path).
/// `/usr/bin` goes where kube-bench looks for host binaries.
pub const HOST_DIRS: &[(&str, &str, &str)] = &[
    ("var-lib-etcd", "/var/lib/etcd", "/var/lib/etcd"),
    ("var-lib-kubelet", "/var/lib/kubelet", "/var/lib/kubelet"),
    (
        "var-lib-kube-scheduler",
        "/var/lib/kube-scheduler",
        "/var/lib/kube-scheduler",
    ),
    (
        "var-lib-kube-controller-manager",
        "/var/lib/kube-controller-manager",
        "/var/lib/kube-controller-manager",
    ),
    ("etc-systemd", "/etc/systemd", "/etc/systemd"),
    ("lib-systemd", "/lib/systemd", "/lib/systemd"),
    ("srv-kubernetes", "/srv/kubernetes", "/srv/kubernetes"),
    ("etc-kubernetes", "/etc/kubernetes", "/etc/kubernetes"),
    ("usr-bin", "/usr/bin", "/usr/local/mount-from-host/bin"),
    ("etc-cni-netd", "/etc/cni/net.d", "/etc/cni/net.d"),
    ("opt-cni-bin", "/opt/cni/bin", "/opt/cni/bin"),
];

pub fn objects(policy: &Policy, cluster: &str) -> Vec<Child> {
    vec![
        // kube-bench reads files and processes, not the API.
        service_account(policy, Agent::KubeBench, false),
        cron_job(policy, cluster),
    ]
}

fn cron_job(policy: &Policy, cluster: &str) -> Child {
    let name = object_name(policy, Agent::KubeBench);
    let mut volumes = vec![empty_dir("reports")];
    let mut mounts = vec![mount("reports", REPORT_DIR, false)];
    for (volume, host, path) in HOST_DIRS {
        volumes.push(host_path(volume, host));
        mounts.push(mount(volume, path, true));
    }
    if let Some((volume, _)) = super::hub_ca(policy) {
        volumes.push(volume);
    }
    let bench = Container {
        name: "kube-bench".into(),
        image: Some(policy.spec.kube_bench.image.clone()),
        command: Some(
            [
                "kube-bench",
                "run",
                "--json",
                "--outputfile",
                &format!("{REPORT_DIR}/kube-bench.json"),
            ]
            .map(String::from)
            .to_vec(),
        ),
        volume_mounts: Some(mounts),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pod = PodSpec {
        service_account_name: Some(name.clone()),
        automount_service_account_token: Some(false),
        // kube-bench inspects the kubelet's and control plane's command lines.
        host_pid: Some(true),
        restart_policy: Some("Never".into()),
        // Init containers run in order: the report exists before the upload starts.
        init_containers: Some(vec![bench]),
        containers: vec![upload::container(
            policy,
            "kube-bench",
            cluster,
            "reports",
            REPORT_DIR,
            true,
            true,
        )],
        volumes: Some(volumes),
        ..Default::default()
    };
    Child::CronJob(scheduled(
        policy,
        Agent::KubeBench,
        &policy.spec.kube_bench.schedule,
        1800,
        pod,
    ))
}

/// A CronJob around `pod`: one run at a time, short history, finished Jobs cleaned up.
pub fn scheduled(
    policy: &Policy,
    agent: Agent,
    schedule: &str,
    deadline_seconds: i64,
    pod: PodSpec,
) -> CronJob {
    let name = object_name(policy, agent);
    let labels = super::labels(policy, agent);
    CronJob {
        metadata: metadata(policy, agent, name, true),
        spec: Some(CronJobSpec {
            schedule: schedule.into(),
            concurrency_policy: Some("Forbid".into()),
            successful_jobs_history_limit: Some(1),
            failed_jobs_history_limit: Some(1),
            // A missed run (manager or control plane down) still happens within the hour.
            starting_deadline_seconds: Some(3600),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..Default::default()
                }),
                spec: Some(JobSpec {
                    backoff_limit: Some(2),
                    active_deadline_seconds: Some(deadline_seconds),
                    ttl_seconds_after_finished: Some(86_400),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: Some(labels),
                            ..Default::default()
                        }),
                        spec: Some(pod),
                    },
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::tests::policy;
    use falconer_model::crd::{CaRef, PolicySpec};

    fn cron(p: &Policy) -> CronJob {
        objects(p, "prod-eu")
            .into_iter()
            .find_map(|c| match c {
                Child::CronJob(c) => Some(c),
                _ => None,
            })
            .expect("a CronJob")
    }

    fn pod(p: &Policy) -> PodSpec {
        cron(p)
            .spec
            .and_then(|s| s.job_template.spec)
            .and_then(|j| j.template.spec)
            .expect("pod")
    }

    fn enabled() -> PolicySpec {
        let mut spec = PolicySpec::default();
        spec.kube_bench.enabled = true;
        spec
    }

    #[test]
    fn the_cronjob_runs_on_the_policys_schedule_one_run_at_a_time() {
        let mut spec = enabled();
        spec.kube_bench.schedule = "15 2 * * 0".into();
        let c = cron(&policy(spec));
        let spec = c.spec.expect("spec");
        assert_eq!(spec.schedule, "15 2 * * 0");
        assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
        assert_eq!(c.metadata.name.as_deref(), Some("prod-kube-bench"));
    }

    #[test]
    fn kube_bench_writes_json_that_the_upload_step_posts_as_kube_bench() {
        let mut spec = enabled();
        spec.kube_bench.image = "registry.example/kube-bench:v1".into();
        let p = policy(spec);
        let pod = pod(&p);
        let bench = &pod.init_containers.clone().unwrap_or_default()[0];
        assert_eq!(
            bench.image.as_deref(),
            Some("registry.example/kube-bench:v1")
        );
        let command = bench.command.clone().unwrap_or_default().join(" ");
        assert_eq!(
            command,
            "kube-bench run --json --outputfile /reports/kube-bench.json"
        );
        let upload = &pod.containers[0];
        let env = upload.env.clone().unwrap_or_default();
        let url = env
            .iter()
            .find(|e| e.name == "FALCONER_INGEST_URL")
            .and_then(|e| e.value.clone());
        assert_eq!(
            url.as_deref(),
            Some(
                "http://falconer-hub.falconer-system.svc:8080/ingest?source=kube-bench&cluster=prod-eu&node=$(NODE_NAME)"
            )
        );
        // Kubernetes expands $(NODE_NAME) only from a variable defined before the URL.
        let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names[..2], ["NODE_NAME", "FALCONER_INGEST_URL"]);
        let node_field = env[0]
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str());
        assert_eq!(node_field, Some("spec.nodeName"));
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.host_pid, Some(true));
    }

    #[test]
    fn the_upload_authenticates_with_a_bearer_token_read_from_the_secret_on_stdin() {
        let p = policy(enabled());
        let upload = &pod(&p).containers[0];
        let script = upload.command.clone().unwrap_or_default().join(" ");
        assert!(
            script
                .contains(r#"printf 'Authorization: Bearer %s\n' "$FALCONER_INGEST_TOKEN" | curl"#)
        );
        assert!(script.contains("-H @-"));
        let token = upload
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .find(|e| e.name == "FALCONER_INGEST_TOKEN")
            .expect("token env");
        assert_eq!(token.value, None);
        assert_eq!(
            token
                .value_from
                .and_then(|v| v.secret_key_ref)
                .map(|s| (s.name, s.key)),
            Some(("falconer-ingest-token".into(), "kube-bench".into())),
            "each agent reads its own key when hubToken.key is absent"
        );
    }

    #[test]
    fn the_upload_trusts_the_hub_ca_when_one_is_given() {
        let mut spec = enabled();
        spec.hub_tls.ca = Some(CaRef {
            secret_name: "hub-tls".into(),
            key: "ca.crt".into(),
        });
        let p = policy(spec);
        let pod = pod(&p);
        let script = pod.containers[0]
            .command
            .clone()
            .unwrap_or_default()
            .join(" ");
        assert!(script.contains("--cacert /etc/falconer/hub-ca/ca.crt"));
        assert!(!script.contains("--insecure"));
        assert!(
            pod.volumes
                .unwrap_or_default()
                .iter()
                .any(|v| v.name == "hub-ca")
        );
        let plain = pod_script(&policy(enabled()));
        assert!(!plain.contains("--cacert"));
    }

    fn pod_script(p: &Policy) -> String {
        pod(p).containers[0]
            .command
            .clone()
            .unwrap_or_default()
            .join(" ")
    }

    #[test]
    fn host_directories_are_mounted_read_only() {
        let pod = pod(&policy(enabled()));
        let bench = &pod.init_containers.unwrap_or_default()[0];
        for m in bench.volume_mounts.clone().unwrap_or_default() {
            if m.name != "reports" {
                assert_eq!(m.read_only, Some(true), "{}", m.mount_path);
            }
        }
    }

    #[test]
    fn the_upload_step_runs_unprivileged() {
        let upload = &pod(&policy(enabled())).containers[0];
        let sc = upload.security_context.clone().expect("security context");
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.run_as_user, Some(upload::NOBODY));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
    }
}
