//! `POST /ingest` and `POST /`: formats, replies, limits and duplicates.

use crate::helpers::{Backend, FIXTURES, TestApp, TestDb, alert, fixture, hub_config};
use crate::on_both_stores;
use serde_json::json;
use std::io::Write;

async fn a_falco_alert_is_acknowledged_with_its_id_after_commit(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let reply = app.ingest(fixture("0.41-container-plugin.json")).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["rejected"], json!([]));
    assert_eq!(reply.ids().len(), 1);
    // Acknowledged means committed: another connection sees the row.
    assert_eq!(db.count_events().await, 1);
    app.stop().await;
}

async fn alerts_from_falco_0_36_to_0_44_round_trip_with_their_raw_payload(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    for name in FIXTURES {
        let text = fixture(name);
        let reply = app.post("/", "application/json", text.clone()).await;
        assert_eq!(reply.status, 202, "{name}: {}", reply.text);
        let id = &reply.ids()[0];
        let stored = app.get(&format!("/api/v1/events/{id}")).await;
        assert_eq!(stored.status, 200, "{name}: {}", stored.text);
        let event = stored.json();
        assert_eq!(event["id"], id.as_str());
        assert_eq!(event["source"], "falco");
        // The raw payload comes back exactly as posted.
        let raw = serde_json::to_string(&event["raw"]).unwrap();
        let posted: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(event["raw"], posted, "{name}");
        assert!(!raw.is_empty());
    }
    let shell = app
        .get("/api/v1/events?rule=Terminal%20shell%20in%20container")
        .await
        .json();
    let shell = &shell["events"][0];
    assert_eq!(shell["namespace"], "shop");
    assert_eq!(shell["pod"], "web-7d9f8-abcde");
    assert_eq!(shell["image"], "registry.example/shop/web:1.4.2");
    assert_eq!(shell["severity"], "notice");
    assert_eq!(shell["kind"], "runtime_alert");
    assert_eq!(shell["time"], "2026-05-04T10:11:12.123456Z");
    let audit = app.get("/api/v1/events?kind=audit").await.json();
    assert_eq!(audit["events"].as_array().unwrap().len(), 1);
    app.stop().await;
}

async fn the_raw_payload_is_kept_byte_for_byte(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let text = fixture("0.39-message-property.json");
    let text = text.trim();
    let id = app.ingest(text.to_string()).await.ids()[0].clone();
    let mut side = db.side_connection().await;
    let raw = match &mut side {
        crate::helpers::SideConnection::Postgres(c) => {
            sqlx::query_scalar::<_, String>("SELECT raw FROM events WHERE id = $1::uuid")
                .bind(&id)
                .fetch_one(c)
                .await
        }
        crate::helpers::SideConnection::Sqlite(c) => {
            sqlx::query_scalar::<_, String>("SELECT raw FROM events WHERE id = ?")
                .bind(&id)
                .fetch_one(c)
                .await
        }
    }
    .expect("raw column");
    assert_eq!(raw, text);
    app.stop().await;
}

async fn an_array_ndjson_and_gzip_bodies_are_accepted(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let a = alert("r1", "2026-05-04T10:00:00Z", "one");
    let b = alert("r2", "2026-05-04T10:00:01Z", "two");
    let c = alert("r3", "2026-05-04T10:00:02Z", "three");

    let array = app.ingest(json!([a, b]).to_string()).await;
    assert_eq!(array.status, 202, "{}", array.text);
    assert_eq!(array.json()["accepted"], 2);

    let ndjson = format!("{c}\n\n{}\n", alert("r4", "2026-05-04T10:00:03Z", "four"));
    let reply = app.post("/ingest", "application/x-ndjson", ndjson).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert_eq!(reply.json()["accepted"], 2);

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(
        json!([alert("r5", "2026-05-04T10:00:04Z", "five")])
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let response = app
        .client
        .post(app.url("/ingest"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    assert_eq!(db.count_events().await, 5);
    app.stop().await;
}

async fn invalid_items_are_rejected_by_index_while_valid_ones_are_stored(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let good = alert("ok", "2026-05-04T10:00:00Z", "fine");
    let body = json!([
        good,
        {"rule": "no priority", "time": "2026-05-04T10:00:00Z"},
        {"rule": "r", "priority": "Loud", "time": "2026-05-04T10:00:00Z"},
        {"rule": "r", "priority": "Notice", "time": 12},
        "not an object"
    ]);
    let reply = app.ingest(body.to_string()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["accepted"], 1);
    let rejected = body["rejected"].as_array().unwrap();
    let indexes: Vec<_> = rejected
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, [1, 2, 3, 4]);
    assert!(
        rejected[0]["error"]
            .as_str()
            .unwrap()
            .contains("`priority` is missing")
    );
    assert!(
        rejected[1]["error"]
            .as_str()
            .unwrap()
            .contains("unknown severity `Loud`")
    );
    assert!(
        rejected[2]["error"]
            .as_str()
            .unwrap()
            .contains("`time`: expected a string")
    );
    assert_eq!(db.count_events().await, 1);
    app.stop().await;
}

async fn a_request_with_only_invalid_items_is_a_400_and_stores_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let reply = app
        .ingest(json!({"rule": "r", "priority": "Notice"}).to_string())
        .await;
    assert_eq!(reply.status, 400);
    let body = reply.json();
    assert_eq!(body["accepted"], 0);
    assert_eq!(body["ids"], json!([]));
    assert_eq!(body["rejected"][0]["index"], 0);
    assert_eq!(body["rejected"][0]["error"], "field `time` is missing");
    assert_eq!(db.count_events().await, 0);
    app.stop().await;
}

async fn a_malformed_body_is_a_400_naming_the_body(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    for body in ["{\"rule\": ", "[{}, ", "", "\u{0}"] {
        let reply = app.ingest(body.to_string()).await;
        assert_eq!(reply.status, 400, "{body:?}: {}", reply.text);
        let json = reply.json();
        assert_eq!(json["field"], "body", "{body:?}");
        assert_eq!(json["accepted"], 0);
    }
    let reply = app
        .post("/ingest", "application/json", vec![0xff, 0xfe, 0x00])
        .await;
    assert_eq!(reply.status, 400);
    assert!(reply.json()["error"].as_str().unwrap().contains("UTF-8"));
    let bad_gzip = app
        .client
        .post(app.url("/ingest"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body("not gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_gzip.status().as_u16(), 400);
    assert_eq!(db.count_events().await, 0);
    app.stop().await;
}

async fn too_large_bodies_and_too_many_events_are_a_413(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = hub_config();
    config.ingest.max_body_bytes = 4_096;
    config.ingest.max_events_per_request = 3;
    config.ingest.max_event_bytes = 1_024;
    let app = TestApp::spawn_with(&db, config, db.store_config()).await;

    let big = alert("r", "2026-05-04T10:00:00Z", &"x".repeat(5_000));
    let reply = app.ingest(big.to_string()).await;
    assert_eq!(reply.status, 413, "{}", reply.text);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("ingest.max_body_bytes")
    );

    // A small gzip body that inflates past the limit is refused too.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b' '; 100_000]).unwrap();
    let bomb = app
        .client
        .post(app.url("/ingest"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(bomb.status().as_u16(), 413);

    let many: Vec<_> = (0..4)
        .map(|i| alert("r", &format!("2026-05-04T10:00:0{i}Z"), "m"))
        .collect();
    let reply = app.ingest(json!(many).to_string()).await;
    assert_eq!(reply.status, 413);
    assert!(
        reply.json()["error"]
            .as_str()
            .unwrap()
            .contains("ingest.max_events_per_request")
    );

    // One oversized event is rejected by index, never truncated; the rest is stored.
    let body = json!([
        alert("small", "2026-05-04T10:00:00Z", "s"),
        alert("large", "2026-05-04T10:00:00Z", &"y".repeat(2_000)),
    ]);
    let reply = app.ingest(body.to_string()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let json = reply.json();
    assert_eq!(json["accepted"], 1);
    assert_eq!(json["rejected"][0]["index"], 1);
    assert!(
        json["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("ingest.max_event_bytes")
    );
    assert_eq!(db.count_events().await, 1);
    app.stop().await;
}

async fn other_media_types_and_encodings_are_a_415(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let body = alert("r", "2026-05-04T10:00:00Z", "x").to_string();
    let text = app.post("/ingest", "text/plain", body.clone()).await;
    assert_eq!(text.status, 415);
    assert!(
        text.json()["error"]
            .as_str()
            .unwrap()
            .contains("json_output")
    );
    let form = app
        .post("/", "application/x-www-form-urlencoded", body.clone())
        .await;
    assert_eq!(form.status, 415);
    let brotli = app
        .client
        .post(app.url("/ingest"))
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(brotli.status().as_u16(), 415);
    assert_eq!(db.count_events().await, 0);
    app.stop().await;
}

async fn a_retried_alert_is_stored_once_and_answered_with_the_first_id(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let text = fixture("0.36-terminal-shell.json");
    let first = app.ingest(text.clone()).await.ids();
    let again = app.post("/", "application/json", text.clone()).await.ids();
    assert_eq!(first, again);
    // Duplicates inside one request map to the same id as well.
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    let twice = app.ingest(json!([parsed, parsed]).to_string()).await.ids();
    assert_eq!(twice, [first[0].clone(), first[0].clone()]);
    assert_eq!(db.count_events().await, 1);
    // The same alert concurrently from many clients: still one row.
    let other = alert("concurrent", "2026-05-04T10:00:00Z", "same").to_string();
    let replies = futures_join(&app, &other, 16).await;
    let ids: std::collections::HashSet<_> = replies.into_iter().flatten().collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(db.count_events().await, 2);
    app.stop().await;
}

async fn futures_join(app: &TestApp, body: &str, n: usize) -> Vec<Vec<String>> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let client = app.client.clone();
        let url = app.url("/ingest");
        let body = body.to_string();
        tasks.spawn(async move {
            let reply = crate::helpers::Reply::read(
                client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(reply.status, 202, "{}", reply.text);
            reply.ids()
        });
    }
    tasks.join_all().await
}

async fn concurrent_requests_each_get_their_own_ids_and_all_rows_land(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let client = app.client.clone();
        let url = app.url("/ingest");
        tasks.spawn(async move {
            let body = alert(
                &format!("rule-{}", i % 7),
                "2026-05-04T10:00:00Z",
                &format!("n{i}"),
            );
            let reply = crate::helpers::Reply::read(
                client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(reply.status, 202, "{}", reply.text);
            reply.ids()
        });
    }
    let ids: Vec<String> = tasks.join_all().await.into_iter().flatten().collect();
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(ids.len(), 200);
    assert_eq!(unique.len(), 200);
    assert_eq!(db.count_events().await, 200);
    app.stop().await;
}

async fn the_cluster_comes_from_header_then_query_then_payload_then_config(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let post = |path: &'static str, header: Option<&'static str>, body: String| {
        let mut request = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body(body);
        if let Some(cluster) = header {
            request = request.header("x-falconer-cluster", cluster);
        }
        async move { crate::helpers::Reply::read(request.send().await.unwrap()).await }
    };
    // output_fields.cluster = prod-eu; each post a distinct alert so none is a duplicate.
    let sidekick =
        |n: &str| fixture("falcosidekick-webhook.json").replace("nc 203", &format!("nc{n} 203"));
    let cases = [
        (
            post(
                "/ingest?cluster=from-query",
                Some("from-header"),
                sidekick("1"),
            )
            .await,
            "from-header",
        ),
        (
            post("/ingest?cluster=from-query", None, sidekick("2")).await,
            "from-query",
        ),
        (post("/ingest", None, sidekick("3")).await, "prod-eu"),
        (
            post("/ingest", None, fixture("0.36-terminal-shell.json")).await,
            "home",
        ),
    ];
    for (reply, expected) in cases {
        assert_eq!(reply.status, 202, "{}", reply.text);
        let id = &reply.ids()[0];
        let event = app.get(&format!("/api/v1/events/{id}")).await.json();
        assert_eq!(event["cluster"], expected);
    }
    let clusters = app.get("/api/v1/clusters").await.json();
    let names: Vec<_> = clusters["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["from-header", "from-query", "home", "prod-eu"]);
    let empty = post(
        "/ingest?cluster=%20",
        None,
        fixture("0.36-terminal-shell.json"),
    )
    .await;
    assert_eq!(empty.status, 400);
    assert_eq!(empty.json()["field"], "cluster");
    app.stop().await;
}

async fn an_unknown_source_or_parameter_is_a_400_naming_it(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let body = fixture("0.36-terminal-shell.json");
    let reply = app
        .post("/ingest?source=splunk", "application/json", body.clone())
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["field"], "source");
    let reply = app
        .post("/ingest?clutser=x", "application/json", body.clone())
        .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["field"], "clutser");
    let reply = app
        .post("/ingest?source=falco", "application/json", body)
        .await;
    assert_eq!(reply.status, 202);
    app.stop().await;
}

async fn an_item_nested_deeper_than_64_levels_is_rejected_by_index(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let good = alert("deep", "2026-05-04T10:00:00Z", "fine");
    let mut deep = alert("deep", "2026-05-04T10:00:01Z", "nested");
    let nested: serde_json::Value =
        serde_json::from_str(&format!("{}1{}", "[".repeat(70), "]".repeat(70))).unwrap();
    deep["output_fields"]["evt.arg.data"] = nested;
    let alone = app.ingest(deep.to_string()).await;
    assert_eq!(alone.status, 400, "{}", alone.text);
    let reply = app.ingest(json!([good, deep]).to_string()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["rejected"][0]["index"], 1);
    let error = body["rejected"][0]["error"].as_str().unwrap();
    assert!(error.contains("nested") && error.contains("64"), "{error}");
    assert_eq!(db.count_events().await, 1);
    app.stop().await;
}

async fn an_event_dated_more_than_five_minutes_ahead_is_rejected_naming_time(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    let at = |minutes: i64| {
        (chrono::Utc::now() + chrono::TimeDelta::minutes(minutes))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    let skewed = alert("future", &at(1), "a node clock a minute fast");
    let forged = alert("future", &at(60), "an hour ahead");
    let reply = app.ingest(json!([skewed, forged]).to_string()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["rejected"][0]["index"], 1);
    let error = body["rejected"][0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("time:") && error.contains("ahead"),
        "{error}"
    );
    assert_eq!(db.count_events().await, 1);
    app.stop().await;
}

/// Starts a POST /ingest declaring `length` body bytes and sends only `sent` of them.
async fn stalled_upload(app: &TestApp, length: usize, sent: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /ingest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b' '; sent]).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

async fn stalled_bodies_get_a_408_and_bytes_in_flight_are_bounded_with_a_429(backend: Backend) {
    use tokio::io::AsyncReadExt;
    let db = TestDb::new(backend).await;
    let mut config = hub_config();
    config.ingest.body_timeout_secs = 2;
    config.ingest.max_inflight_bytes = 256 * 1024;
    // Start-up requires room in flight for the largest body accepted.
    config.ingest.max_body_bytes = 256 * 1024;
    config.ingest.max_report_bytes = 256 * 1024;
    let app = TestApp::spawn_with(&db, config, db.store_config()).await;
    // Most of the in-flight budget, held by an upload that never finishes.
    let mut stalled = stalled_upload(&app, 250 * 1024, 200 * 1024).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let big: Vec<serde_json::Value> = (0..100)
        .map(|i| {
            alert(
                "inflight",
                "2026-05-04T10:00:00Z",
                &format!("{i} {}", "x".repeat(900)),
            )
        })
        .collect();
    let refused = app.ingest(json!(big).to_string()).await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(
        refused.text.contains("ingest.max_inflight_bytes"),
        "{}",
        refused.text
    );
    // The stalled upload is answered 408 and closed; what it held is given back.
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stalled.read_to_end(&mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("ingest.body_timeout_secs"), "{answer}");
    let accepted = app.ingest(json!(big).to_string()).await;
    assert_eq!(accepted.status, 202, "{}", accepted.text);
    assert_eq!(db.count_events().await, 100);
    app.stop().await;
}

async fn put_to_the_root_and_falco_keys_in_any_case_are_ingested_like_post(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = TestApp::spawn(&db).await;
    // falcosidekick's webhook output with `webhook.method: PUT`.
    let text = fixture("falcosidekick-webhook.json");
    let put = app
        .client
        .put(app.url("/"))
        .header("content-type", "application/json; charset=utf-8")
        .body(text.clone())
        .send()
        .await
        .unwrap();
    let put = crate::helpers::Reply::read(put).await;
    assert_eq!(put.status, 202, "{}", put.text);
    let id = put.ids().remove(0);
    let event = app.get(&format!("/api/v1/events/{id}")).await.json();
    let posted: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(event["raw"], posted);
    // The same alert POSTed is the same event.
    let post = app.post("/", "application/json", text).await;
    assert_eq!(post.ids(), [id]);

    // falco-talon's style: PascalCase keys, to `/` and detected on `/ingest`.
    let talon = fixture("talon-pascal-case.json");
    let reply = app.post("/", "application/json", talon.clone()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let event = app
        .get(&format!("/api/v1/events/{}", reply.ids()[0]))
        .await
        .json();
    assert_eq!(event["rule"], "Netcat Remote Code Execution in Container");
    assert_eq!(event["severity"], "warning");
    assert_eq!(event["pod"], "web-7d9f8-abcde");
    let detected = app.ingest(talon).await;
    assert_eq!(
        detected.ids(),
        reply.ids(),
        "detected as falco: a duplicate"
    );

    // PUT is not a method of /ingest.
    let wrong = app
        .client
        .put(app.url("/ingest"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 405);
    assert_eq!(wrong.headers()["allow"], "POST");
    app.stop().await;
}

on_both_stores!(
    put_to_the_root_and_falco_keys_in_any_case_are_ingested_like_post,
    a_falco_alert_is_acknowledged_with_its_id_after_commit,
    an_item_nested_deeper_than_64_levels_is_rejected_by_index,
    an_event_dated_more_than_five_minutes_ahead_is_rejected_naming_time,
    stalled_bodies_get_a_408_and_bytes_in_flight_are_bounded_with_a_429,
    alerts_from_falco_0_36_to_0_44_round_trip_with_their_raw_payload,
    the_raw_payload_is_kept_byte_for_byte,
    an_array_ndjson_and_gzip_bodies_are_accepted,
    invalid_items_are_rejected_by_index_while_valid_ones_are_stored,
    a_request_with_only_invalid_items_is_a_400_and_stores_nothing,
    a_malformed_body_is_a_400_naming_the_body,
    too_large_bodies_and_too_many_events_are_a_413,
    other_media_types_and_encodings_are_a_415,
    a_retried_alert_is_stored_once_and_answered_with_the_first_id,
    concurrent_requests_each_get_their_own_ids_and_all_rows_land,
    the_cluster_comes_from_header_then_query_then_payload_then_config,
    an_unknown_source_or_parameter_is_a_400_naming_it,
);

/// Sends `head` (request line and headers, no body) and reads what the hub answers before
/// any body byte is sent.
async fn answer_to_head(app: &TestApp, head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("the hub answers the head alone")
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[tokio::test]
async fn expect_100_continue_with_a_content_length_over_the_limit_is_answered_413_before_the_body()
{
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = hub_config();
    config.ingest.max_body_bytes = 4_096;
    config.ingest.max_report_bytes = 65_536;
    let app = TestApp::spawn_with(&db, config, db.store_config()).await;
    let head = |path: &str, length: usize| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
        )
    };

    for path in ["/ingest", "/"] {
        let answer = answer_to_head(&app, &head(path, 5_000)).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(answer.contains("ingest.max_body_bytes"), "{answer}");
    }
    // A request naming a scanner report is held to the report limit.
    let answer = answer_to_head(&app, &head("/ingest?source=trivy", 70_000)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("ingest.max_report_bytes"), "{answer}");

    // Within the limit: 100 Continue, then the body, then 202.
    let body = alert("continue", "2026-05-04T10:00:00Z", "small").to_string();
    let answer = answer_to_head(&app, &head("/ingest?source=trivy", 20_000)).await;
    assert!(answer.starts_with("HTTP/1.1 100 Continue"), "{answer}");
    let answer = answer_to_head(&app, &head("/ingest", body.len())).await;
    assert!(answer.starts_with("HTTP/1.1 100 Continue"), "{answer}");
    let sent = app
        .client
        .post(app.url("/ingest"))
        .header("content-type", "application/json")
        .header("expect", "100-continue")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    app.stop().await;
}
