//! The `opensearch` sink, through the real `opensearch` crate client, against the
//! OpenSearch-compatible test server of `falconer-testkit`.

use crate::helpers::{Backend, TestApp, TestDb, alert, consumer, hub_config, wait_until};
use crate::on_both_stores;
use falconer_testkit::opensearch::{Faults, ItemFault, OpenSearchServer, Options};
use serde_json::{Value, json};

fn search_consumer(name: &str, server: &str, extra: Value) -> Value {
    let mut spec = json!({"name": name, "type": "opensearch", "opensearch": {"url": server}});
    if let Value::Object(extra) = extra {
        for (key, value) in extra {
            spec["opensearch"][key] = value;
        }
    }
    spec
}

async fn post(app: &TestApp, rule: &str, time: &str, range: std::ops::Range<usize>) -> Vec<String> {
    let body: Vec<Value> = range
        .map(|i| alert(rule, time, &format!("{rule} {i}")))
        .collect();
    let reply = app.ingest(json!(body).to_string()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    reply.ids()
}

async fn view(app: &TestApp, name: &str) -> Value {
    app.get("/api/v1/consumers").await.json()["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no consumer {name}"))
        .clone()
}

async fn wait_active(app: &TestApp, name: &str) {
    wait_until(&format!("consumer {name} is active"), || async {
        view(app, name).await["state"] == "Active"
    })
    .await;
}

async fn wait_delivered(app: &TestApp, name: &str, n: i64) {
    wait_until(&format!("consumer {name} delivered {n}"), || async {
        view(app, name).await["delivered"].as_i64() >= Some(n)
    })
    .await;
}

/// Reads back through the server's HTTP API, as a user of OpenSearch would.
struct Reader {
    client: reqwest::Client,
    url: String,
}

impl Reader {
    fn new(server: &OpenSearchServer) -> Reader {
        Reader {
            client: reqwest::Client::new(),
            url: server.url(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .client
            .request(method, format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("OpenSearch test server");
        response.json().await.expect("JSON answer")
    }

    async fn refresh(&self, index: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/{index}/_refresh"),
            json!({}),
        )
        .await;
    }

    async fn count(&self, index: &str) -> u64 {
        self.refresh(index).await;
        self.call(reqwest::Method::GET, &format!("/{index}/_count"), json!({}))
            .await["count"]
            .as_u64()
            .unwrap()
    }

    async fn hits(&self, index: &str) -> Vec<Value> {
        self.refresh(index).await;
        self.call(
            reqwest::Method::POST,
            &format!("/{index}/_search"),
            json!({"size": 10000, "query": {"match_all": {}}}),
        )
        .await["hits"]["hits"]
            .as_array()
            .unwrap()
            .clone()
    }
}

fn ids_of(hits: &[Value]) -> Vec<String> {
    hits.iter()
        .map(|h| h["_id"].as_str().unwrap().to_string())
        .collect()
}

async fn documents_land_with_the_event_id_in_the_daily_index_of_the_event_time(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = OpenSearchServer::start().unwrap();
    let spec = search_consumer("search", &server.url(), json!({}));
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec, &[])],
    )
    .await;
    wait_active(&app, "search").await;
    let may = post(&app, "Terminal shell", "2026-05-04T10:00:00Z", 0..5).await;
    let next_day = post(&app, "Terminal shell", "2026-05-05T00:00:01Z", 0..2).await;
    wait_delivered(&app, "search", 7).await;

    let read = Reader::new(&server);
    assert_eq!(read.count("falconer-events-2026.05.04").await, 5);
    assert_eq!(read.count("falconer-events-2026.05.05").await, 2);
    assert_eq!(read.count("falconer-events-*").await, 7);
    let hits = read.hits("falconer-events-2026.05.04").await;
    assert_eq!(ids_of(&hits), may, "_id = event id, in delivery order");
    assert_eq!(
        ids_of(&read.hits("falconer-events-2026.05.05").await),
        next_day
    );
    let doc = &hits[0]["_source"];
    assert_eq!(doc["id"], may[0].as_str());
    assert_eq!(doc["@timestamp"], "2026-05-04T10:00:00Z");
    assert_eq!(doc["rule"], "Terminal shell");
    assert_eq!(doc["severity"], "warning");
    assert_eq!(doc["cluster"], "home");
    assert_eq!(doc["namespace"], "shop");
    assert_eq!(doc["fields"]["proc.name"], "sh");
    assert_eq!(
        doc["raw"]["rule"], "Terminal shell",
        "the raw payload travels along"
    );

    let template = server.template("falconer-search").expect("index template");
    assert_eq!(template["index_patterns"], json!(["falconer-events-*"]));
    assert_eq!(
        template["template"]["mappings"]["properties"]["fields"]["type"],
        "flat_object"
    );
    let bulk = server
        .requests()
        .into_iter()
        .find(|r| r.uri.starts_with("/_bulk"))
        .unwrap();
    assert_eq!(bulk.method, "POST");
    assert_eq!(bulk.headers["content-type"], "application/x-ndjson");

    let test = app
        .post("/api/v1/consumers/search/test", "application/json", "")
        .await;
    assert_eq!(test.status, 200, "{}", test.text);
    app.stop().await;
    server.stop().await;
}

async fn a_bulk_answer_with_errors_retries_only_the_rejected_items_and_delivers_each_once(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let server = OpenSearchServer::start().unwrap();
    // Every "busy" document is rejected with 429 twice before it is taken.
    server.faults(|f| f.items.push(ItemFault::new("rule", "busy", 429, 2)));
    let spec = search_consumer("search", &server.url(), json!({}));
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec, &[])],
    )
    .await;
    wait_active(&app, "search").await;
    let body: Vec<Value> = (0..8)
        .map(|i| {
            let rule = if i % 2 == 0 { "calm" } else { "busy" };
            alert(rule, "2026-05-04T10:00:00Z", &format!("{rule} {i}"))
        })
        .collect();
    let reply = app.ingest(json!(body).to_string()).await;
    assert_eq!(reply.status, 202);
    let posted = reply.ids();
    wait_delivered(&app, "search", 8).await;

    let written = server.ids("falconer-events-2026.05.04");
    let mut ids: Vec<&String> = written.iter().map(|(id, _)| id).collect();
    ids.sort();
    let mut expected: Vec<&String> = posted.iter().collect();
    expected.sort();
    assert_eq!(ids, expected, "every event is there");
    assert!(
        written.iter().all(|(_, version)| *version == 1),
        "each document was written exactly once: {written:?}"
    );
    let stats = server.stats();
    assert_eq!(stats.item_errors, 8, "4 busy documents rejected twice each");
    assert_eq!(stats.writes, 8, "accepted documents were never sent again");
    let view = view(&app, "search").await;
    assert!(view["retries"].as_i64().unwrap() >= 2, "{view}");
    assert_eq!(view["dead_letters"], 0);
    app.stop().await;
    server.stop().await;
}

async fn a_mapping_error_goes_to_dead_letters_with_its_reason_and_is_replayed_after_the_fix(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let server = OpenSearchServer::start().unwrap();
    server.faults(|f| {
        f.items
            .push(ItemFault::new("rule", "poison", 400, u32::MAX))
    });
    let spec = search_consumer("search", &server.url(), json!({}));
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec, &[])],
    )
    .await;
    wait_active(&app, "search").await;
    let good = post(&app, "good", "2026-05-04T10:00:00Z", 0..3).await;
    let poison = post(&app, "poison", "2026-05-04T10:00:00Z", 0..1).await;
    let later = post(&app, "later", "2026-05-04T10:00:00Z", 0..3).await;
    wait_until("the refused document is a dead letter", || async {
        let view = view(&app, "search").await;
        view["dead_letters"] == 1 && view["delivered"] == 6
    })
    .await;
    let read = Reader::new(&server);
    assert_eq!(
        ids_of(&read.hits("falconer-events-*").await),
        [good, later].concat(),
        "delivery went on past the refused document"
    );
    let letters = app
        .get("/api/v1/consumers/search/dead-letters")
        .await
        .json();
    let letters = letters["dead_letters"].as_array().unwrap().clone();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["event_id"], poison[0].as_str());
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("HTTP 400 mapper_parsing_exception: failed to parse field [rule]"),
        "{reason}"
    );

    // The mapping is fixed; replay the dead letter.
    server.faults(|f| f.items.clear());
    let replay = app
        .post(
            "/api/v1/consumers/search/dead-letters/replay",
            "application/json",
            "{}",
        )
        .await;
    assert_eq!(replay.status, 202, "{}", replay.text);
    wait_until("the dead letter is gone", || async {
        view(&app, "search").await["dead_letters"] == 0
    })
    .await;
    assert_eq!(read.count("falconer-events-*").await, 7);
    let doc = read
        .call(
            reqwest::Method::GET,
            &format!("/falconer-events-2026.05.04/_doc/{}", poison[0]),
            json!({}),
        )
        .await;
    assert_eq!(doc["found"], true);
    assert_eq!(doc["_source"]["rule"], "poison");
    app.stop().await;
    server.stop().await;
}

async fn whole_request_failures_are_retried_with_backoff_while_the_consumer_is_degraded(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    // Nothing listens yet: connections are refused.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let spec = search_consumer("search", &format!("http://{addr}"), json!({}));
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec, &[])],
    )
    .await;
    wait_active(&app, "search").await;
    let posted = post(&app, "outage", "2026-05-04T10:00:00Z", 0..10).await;
    let degraded_with = |needle: &'static str| {
        let app = &app;
        async move {
            wait_until(&format!("degraded with {needle}"), || async {
                let view = view(app, "search").await;
                view["state"] == "Degraded"
                    && view["last_error"]
                        .as_str()
                        .is_some_and(|e| e.contains(needle))
            })
            .await;
        }
    };
    degraded_with("Connection refused").await;

    // The server comes up, answering every `_bulk` with 503, then with 429.
    let server = OpenSearchServer::bind(
        addr,
        Options {
            faults: Faults {
                bulk_status: Some(503),
                ..Faults::default()
            },
            ..Options::default()
        },
    )
    .unwrap();
    degraded_with("HTTP 503").await;
    server.faults(|f| f.bulk_status = Some(429));
    degraded_with("HTTP 429").await;
    assert!(server.stats().bulk_refused >= 2);
    assert_eq!(server.stats().writes, 0);

    server.faults(|f| f.bulk_status = None);
    wait_delivered(&app, "search", 10).await;
    wait_active(&app, "search").await;
    let written = server.ids("falconer-events-*");
    assert_eq!(
        written,
        posted.iter().map(|id| (id.clone(), 1)).collect::<Vec<_>>(),
        "once each, in order"
    );
    let view = view(&app, "search").await;
    assert!(view["retries"].as_i64().unwrap() >= 3, "{view}");
    assert_eq!(view["dead_letters"], 0);
    let metrics = app.get("/metrics").await.text;
    assert!(
        metrics.contains("falconer_delivery_degraded{consumer=\"search\",sink=\"opensearch\"} 0"),
        "{metrics}"
    );
    app.stop().await;
    server.stop().await;
}

async fn basic_auth_and_api_key_headers_are_sent(backend: Backend) {
    let db = TestDb::new(backend).await;
    let basic = OpenSearchServer::start().unwrap();
    let keyed = OpenSearchServer::start().unwrap();
    let consumers = vec![
        consumer(
            json!({"name": "basic", "type": "opensearch", "secretRef": {"name": "os-basic"},
                   "opensearch": {"url": basic.url(), "auth": "basic"}}),
            &[("username", "falconer"), ("password", "s3cret")],
        ),
        consumer(
            json!({"name": "keyed", "type": "opensearch", "secretRef": {"name": "os-key"},
                   "opensearch": {"url": keyed.url(), "auth": "apiKey", "index": "keyed-%Y.%m"}}),
            &[("apiKey", "VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw")],
        ),
    ];
    let app = TestApp::spawn_with_consumers(&db, hub_config(), db.store_config(), consumers).await;
    wait_active(&app, "basic").await;
    wait_active(&app, "keyed").await;
    post(&app, "auth", "2026-05-04T10:00:00Z", 0..1).await;
    wait_delivered(&app, "basic", 1).await;
    wait_delivered(&app, "keyed", 1).await;

    let authorizations = |server: &OpenSearchServer| {
        server
            .requests()
            .iter()
            .map(|r| {
                (
                    r.uri.clone(),
                    r.headers.get("authorization").cloned().unwrap_or_default(),
                )
            })
            .collect::<Vec<_>>()
    };
    // base64("falconer:s3cret")
    let expected = "Basic ZmFsY29uZXI6czNjcmV0";
    let seen = authorizations(&basic);
    assert!(seen.len() >= 2, "template and bulk: {seen:?}");
    assert!(seen.iter().all(|(_, a)| a == expected), "{seen:?}");
    // base64("VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw")
    let expected = "ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==";
    let seen = authorizations(&keyed);
    assert!(seen.len() >= 2, "template and bulk: {seen:?}");
    assert!(seen.iter().all(|(_, a)| a == expected), "{seen:?}");
    assert_eq!(keyed.indices(), ["keyed-2026.05"]);
    app.stop().await;
    basic.stop().await;
    keyed.stop().await;
}

async fn replaying_events_after_a_restart_overwrites_their_documents_instead_of_doubling_them(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let server = OpenSearchServer::start().unwrap();
    let spec = search_consumer("search", &server.url(), json!({}));
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec.clone(), &[])],
    )
    .await;
    wait_active(&app, "search").await;
    let posted = post(&app, "again", "2026-05-04T10:00:00Z", 0..20).await;
    wait_delivered(&app, "search", 20).await;
    app.stop().await;

    // After the restart a consumer replays everything into the same index (as a crash before
    // the cursor was saved would, for its last batch).
    let mut replay = search_consumer("search-again", &server.url(), json!({}));
    replay["replayFrom"] = json!(chrono::Utc::now() - chrono::Duration::hours(1));
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec, &[]), consumer(replay, &[])],
    )
    .await;
    wait_delivered(&app, "search-again", 20).await;
    let read = Reader::new(&server);
    assert_eq!(read.count("falconer-events-*").await, 20, "no duplicates");
    let written = server.ids("falconer-events-*");
    assert_eq!(
        written,
        posted.iter().map(|id| (id.clone(), 2)).collect::<Vec<_>>(),
        "the same documents, overwritten once"
    );
    assert_eq!(view(&app, "search").await["delivered"], 20);
    app.stop().await;
    server.stop().await;
}

async fn a_data_stream_gets_create_operations_and_a_replay_counts_as_delivered(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = OpenSearchServer::start().unwrap();
    let spec = search_consumer(
        "stream",
        &server.url(),
        json!({"dataStream": "falconer-stream"}),
    );
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec.clone(), &[])],
    )
    .await;
    wait_active(&app, "stream").await;
    let posted = post(&app, "streamed", "2026-05-04T10:00:00Z", 0..5).await;
    wait_delivered(&app, "stream", 5).await;
    assert_eq!(server.indices(), [".ds-falconer-stream-000001"]);

    let mut replay = spec;
    replay["name"] = json!("stream-again");
    replay["replayFrom"] = json!(chrono::Utc::now() - chrono::Duration::hours(1));
    app.declare(vec![consumer(replay, &[])]);
    wait_delivered(&app, "stream-again", 5).await;
    let read = Reader::new(&server);
    assert_eq!(read.count("falconer-stream").await, 5);
    assert_eq!(
        server.ids("falconer-stream"),
        posted.iter().map(|id| (id.clone(), 1)).collect::<Vec<_>>(),
        "create never overwrites; 409 means already there"
    );
    assert_eq!(view(&app, "stream-again").await["dead_letters"], 0);
    app.stop().await;
    server.stop().await;
}

async fn batches_over_the_clusters_size_limit_are_split_and_an_event_too_large_alone_is_dead_lettered(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let server = OpenSearchServer::start().unwrap();
    // A few small documents fit in one request; the big one does not fit alone.
    server.faults(|f| f.max_content_length = Some(4096));
    let spec = search_consumer("search", &server.url(), json!({}));
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec, &[])],
    )
    .await;
    let small = post(&app, "small", "2026-05-04T10:00:00Z", 0..20).await;
    let big = app
        .ingest(json!([alert("big", "2026-05-04T10:00:00Z", &"x".repeat(10_000))]).to_string())
        .await;
    assert_eq!(big.status, 202, "{}", big.text);
    let big = big.ids();
    let after = post(&app, "after", "2026-05-04T10:00:00Z", 0..5).await;
    wait_until("25 delivered and the big event dead-lettered", || async {
        let view = view(&app, "search").await;
        view["delivered"] == 25 && view["dead_letters"] == 1
    })
    .await;
    let read = Reader::new(&server);
    assert_eq!(
        ids_of(&read.hits("falconer-events-*").await),
        [small, after].concat(),
        "every small event once, in order"
    );
    // The first batch was refused whole, then sent in parts (and the big event alone).
    assert!(server.stats().bulk_refused >= 2, "{:?}", server.stats());
    let letters = app
        .get("/api/v1/consumers/search/dead-letters")
        .await
        .json();
    let letters = letters["dead_letters"].as_array().unwrap().clone();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["event_id"], big[0].as_str());
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("HTTP 413") && reason.contains("http.max_content_length"),
        "{reason}"
    );
    app.stop().await;
    server.stop().await;
}

async fn elasticsearch_8_takes_a_data_stream_with_an_api_key_and_its_item_errors_are_read_per_event(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let server =
        OpenSearchServer::bind("127.0.0.1:0".parse().unwrap(), Options::elasticsearch()).unwrap();
    server.faults(|f| {
        f.items.push(ItemFault::new("rule", "busy", 429, 1));
        f.items
            .push(ItemFault::new("rule", "poison", 400, u32::MAX));
    });
    let spec = json!({"name": "elastic", "type": "opensearch", "secretRef": {"name": "es"},
                      "opensearch": {"url": server.url(), "flavor": "elasticsearch",
                                     "auth": "apiKey", "dataStream": "falconer-events"}});
    let key = [(
        "apiKey",
        "VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==",
    )];
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec.clone(), &key)],
    )
    .await;
    wait_active(&app, "elastic").await;
    let calm = post(&app, "calm", "2026-05-04T10:00:00Z", 0..3).await;
    let busy = post(&app, "busy", "2026-05-04T10:00:00Z", 0..2).await;
    let poison = post(&app, "poison", "2026-05-04T10:00:00Z", 0..1).await;
    wait_until("5 delivered and the poison dead-lettered", || async {
        let view = view(&app, "elastic").await;
        view["delivered"] == 5 && view["dead_letters"] == 1
    })
    .await;
    let mut written: Vec<String> = server
        .ids("falconer-events")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    written.sort();
    let mut expected = [calm, busy].concat();
    expected.sort();
    assert_eq!(
        written, expected,
        "each once; the busy ones after their 429"
    );
    assert_eq!(server.indices(), [".ds-falconer-events-000001"]);
    let template = server.template("falconer-elastic").expect("index template");
    assert_eq!(
        template["template"]["mappings"]["properties"]["fields"]["type"],
        "flattened"
    );
    assert!(server.requests().iter().all(|r| r.headers["authorization"]
        == "ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="));
    let letters = app
        .get("/api/v1/consumers/elastic/dead-letters")
        .await
        .json();
    let letters = letters["dead_letters"].as_array().unwrap().clone();
    assert_eq!(letters[0]["event_id"], poison[0].as_str());
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("HTTP 400 mapper_parsing_exception"),
        "{reason}"
    );
    let view_now = view(&app, "elastic").await;
    assert!(view_now["retries"].as_i64().unwrap() >= 1, "{view_now}");

    // A replay into the data stream: `create` answers 409 for each, which is "already there".
    let mut replay = spec;
    replay["name"] = json!("elastic-again");
    replay["replayFrom"] = json!(chrono::Utc::now() - chrono::Duration::hours(1));
    server.faults(|f| f.items.clear());
    app.declare(vec![consumer(replay, &key)]);
    wait_delivered(&app, "elastic-again", 6).await;
    assert_eq!(view(&app, "elastic-again").await["dead_letters"], 0);
    assert_eq!(
        server.ids("falconer-events").len(),
        6,
        "the poison once, after the fix"
    );
    app.stop().await;
    server.stop().await;
}

async fn a_server_that_is_not_elasticsearch_fails_the_test_and_nothing_is_taken_as_delivered(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let opensearch = OpenSearchServer::start().unwrap();
    let spec = search_consumer(
        "elastic",
        &opensearch.url(),
        json!({"flavor": "elasticsearch", "template": false}),
    );
    let app = TestApp::spawn_with_consumers(
        &db,
        hub_config(),
        db.store_config(),
        vec![consumer(spec, &[])],
    )
    .await;
    let test = app
        .post("/api/v1/consumers/elastic/test", "application/json", "")
        .await;
    assert_eq!(test.status, 502, "{}", test.text);
    assert!(test.text.contains("X-Elastic-Product"), "{}", test.text);
    post(&app, "x", "2026-05-04T10:00:00Z", 0..2).await;
    wait_until("degraded naming the product header", || async {
        let view = view(&app, "elastic").await;
        view["state"] == "Degraded"
            && view["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("X-Elastic-Product"))
    })
    .await;
    let view = view(&app, "elastic").await;
    assert_eq!(view["delivered"], 0, "{view}");
    assert_eq!(view["dead_letters"], 0, "{view}");
    app.stop().await;
    opensearch.stop().await;
}

on_both_stores!(
    documents_land_with_the_event_id_in_the_daily_index_of_the_event_time,
    a_bulk_answer_with_errors_retries_only_the_rejected_items_and_delivers_each_once,
    a_mapping_error_goes_to_dead_letters_with_its_reason_and_is_replayed_after_the_fix,
    whole_request_failures_are_retried_with_backoff_while_the_consumer_is_degraded,
    basic_auth_and_api_key_headers_are_sent,
    replaying_events_after_a_restart_overwrites_their_documents_instead_of_doubling_them,
    a_data_stream_gets_create_operations_and_a_replay_counts_as_delivered,
    batches_over_the_clusters_size_limit_are_split_and_an_event_too_large_alone_is_dead_lettered,
    elasticsearch_8_takes_a_data_stream_with_an_api_key_and_its_item_errors_are_read_per_event,
    a_server_that_is_not_elasticsearch_fails_the_test_and_nothing_is_taken_as_delivered,
);
