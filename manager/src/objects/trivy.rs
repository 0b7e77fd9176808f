//! Trivy's objects: a ServiceAccount allowed to list namespaces and pods (a ClusterRoleBinding
//! to the chart's ClusterRole `falconer:trivy-image-lister`), and a CronJob whose pod runs three steps in order: `list-images`
//! (`falconer manager list-images`) writes the images running in the selected namespaces,
//! `scan` runs `trivy image` on each, and `upload` posts each JSON report as `source=trivy`.

use super::{
    Agent, Child, empty_dir, metadata, mount, object_name, restricted, service_account, upload,
};
use falconer_model::crd::Policy;
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The pod's scratch volume: image list, Trivy cache and reports.
pub const WORK_DIR: &str = "/work";
pub const IMAGES_FILE: &str = "/work/images.txt";
pub const REPORT_DIR: &str = "/work/reports";

/// The ClusterRole (list namespaces and pods) every Trivy ServiceAccount is bound to. The chart
/// creates it; the manager may bind it (`bind` with this one resource name) and nothing else,
/// and cannot change or delete any ClusterRole.
pub const LISTER_ROLE: &str = "falconer:trivy-image-lister";

/// Name of the ClusterRoleBinding: cluster-scoped, so the Policy name keeps two Policies
/// apart.
pub fn rbac_name(policy: &Policy) -> String {
    format!("falconer:{}", object_name(policy, Agent::Trivy))
}

pub fn objects(policy: &Policy, cluster: &str) -> Vec<Child> {
    vec![
        service_account(policy, Agent::Trivy, true),
        cluster_role_binding(policy),
        cron_job(policy, cluster),
    ]
}

fn cluster_role_binding(policy: &Policy) -> Child {
    Child::ClusterRoleBinding(ClusterRoleBinding {
        metadata: metadata(policy, Agent::Trivy, rbac_name(policy), false),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: LISTER_ROLE.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: object_name(policy, Agent::Trivy),
            namespace: Some(policy.spec.namespace.clone()),
            api_group: None,
        }]),
    })
}

/// A label selector in the syntax of `kubectl -l` and the API's `labelSelector` parameter.
/// Empty for "everything".
pub fn selector_string(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for expr in selector.match_expressions.iter().flatten() {
        let values = expr.values.clone().unwrap_or_default().join(",");
        parts.push(match expr.operator.as_str() {
            "In" => format!("{} in ({values})", expr.key),
            "NotIn" => format!("{} notin ({values})", expr.key),
            "Exists" => expr.key.clone(),
            "DoesNotExist" => format!("!{}", expr.key),
            // The API server refuses other operators; keep them visible rather than dropping
            // a condition silently.
            other => format!("{} {other} ({values})", expr.key),
        });
    }
    parts.join(",")
}

/// Scans each listed image in turn; a failed scan is reported and skipped so one bad image
/// does not hide the others. Trivy's stdin is closed so it cannot eat the list being read.
pub fn scan_script() -> String {
    scan_script_in(WORK_DIR)
}

fn scan_script_in(work: &str) -> String {
    let reports = format!("{work}/reports");
    let images = format!("{work}/images.txt");
    format!(
        r#"set -u
mkdir -p {reports} {work}/cache {work}/tmp
n=0
while IFS= read -r image; do
  [ -n "$image" ] || continue
  n=$((n + 1))
  if ! trivy image --quiet --format json --cache-dir {work}/cache --timeout 15m --output "{reports}/$n.json" "$image" </dev/null; then
    echo "falconer: scanning $image failed" >&2
    rm -f "{reports}/$n.json"
  fi
done < {images}
echo "falconer: scanned $n image(s)"
"#
    )
}

fn cron_job(policy: &Policy, cluster: &str) -> Child {
    let trivy = &policy.spec.trivy;
    let mut list_args: Vec<String> = ["manager", "list-images", "--out", IMAGES_FILE]
        .map(String::from)
        .to_vec();
    if let Some(selector) = &trivy.namespace_selector {
        list_args.extend(["--namespace-selector".into(), selector_string(selector)]);
    }
    let work = || mount("work", WORK_DIR, false);
    let list = Container {
        name: "list-images".into(),
        image: Some(trivy.lister_image.clone()),
        command: Some(vec!["falconer".into()]),
        args: Some(list_args),
        volume_mounts: Some(vec![work()]),
        security_context: Some(restricted(Some(upload::NOBODY))),
        ..Default::default()
    };
    let env = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    };
    let scan = Container {
        name: "scan".into(),
        image: Some(trivy.image.clone()),
        command: Some(vec!["sh".into(), "-c".into(), scan_script()]),
        env: Some(vec![
            env("HOME", WORK_DIR),
            env("TMPDIR", &format!("{WORK_DIR}/tmp")),
        ]),
        volume_mounts: Some(vec![work()]),
        security_context: Some(restricted(Some(upload::NOBODY))),
        ..Default::default()
    };
    let mut volumes = vec![empty_dir("work")];
    if let Some((volume, _)) = super::hub_ca(policy) {
        volumes.push(volume);
    }
    let pod = PodSpec {
        service_account_name: Some(object_name(policy, Agent::Trivy)),
        // `list-images` calls the API with this account's token.
        automount_service_account_token: Some(true),
        restart_policy: Some("Never".into()),
        init_containers: Some(vec![list, scan]),
        containers: vec![upload::container(
            policy, "trivy", cluster, "work", WORK_DIR, false, false,
        )],
        volumes: Some(volumes),
        ..Default::default()
    };
    let mut job =
        super::kube_bench::scheduled(policy, Agent::Trivy, &trivy.schedule, 6 * 3600, pod);
    // The upload step reads the reports directory, not the whole work volume.
    if let Some(upload) = job
        .spec
        .as_mut()
        .and_then(|s| s.job_template.spec.as_mut())
        .and_then(|j| j.template.spec.as_mut())
        .and_then(|p| p.containers.first_mut())
        && let Some(command) = upload.command.as_mut().and_then(|c| c.last_mut())
    {
        *command = upload::script(policy, REPORT_DIR, false);
    }
    Child::CronJob(job)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::tests::policy;
    use falconer_model::crd::PolicySpec;
    use k8s_openapi::api::batch::v1::CronJob;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use std::collections::BTreeMap;

    fn enabled() -> PolicySpec {
        let mut spec = PolicySpec::default();
        spec.trivy.enabled = true;
        spec
    }

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

    #[test]
    fn label_selectors_render_in_api_syntax() {
        let selector = LabelSelector {
            match_labels: Some(BTreeMap::from([("scan".into(), "yes".into())])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["web".into(), "db".into()]),
                },
                LabelSelectorRequirement {
                    key: "env".into(),
                    operator: "NotIn".into(),
                    values: Some(vec!["dev".into()]),
                },
                LabelSelectorRequirement {
                    key: "team".into(),
                    operator: "Exists".into(),
                    values: None,
                },
                LabelSelectorRequirement {
                    key: "skip".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert_eq!(
            selector_string(&selector),
            "scan=yes,tier in (web,db),env notin (dev),team,!skip"
        );
        assert_eq!(selector_string(&LabelSelector::default()), "");
    }

    #[test]
    fn the_namespace_selector_is_passed_to_the_image_lister() {
        let mut spec = enabled();
        spec.trivy.namespace_selector = Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("falconer.io/scan".into(), "true".into())])),
            match_expressions: None,
        });
        let pod = pod(&policy(spec));
        let list = &pod.init_containers.clone().unwrap_or_default()[0];
        assert_eq!(list.name, "list-images");
        assert_eq!(
            list.args.clone().unwrap_or_default(),
            [
                "manager",
                "list-images",
                "--out",
                "/work/images.txt",
                "--namespace-selector",
                "falconer.io/scan=true"
            ]
        );
        let everything = pod_of_default();
        let args = everything.init_containers.unwrap_or_default()[0]
            .args
            .clone()
            .unwrap_or_default();
        assert!(!args.contains(&"--namespace-selector".to_string()));
    }

    fn pod_of_default() -> PodSpec {
        pod(&policy(enabled()))
    }

    #[test]
    fn steps_run_in_order_list_then_scan_then_upload_as_trivy() {
        let mut spec = enabled();
        spec.trivy.image = "registry.example/trivy:9".into();
        spec.trivy.schedule = "@weekly".into();
        let p = policy(spec);
        let pod = pod(&p);
        let init: Vec<String> = pod
            .init_containers
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(init, ["list-images", "scan"]);
        assert_eq!(
            pod.init_containers.unwrap_or_default()[1].image.as_deref(),
            Some("registry.example/trivy:9")
        );
        let upload = &pod.containers[0];
        let url = upload
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .find(|e| e.name == "FALCONER_INGEST_URL")
            .and_then(|e| e.value);
        assert_eq!(
            url.as_deref(),
            Some(
                "http://falconer-hub.falconer-system.svc:8080/ingest?source=trivy&cluster=prod-eu"
            )
        );
        let script = upload.command.clone().unwrap_or_default().join(" ");
        assert!(script.contains("for report in /work/reports/*.json"));
        assert_eq!(
            cron(&p).spec.map(|s| s.schedule).as_deref(),
            Some("@weekly")
        );
    }

    #[test]
    fn the_scan_step_scans_each_listed_image_into_its_own_report() {
        let script = scan_script();
        assert!(script.contains("done < /work/images.txt"));
        assert!(script.contains(
            r#"trivy image --quiet --format json --cache-dir /work/cache --timeout 15m --output "/work/reports/$n.json" "$image" </dev/null; then"#
        ));
    }

    #[test]
    fn the_scan_script_scans_every_image_and_skips_one_that_fails() {
        let dir = crate::objects::upload::tests::scratch("scan");
        std::fs::write(
            dir.join("images.txt"),
            "registry.example/a:1\nregistry.example/broken:1\n\nregistry.example/b:2\n",
        )
        .expect("list");
        // A stub trivy: fails for the broken image, else writes a report naming the image,
        // and proves its stdin is not the image list.
        let bin = crate::objects::upload::tests::stub(
            &dir,
            "trivy",
            r#"for last; do :; done
case "$last" in *broken*) echo "cannot pull" >&2; exit 1;; esac
while [ "$1" != "--output" ]; do shift; done
read -r leaked || leaked=""
printf '{"ArtifactName":"%s","stdin":"%s"}' "$last" "$leaked" > "$2""#,
        );
        let script = scan_script_in(dir.to_str().expect("utf-8"));
        let output = crate::objects::upload::tests::sh(&script, &bin, &[]);
        assert!(output.status.success(), "{output:?}");
        let mut reports: Vec<String> = std::fs::read_dir(dir.join("reports"))
            .expect("reports")
            .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("report"))
            .collect();
        reports.sort();
        assert_eq!(
            reports,
            [
                r#"{"ArtifactName":"registry.example/a:1","stdin":""}"#,
                r#"{"ArtifactName":"registry.example/b:2","stdin":""}"#
            ]
        );
        assert!(
            String::from_utf8_lossy(&output.stderr)
                .contains("scanning registry.example/broken:1 failed")
        );
    }

    #[test]
    fn the_service_account_is_bound_to_the_charts_lister_role_and_nothing_more() {
        let p = policy(enabled());
        let objects = objects(&p, "c");
        let kinds: Vec<&str> = objects.iter().map(|c| c.kind().as_str()).collect();
        assert_eq!(
            kinds,
            ["ServiceAccount", "ClusterRoleBinding", "CronJob"],
            "no ClusterRole of its own: the manager cannot write ClusterRoles"
        );
        let binding = objects
            .iter()
            .find_map(|c| match c {
                Child::ClusterRoleBinding(b) => Some(b.clone()),
                _ => None,
            })
            .expect("binding");
        assert_eq!(binding.role_ref.name, LISTER_ROLE);
        assert_eq!(
            binding.metadata.name.as_deref(),
            Some("falconer:prod-trivy")
        );
        let subject = &binding.subjects.unwrap_or_default()[0];
        assert_eq!(
            (subject.name.as_str(), subject.namespace.as_deref()),
            ("prod-trivy", Some("falconer-system"))
        );
        assert_eq!(pod(&p).service_account_name.as_deref(), Some("prod-trivy"));
    }
}
