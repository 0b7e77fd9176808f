//! Falco's objects: a ServiceAccount, a ConfigMap with `falco.yaml`, and a DaemonSet with the
//! privileges and host mounts its driver needs.
//!
//! The ingest token reaches Falco without being written anywhere: the DaemonSet puts it in the
//! environment from the Secret, and `falco.yaml` names it as `${FALCONER_INGEST_TOKEN}` inside
//! `http_output.url`. Falco (0.35 and later) expands `${VAR}` in every scalar of its
//! configuration files when it loads them (not in rules files), and its `http_output` cannot
//! send headers, so the token rides in the URL's `token` parameter, which the hub accepts
//! for ingest.

use super::{
    Agent, Child, TOKEN_ENV, digest, empty_dir, host_path, hub_ca, hub_ca_file, ingest_url,
    metadata, mount, object_name, selector_labels, service_account,
};
use falconer_model::crd::{Driver, Policy};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    AppArmorProfile, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
    EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, ObjectFieldSelector, PodSpec, PodTemplateSpec,
    Probe, ResourceRequirements, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;
use serde_json::json;
use std::collections::BTreeMap;

/// Port of Falco's embedded webserver, used for the health probes only.
pub const HEALTH_PORT: i32 = 8765;
/// Output field that carries the cluster name (read by the hub's Falco parser).
pub const CLUSTER_FIELD: &str = "falconer.cluster";
/// Pod template annotation holding the digest of `falco.yaml`: `falco.yaml` is mounted with
/// `subPath`, which never sees ConfigMap updates, so a new digest rolls the pods instead.
pub const CONFIG_DIGEST_ANNOTATION: &str = "falconer.io/falco-config-sha256";
/// Where custom rules ConfigMap number `i` is mounted.
pub fn custom_rules_dir(index: usize) -> String {
    format!("/etc/falco/falconer-rules/{index:02}")
}

/// Capabilities of the `modern_ebpf` driver in least-privileged mode (Falco's documented set).
pub const MODERN_EBPF_CAPABILITIES: &[&str] = &["BPF", "PERFMON", "SYS_RESOURCE", "SYS_PTRACE"];

pub fn objects(policy: &Policy, cluster: &str) -> Vec<Child> {
    let config = config_yaml(policy, cluster);
    vec![
        service_account(policy, Agent::Falco, false),
        config_map(policy, &config),
        daemon_set(policy, &digest(&config)),
    ]
}

/// `falco.yaml`: JSON alerts over HTTP to the hub, the cluster name as an output field, the
/// driver and minimum priority of the Policy. Keys not set here keep Falco's defaults; the
/// image's `config.d` (which loads the container plugin) is still read.
pub fn config(policy: &Policy, cluster: &str) -> serde_json::Value {
    let falco = &policy.spec.falco;
    let mut rules_files = vec![json!("/etc/falco/falco_rules.yaml")];
    rules_files.extend((0..falco.custom_rules.len()).map(|i| json!(custom_rules_dir(i))));
    let engine = match falco.driver {
        Driver::ModernEbpf => json!({
            "kind": "modern_ebpf",
            "modern_ebpf": {"cpus_for_each_buffer": 2, "buf_size_preset": 4, "drop_failed_exit": false},
        }),
        Driver::Ebpf => json!({
            "kind": "ebpf",
            // Where the driver loader leaves the probe it fetched or built.
            "ebpf": {"probe": "/root/.falco/falco-bpf.o", "buf_size_preset": 4, "drop_failed_exit": false},
        }),
        Driver::Kmod => json!({
            "kind": "kmod",
            "kmod": {"buf_size_preset": 4, "drop_failed_exit": false},
        }),
    };
    let mut http_output = json!({
        "enabled": true,
        "url": ingest_url(policy, &format!("source=falco&token=${{{TOKEN_ENV}}}")),
        "insecure": policy.spec.hub_tls.insecure_skip_verify,
        // One connection for all alerts instead of one per alert.
        "keep_alive": true,
    });
    if let Some(ca) = hub_ca_file(policy) {
        http_output["ca_cert"] = json!(ca);
    }
    json!({
        "rules_files": rules_files,
        "config_files": ["/etc/falco/config.d"],
        "watch_config_files": true,
        "engine": engine,
        "priority": falco.minimum_priority.as_str(),
        "json_output": true,
        "json_include_output_property": true,
        "json_include_tags_property": true,
        "append_output": [{"extra_fields": [{CLUSTER_FIELD: cluster}]}],
        "http_output": http_output,
        // Kept on so `kubectl logs` still shows alerts when the hub is unreachable.
        "stdout_output": {"enabled": true},
        "syslog_output": {"enabled": false},
        "file_output": {"enabled": false},
        "log_stderr": true,
        "log_syslog": false,
        "log_level": "info",
        "webserver": {
            "enabled": true,
            "listen_port": HEALTH_PORT,
            "k8s_healthz_endpoint": "/healthz",
            "prometheus_metrics_enabled": false,
            "ssl_enabled": false,
        },
    })
}

pub fn config_yaml(policy: &Policy, cluster: &str) -> String {
    // Serializing a JSON value with string keys cannot fail.
    let body = serde_saphyr::to_string(&config(policy, cluster)).unwrap_or_default();
    format!(
        "# Written by falconer-manager from Policy {}; edits are overwritten.\n{body}",
        super::policy_name(policy)
    )
}

fn config_map(policy: &Policy, config: &str) -> Child {
    Child::ConfigMap(ConfigMap {
        metadata: metadata(
            policy,
            Agent::Falco,
            object_name(policy, Agent::Falco),
            true,
        ),
        data: Some(BTreeMap::from([("falco.yaml".into(), config.into())])),
        ..ConfigMap::default()
    })
}

/// Falco's defaults in its own chart.
pub fn default_resources() -> ResourceRequirements {
    let q = |s: &str| Quantity(s.into());
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), q("100m")),
            ("memory".into(), q("512Mi")),
        ])),
        limits: Some(BTreeMap::from([
            ("cpu".into(), q("1")),
            ("memory".into(), q("1Gi")),
        ])),
        ..Default::default()
    }
}

/// Host paths mounted for a driver: (volume name, host path, mount path, read-only).
pub fn host_mounts(driver: Driver) -> Vec<(&'static str, &'static str, &'static str, bool)> {
    let mut mounts = vec![
        ("proc", "/proc", "/host/proc", true),
        ("etc", "/etc", "/host/etc", true),
        // Container runtime sockets (containerd, CRI-O, k3s) for the container plugin.
        ("run", "/run", "/host/run", true),
    ];
    if driver != Driver::ModernEbpf {
        // The driver loader looks up the kernel and builds or fetches a matching driver.
        mounts.extend([
            ("boot", "/boot", "/host/boot", true),
            ("lib-modules", "/lib/modules", "/host/lib/modules", false),
            ("usr", "/usr", "/host/usr", true),
        ]);
    }
    if driver == Driver::Kmod {
        mounts.extend([
            ("dev", "/dev", "/host/dev", true),
            ("sys-module", "/sys/module", "/sys/module", false),
        ]);
    }
    mounts
}

/// `modern_ebpf` runs with a few capabilities; the legacy probe and the kernel module need a
/// privileged container.
pub fn security_context(driver: Driver) -> SecurityContext {
    match driver {
        Driver::ModernEbpf => SecurityContext {
            privileged: Some(false),
            capabilities: Some(Capabilities {
                add: Some(
                    MODERN_EBPF_CAPABILITIES
                        .iter()
                        .map(|c| c.to_string())
                        .collect(),
                ),
                drop: None,
            }),
            // The default AppArmor profile denies the bpf() and perf calls these capabilities
            // are for.
            app_armor_profile: Some(AppArmorProfile {
                type_: "Unconfined".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        },
        Driver::Ebpf | Driver::Kmod => SecurityContext {
            privileged: Some(true),
            ..Default::default()
        },
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn value_env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn health_probe(period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".into()),
            port: IntOrString::Int(HEALTH_PORT),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

fn driver_loader(policy: &Policy, mounts: &[VolumeMount]) -> Container {
    let driver = policy.spec.falco.driver;
    let wanted = ["driver", "proc", "boot", "lib-modules", "usr", "etc"];
    Container {
        name: "driver-loader".into(),
        image: Some(policy.spec.falco.driver_loader_image.clone()),
        args: Some(vec![driver.as_str().into()]),
        env: Some(vec![
            value_env("HOST_ROOT", "/host"),
            // The config is ours; the loader must not rewrite it.
            value_env("FALCOCTL_DRIVER_CONFIG_UPDATE_FALCO", "false"),
        ]),
        volume_mounts: Some(
            mounts
                .iter()
                .filter(|m| wanted.contains(&m.name.as_str()))
                .cloned()
                .collect(),
        ),
        // Loading a kernel module takes a privileged container; fetching a probe does not.
        security_context: (driver == Driver::Kmod).then(|| SecurityContext {
            privileged: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn daemon_set(policy: &Policy, config_digest: &str) -> Child {
    let falco = &policy.spec.falco;
    let name = object_name(policy, Agent::Falco);
    let mut volumes: Vec<Volume> = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: name.clone(),
                items: Some(vec![KeyToPath {
                    key: "falco.yaml".into(),
                    path: "falco.yaml".into(),
                    mode: None,
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
        // The driver loader leaves the probe here; Falco keeps its state here.
        empty_dir("driver"),
    ];
    let mut mounts: Vec<VolumeMount> = vec![
        VolumeMount {
            name: "config".into(),
            mount_path: "/etc/falco/falco.yaml".into(),
            sub_path: Some("falco.yaml".into()),
            read_only: Some(true),
            ..Default::default()
        },
        mount("driver", "/root/.falco", false),
    ];
    for (volume, host, path, read_only) in host_mounts(falco.driver) {
        volumes.push(host_path(volume, host));
        mounts.push(mount(volume, path, read_only));
    }
    for (i, rules) in falco.custom_rules.iter().enumerate() {
        let volume = format!("rules-{i:02}");
        volumes.push(Volume {
            name: volume.clone(),
            config_map: Some(ConfigMapVolumeSource {
                name: rules.name.clone(),
                optional: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(mount(&volume, &custom_rules_dir(i), true));
    }
    if let Some((volume, ca_mount)) = hub_ca(policy) {
        volumes.push(volume);
        mounts.push(ca_mount);
    }

    let init_containers =
        (falco.driver != Driver::ModernEbpf).then(|| vec![driver_loader(policy, &mounts)]);
    let container = Container {
        name: "falco".into(),
        image: Some(falco.image.clone()),
        args: Some(vec!["/usr/bin/falco".into()]),
        env: Some(vec![
            value_env("HOST_ROOT", "/host"),
            field_env("FALCO_HOSTNAME", "spec.nodeName"),
            field_env("FALCO_K8S_NODE_NAME", "spec.nodeName"),
            super::token_env(policy, Agent::Falco.as_str()),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("health".into()),
            container_port: HEALTH_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        resources: Some(falco.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(security_context(falco.driver)),
        startup_probe: Some(health_probe(5, 24)),
        liveness_probe: Some(health_probe(15, 3)),
        readiness_probe: Some(health_probe(15, 3)),
        volume_mounts: Some(mounts),
        ..Default::default()
    };

    let selector = selector_labels(policy, Agent::Falco);
    let mut template_labels = super::labels(policy, Agent::Falco);
    template_labels.extend(selector.clone());
    Child::DaemonSet(DaemonSet {
        metadata: metadata(policy, Agent::Falco, name.clone(), true),
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(template_labels),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_DIGEST_ANNOTATION.into(),
                        config_digest.into(),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(name),
                    // Falco does not call the Kubernetes API.
                    automount_service_account_token: Some(false),
                    node_selector: (!falco.node_selector.is_empty())
                        .then(|| falco.node_selector.clone()),
                    tolerations: (!falco.tolerations.is_empty()).then(|| falco.tolerations.clone()),
                    init_containers,
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::tests::policy;
    use falconer_model::crd::{CaRef, ConfigMapRef, PolicySpec};
    use falconer_model::event::Severity;
    use k8s_openapi::api::core::v1::Toleration;

    fn daemon_set_of(p: &Policy) -> DaemonSet {
        objects(p, "prod-eu")
            .into_iter()
            .find_map(|c| match c {
                Child::DaemonSet(ds) => Some(ds),
                _ => None,
            })
            .expect("a DaemonSet")
    }

    fn pod(p: &Policy) -> PodSpec {
        daemon_set_of(p)
            .spec
            .and_then(|s| s.template.spec)
            .expect("a pod spec")
    }

    fn falco_container(p: &Policy) -> Container {
        pod(p)
            .containers
            .into_iter()
            .find(|c| c.name == "falco")
            .expect("a falco container")
    }

    fn parsed_config(p: &Policy) -> serde_json::Value {
        let text = objects(p, "prod-eu")
            .into_iter()
            .find_map(|c| match c {
                Child::ConfigMap(cm) => cm.data.and_then(|d| d.get("falco.yaml").cloned()),
                _ => None,
            })
            .expect("falco.yaml in the ConfigMap");
        serde_saphyr::from_str(&text).expect("falco.yaml is YAML")
    }

    #[test]
    fn falco_yaml_sends_json_alerts_with_their_output_to_the_hub_ingest() {
        let config = parsed_config(&policy(PolicySpec::default()));
        assert_eq!(config["json_output"], true);
        assert_eq!(config["json_include_output_property"], true);
        assert_eq!(config["http_output"]["enabled"], true);
        assert_eq!(
            config["http_output"]["url"],
            "http://falconer-hub.falconer-system.svc:8080/ingest?source=falco&token=${FALCONER_INGEST_TOKEN}"
        );
    }

    #[test]
    fn the_token_is_only_a_variable_reference_in_the_config_and_comes_from_the_secret() {
        let mut spec = PolicySpec::default();
        spec.hub_token.secret_name = "hub-token".into();
        spec.hub_token.key = Some("ingest".into());
        let p = policy(spec);
        let cm_text = serde_json::to_string(&objects(&p, "c")[1]).expect("json");
        assert!(cm_text.contains("${FALCONER_INGEST_TOKEN}"));
        let env = falco_container(&p).env.unwrap_or_default();
        let token = env.iter().find(|e| e.name == TOKEN_ENV).expect("token env");
        assert_eq!(token.value, None, "never a literal value");
        let secret = token
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .expect("from a Secret");
        assert_eq!(secret.name, "hub-token");
        assert_eq!(secret.key, "ingest");
    }

    #[test]
    fn the_cluster_name_is_appended_to_every_alert_as_falconer_cluster() {
        let config = parsed_config(&policy(PolicySpec::default()));
        assert_eq!(
            config["append_output"],
            json!([{"extra_fields": [{"falconer.cluster": "prod-eu"}]}])
        );
    }

    #[test]
    fn the_minimum_priority_becomes_falcos_priority() {
        let mut spec = PolicySpec::default();
        spec.falco.minimum_priority = Severity::Warning;
        assert_eq!(parsed_config(&policy(spec))["priority"], "warning");
        assert_eq!(
            parsed_config(&policy(PolicySpec::default()))["priority"],
            "debug"
        );
    }

    #[test]
    fn a_hub_ca_is_mounted_and_named_in_http_output() {
        let mut spec = PolicySpec {
            hub_url: "https://hub.falconer-system.svc:8443".into(),
            ..PolicySpec::default()
        };
        spec.hub_tls.ca = Some(CaRef {
            secret_name: "hub-tls".into(),
            key: "ca.crt".into(),
        });
        let p = policy(spec);
        let config = parsed_config(&p);
        assert_eq!(
            config["http_output"]["ca_cert"],
            "/etc/falconer/hub-ca/ca.crt"
        );
        assert_eq!(config["http_output"]["insecure"], false);
        let volume = pod(&p)
            .volumes
            .unwrap_or_default()
            .into_iter()
            .find(|v| v.name == "hub-ca")
            .expect("hub-ca volume");
        assert_eq!(
            volume.secret.and_then(|s| s.secret_name).as_deref(),
            Some("hub-tls")
        );
        assert!(
            falco_container(&p)
                .volume_mounts
                .unwrap_or_default()
                .iter()
                .any(|m| m.name == "hub-ca" && m.mount_path == "/etc/falconer/hub-ca")
        );
    }

    #[test]
    fn insecure_skip_verify_reaches_http_output() {
        let mut spec = PolicySpec::default();
        spec.hub_tls.insecure_skip_verify = true;
        assert_eq!(
            parsed_config(&policy(spec))["http_output"]["insecure"],
            true
        );
    }

    #[test]
    fn modern_ebpf_is_the_default_and_runs_unprivileged_with_bpf_capabilities() {
        let p = policy(PolicySpec::default());
        assert_eq!(parsed_config(&p)["engine"]["kind"], "modern_ebpf");
        let sc = falco_container(&p)
            .security_context
            .expect("security context");
        assert_eq!(sc.privileged, Some(false));
        assert_eq!(
            sc.capabilities.and_then(|c| c.add).unwrap_or_default(),
            ["BPF", "PERFMON", "SYS_RESOURCE", "SYS_PTRACE"]
        );
        assert_eq!(
            sc.app_armor_profile.map(|a| a.type_).as_deref(),
            Some("Unconfined")
        );
        assert_eq!(pod(&p).init_containers, None, "no driver to load");
        let mounts: Vec<String> = falco_container(&p)
            .volume_mounts
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.mount_path)
            .collect();
        assert!(mounts.contains(&"/host/proc".to_string()));
        assert!(!mounts.contains(&"/host/lib/modules".to_string()));
        assert!(!mounts.contains(&"/host/dev".to_string()));
    }

    #[test]
    fn ebpf_runs_privileged_after_a_driver_loader_that_leaves_the_probe_where_falco_reads_it() {
        let mut spec = PolicySpec::default();
        spec.falco.driver = Driver::Ebpf;
        let p = policy(spec);
        let config = parsed_config(&p);
        assert_eq!(config["engine"]["kind"], "ebpf");
        assert_eq!(
            config["engine"]["ebpf"]["probe"],
            "/root/.falco/falco-bpf.o"
        );
        let sc = falco_container(&p)
            .security_context
            .expect("security context");
        assert_eq!(sc.privileged, Some(true));
        let init = pod(&p).init_containers.unwrap_or_default();
        assert_eq!(init.len(), 1);
        assert_eq!(init[0].args.clone().unwrap_or_default(), ["ebpf"]);
        assert_eq!(
            init[0].image.as_deref(),
            Some("docker.io/falcosecurity/falco-driver-loader:0.44.1")
        );
        assert_eq!(
            init[0].security_context, None,
            "fetching a probe is unprivileged"
        );
        let loader_mounts: Vec<String> = init[0]
            .volume_mounts
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.mount_path)
            .collect();
        assert!(loader_mounts.contains(&"/root/.falco".to_string()));
        assert!(loader_mounts.contains(&"/host/lib/modules".to_string()));
    }

    #[test]
    fn kmod_runs_privileged_with_dev_and_module_mounts_and_a_privileged_loader() {
        let mut spec = PolicySpec::default();
        spec.falco.driver = Driver::Kmod;
        let p = policy(spec);
        assert_eq!(parsed_config(&p)["engine"]["kind"], "kmod");
        assert_eq!(
            falco_container(&p)
                .security_context
                .and_then(|s| s.privileged),
            Some(true)
        );
        let init = pod(&p).init_containers.unwrap_or_default();
        assert_eq!(init[0].args.clone().unwrap_or_default(), ["kmod"]);
        assert_eq!(
            init[0].security_context.as_ref().and_then(|s| s.privileged),
            Some(true)
        );
        let mounts: Vec<(String, Option<bool>)> = falco_container(&p)
            .volume_mounts
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m.mount_path, m.read_only))
            .collect();
        assert!(mounts.contains(&("/host/dev".into(), Some(true))));
        assert!(mounts.contains(&("/sys/module".into(), None)));
    }

    #[test]
    fn image_resources_node_selector_and_tolerations_come_from_the_spec() {
        let mut spec = PolicySpec::default();
        spec.falco.image = "registry.example/falco:1.2.3".into();
        spec.falco.node_selector = BTreeMap::from([("pool".into(), "general".into())]);
        spec.falco.tolerations = vec![Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        }];
        let resources = ResourceRequirements {
            limits: Some(BTreeMap::from([("memory".into(), Quantity("2Gi".into()))])),
            ..Default::default()
        };
        spec.falco.resources = Some(resources.clone());
        let p = policy(spec);
        let pod = pod(&p);
        assert_eq!(pod.node_selector.unwrap_or_default()["pool"], "general");
        assert_eq!(pod.tolerations.unwrap_or_default().len(), 1);
        let falco = falco_container(&p);
        assert_eq!(falco.image.as_deref(), Some("registry.example/falco:1.2.3"));
        assert_eq!(falco.resources, Some(resources));
    }

    #[test]
    fn defaults_request_falcos_resources_and_tolerate_the_control_plane() {
        let p = policy(PolicySpec::default());
        assert_eq!(falco_container(&p).resources, Some(default_resources()));
        let keys: Vec<String> = pod(&p)
            .tolerations
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| t.key)
            .collect();
        assert_eq!(
            keys,
            [
                "node-role.kubernetes.io/control-plane",
                "node-role.kubernetes.io/master"
            ]
        );
        assert_eq!(pod(&p).node_selector, None);
    }

    #[test]
    fn custom_rules_configmaps_are_mounted_and_loaded_after_the_default_rules_in_order() {
        let mut spec = PolicySpec::default();
        spec.falco.custom_rules = vec![
            ConfigMapRef {
                name: "team-rules".into(),
            },
            ConfigMapRef {
                name: "exceptions".into(),
            },
        ];
        let p = policy(spec);
        assert_eq!(
            parsed_config(&p)["rules_files"],
            json!([
                "/etc/falco/falco_rules.yaml",
                "/etc/falco/falconer-rules/00",
                "/etc/falco/falconer-rules/01"
            ])
        );
        let volumes = pod(&p).volumes.unwrap_or_default();
        let rules: Vec<(String, String)> = volumes
            .iter()
            .filter_map(|v| Some((v.name.clone(), v.config_map.as_ref()?.name.clone())))
            .filter(|(n, _)| n.starts_with("rules-"))
            .collect();
        assert_eq!(
            rules,
            [
                ("rules-00".to_string(), "team-rules".to_string()),
                ("rules-01".to_string(), "exceptions".to_string())
            ]
        );
    }

    #[test]
    fn a_config_change_changes_the_pod_template_so_falco_restarts_with_it() {
        let a = policy(PolicySpec::default());
        let mut spec = PolicySpec::default();
        spec.falco.minimum_priority = Severity::Notice;
        let b = policy(spec);
        let digest_of = |p: &Policy| {
            daemon_set_of(p)
                .spec
                .and_then(|s| s.template.metadata)
                .and_then(|m| m.annotations)
                .map(|a| a[CONFIG_DIGEST_ANNOTATION].clone())
        };
        assert_ne!(digest_of(&a), digest_of(&b));
        assert_eq!(digest_of(&a), digest_of(&a.clone()));
    }

    #[test]
    fn the_daemonset_selects_its_pods_by_agent_and_policy_only() {
        let ds = daemon_set_of(&policy(PolicySpec::default()));
        let spec = ds.spec.expect("spec");
        let selector = spec.selector.match_labels.expect("match labels");
        assert_eq!(
            selector,
            BTreeMap::from([
                ("app.kubernetes.io/name".to_string(), "falco".to_string()),
                ("falconer.io/policy".to_string(), "prod".to_string()),
            ])
        );
        let template_labels = spec
            .template
            .metadata
            .and_then(|m| m.labels)
            .expect("labels");
        assert!(
            selector
                .iter()
                .all(|(k, v)| template_labels.get(k) == Some(v))
        );
        assert_eq!(ds.metadata.namespace.as_deref(), Some("falconer-system"));
    }
}
