//! The CRDs as the API server would use them: the checked-in YAML is what `crdgen` generates,
//! the examples pass the CEL rules, and objects that break a rule are refused.

// Test support code outside `#[test]` functions may panic: a panic fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use falconer_manager::crdgen;
use kube::core::cel::Validator;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The openAPIV3Schema of the CRD serving `kind`.
fn schema(kind: &str) -> Value {
    let crd = crdgen::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .expect("a CRD for the kind");
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("schema"),
    )
    .expect("json")
}

fn cel(object: &Value, old: Option<&Value>) -> Result<(), String> {
    let kind = object["kind"].as_str().expect("kind");
    Validator::new()
        .validate(&schema(kind), object, old)
        .map_err(|e| e.to_string())
}

fn examples() -> Vec<(PathBuf, Value)> {
    let dir = repo().join("config/examples");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("config/examples")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable");
            let docs: Vec<Value> = serde_saphyr::from_multiple(&text).expect("YAML");
            docs.into_iter()
                .filter(|d| !d.is_null())
                .map(move |d| (path.clone(), d))
        })
        .collect()
}

#[test]
fn the_checked_in_crds_are_exactly_what_crdgen_generates() {
    let dir = repo().join(crdgen::CHART_CRD_DIR);
    for (name, generated) in crdgen::files().expect("generates") {
        let path = dir.join(&name);
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{} is out of date: run `cargo run -- crdgen --out {}`",
            path.display(),
            crdgen::CHART_CRD_DIR
        );
    }
    let on_disk = std::fs::read_dir(&dir).expect("crds dir").count();
    assert_eq!(
        on_disk,
        crdgen::files().expect("generates").len(),
        "stray files in {}",
        dir.display()
    );
}

#[test]
fn every_example_passes_the_crd_cel_rules() {
    let examples = examples();
    assert!(examples.len() >= 4, "examples are missing");
    for (path, object) in examples {
        cel(&object, None).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

fn policy(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "falconer.io/v1alpha1", "kind": "Policy", "metadata": {"name": name}, "spec": spec})
}

fn setting(consumers: Value) -> Value {
    json!({"apiVersion": "falconer.io/v1alpha1", "kind": "Setting", "metadata": {"name": "s"},
           "spec": {"consumers": consumers}})
}

#[test]
fn a_consumer_without_the_section_of_its_type_is_refused() {
    let error = cel(
        &setting(json!([{"name": "os", "type": "opensearch"}])),
        None,
    )
    .expect_err("refused");
    assert!(
        error.contains("type opensearch needs an `opensearch` section"),
        "{error}"
    );
    let ok = setting(
        json!([{"name": "os", "type": "opensearch", "opensearch": {"url": "https://os:9200"}}]),
    );
    cel(&ok, None).expect("accepted");
}

#[test]
fn a_consumer_with_another_types_section_is_refused() {
    let error = cel(
        &setting(json!([{"name": "out", "type": "stdout", "webhook": {"url": "https://x"}}])),
        None,
    )
    .expect_err("refused");
    assert!(
        error.contains("a `webhook` section needs type webhook"),
        "{error}"
    );
}

#[test]
fn an_alertmanager_consumer_names_exactly_one_of_url_and_urls() {
    let with = |section: Value| {
        setting(json!([{"name": "am", "type": "alertmanager", "alertmanager": section}]))
    };
    for section in [
        json!({}),
        json!({"url": "http://am:9093", "urls": ["http://am-1:9093"]}),
    ] {
        let error = cel(&with(section.clone()), None).expect_err("refused");
        assert!(
            error.contains("set exactly one of `url` and `urls`"),
            "{section}: {error}"
        );
    }
    cel(&with(json!({"url": "http://am:9093"})), None).expect("one URL");
    cel(
        &with(json!({"urls": ["http://am-0:9093", "http://am-1:9093"]})),
        None,
    )
    .expect("several");
}

#[test]
fn a_webhook_format_without_a_batch_body_refuses_batch_and_template_needs_a_template() {
    let hook = |section: Value, template: Option<&str>| {
        let mut consumer = json!({"name": "hook", "type": "webhook", "webhook": section});
        if let Some(template) = template {
            consumer["template"] = template.into();
        }
        setting(json!([consumer]))
    };
    for format in ["falco", "template"] {
        let section = json!({"url": "https://x", "format": format, "batch": true});
        let error = cel(&hook(section, Some("{{ rule }}")), None).expect_err("refused");
        assert!(error.contains("set batch: false"), "{format}: {error}");
    }
    let error = cel(
        &hook(json!({"url": "https://x", "format": "template"}), None),
        None,
    )
    .expect_err("refused");
    assert!(
        error.contains("webhook.format template needs the consumer's `template`"),
        "{error}"
    );
    for (section, template) in [
        (
            json!({"url": "https://x", "format": "template"}),
            Some("{{ rule }}"),
        ),
        (
            json!({"url": "https://x", "format": "falco", "method": "PUT"}),
            None,
        ),
        (
            json!({"url": "https://x", "format": "cloudevents", "batch": true}),
            None,
        ),
    ] {
        cel(&hook(section.clone(), template), None).unwrap_or_else(|e| panic!("{section}: {e}"));
    }
}

#[test]
fn a_syslog_consumer_needs_its_section_an_address_and_a_datagram_sized_limit_over_udp() {
    let with = |consumer: Value| setting(json!([consumer]));
    let error = cel(&with(json!({"name": "logs", "type": "syslog"})), None).expect_err("refused");
    assert!(
        error.contains("type syslog needs a `syslog` section"),
        "{error}"
    );
    let error = cel(
        &with(json!({"name": "logs", "type": "stdout", "syslog": {"address": "h:514"}})),
        None,
    )
    .expect_err("refused");
    assert!(
        error.contains("a `syslog` section needs type syslog"),
        "{error}"
    );
    let error = cel(
        &with(json!({"name": "logs", "type": "syslog",
                     "syslog": {"address": "h:514", "protocol": "udp", "maxMessageBytes": 70000}})),
        None,
    )
    .expect_err("refused");
    assert!(error.contains("at most 65000 bytes"), "{error}");
    cel(
        &with(json!({"name": "logs", "type": "syslog",
                     "syslog": {"address": "rsyslog.logging.svc:6514", "protocol": "tls",
                                "format": "cef", "facility": "auth", "appName": "falconer",
                                "maxMessageBytes": 70000}})),
        None,
    )
    .expect("a TLS consumer may send long messages");
}

#[test]
fn a_policy_name_longer_than_forty_characters_is_refused() {
    let long = "p".repeat(41);
    let error = cel(&policy(&long, json!({})), None).expect_err("refused");
    assert!(error.contains("at most 40 characters"), "{error}");
    cel(&policy(&"p".repeat(40), json!({})), None).expect("accepted");
}

#[test]
fn the_agents_namespace_cannot_change_after_creation() {
    let old = policy("p", json!({"namespace": "falconer-system"}));
    let moved = policy("p", json!({"namespace": "elsewhere"}));
    let error = cel(&moved, Some(&old)).expect_err("refused");
    assert!(error.contains("namespace is immutable"), "{error}");
    cel(&old, Some(&old)).expect("unchanged is fine");
}

#[test]
fn an_email_consumer_without_tls_is_refused_to_a_remote_server_unless_plaintext_is_allowed() {
    let mail = |email: Value| setting(json!([{"name": "mail", "type": "email", "email": email}]));
    let remote = json!({"host": "smtp.example.com", "tls": "none", "from": "a@example.com",
                        "to": ["b@example.com"]});
    let error = cel(&mail(remote.clone()), None).expect_err("refused");
    assert!(error.contains("allowPlaintext"), "{error}");
    let mut allowed = remote.clone();
    allowed["allowPlaintext"] = json!(true);
    cel(&mail(allowed), None).expect("accepted with the opt-in");
    let mut local = remote.clone();
    local["host"] = json!("127.0.0.1");
    cel(&mail(local), None).expect("loopback is fine");
    let mut starttls = remote;
    starttls["tls"] = json!("starttls");
    cel(&mail(starttls), None).expect("TLS is fine");
    let error =
        cel(&setting(json!([{"name": "mail", "type": "email"}])), None).expect_err("refused");
    assert!(
        error.contains("type email needs an `email` section"),
        "{error}"
    );
}

#[test]
fn a_loki_consumer_needs_its_section_and_bounded_label_names() {
    let with = |consumer: Value| setting(json!([consumer]));
    let error = cel(&with(json!({"name": "logs", "type": "loki"})), None).expect_err("refused");
    assert!(
        error.contains("type loki needs a `loki` section"),
        "{error}"
    );
    let error = cel(
        &with(json!({"name": "logs", "type": "stdout", "loki": {"url": "http://loki:3100"}})),
        None,
    )
    .expect_err("refused");
    assert!(
        error.contains("a `loki` section needs type loki"),
        "{error}"
    );
    cel(
        &with(json!({"name": "logs", "type": "loki",
                     "loki": {"url": "http://loki:3100", "tenant": "team-a",
                              "labels": ["cluster", "rule"], "format": "falco"}})),
        None,
    )
    .expect("a valid loki consumer");
}

#[test]
fn a_policyreport_consumer_takes_an_optional_section_with_bounded_settings() {
    let with = |consumer: Value| setting(json!([consumer]));
    cel(
        &with(json!({"name": "reports", "type": "policyreport"})),
        None,
    )
    .expect("the section is optional");
    cel(
        &with(json!({"name": "reports", "type": "policyreport",
                     "policyreport": {"maxResults": 500, "minSeverity": "warning",
                                      "namePrefix": "sec", "clusterReport": false}})),
        None,
    )
    .expect("a valid policyreport consumer");
    let error = cel(
        &with(json!({"name": "logs", "type": "stdout", "policyreport": {}})),
        None,
    )
    .expect_err("refused");
    assert!(
        error.contains("a `policyreport` section needs type policyreport"),
        "{error}"
    );
}
