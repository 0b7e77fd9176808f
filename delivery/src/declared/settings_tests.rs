use super::*;
use crate::declared::status::*;
use falconer_model::crd::{
    OpenSearchAuth, OpenSearchConfig, SecretRef, SettingSpec, SinkType, WebhookConfig,
};
use falconer_testkit::kube::{ApiServer, Route, expect, schema_errors, status, watch_lines};
use http::Method;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::CustomResourceExt;
use serde_json::{Value, json};
use std::time::Duration;

const NAMESPACE: &str = "falconer-system";

fn consumer(name: &str, sink: SinkType) -> Consumer {
    Consumer::new(name, sink)
}

fn opensearch(name: &str, secret: &str) -> Consumer {
    let mut c = consumer(name, SinkType::Opensearch);
    c.opensearch = Some(OpenSearchConfig {
        url: "https://os:9200".into(),
        index: "falconer-events".into(),
        data_stream: None,
        template: true,
        auth: OpenSearchAuth::Basic,
        flavor: Default::default(),
        batch_size: 500,
        tls: Default::default(),
    });
    c.secret_ref = Some(SecretRef {
        name: secret.into(),
    });
    c
}

fn setting(name: &str, created: i64, consumers: Vec<Consumer>) -> Setting {
    let mut s = Setting::new(
        name,
        SettingSpec {
            cluster: None,
            consumers,
            retention: None,
            suppressions: Vec::new(),
        },
    );
    s.metadata.creation_timestamp = Some(Time(
        Timestamp::from_second(1_800_000_000 + created).expect("timestamp"),
    ));
    s.metadata.generation = Some(1);
    s.metadata.resource_version = Some(format!("{}", 100 + created));
    s
}

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
        .collect()
}

fn names(merged: &Merged) -> Vec<(Origin, &str)> {
    merged
        .consumers
        .iter()
        .map(|(o, c)| (o.clone(), c.name.as_str()))
        .collect()
}

fn in_setting(name: &str) -> Origin {
    Origin::Setting(name.into())
}

// ---------------------------------------------------------------------------------------------
// merge

#[test]
fn unique_consumers_are_kept_config_file_first_then_settings_oldest_first() {
    let config = [consumer("out", SinkType::Stdout)];
    let settings = [
        setting("newer", 10, vec![consumer("b", SinkType::Stdout)]),
        setting(
            "older",
            0,
            vec![
                consumer("a2", SinkType::Stdout),
                consumer("a1", SinkType::Phoenix),
            ],
        ),
    ];
    let merged = merge(&config, &settings);
    assert!(merged.conflicts.is_empty());
    assert_eq!(
        names(&merged),
        [
            (Origin::ConfigFile, "out"),
            (in_setting("older"), "a2"),
            (in_setting("older"), "a1"),
            (in_setting("newer"), "b"),
        ]
    );
}

#[test]
fn a_name_in_two_settings_leaves_both_out_and_names_both() {
    let settings = [
        setting(
            "team-b",
            10,
            vec![
                consumer("phx", SinkType::Phoenix),
                consumer("b", SinkType::Stdout),
            ],
        ),
        setting("team-a", 0, vec![consumer("phx", SinkType::Phoenix)]),
    ];
    let merged = merge(&[], &settings);
    assert_eq!(names(&merged), [(in_setting("team-b"), "b")]);
    assert_eq!(
        merged.conflicts,
        [Conflict {
            name: "phx".into(),
            origins: vec![in_setting("team-a"), in_setting("team-b")],
        }]
    );
    assert_eq!(
        merged.conflicts[0].message(),
        "consumer name `phx` is declared more than once (Setting team-a, Setting team-b); names \
         must be unique, so none of these declarations runs until the others are renamed or removed"
    );
}

#[test]
fn a_setting_reusing_a_config_file_consumer_name_leaves_both_out() {
    let config = [consumer("search", SinkType::Stdout)];
    let settings = [setting("main", 0, vec![opensearch("search", "creds")])];
    let merged = merge(&config, &settings);
    assert!(merged.consumers.is_empty());
    assert_eq!(
        merged.conflicts[0].origins,
        [Origin::ConfigFile, in_setting("main")]
    );
}

#[test]
fn a_name_repeated_within_one_origin_is_a_conflict_naming_that_origin_once() {
    let config = [
        consumer("out", SinkType::Stdout),
        consumer("out", SinkType::Stdout),
        consumer("file", SinkType::Stdout),
    ];
    let merged = merge(&config, &[]);
    assert_eq!(names(&merged), [(Origin::ConfigFile, "file")]);
    assert_eq!(
        merged.conflicts,
        [Conflict {
            name: "out".into(),
            origins: vec![Origin::ConfigFile],
        }]
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets

#[test]
fn only_the_keys_a_sink_reads_are_taken_from_its_secret() {
    let secrets = SecretData::from([(
        "creds".to_string(),
        data(&[
            ("username", "falconer"),
            ("password", "s3cret"),
            ("ca.crt", "-----BEGIN CERTIFICATE-----"),
            ("unrelated", "not for the sink"),
        ]),
    )]);
    let resolved = resolve_secrets(&opensearch("os", "creds"), &secrets, NAMESPACE).expect("ok");
    assert_eq!(
        resolved.keys().collect::<Vec<_>>(),
        ["ca.crt", "password", "username"]
    );
    assert_eq!(resolved["password"], SecretValue("s3cret".into()));
    assert_eq!(
        resolve_secrets(&consumer("out", SinkType::Stdout), &secrets, NAMESPACE),
        Ok(Secrets::new())
    );
}

#[test]
fn a_webhooks_secret_headers_are_required_keys() {
    let mut hook = consumer("hook", SinkType::Webhook);
    hook.webhook = Some(WebhookConfig {
        url: "https://hooks.example/x".into(),
        batch: false,
        headers: Default::default(),
        secret_headers: BTreeMap::from([("X-Api-Key".into(), "apiKey".into())]),
        sign: true,
        format: Default::default(),
        method: Default::default(),
        tls: Default::default(),
    });
    assert_eq!(hook.required_secret_keys(), ["apiKey", "hmacKey"]);
}

#[test]
fn a_missing_secret_key_or_non_text_value_is_named_without_any_value() {
    let os = opensearch("os", "creds");
    assert_eq!(
        resolve_secrets(&os, &SecretData::new(), NAMESPACE),
        Err(format!(
            "Secret falconer-system/creds does not exist{}",
            " or is not labelled falconer.io/consumer-secret=true: the hub reads only Secrets labelled so"
        ))
    );
    let partial = SecretData::from([("creds".to_string(), data(&[("username", "u")]))]);
    assert_eq!(
        resolve_secrets(&os, &partial, NAMESPACE),
        Err("Secret falconer-system/creds has no key password".into())
    );
    let binary = SecretData::from([(
        "creds".to_string(),
        BTreeMap::from([
            ("username".to_string(), b"u".to_vec()),
            ("password".to_string(), vec![0xff, 0xfe]),
        ]),
    )]);
    assert_eq!(
        resolve_secrets(&os, &binary, NAMESPACE),
        Err("key password of Secret falconer-system/creds is not UTF-8 text".into())
    );
}

// ---------------------------------------------------------------------------------------------
// view

#[test]
fn the_view_runs_resolved_consumers_and_reports_conflicts_and_missing_secrets_as_stopped() {
    let config = [consumer("out", SinkType::Stdout)];
    let settings = [
        setting(
            "a",
            0,
            vec![
                opensearch("search", "creds"),
                consumer("phx", SinkType::Phoenix),
            ],
        ),
        setting(
            "b",
            1,
            vec![
                consumer("phx", SinkType::Phoenix),
                opensearch("archive", "missing"),
            ],
        ),
        setting("empty", 2, vec![]),
    ];
    let secrets = SecretData::from([(
        "creds".to_string(),
        data(&[("username", "u"), ("password", "p")]),
    )]);
    let (desired, observed) = view(&config, &settings, &secrets, NAMESPACE);
    let running: Vec<(Origin, &str, usize)> = desired
        .iter()
        .map(|d| (d.origin.clone(), d.consumer.name.as_str(), d.secrets.len()))
        .collect();
    assert_eq!(
        running,
        [
            (Origin::ConfigFile, "out", 0),
            (in_setting("a"), "search", 2)
        ]
    );
    assert_eq!(
        observed.settings,
        BTreeMap::from([
            ("a".into(), vec!["search".into(), "phx".into()]),
            ("b".into(), vec!["phx".into(), "archive".into()]),
            ("empty".into(), vec![]),
        ])
    );
    let problems: Vec<(Origin, &str, ConsumerState, &str)> = observed
        .problems
        .iter()
        .map(|(o, r)| {
            (
                o.clone(),
                r.name.as_str(),
                r.state,
                r.last_error.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    let conflict = "consumer name `phx` is declared more than once (Setting a, Setting b); names \
                    must be unique, so none of these declarations runs until the others are \
                    renamed or removed";
    assert_eq!(
        problems,
        [
            (in_setting("a"), "phx", ConsumerState::Stopped, conflict),
            (in_setting("b"), "phx", ConsumerState::Stopped, conflict),
            (
                in_setting("b"),
                "archive",
                ConsumerState::Stopped,
                "Secret falconer-system/missing does not exist or is not labelled falconer.io/consumer-secret=true: the hub reads only Secrets labelled so"
            ),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Status

fn report(name: &str, state: ConsumerState, delivered: i64) -> ConsumerReport {
    ConsumerStatus {
        name: name.into(),
        state,
        lag_events: 3,
        lag_seconds: 1,
        delivered,
        retries: 0,
        dead_letters: 0,
        last_error: None,
        updated_at: Some(Time(Timestamp::from_second(1).expect("ts"))),
    }
}

fn observed(settings: &[(&str, &[&str])], problems: Vec<(Origin, ConsumerReport)>) -> Observed {
    Observed {
        settings: settings
            .iter()
            .map(|(s, consumers)| {
                (
                    (*s).to_owned(),
                    consumers.iter().map(|c| (*c).to_owned()).collect(),
                )
            })
            .collect(),
        problems,
        unreadable: BTreeMap::new(),
        ..Observed::default()
    }
}

#[test]
fn statuses_list_each_declared_consumer_with_problems_first_then_reports_then_pending() {
    let seen = observed(
        &[("a", &["search", "phx", "new"]), ("empty", &[])],
        vec![(in_setting("a"), stopped("phx", "conflict".into()))],
    );
    let reports = vec![
        (in_setting("a"), report("search", ConsumerState::Active, 5)),
        (in_setting("a"), report("phx", ConsumerState::Active, 1)),
        (in_setting("a"), report("removed", ConsumerState::Active, 1)),
        (Origin::ConfigFile, report("out", ConsumerState::Active, 9)),
        (in_setting("deleted"), report("x", ConsumerState::Active, 1)),
    ];
    let statuses = statuses(&seen, &reports);
    let mut search = report("search", ConsumerState::Active, 5);
    search.updated_at = None;
    assert_eq!(
        statuses,
        BTreeMap::from([
            (
                "a".to_string(),
                vec![search, stopped("phx", "conflict".into()), pending("new")]
            ),
            ("empty".to_string(), vec![]),
        ])
    );
}

fn now() -> Time {
    Time(Timestamp::from_second(1_800_000_000).expect("ts"))
}

const STATUS_PATH: &str = "/apis/falconer.io/v1alpha1/settings/main/status";

#[test]
fn the_status_patch_holds_only_the_hubs_fields_and_fits_the_setting_crd() {
    let body = status_patch(&[report("search", ConsumerState::Degraded, 5)], &now());
    assert_eq!(
        body,
        json!({
            "apiVersion": "falconer.io/v1alpha1",
            "kind": "Setting",
            "status": {"consumers": [{
                "name": "search",
                "state": "Degraded",
                "lagEvents": 3,
                "lagSeconds": 1,
                "delivered": 5,
                "retries": 0,
                "deadLetters": 0,
                "updatedAt": "2027-01-15T08:00:00Z",
            }]},
        })
    );
    // An apply body is merged before validation: its `status` must fit the CRD's.
    let crd = serde_json::to_value(Setting::crd()).expect("CRD");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"];
    assert_eq!(
        schema_errors(&body["status"], schema, ".status"),
        Vec::<String>::new()
    );
    let mut problem = body.clone();
    problem["status"]["consumers"][0]["state"] = json!("Broken");
    assert_eq!(
        schema_errors(&problem["status"], schema, ".status").len(),
        1
    );
}

#[tokio::test]
async fn status_is_applied_under_the_hubs_field_manager_and_only_when_it_changed() {
    let (client, server) = ApiServer::start();
    let mut degraded = report("search", ConsumerState::Degraded, 5);
    degraded.last_error = Some("the API server answered 503: busy".into());
    let expected_first = status_patch(&[report("search", ConsumerState::Active, 5)], &now());
    let expected_second = status_patch(&[degraded.clone()], &now());
    let script = server.run(vec![
        expect(Method::PATCH, STATUS_PATH)
            .query("fieldManager=falconer-hub")
            .query("force=true")
            .body(expected_first)
            .echo(200),
        expect(Method::PATCH, STATUS_PATH)
            .body(expected_second)
            .echo(200),
        // Every consumer of the Setting gone: the hub's entries are released.
        expect(Method::PATCH, STATUS_PATH)
            .body(json!({
                "apiVersion": "falconer.io/v1alpha1",
                "kind": "Setting",
                "status": {},
            }))
            .echo(200),
    ]);
    let mut writer = StatusWriter::new(client);
    let seen = observed(&[("main", &["search"])], vec![]);
    let active = vec![(
        in_setting("main"),
        report("search", ConsumerState::Active, 5),
    )];
    assert_eq!(writer.write_at(&seen, &active, &now()).await.ok(), Some(1));
    // The same state again, only `updatedAt` moved: no request.
    let mut later = active.clone();
    later[0].1.updated_at = None;
    assert_eq!(writer.write_at(&seen, &later, &now()).await.ok(), Some(0));
    let changed = vec![(in_setting("main"), degraded)];
    assert_eq!(writer.write_at(&seen, &changed, &now()).await.ok(), Some(1));
    let emptied = observed(&[("main", &[])], vec![]);
    assert_eq!(writer.write_at(&emptied, &[], &now()).await.ok(), Some(1));
    assert_eq!(writer.write_at(&emptied, &[], &now()).await.ok(), Some(0));
    script.done().await;
}

#[tokio::test]
async fn a_failed_status_write_is_reported_and_tried_again_and_a_deleted_setting_is_forgotten() {
    let (client, server) = ApiServer::start();
    let script = server.run(vec![
        expect(Method::PATCH, STATUS_PATH).reply(500, status(500, "InternalError", "etcd timeout")),
        expect(
            Method::PATCH,
            "/apis/falconer.io/v1alpha1/settings/other/status",
        )
        .reply(404, status(404, "NotFound", "settings \"other\" not found")),
        expect(Method::PATCH, STATUS_PATH).echo(200),
    ]);
    let mut writer = StatusWriter::new(client);
    let seen = observed(&[("main", &["search"]), ("other", &["phx"])], vec![]);
    let reports = vec![
        (
            in_setting("main"),
            report("search", ConsumerState::Active, 5),
        ),
        (in_setting("other"), report("phx", ConsumerState::Active, 5)),
    ];
    let error = writer
        .write_at(&seen, &reports, &now())
        .await
        .expect_err("the 500 is reported");
    assert!(
        error
            .to_string()
            .starts_with("writing status.consumers of Setting main")
    );
    let seen = observed(&[("main", &["search"])], vec![]);
    assert_eq!(writer.write_at(&seen, &reports, &now()).await.ok(), Some(1));
    script.done().await;
}

// ---------------------------------------------------------------------------------------------
// Watching, against a routed API server

const SETTINGS_PATH: &str = "/apis/falconer.io/v1alpha1/settings";
const SECRETS_PATH: &str = "/api/v1/namespaces/falconer-system/secrets";

fn secret(name: &str, version: &str, pairs: &[(&str, &str)]) -> Value {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NAMESPACE.into()),
            resource_version: Some(version.into()),
            annotations: Some(BTreeMap::from([(
                "kubectl.kubernetes.io/last-applied-configuration".into(),
                "{\"data\": \"plain copy\"}".into(),
            )])),
            ..Default::default()
        },
        data: Some(
            pairs
                .iter()
                .map(|(k, v)| {
                    (
                        (*k).to_owned(),
                        k8s_openapi::ByteString(v.as_bytes().to_vec()),
                    )
                })
                .collect(),
        ),
        ..Default::default()
    };
    serde_json::to_value(secret).expect("JSON")
}

fn list(kind: &str, version: &str, items: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "kind": kind,
        "apiVersion": "v1",
        "metadata": {"resourceVersion": version},
        "items": items,
    }))
    .expect("JSON")
}

async fn wait_for<T: Clone>(
    rx: &mut watch::Receiver<T>,
    what: &str,
    pred: impl FnMut(&T) -> bool,
) -> T {
    tokio::time::timeout(Duration::from_secs(5), rx.wait_for(pred))
        .await
        .unwrap_or_else(|_| panic!("never saw {what}"))
        .expect("the watcher stopped")
        .clone()
}

fn password(desired: &[Desired]) -> Option<String> {
    desired
        .iter()
        .find(|d| d.consumer.name == "search")
        .and_then(|d| d.secrets.get("password"))
        .map(|v| v.0.clone())
}

#[tokio::test]
async fn the_watcher_publishes_settings_consumers_and_follows_secret_rotation_and_new_conflicts() {
    let main = setting(
        "main",
        0,
        vec![
            opensearch("search", "creds"),
            consumer("phx", SinkType::Phoenix),
        ],
    );
    let rival = setting("rival", 5, vec![consumer("phx", SinkType::Phoenix)]);
    let mut future = serde_json::to_value(setting("future", 1, vec![])).expect("JSON");
    future["spec"]["shinyNewField"] = json!(true);
    let routes = BTreeMap::from([
        (
            SETTINGS_PATH.to_string(),
            Route::from([(
                200,
                list(
                    "SettingList",
                    "10",
                    vec![serde_json::to_value(&main).expect("JSON"), future],
                ),
            )]),
        ),
        (
            format!("{SETTINGS_PATH} watch"),
            Route::from([(
                200,
                watch_lines(&[("ADDED", serde_json::to_value(&rival).expect("JSON"))]),
            )]),
        ),
        (
            SECRETS_PATH.to_string(),
            Route::from([(
                200,
                list(
                    "SecretList",
                    "20",
                    vec![secret(
                        "creds",
                        "20",
                        &[("username", "u"), ("password", "old")],
                    )],
                ),
            )]),
        ),
        (
            format!("{SECRETS_PATH} watch"),
            Route::from([(
                200,
                watch_lines(&[(
                    "MODIFIED",
                    secret("creds", "21", &[("username", "u"), ("password", "rotated")]),
                )]),
            )]),
        ),
    ]);
    let (client, server) = ApiServer::start();
    let routed = server.route(routes);
    let mut watch = watch_settings(client, NAMESPACE, vec![consumer("out", SinkType::Stdout)]);

    // The watch events are only answered after the lists, so the first full view has the
    // old password and no conflict, unless both events already arrived.
    let first = wait_for(&mut watch.desired, "a first view", |d| !d.is_empty()).await;
    let names: Vec<&str> = first.iter().map(|d| d.consumer.name.as_str()).collect();
    assert!(
        names == ["out", "search", "phx"] || names == ["out", "search"],
        "{names:?}"
    );
    assert!(matches!(
        password(&first).as_deref(),
        Some("old" | "rotated")
    ));

    let last = wait_for(
        &mut watch.desired,
        "the rotated secret and the conflict",
        |d| password(d).as_deref() == Some("rotated") && d.len() == 2,
    )
    .await;
    assert_eq!(last[1].origin, in_setting("main"));
    let observed = wait_for(&mut watch.observed, "the conflict", |o| {
        o.problems.len() == 2
    })
    .await;
    assert_eq!(
        observed.settings.keys().collect::<Vec<_>>(),
        ["future", "main", "rival"]
    );
    // One Setting this hub cannot read does not stop the others.
    assert_eq!(observed.unreadable.keys().collect::<Vec<_>>(), ["future"]);
    assert!(
        observed
            .problems
            .iter()
            .all(|(_, r)| r.name == "phx" && r.state == ConsumerState::Stopped)
    );

    let seen = routed.seen();
    assert!(
        seen.iter().any(|uri| uri.starts_with(SECRETS_PATH)
            && uri.contains("labelSelector=falconer.io%2Fconsumer-secret%3Dtrue")),
        "{seen:?}"
    );
    watch.task.abort();
}

#[test]
fn a_secrets_annotations_are_never_kept() {
    let value = secret("creds", "1", &[("password", "p")]);
    let secret: Secret = serde_json::from_value(value).expect("Secret");
    assert_eq!(keep_secret_data(secret), data(&[("password", "p")]));
}

fn dynamic(setting: Setting) -> DynamicObject {
    serde_json::from_value(serde_json::to_value(setting).expect("JSON")).expect("object")
}

#[test]
fn a_setting_this_hub_cannot_read_is_kept_as_an_error() {
    let mut object = dynamic(setting("future", 0, vec![]));
    object.data["spec"]["shinyNewField"] = json!(true);
    let kept = keep_setting(object);
    assert!(
        kept.as_ref().is_err_and(|e| e.contains("shinyNewField")),
        "{kept:?}"
    );
    let mut with_status = dynamic(setting("main", 0, vec![]));
    with_status.data["status"] = json!({"conditions": []});
    assert_eq!(
        keep_setting(with_status).ok().map(|s| s.name_any()),
        Some("main".into())
    );
}

#[test]
fn a_relist_replaces_the_mirror_only_once_complete() {
    let keep_setting = |s: Setting| s;
    let mut mirror: Mirror<Setting> = Mirror::default();
    mirror.apply(watcher::Event::Init, keep_setting);
    mirror.apply(
        watcher::Event::InitApply(setting("a", 0, vec![])),
        keep_setting,
    );
    assert!(!mirror.ready);
    mirror.apply(watcher::Event::InitDone, keep_setting);
    assert!(mirror.ready);
    mirror.apply(watcher::Event::Apply(setting("b", 0, vec![])), keep_setting);
    mirror.apply(watcher::Event::Init, keep_setting);
    mirror.apply(
        watcher::Event::InitApply(setting("c", 0, vec![])),
        keep_setting,
    );
    // Mid-relist, the last complete state still holds.
    assert_eq!(mirror.items.keys().collect::<Vec<_>>(), ["a", "b"]);
    mirror.apply(watcher::Event::InitDone, keep_setting);
    assert_eq!(mirror.items.keys().collect::<Vec<_>>(), ["c"]);
    mirror.apply(
        watcher::Event::Delete(setting("c", 0, vec![])),
        keep_setting,
    );
    assert!(mirror.items.is_empty());
}

#[test]
fn the_shortest_retention_of_the_settings_applies_and_none_when_no_setting_sets_one() {
    let with = |name: &str, retention: Option<&str>| {
        let mut s = setting(name, 1, vec![]);
        s.spec.retention = retention.map(str::to_owned);
        s
    };
    let secrets = SecretData::new();
    let settings = [
        with("a", Some("2w")),
        with("b", None),
        with("c", Some("36h")),
    ];
    let (_, observed) = view(&[], &settings, &secrets, NAMESPACE);
    assert_eq!(observed.retention.as_deref(), Some("36h"));
    let (_, observed) = view(&[], &[with("b", None)], &secrets, NAMESPACE);
    assert_eq!(observed.retention, None);
    assert!(!observed.synced, "view alone has not read the cluster");
}
