//! Credentials: tokens with scopes (ingest, forward, read, operate), every route guarded by
//! the access the route table gives it, and ingest tokens held to their clusters and sources.

use crate::helpers::{Backend, Reply, TestApp, TestDb, alert, hub_config};
use crate::on_both_stores;
use falconer_hub::config::{Scope, TokenEntry, TokenHash};
use falconer_hub::routes::ROUTES;
use serde_json::Value;
use std::collections::BTreeSet;

fn token(name: &str, scopes: &[Scope]) -> TokenEntry {
    TokenEntry {
        name: name.into(),
        sha256: TokenHash::of(&format!("{name}-secret")),
        scopes: scopes.to_vec(),
        clusters: Vec::new(),
        sources: Vec::new(),
    }
}

/// What each route needs, written here by hand (not read from the table it checks): a new
/// route fails this test until its access is stated here too.
const EXPECTED: &[(&str, &str, &str)] = &[
    ("POST", "/ingest", "ingest"),
    ("POST", "/", "ingest"),
    ("PUT", "/", "ingest"),
    ("GET", "/", "open"),
    ("GET", "/api/v1/events", "read"),
    ("GET", "/api/v1/events/{id}", "read"),
    ("GET", "/api/v1/findings", "read"),
    ("GET", "/api/v1/clusters", "read"),
    ("GET", "/api/v1/risk", "read"),
    ("GET", "/api/v1/risk/namespaces", "read"),
    ("GET", "/api/v1/risk/workloads", "read"),
    ("POST", "/api/v1/risk/recompute", "operate"),
    ("GET", "/api/v1/risk/{kind}/{name}/history", "read"),
    ("GET", "/api/v1/stats/events", "read"),
    ("GET", "/api/v1/stats/findings", "read"),
    ("GET", "/api/v1/consumers", "read"),
    ("GET", "/api/v1/consumers/{name}/dead-letters", "read"),
    (
        "POST",
        "/api/v1/consumers/{name}/dead-letters/replay",
        "operate",
    ),
    ("POST", "/api/v1/consumers/{name}/test", "operate"),
    ("POST", "/api/v1/consumers/{name}/preview", "read"),
    ("GET", "/api/v1/schemas/agent-event.json", "open"),
    ("GET", "/api/v1/openapi.json", "open"),
    ("GET", "/healthz", "open"),
    ("GET", "/readyz", "open"),
    ("GET", "/metrics", "open"),
    ("GET", "/ui", "open"),
    ("GET", "/ui/", "open"),
    ("GET", "/ui/{file}", "open"),
    ("GET", "/api/v1/groups", "read"),
    ("GET", "/api/v1/groups/{id}", "read"),
    ("POST", "/api/v1/groups/{id}/acknowledge", "operate"),
    ("POST", "/api/v1/groups/{id}/resolve", "operate"),
    ("POST", "/api/v1/groups/{id}/reopen", "operate"),
    ("GET", "/api/v1/suppressions", "read"),
    ("POST", "/api/v1/suppressions", "operate"),
    ("DELETE", "/api/v1/suppressions/{id}", "operate"),
];

async fn every_route_answers_each_credential_as_its_scope_says(backend: Backend) {
    let stated: BTreeSet<(&str, &str)> = EXPECTED.iter().map(|(m, p, _)| (*m, *p)).collect();
    let served: BTreeSet<(&str, &str)> = ROUTES.iter().map(|(m, p, _)| (*m, *p)).collect();
    assert_eq!(stated, served, "every route's access is stated in EXPECTED");

    let db = TestDb::new(backend).await;
    let mut config = hub_config();
    config.auth.tokens = vec![
        token("ingest", &[Scope::Ingest]),
        token("forward", &[Scope::Forward]),
        token("read", &[Scope::Read]),
        token("operate", &[Scope::Operate]),
    ];
    let app = TestApp::spawn_with(&db, config, db.store_config()).await;
    let body = alert("scopes", "2026-05-04T10:00:00Z", "x").to_string();
    let credentials = [
        None,
        Some("wrong-secret"),
        Some("ingest-secret"),
        Some("forward-secret"),
        Some("read-secret"),
        Some("operate-secret"),
    ];
    let mut failures = Vec::new();
    for (method, template, needs) in EXPECTED {
        let path = template
            .replace("{id}", &uuid::Uuid::now_v7().to_string())
            .replace("{kind}", "workload")
            .replace("{name}", "x")
            .replace("{file}", "app.js");
        for credential in credentials {
            let mut request = app
                .client
                .request(method.parse().unwrap(), app.url(&path))
                .header("content-type", "application/json");
            if *method == "POST" || *method == "PUT" {
                request = request.body(body.clone());
            }
            if let Some(token) = credential {
                request = request.bearer_auth(token);
            }
            let status = request.send().await.unwrap().status().as_u16();
            let holder = credential.map(|c| c.trim_end_matches("-secret"));
            let expected = match (*needs, holder) {
                ("open", _) => "allowed",
                (_, None | Some("wrong")) => "401",
                // A forward token may only post source=falconer; this body is a Falco alert.
                ("ingest", Some("ingest")) => "allowed",
                ("read", Some("read")) | ("operate", Some("operate")) => "allowed",
                _ => "403",
            };
            let ok = match expected {
                "allowed" => status != 401 && status != 403,
                code => status.to_string() == code,
            };
            if !ok {
                failures.push(format!(
                    "{method} {path} with {}: {status}, expected {expected}",
                    holder.unwrap_or("no token")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    app.stop().await;
}

async fn an_ingest_token_is_held_to_its_clusters_and_sources_and_forwarding_needs_forward(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let mut config = hub_config();
    config.auth.tokens = vec![
        TokenEntry {
            clusters: vec!["edge-a".into()],
            sources: vec!["falco".into()],
            ..token("falco-edge-a", &[Scope::Ingest])
        },
        token("edge-hub", &[Scope::Forward]),
        token("dashboard", &[Scope::Read]),
    ];
    let app = TestApp::spawn_with(&db, config, db.store_config()).await;
    let post =
        |token: &'static str, path: &'static str, body: String| app.post_as(token, path, body);
    let falco = alert("bound", "2026-05-04T10:00:00Z", "x").to_string();

    // No cluster named: the event gets the token's only cluster, not the hub's.
    let accepted = post("falco-edge-a-secret", "/ingest", falco.clone()).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    let id = accepted.ids().remove(0);
    let event = app
        .get_as("dashboard-secret", &format!("/api/v1/events/{id}"))
        .await
        .json();
    assert_eq!(event["cluster"], "edge-a");

    for (path, what) in [
        ("/ingest?cluster=edge-b", "cluster `edge-b`"),
        ("/ingest?source=kubearmor", "kubearmor"),
        ("/ingest?source=falconer", "forward"),
    ] {
        let refused = post("falco-edge-a-secret", path, falco.clone()).await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.text);
        let error = refused.json()["error"].as_str().unwrap().to_string();
        assert!(
            error.contains("falco-edge-a") && error.contains(what),
            "{path}: {error}"
        );
    }
    let header = app
        .client
        .post(app.url("/ingest"))
        .header("content-type", "application/json")
        .header("x-falconer-cluster", "edge-b")
        .bearer_auth("falco-edge-a-secret")
        .body(falco.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(header.status().as_u16(), 403);

    // Forwarding: a normalized event as the falconer sink sends it keeps its cluster.
    let mut forwarded = event.clone();
    forwarded["cluster"] = "edge-z".into();
    let forwarded = forwarded.to_string();
    let refused = post(
        "falco-edge-a-secret",
        "/ingest?source=falconer",
        forwarded.clone(),
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    let ok = post("edge-hub-secret", "/ingest?source=falconer", forwarded).await;
    assert_eq!(ok.status, 202, "{}", ok.text);
    let plain = post("edge-hub-secret", "/ingest", falco).await;
    assert_eq!(plain.status, 403, "{}", plain.text);
    assert!(plain.text.contains("edge-hub"), "{}", plain.text);
    // Refused requests stored nothing; the forwarded event is a duplicate of the first.
    assert_eq!(db.count_events().await, 1);
    app.stop().await;
}

async fn events_posted_by_a_credential_bound_to_their_cluster_carry_the_hubs_mark_and_no_one_can_forge_it(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let mut config = hub_config();
    config.auth.tokens = vec![
        TokenEntry {
            clusters: vec!["home".into()],
            sources: vec!["falco".into()],
            ..token("agent-falco", &[Scope::Ingest])
        },
        token("anything", &[Scope::Ingest]),
        // Bound to this cluster, and may forward too: what it forwards is still unmarked.
        TokenEntry {
            clusters: vec!["home".into()],
            ..token("edge-hub", &[Scope::Ingest, Scope::Forward])
        },
        token("dashboard", &[Scope::Read]),
    ];
    let app = TestApp::spawn_with(&db, config, db.store_config()).await;
    let post =
        |token: &'static str, path: &'static str, body: String| app.post_as(token, path, body);
    let hub = &app;
    let tags = |id: String| async move {
        hub.get_as("dashboard-secret", &format!("/api/v1/events/{id}"))
            .await
            .json()
    };
    let mark = falconer_model::event::BOUND_SENDER_TAG;
    let mut forged = alert("shell", "2026-05-04T10:00:00Z", "x");
    forged["tags"] =
        serde_json::json!(["T1059", format!("{mark}agent-falco"), "falconer.io/other"]);

    let bound = post("agent-falco-secret", "/ingest", forged.to_string()).await;
    assert_eq!(bound.status, 202, "{}", bound.text);
    let event = tags(bound.ids().remove(0)).await;
    assert_eq!(
        event["tags"],
        serde_json::json!(["T1059", format!("{mark}agent-falco")]),
        "claimed reserved tags removed, the hub's own added once"
    );

    forged["rule"] = "other".into();
    let unbound = post("anything-secret", "/ingest", forged.to_string()).await;
    assert_eq!(unbound.status, 202, "{}", unbound.text);
    assert_eq!(
        tags(unbound.ids().remove(0)).await["tags"],
        serde_json::json!(["T1059"])
    );

    // Another hub's events keep their cluster but never a mark: it vouches for nothing here.
    let mut forwarded = event.clone();
    forwarded["id"] = uuid::Uuid::now_v7().to_string().into();
    forwarded["dedup_key"] = Value::Null;
    forwarded["rule"] = "forwarded".into();
    let relayed = post(
        "edge-hub-secret",
        "/ingest?source=falconer",
        forwarded.to_string(),
    )
    .await;
    assert_eq!(relayed.status, 202, "{}", relayed.text);
    assert_eq!(
        tags(relayed.ids().remove(0)).await["tags"],
        serde_json::json!(["T1059"])
    );
    app.stop().await;
}

async fn tokens_guard_each_api_separately(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = hub_config();
    config.auth.ingest_token_sha256 = vec![TokenHash::of("ingest-secret")];
    config.auth.query_token_sha256 = vec![TokenHash::of("query-secret")];
    let app = TestApp::spawn_with(&db, config, db.store_config()).await;
    let body = alert("auth", "2026-05-04T10:00:00Z", "x").to_string();
    let post = |token: Option<&str>, path: &str| {
        let mut request = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { Reply::read(request.send().await.unwrap()).await }
    };
    let missing = post(None, "/ingest").await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    assert_eq!(post(Some("wrong"), "/ingest").await.status, 401);
    assert_eq!(post(Some("query-secret"), "/ingest").await.status, 403);
    assert_eq!(post(Some("ingest-secret"), "/ingest").await.status, 202);
    assert_eq!(post(Some("ingest-secret"), "/").await.status, 202);
    // Falco's http_output cannot send headers: the token may ride in the URL for ingest.
    assert_eq!(post(None, "/ingest?token=ingest-secret").await.status, 202);
    assert_eq!(post(None, "/ingest?token=nope").await.status, 401);

    let get = |token: &'static str| {
        let request = app.client.get(app.url("/api/v1/events")).bearer_auth(token);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(app.get("/api/v1/events").await.status, 401);
    assert_eq!(app.get("/api/v1/clusters").await.status, 401);
    assert_eq!(get("ingest-secret").await, 403);
    assert_eq!(get("query-secret").await, 200);
    // The accepted posts were one alert (later ones are duplicates); refused ones stored nothing.
    assert_eq!(db.count_events().await, 1);
    // Operations endpoints stay open for probes and scrapers.
    assert_eq!(app.get("/healthz").await.status, 200);
    assert_eq!(app.get("/metrics").await.status, 200);
    app.stop().await;
}

async fn a_token_naming_more_clusters_in_a_day_than_allowed_is_refused(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = hub_config();
    config.ingest.max_clusters_per_token_per_day = 2;
    config.auth.tokens = vec![token("shared", &[Scope::Ingest])];
    let app = TestApp::spawn_with(&db, config, db.store_config()).await;
    let post = |cluster: &str, n: usize| {
        let request = app
            .client
            .post(app.url(&format!("/ingest?cluster={cluster}")))
            .header("content-type", "application/json")
            .bearer_auth("shared-secret")
            .body(alert("many", "2026-05-04T10:00:00Z", &format!("{cluster} {n}")).to_string());
        async move { Reply::read(request.send().await.unwrap()).await }
    };
    assert_eq!(post("a", 0).await.status, 202);
    assert_eq!(post("b", 1).await.status, 202);
    assert_eq!(
        post("a", 2).await.status,
        202,
        "a cluster seen today counts once"
    );
    let refused = post("c", 3).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(
        refused.text.contains("shared") && refused.text.contains("max_clusters_per_token_per_day"),
        "{}",
        refused.text
    );
    assert_eq!(db.count_events().await, 3);
    let metrics = app.get("/metrics").await.text;
    assert!(
        metrics.contains("falconer_ingest_cluster_refusals_total 1"),
        "{metrics}"
    );
    app.stop().await;
}

on_both_stores!(
    events_posted_by_a_credential_bound_to_their_cluster_carry_the_hubs_mark_and_no_one_can_forge_it,
    a_token_naming_more_clusters_in_a_day_than_allowed_is_refused,
    tokens_guard_each_api_separately,
    every_route_answers_each_credential_as_its_scope_says,
    an_ingest_token_is_held_to_its_clusters_and_sources_and_forwarding_needs_forward,
    an_open_hub_refuses_other_sites_other_host_names_and_posts_without_a_json_type,
);

async fn an_open_hub_refuses_other_sites_other_host_names_and_posts_without_a_json_type(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let body = alert("csrf", "2026-05-04T10:00:00Z", "x").to_string();
    let post = |path: &str, headers: &[(&str, &str)]| {
        let mut request = app.client.post(app.url(path)).body(body.clone());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move { Reply::read(request.send().await.unwrap()).await }
    };
    let json = ("content-type", "application/json");
    for (headers, what) in [
        (
            vec![json, ("origin", "https://evil.example")],
            "evil.example",
        ),
        (
            vec![json, ("sec-fetch-site", "cross-site")],
            "another web site",
        ),
        (vec![json, ("host", "evil.example:8080")], "loopback"),
    ] {
        let refused = post("/ingest", &headers).await;
        assert_eq!(refused.status, 403, "{headers:?}: {}", refused.text);
        assert!(refused.text.contains(what), "{}", refused.text);
        let replay = post("/api/v1/consumers/x/dead-letters/replay", &headers).await;
        assert_eq!(replay.status, 403, "{headers:?}: {}", replay.text);
    }
    // A form post (what a page may send cross-site without asking) or no type at all: 415.
    for headers in [vec![("content-type", "text/plain")], vec![]] {
        let refused = post("/ingest", &headers).await;
        assert_eq!(refused.status, 415, "{headers:?}: {}", refused.text);
        let recompute = post("/api/v1/risk/recompute", &headers).await;
        assert_eq!(recompute.status, 415, "{headers:?}: {}", recompute.text);
    }
    assert_eq!(db.count_events().await, 0);
    // The hub's own page (same origin) and tools that send no Origin are served.
    let own = format!("http://{}", app.addr);
    let accepted = post("/ingest", &[json, ("origin", own.as_str())]).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    assert_eq!(accepted.header("cache-control"), Some("no-store"));
    assert_eq!(accepted.header("x-content-type-options"), Some("nosniff"));
    let listed = app.get("/api/v1/events").await;
    assert_eq!(listed.header("cache-control"), Some("no-store"));
    app.stop().await;
}
