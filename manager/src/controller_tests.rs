//! Reconcile passes against a scripted API server: every request the manager makes is
//! listed, in order, with what it must carry. Includes the CNSI Policy test plan (enable
//! Falco → DaemonSet applied; disable → removed; kube-bench and Trivy unaffected).

use super::*;
use crate::objects::tests::{all_enabled, policy};
use crate::setting_checks::tests::{consumer, setting};
use falconer_model::crd::{PolicySpec, SecretRef, SinkType};
use falconer_testkit::kube::{ApiServer, Step, expect, status as api_status};
use http::Method;
use kube::runtime::reflector;
use kube::runtime::watcher;
use serde_json::{Value, json};

const NS: &str = "/api/v1/namespaces/falconer-system";
const APPS: &str = "/apis/apps/v1/namespaces/falconer-system";
const BATCH: &str = "/apis/batch/v1/namespaces/falconer-system";
const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
const POLICY_STATUS: &str = "/apis/falconer.io/v1alpha1/policies/prod/status";

fn context(client: Client, settings: Vec<Setting>) -> Arc<Context> {
    Arc::new(bare_context(client, settings))
}

fn bare_context(client: Client, settings: Vec<Setting>) -> Context {
    let (store, mut writer) = reflector::store::<Setting>();
    for s in settings {
        writer.apply_watcher_event(&watcher::Event::Apply(s));
    }
    Context::new(
        client.clone(),
        Recorder::new(
            client,
            kube::runtime::events::Reporter {
                controller: "falconer-manager".into(),
                instance: None,
            },
        ),
        Metrics::default(),
        store,
        "home".into(),
        "falconer-system".into(),
    )
}

fn with_version(mut body: Value, version: &str, generation: Option<i64>) -> Value {
    body["metadata"]["resourceVersion"] = json!(version);
    if let Some(g) = generation {
        body["metadata"]["generation"] = json!(g);
    }
    body
}

/// An event about the Policy with this reason, about this object (`resource/name`).
fn event(reason: &'static str, object: &'static str) -> Step {
    let name = object.rsplit('/').next().unwrap_or(object);
    expect(Method::POST, EVENTS)
        .check(move |body| {
            assert_eq!(body["reason"], reason);
            assert_eq!(body["regarding"]["kind"], "Policy");
            assert_eq!(body["related"]["name"], name);
        })
        .echo(201)
}

/// GET finds nothing, the apply creates, an event says so.
fn create(
    path: &str,
    name: &'static str,
    generation: Option<i64>,
    check: impl FnOnce(&Value) + Send + 'static,
) -> Vec<Step> {
    let url = format!("{path}/{name}");
    vec![
        expect(Method::GET, &url).reply(404, api_status(404, "NotFound", "not found")),
        expect(Method::PATCH, &url)
            .query("fieldManager=falconer-manager")
            .query("force=true")
            .check(check)
            .echo_with(201, move |body| with_version(body, "1", generation)),
        event("Created", name),
    ]
}

/// GET finds the object as the apply will leave it: no change, no event.
fn unchanged(path: &str, name: &str, generation: Option<i64>) -> Vec<Step> {
    let url = format!("{path}/{name}");
    vec![
        expect(Method::GET, &url).reply(
            200,
            json!({"metadata": {"name": name, "resourceVersion": "7", "generation": generation}}),
        ),
        expect(Method::PATCH, &url).echo_with(200, move |body| with_version(body, "7", generation)),
    ]
}

/// The apply changes the object (new generation or resourceVersion): an Updated event.
fn update(
    path: &str,
    name: &'static str,
    generation: Option<i64>,
    check: impl FnOnce(&Value) + Send + 'static,
) -> Vec<Step> {
    let url = format!("{path}/{name}");
    let next = generation.map(|g| g + 1);
    vec![
        expect(Method::GET, &url).reply(
            200,
            json!({"metadata": {"name": name, "resourceVersion": "7", "generation": generation}}),
        ),
        expect(Method::PATCH, &url)
            .check(check)
            .echo_with(200, move |body| with_version(body, "8", next)),
        event("Updated", name),
    ]
}

fn already_gone(path: &str, name: &str) -> Step {
    expect(Method::DELETE, &format!("{path}/{name}"))
        .reply(404, api_status(404, "NotFound", "not found"))
}

fn deleted(path: &str, name: &'static str) -> Vec<Step> {
    vec![
        expect(Method::DELETE, &format!("{path}/{name}"))
            .check(|body| assert_eq!(body["propagationPolicy"], "Background"))
            .reply(
                200,
                json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 200}),
            ),
        event("Deleted", name),
    ]
}

/// kube-bench and Trivy disabled and absent: their deletes find nothing.
fn scanners_absent() -> Vec<Step> {
    vec![
        already_gone(BATCH, "cronjobs/prod-kube-bench"),
        already_gone(NS, "serviceaccounts/prod-kube-bench"),
        already_gone(BATCH, "cronjobs/prod-trivy"),
        already_gone(RBAC, "clusterrolebindings/falconer:prod-trivy"),
        already_gone(NS, "serviceaccounts/prod-trivy"),
    ]
}

/// Falco disabled: its DaemonSet, ConfigMap and ServiceAccount are deleted.
fn falco_deleted() -> Vec<Step> {
    [
        deleted(APPS, "daemonsets/prod-falco"),
        deleted(NS, "configmaps/prod-falco"),
        deleted(NS, "serviceaccounts/prod-falco"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The status apply; `check` sees the status, the reply is the Policy with it.
fn status_patch(policy: &Policy, check: impl FnOnce(&Value) + Send + 'static) -> Step {
    let object = serde_json::to_value(policy).expect("json");
    expect(Method::PATCH, POLICY_STATUS)
        .query("fieldManager=falconer-manager")
        .check(move |body| {
            assert_eq!(body["apiVersion"], "falconer.io/v1alpha1");
            assert_eq!(body["kind"], "Policy");
            assert!(
                body.get("spec").is_none(),
                "the status apply carries only status"
            );
            check(&body["status"]);
        })
        .echo_with(200, move |body| {
            let mut object = object;
            object["status"] = body["status"].clone();
            object
        })
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

fn falco_yaml(body: &Value) -> String {
    body["data"]["falco.yaml"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The existing DaemonSet, as the API server returns it after an unchanged apply.
fn daemon_set_ready(body: Value) -> Value {
    let mut ds = with_version(body, "7", Some(1));
    ds["status"] = json!({"observedGeneration": 1, "desiredNumberScheduled": 3,
                          "currentNumberScheduled": 3, "numberReady": 3,
                          "updatedNumberScheduled": 3, "numberMisscheduled": 0});
    ds
}

#[tokio::test]
async fn a_new_policy_with_falco_enabled_creates_its_daemonset_and_reports_it_progressing() {
    let p = policy(PolicySpec::default());
    let (client, server) = ApiServer::start();
    let ctx = context(client, vec![setting("main", 0, Some("prod-eu"), vec![])]);
    let mut steps = Vec::new();
    steps.extend(create(NS, "serviceaccounts/prod-falco", None, |sa| {
        assert_eq!(sa["kind"], "ServiceAccount");
        assert_eq!(sa["metadata"]["ownerReferences"][0]["kind"], "Policy");
    }));
    steps.extend(create(NS, "configmaps/prod-falco", None, |cm| {
        let config = falco_yaml(cm);
        assert!(config.contains("falconer.cluster: prod-eu"), "{config}");
        assert!(config.contains("token=${FALCONER_INGEST_TOKEN}"));
    }));
    steps.extend(create(APPS, "daemonsets/prod-falco", Some(1), |ds| {
        assert_eq!(ds["kind"], "DaemonSet");
        assert_eq!(
            ds["spec"]["template"]["spec"]["containers"][0]["name"],
            "falco"
        );
    }));
    steps.extend(scanners_absent());
    steps.push(status_patch(&p, |status| {
        assert_eq!(status["observedGeneration"], 3);
        assert_eq!(status["cluster"], "prod-eu");
        let falco = condition(status, "FalcoReady");
        assert_eq!(
            (&falco["status"], &falco["reason"]),
            (&json!("False"), &json!("Progressing"))
        );
        assert_eq!(condition(status, "KubeBenchReady")["reason"], "Disabled");
        assert_eq!(condition(status, "Ready")["status"], "False");
    }));
    let script = server.run(steps);
    let action = reconcile_policy(Arc::new(p), ctx)
        .await
        .expect("reconciles");
    assert_eq!(action, Action::requeue(RESYNC));
    script.done().await;
}

#[tokio::test]
async fn an_unchanged_policy_applies_everything_again_without_events_and_reports_ready() {
    let p = policy(PolicySpec::default());
    let (client, server) = ApiServer::start();
    let ctx = context(client, vec![]);
    let mut steps = Vec::new();
    steps.extend(unchanged(NS, "serviceaccounts/prod-falco", None));
    steps.extend(unchanged(NS, "configmaps/prod-falco", None));
    steps.push(
        expect(Method::GET, &format!("{APPS}/daemonsets/prod-falco")).reply(
            200,
            json!({"metadata": {"name": "prod-falco", "resourceVersion": "7", "generation": 1}}),
        ),
    );
    steps.push(
        expect(Method::PATCH, &format!("{APPS}/daemonsets/prod-falco"))
            .echo_with(200, daemon_set_ready),
    );
    steps.extend(scanners_absent());
    steps.push(status_patch(&p, |status| {
        assert_eq!(condition(status, "FalcoReady")["reason"], "Running");
        assert_eq!(condition(status, "Ready")["status"], "True");
        assert_eq!(
            status["falco"],
            json!({"desired": 3, "ready": 3, "updated": 3, "summary": "3/3"})
        );
        assert_eq!(status["cluster"], "home", "no Setting names the cluster");
    }));
    let script = server.run(steps);
    reconcile_policy(Arc::new(p), ctx)
        .await
        .expect("reconciles");
    script.done().await;
}

#[tokio::test]
async fn changing_the_minimum_priority_updates_the_configmap_and_rolls_the_daemonset() {
    let mut spec = PolicySpec::default();
    spec.falco.minimum_priority = falconer_model::event::Severity::Error;
    let p = policy(spec);
    let (client, server) = ApiServer::start();
    let ctx = context(client, vec![]);
    let mut steps = Vec::new();
    steps.extend(unchanged(NS, "serviceaccounts/prod-falco", None));
    steps.extend(update(NS, "configmaps/prod-falco", None, |cm| {
        assert!(falco_yaml(cm).contains("priority: error"));
    }));
    steps.extend(update(APPS, "daemonsets/prod-falco", Some(1), |ds| {
        let digest =
            &ds["spec"]["template"]["metadata"]["annotations"]["falconer.io/falco-config-sha256"];
        assert!(digest.as_str().is_some_and(|d| d.len() == 64));
    }));
    steps.extend(scanners_absent());
    steps.push(status_patch(&p, |status| {
        assert_eq!(condition(status, "FalcoReady")["reason"], "Progressing");
    }));
    let script = server.run(steps);
    reconcile_policy(Arc::new(p), ctx.clone())
        .await
        .expect("reconciles");
    script.done().await;
    let changes = ctx
        .metrics
        .changes
        .get_or_create(&crate::metrics::ChangeLabel {
            kind: "ConfigMap",
            change: "updated",
        })
        .get();
    assert_eq!(changes, 1);
}

/// Falco disabled, kube-bench and Trivy enabled and already in place.
fn scanners_in_place() -> Vec<Step> {
    scanners_with_binding(unchanged(
        RBAC,
        "clusterrolebindings/falconer:prod-trivy",
        None,
    ))
}

/// As `scanners_in_place`, with `binding` for Trivy's ClusterRoleBinding.
fn scanners_with_binding(binding: Vec<Step>) -> Vec<Step> {
    let mut steps = Vec::new();
    steps.extend(unchanged(NS, "serviceaccounts/prod-kube-bench", None));
    steps.push(expect(Method::GET, &format!("{BATCH}/cronjobs/prod-kube-bench")).reply(
        200,
        json!({"metadata": {"name": "prod-kube-bench", "resourceVersion": "7", "generation": 1}}),
    ));
    steps.push(
        expect(Method::PATCH, &format!("{BATCH}/cronjobs/prod-kube-bench"))
            .check(|cron| assert_eq!(cron["spec"]["schedule"], "0 3 * * *"))
            .echo_with(200, |body| with_version(body, "7", Some(1))),
    );
    steps.extend(unchanged(NS, "serviceaccounts/prod-trivy", None));
    steps.extend(binding);
    steps.push(
        expect(Method::GET, &format!("{BATCH}/cronjobs/prod-trivy")).reply(
            200,
            json!({"metadata": {"name": "prod-trivy", "resourceVersion": "7", "generation": 1}}),
        ),
    );
    steps.push(
        expect(Method::PATCH, &format!("{BATCH}/cronjobs/prod-trivy"))
            .check(|cron| assert_eq!(cron["spec"]["schedule"], "0 4 * * *"))
            .echo_with(200, |body| with_version(body, "7", Some(1))),
    );
    steps
}

#[tokio::test]
async fn cnsi_test_plan_enabling_falco_applies_the_daemonset_next_to_running_scanners() {
    let p = all_enabled();
    let (client, server) = ApiServer::start();
    let ctx = context(client, vec![]);
    let mut steps = Vec::new();
    steps.extend(create(NS, "serviceaccounts/prod-falco", None, |_| {}));
    steps.extend(create(NS, "configmaps/prod-falco", None, |_| {}));
    steps.extend(create(APPS, "daemonsets/prod-falco", Some(1), |ds| {
        assert_eq!(ds["metadata"]["namespace"], "falconer-system");
    }));
    steps.extend(scanners_in_place());
    steps.push(status_patch(&p, |status| {
        assert_eq!(condition(status, "KubeBenchReady")["reason"], "Scheduled");
        assert_eq!(condition(status, "TrivyReady")["reason"], "Scheduled");
    }));
    let script = server.run(steps);
    reconcile_policy(Arc::new(p), ctx)
        .await
        .expect("reconciles");
    script.done().await;
}

#[tokio::test]
async fn cnsi_test_plan_disabling_falco_removes_its_objects_and_leaves_the_scanners_running() {
    let mut p = all_enabled();
    p.spec.falco.enabled = false;
    let (client, server) = ApiServer::start();
    let ctx = context(client, vec![]);
    let mut steps = scanners_in_place();
    steps.extend(falco_deleted());
    steps.push(status_patch(&p, |status| {
        let falco = condition(status, "FalcoReady");
        assert_eq!(
            (&falco["status"], &falco["reason"]),
            (&json!("True"), &json!("Disabled"))
        );
        assert!(status.get("falco").is_none());
        assert_eq!(condition(status, "KubeBenchReady")["reason"], "Scheduled");
        assert_eq!(condition(status, "TrivyReady")["reason"], "Scheduled");
        assert_eq!(condition(status, "Ready")["status"], "True");
    }));
    let script = server.run(steps);
    let action = reconcile_policy(Arc::new(p), ctx)
        .await
        .expect("reconciles");
    assert_eq!(action, Action::requeue(RESYNC));
    script.done().await;
}

#[tokio::test]
async fn a_policy_being_deleted_is_left_to_the_garbage_collector() {
    let mut p = all_enabled();
    p.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1_800_000_000).expect("ts")));
    let (client, server) = ApiServer::start();
    let ctx = context(client, vec![]);
    // No request at all: children go with the Policy through their owner references.
    let script = server.run(vec![]);
    let action = reconcile_policy(Arc::new(p), ctx)
        .await
        .expect("reconciles");
    assert_eq!(action, Action::await_change());
    script.done().await;
}

#[tokio::test]
async fn a_refused_apply_fails_only_its_agent_reports_it_and_requeues_with_growing_backoff() {
    let p = policy(PolicySpec::default());
    let (client, server) = ApiServer::start();
    let ctx = context(client, vec![]);
    let mut steps = vec![
        expect(Method::GET, &format!("{NS}/serviceaccounts/prod-falco")).reply(
            404,
            api_status(404, "NotFound", r#"serviceaccounts "prod-falco" not found"#),
        ),
        expect(Method::PATCH, &format!("{NS}/serviceaccounts/prod-falco")).reply(
            403,
            api_status(
                403,
                "Forbidden",
                r#"serviceaccounts "prod-falco" is forbidden"#,
            ),
        ),
        expect(Method::POST, EVENTS)
            .check(|body| {
                assert_eq!(body["reason"], "ApplyFailed");
                assert_eq!(body["type"], "Warning");
            })
            .echo(201),
    ];
    // Falco's ConfigMap and DaemonSet are skipped; the other agents are still handled.
    steps.extend(scanners_absent());
    steps.push(status_patch(&p, |status| {
        let falco = condition(status, "FalcoReady");
        assert_eq!(
            (&falco["status"], &falco["reason"]),
            (&json!("False"), &json!("ApplyFailed"))
        );
        assert!(
            falco["message"]
                .as_str()
                .is_some_and(|m| m.contains("ServiceAccount falconer-system/prod-falco"))
        );
        assert_eq!(condition(status, "KubeBenchReady")["status"], "True");
    }));
    let script = server.run(steps);
    let policy = Arc::new(p);
    let error = reconcile_policy(policy.clone(), ctx.clone())
        .await
        .expect_err("fails");
    script.done().await;
    assert!(matches!(error, Error::Agents(_)));
    assert_eq!(
        policy_error_policy(policy.clone(), &error, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        policy_error_policy(policy, &error, ctx.clone()),
        Action::requeue(Duration::from_secs(10))
    );
    let failures = ctx
        .metrics
        .failures
        .get_or_create(&crate::metrics::FailureLabel {
            controller: "policy",
            error: "agents",
        })
        .get();
    assert_eq!(failures, 2);
}

#[tokio::test]
async fn an_unreachable_api_server_fails_the_pass_for_a_retry() {
    let p = policy(PolicySpec::default());
    let (client, server) = ApiServer::start();
    let ctx = context(client, vec![]);
    let mut steps = Vec::new();
    steps.extend(unchanged(NS, "serviceaccounts/prod-falco", None));
    steps.extend(unchanged(NS, "configmaps/prod-falco", None));
    steps.push(
        expect(Method::GET, &format!("{APPS}/daemonsets/prod-falco")).reply(
            200,
            json!({"metadata": {"name": "prod-falco", "resourceVersion": "7", "generation": 1}}),
        ),
    );
    steps.push(
        expect(Method::PATCH, &format!("{APPS}/daemonsets/prod-falco"))
            .echo_with(200, daemon_set_ready),
    );
    steps.extend(scanners_absent());
    steps.push(expect(Method::PATCH, POLICY_STATUS).reply(
        503,
        api_status(503, "ServiceUnavailable", "etcd leader changed"),
    ));
    let script = server.run(steps);
    let error = reconcile_policy(Arc::new(p), ctx)
        .await
        .expect_err("status write fails");
    assert_eq!(error.metric_label(), "api");
    script.done().await;
}

// --- Settings ---------------------------------------------------------------------------

const SETTING_STATUS: &str = "/apis/falconer.io/v1alpha1/settings/main/status";

fn setting_status_patch(s: &Setting, check: impl FnOnce(&Value) + Send + 'static) -> Step {
    let object = serde_json::to_value(s).expect("json");
    expect(Method::PATCH, SETTING_STATUS)
        .query("fieldManager=falconer-manager")
        .check(move |body| {
            assert!(
                body["status"].get("consumers").is_none(),
                "consumer status is the hub's"
            );
            check(&body["status"]);
        })
        .echo_with(200, move |body| {
            let mut object = object;
            object["status"] = body["status"].clone();
            object
        })
}

fn opensearch_consumer() -> falconer_model::crd::Consumer {
    let mut c = consumer("search", SinkType::Opensearch);
    c.opensearch = Some(
        serde_json::from_value(json!({"url": "https://os:9200", "auth": "basic"})).expect("sink"),
    );
    c.secret_ref = Some(SecretRef {
        name: "os-creds".into(),
    });
    c
}

#[tokio::test]
async fn a_secret_without_the_consumer_secret_label_is_refused_naming_the_label() {
    let s = setting("main", 0, Some("prod-eu"), vec![opensearch_consumer()]);
    let (client, server) = ApiServer::start();
    let ctx = context(client, vec![s.clone()]);
    let script = server.run(vec![
        expect(Method::GET, &format!("{NS}/secrets/os-creds")).reply(
            200,
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "os-creds"},
                   "data": {"username": "YQ==", "password": "Yg=="}}),
        ),
        setting_status_patch(&s, |status| {
            assert_eq!(condition(status, "Ready")["status"], "False");
            let resolved = condition(status, "SecretsResolved");
            assert_eq!(resolved["status"], "False");
            let message = resolved["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("falconer.io/consumer-secret=true")
                    && message.contains("os-creds"),
                "{message}"
            );
        }),
        expect(Method::POST, EVENTS).echo(201),
    ]);
    reconcile_setting(Arc::new(s), ctx)
        .await
        .expect("reconciles");
    script.done().await;
}

#[tokio::test]
async fn a_setting_whose_secret_has_the_keys_its_sink_reads_is_ready() {
    let s = setting("main", 0, Some("prod-eu"), vec![opensearch_consumer()]);
    let (client, server) = ApiServer::start();
    let ctx = context(client, vec![s.clone()]);
    let script = server.run(vec![
        expect(Method::GET, &format!("{NS}/secrets/os-creds")).reply(
            200,
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "os-creds",
                                "labels": {"falconer.io/consumer-secret": "true"}},
                   "data": {"username": "YQ==", "password": "Yg=="}}),
        ),
        setting_status_patch(&s, |status| {
            assert_eq!(condition(status, "Ready")["status"], "True");
            assert_eq!(condition(status, "SecretsResolved")["status"], "True");
            assert_eq!(status["observedGeneration"], 1);
            assert!(
                !status.to_string().contains("YQ=="),
                "no secret value in the status"
            );
        }),
        expect(Method::POST, EVENTS)
            .check(|body| assert_eq!(body["reason"], "Valid"))
            .echo(201),
    ]);
    let action = reconcile_setting(Arc::new(s), ctx)
        .await
        .expect("reconciles");
    assert_eq!(action, Action::requeue(RESYNC));
    script.done().await;
}

#[tokio::test]
async fn a_missing_secret_and_a_reused_consumer_name_are_reported_in_the_conditions() {
    let older = setting("aaa", -10, None, vec![consumer("search", SinkType::Stdout)]);
    let s = setting("main", 0, None, vec![opensearch_consumer()]);
    let (client, server) = ApiServer::start();
    let ctx = context(client, vec![older, s.clone()]);
    let script = server.run(vec![
        expect(Method::GET, &format!("{NS}/secrets/os-creds")).reply(
            404,
            api_status(404, "NotFound", r#"secrets "os-creds" not found"#),
        ),
        setting_status_patch(&s, |status| {
            let valid = condition(status, "Valid");
            assert_eq!(valid["status"], "False");
            assert!(
                valid["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("also used by Setting aaa"))
            );
            let secrets = condition(status, "SecretsResolved");
            assert_eq!(secrets["reason"], "SecretsMissing");
            assert!(
                secrets["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("falconer-system/os-creds does not exist"))
            );
            assert_eq!(condition(status, "Ready")["status"], "False");
        }),
        expect(Method::POST, EVENTS)
            .check(|body| {
                assert_eq!(body["reason"], "Invalid");
                assert_eq!(body["type"], "Warning");
            })
            .echo(201),
    ]);
    reconcile_setting(Arc::new(s), ctx)
        .await
        .expect("problems are status, not errors");
    script.done().await;
}

#[tokio::test]
async fn a_policy_outside_the_managers_limits_is_refused_in_its_status_and_applies_nothing() {
    let p = policy(PolicySpec {
        hub_url: "https://collector.attacker.example".into(),
        ..PolicySpec::default()
    });
    let (client, server) = ApiServer::start();
    let limits = crate::limits::Limits {
        hub_urls: vec![falconer_model::crd::DEFAULT_HUB_URL.into()],
        ..Default::default()
    };
    let ctx = Arc::new(bare_context(client, vec![]).with_limits(limits));
    // No object is read or applied: only the status and an event.
    let script = server.run(vec![
        status_patch(&p, |status| {
            let ready = condition(status, "Ready");
            assert_eq!(ready["status"], "False");
            let message = ready["message"].as_str().unwrap_or_default();
            assert!(message.contains("spec.hubUrl"), "{message}");
            assert!(message.contains("collector.attacker.example"), "{message}");
        }),
        expect(Method::POST, EVENTS)
            .check(|body| {
                assert_eq!(body["reason"], "InvalidSpec");
                assert_eq!(body["type"], "Warning");
            })
            .echo(201),
    ]);
    let action = reconcile_policy(Arc::new(p), ctx)
        .await
        .expect("reconciles");
    assert_eq!(action, Action::await_change());
    script.done().await;
}

#[tokio::test]
async fn a_binding_an_older_manager_made_to_another_role_is_replaced() {
    let mut p = all_enabled();
    p.spec.falco.enabled = false;
    let (client, server) = ApiServer::start();
    let ctx = context(client, vec![]);
    let url = format!("{RBAC}/clusterrolebindings/falconer:prod-trivy");
    let binding = vec![
        expect(Method::GET, &url).reply(
            200,
            json!({"metadata": {"name": "falconer:prod-trivy", "resourceVersion": "3"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                               "name": "falconer:prod-trivy"}}),
        ),
        expect(Method::PATCH, &url).reply(422, api_status(422, "Invalid", "cannot change roleRef")),
        expect(Method::DELETE, &url).reply(
            200,
            json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 200}),
        ),
        expect(Method::GET, &url).reply(404, api_status(404, "NotFound", "not found")),
        expect(Method::PATCH, &url)
            .check(|body| assert_eq!(body["roleRef"]["name"], "falconer:trivy-image-lister"))
            .echo_with(201, |body| with_version(body, "4", None)),
        expect(Method::POST, EVENTS)
            .check(|body| assert_eq!(body["reason"], "Created"))
            .echo(201),
    ];
    let mut steps = scanners_with_binding(binding);
    steps.extend(falco_deleted());
    steps.push(status_patch(&p, |status| {
        assert_eq!(condition(status, "TrivyReady")["reason"], "Scheduled");
    }));
    let script = server.run(steps);
    reconcile_policy(Arc::new(p), ctx)
        .await
        .expect("reconciles");
    script.done().await;
}
