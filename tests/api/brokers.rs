//! The broker sinks end to end against the real brokers this machine runs (NATS with
//! JetStream on :4222, RabbitMQ on :5672, Mosquitto on :1883, Redis on :6379; `scripts/test`
//! starts any that is down). Every test reads back what was published with a real client,
//! on destinations of its own (a stream, queue, topic or key named after the test), and
//! checks each event id arrives exactly once, in order. Outages cut a TCP relay in front of
//! the broker (`falconer_testkit::gate`): the broker keeps running, the hub loses it.

use crate::delivery::{consumer_view, post_alerts};
use crate::helpers::{Backend, TestApp, TestDb, consumer, hub_config, wait_until};
use crate::journal::HubProcess;
use falconer_testkit::gate::Gate;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

const NATS: &str = "127.0.0.1:4222";
const RABBITMQ: &str = "127.0.0.1:5672";
const MQTT: &str = "127.0.0.1:1883";
const REDIS: &str = "127.0.0.1:6379";

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// A name no other test (or earlier run) uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

/// A destination on a real broker and what has arrived there, in arrival order.
#[allow(clippy::large_enum_variant)]
enum Bus {
    Nats {
        stream: async_nats::jetstream::stream::Stream,
        next: u64,
        ids: Vec<String>,
    },
    Rabbitmq {
        channel: lapin::Channel,
        queue: String,
        ids: Vec<String>,
    },
    Redis {
        connection: redis::aio::MultiplexedConnection,
        key: String,
    },
    Mqtt {
        ids: Arc<Mutex<Vec<String>>>,
        _task: tokio::task::JoinHandle<()>,
    },
}

impl Bus {
    /// A JetStream stream capturing `<prefix>.>`.
    async fn nats(prefix: &str) -> Bus {
        let client = async_nats::connect(NATS)
            .await
            .expect("NATS on 127.0.0.1:4222");
        let js = async_nats::jetstream::new(client);
        let stream = js
            .create_stream(async_nats::jetstream::stream::Config {
                name: prefix.to_string(),
                subjects: vec![format!("{prefix}.>")],
                ..Default::default()
            })
            .await
            .expect("create a JetStream stream");
        Bus::Nats {
            stream,
            next: 1,
            ids: Vec::new(),
        }
    }

    /// A durable queue of that name on the default exchange.
    async fn rabbitmq(queue: &str) -> Bus {
        let connection = lapin::Connection::connect(
            &format!("amqp://guest:guest@{RABBITMQ}/%2f"),
            lapin::ConnectionProperties::default(),
        )
        .await
        .expect("RabbitMQ on 127.0.0.1:5672");
        let channel = connection.create_channel().await.unwrap();
        channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    durable: true,
                    auto_delete: false,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .unwrap();
        // The channel owns the connection's lifetime from here on.
        std::mem::forget(connection);
        Bus::Rabbitmq {
            channel,
            queue: queue.to_string(),
            ids: Vec::new(),
        }
    }

    async fn redis(key: &str) -> Bus {
        let client = redis::Client::open(format!("redis://{REDIS}/0")).unwrap();
        let connection = client
            .get_multiplexed_async_connection()
            .await
            .expect("Redis on 127.0.0.1:6379");
        Bus::Redis {
            connection,
            key: key.to_string(),
        }
    }

    /// A subscriber at QoS 1 to `<prefix>/#`, subscribed before this returns.
    async fn mqtt(prefix: &str) -> Bus {
        let mut options = rumqttc::MqttOptions::new(unique("reader-"), "127.0.0.1", 1883);
        options.set_max_packet_size(1 << 24, 1 << 24);
        let (client, mut events) = rumqttc::AsyncClient::new(options, 100);
        client
            .subscribe(format!("{prefix}/#"), rumqttc::QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            let event = events.poll().await.expect("Mosquitto on 127.0.0.1:1883");
            if matches!(event, rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) {
                break;
            }
        }
        let ids: Arc<Mutex<Vec<String>>> = Arc::default();
        let task = tokio::spawn({
            let ids = ids.clone();
            async move {
                let _client = client;
                while let Ok(event) = events.poll().await {
                    if let rumqttc::Event::Incoming(rumqttc::Packet::Publish(p)) = event {
                        let event: Value = serde_json::from_slice(&p.payload).unwrap();
                        ids.lock()
                            .unwrap()
                            .push(event["id"].as_str().unwrap().to_string());
                    }
                }
            }
        });
        Bus::Mqtt { ids, _task: task }
    }

    /// Every event id that has arrived, in arrival order.
    async fn ids(&mut self) -> Vec<String> {
        match self {
            Bus::Nats { stream, next, ids } => {
                loop {
                    let Ok(message) = stream.get_raw_message(*next).await else {
                        break;
                    };
                    let id = message
                        .headers
                        .get(async_nats::header::NATS_MESSAGE_ID)
                        .map(|v| v.as_str().to_string())
                        .expect("a Nats-Msg-Id header");
                    let body: Value = serde_json::from_slice(&message.payload).unwrap();
                    assert_eq!(body["id"], id.as_str(), "Nats-Msg-Id is the event id");
                    ids.push(id);
                    *next += 1;
                }
                ids.clone()
            }
            Bus::Rabbitmq {
                channel,
                queue,
                ids,
            } => {
                while let Some(message) = channel
                    .basic_get(
                        queue.as_str().into(),
                        lapin::options::BasicGetOptions { no_ack: true },
                    )
                    .await
                    .unwrap()
                {
                    let properties = &message.delivery.properties;
                    assert_eq!(properties.delivery_mode(), &Some(2), "persistent");
                    let id = properties.message_id().as_ref().unwrap().to_string();
                    let body: Value = serde_json::from_slice(&message.delivery.data).unwrap();
                    assert_eq!(body["id"], id.as_str(), "message_id is the event id");
                    ids.push(id);
                }
                ids.clone()
            }
            Bus::Redis { connection, key } => {
                let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                    .arg(key.as_str())
                    .arg("-")
                    .arg("+")
                    .query_async(connection)
                    .await
                    .unwrap();
                reply
                    .ids
                    .iter()
                    .map(|entry| {
                        let id: String = entry.get("id").expect("an `id` field");
                        let body: String = entry.get("event").expect("an `event` field");
                        let body: Value = serde_json::from_str(&body).unwrap();
                        assert_eq!(body["id"], id.as_str(), "the `id` field is the event id");
                        id
                    })
                    .collect()
            }
            Bus::Mqtt { ids, .. } => ids.lock().unwrap().clone(),
        }
    }

    /// Waits until `n` events have arrived, then checks they are exactly `expected`.
    async fn expect(&mut self, expected: &[String]) {
        let n = expected.len();
        let mut seen = Vec::new();
        for _ in 0..1200 {
            seen = self.ids().await;
            if seen.len() >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(seen.len(), n, "{} of {n} messages arrived", seen.len());
        assert_eq!(seen, expected, "each event once, in order");
    }

    /// As [`Self::expect`] for a protocol that is at least once across a lost connection
    /// (MQTT QoS 1: a message whose PUBACK was lost is published again): every event, in
    /// order of first arrival, and a repeat only of one of `in_flight`.
    async fn expect_at_least_once(&mut self, expected: &[String], in_flight: &[String]) {
        let n = expected.len();
        let mut seen = Vec::new();
        for _ in 0..1200 {
            seen = self.ids().await;
            if first_arrivals(&seen).len() >= n {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(first_arrivals(&seen), expected, "every event, in order");
        let mut counted = std::collections::HashSet::new();
        for id in &seen {
            if !counted.insert(id) {
                assert!(
                    in_flight.contains(id),
                    "{id} arrived twice but was not in flight when the connection was cut"
                );
            }
        }
    }
}

/// Each id at its first arrival.
fn first_arrivals(ids: &[String]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    ids.iter().filter(|id| seen.insert(*id)).cloned().collect()
}

/// The consumer `bus` of `kind` on `url`, its destination built from `dest`.
fn spec(kind: &str, url: &str, dest: &str) -> Value {
    let section = match kind {
        "nats" => {
            json!({"url": format!("nats://{url}"), "subject": format!("{dest}.{{cluster}}.{{severity}}")})
        }
        "rabbitmq" => json!({"url": format!("amqp://{url}/%2f"), "routingKey": dest}),
        "mqtt" => json!({"url": format!("mqtt://{url}"), "topic": format!("{dest}/{{severity}}"),
                          "clientId": unique("falconer-test-")}),
        _ => json!({"url": format!("redis://{url}/0"), "stream": dest, "maxLen": 100000}),
    };
    let mut spec = json!({"name": "bus", "type": kind, "secretRef": {"name": "bus"}});
    spec[kind] = section;
    spec
}

fn secrets(kind: &str) -> Vec<(&'static str, &'static str)> {
    match kind {
        "rabbitmq" => vec![("username", "guest"), ("password", "guest")],
        _ => vec![],
    }
}

async fn bus(kind: &str, dest: &str) -> Bus {
    match kind {
        "nats" => Bus::nats(dest).await,
        "rabbitmq" => Bus::rabbitmq(dest).await,
        "mqtt" => Bus::mqtt(dest).await,
        _ => Bus::redis(dest).await,
    }
}

fn target(kind: &str) -> &'static str {
    match kind {
        "nats" => NATS,
        "rabbitmq" => RABBITMQ,
        "mqtt" => MQTT,
        _ => REDIS,
    }
}

/// 300 events posted → exactly 300 messages, each carrying its event id, in order.
async fn three_hundred_events_arrive_once_each_in_order(kind: &str) {
    let db = TestDb::new(Backend::Sqlite).await;
    let dest = unique("falconer");
    let mut readback = bus(kind, &dest).await;
    let secrets = secrets(kind);
    let declared = consumer(spec(kind, target(kind), &dest), &secrets);
    let app =
        TestApp::spawn_with_consumers(&db, hub_config(), db.store_config(), vec![declared]).await;
    let mut posted = post_alerts(&app, "bus", 0..150).await;
    posted.extend(post_alerts(&app, "bus", 150..300).await);
    readback.expect(&posted).await;
    let view = consumer_view(&app, "bus").await;
    assert_eq!(view["state"], "Active", "{view}");
    app.stop().await;
}

/// The broker unreachable for a while: ingest goes on, the consumer reports it is
/// retrying, and once the broker is back every event arrives once, in order.
async fn after_an_outage_every_event_arrives_once_in_order(kind: &str) {
    let db = TestDb::new(Backend::Sqlite).await;
    let dest = unique("falconer");
    let mut readback = bus(kind, &dest).await;
    let gate = Gate::to(addr(target(kind))).await;
    let secrets = secrets(kind);
    let declared = consumer(spec(kind, &gate.addr.to_string(), &dest), &secrets);
    let app =
        TestApp::spawn_with_consumers(&db, hub_config(), db.store_config(), vec![declared]).await;
    let mut posted = post_alerts(&app, "before", 0..50).await;
    readback.expect(&posted).await;

    gate.close();
    posted.extend(post_alerts(&app, "during", 0..100).await);
    wait_until("the consumer reports it is retrying", || async {
        let view = consumer_view(&app, "bus").await;
        view["state"] == "Degraded" && view["retries"].as_i64() > Some(0)
    })
    .await;
    gate.open();
    // Sent before the relay opened again: these may have been in flight when it was cut.
    let in_flight = posted.clone();
    posted.extend(post_alerts(&app, "after", 0..50).await);
    if kind == "mqtt" {
        readback.expect_at_least_once(&posted, &in_flight).await;
    } else {
        readback.expect(&posted).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_events_become_three_hundred_jetstream_messages_with_their_ids_as_nats_msg_id()
 {
    three_hundred_events_arrive_once_each_in_order("nats").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_events_become_three_hundred_persistent_rabbitmq_messages_with_their_ids() {
    three_hundred_events_arrive_once_each_in_order("rabbitmq").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_events_become_three_hundred_redis_stream_entries_with_their_ids() {
    three_hundred_events_arrive_once_each_in_order("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_events_reach_an_mqtt_subscriber_at_qos_1_once_each() {
    three_hundred_events_arrive_once_each_in_order("mqtt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_nats_outage_every_event_arrives_once_in_order() {
    after_an_outage_every_event_arrives_once_in_order("nats").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_rabbitmq_outage_every_event_arrives_once_in_order() {
    after_an_outage_every_event_arrives_once_in_order("rabbitmq").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_outage_every_event_arrives_once_in_order() {
    after_an_outage_every_event_arrives_once_in_order("redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_mqtt_outage_every_event_arrives_in_order_and_only_those_in_flight_may_repeat() {
    after_an_outage_every_event_arrives_once_in_order("mqtt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_no_rabbitmq_queue_takes_goes_to_the_dead_letters_as_unroutable() {
    let db = TestDb::new(Backend::Sqlite).await;
    let nowhere = unique("nowhere");
    let secrets = secrets("rabbitmq");
    let declared = consumer(spec("rabbitmq", RABBITMQ, &nowhere), &secrets);
    let app =
        TestApp::spawn_with_consumers(&db, hub_config(), db.store_config(), vec![declared]).await;
    let posted = post_alerts(&app, "lost", 0..3).await;
    wait_until("the three events are dead letters", || async {
        let letters = app.get("/api/v1/consumers/bus/dead-letters").await.json();
        letters["dead_letters"]
            .as_array()
            .is_some_and(|l| l.len() == 3)
    })
    .await;
    let letters = app.get("/api/v1/consumers/bus/dead-letters").await.json();
    for (letter, id) in letters["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&posted)
    {
        assert_eq!(letter["event_id"], id.as_str(), "{letter}");
        let reason = letter["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("unroutable") && reason.contains(&nowhere),
            "{reason}"
        );
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_consumer_whose_stream_does_not_exist_reports_it_and_delivers_once_it_does() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dest = unique("falconer");
    let mut spec = spec("nats", NATS, &dest);
    spec["nats"]["stream"] = json!(dest);
    let declared = consumer(spec, &[]);
    let app =
        TestApp::spawn_with_consumers(&db, hub_config(), db.store_config(), vec![declared]).await;
    let posted = post_alerts(&app, "early", 0..5).await;
    wait_until("the consumer names the missing stream", || async {
        let view = consumer_view(&app, "bus").await;
        view["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("nats.stream {dest}")))
    })
    .await;
    let mut readback = Bus::nats(&dest).await;
    readback.expect(&posted).await;
    app.stop().await;
}

/// The hub killed with SIGKILL while it delivers to JetStream: the events it had published
/// but not yet recorded as delivered are published again after the restart, and the
/// stream's duplicate window drops them (same `Nats-Msg-Id`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_killed_during_nats_delivery_adds_no_jetstream_duplicate() {
    const TOTAL: usize = 10_000;
    let db = TestDb::new(Backend::Postgres).await;
    let data = tempfile::tempdir().unwrap();
    let dest = unique("falconer");
    let mut readback = Bus::nats(&dest).await;
    let Bus::Nats { stream, .. } = &readback else {
        unreachable!()
    };
    let mut stream = stream.clone();
    // A backlog first (NATS unreachable), then the kill as soon as it starts to drain.
    let gate = Gate::to(addr(NATS)).await;
    gate.close();
    let config = data.path().join("consumers.yaml");
    let spec = spec("nats", &gate.addr.to_string(), &dest);
    std::fs::write(&config, format!("consumers:\n  - {spec}\n")).unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let alerts = |from: usize, to: usize| {
        let body: Vec<Value> = (from..to)
            .map(|i| crate::helpers::alert("bus", "2026-05-04T10:00:00Z", &format!("bus {i}")))
            .collect();
        json!(body).to_string()
    };

    let hub = HubProcess::start_with(&db, data.path(), &args).await;
    for chunk in 0..10 {
        assert_eq!(
            hub.post(alerts(chunk * 1000, (chunk + 1) * 1000)).await,
            202
        );
    }
    gate.open();
    let mut stored = 0;
    while stored == 0 {
        stored = stream.info().await.unwrap().state.messages;
    }
    hub.kill();
    let at_kill = stream.info().await.unwrap().state.messages;
    assert!(
        (at_kill as usize) < TOTAL,
        "the kill came after delivery had finished"
    );

    let hub = HubProcess::start_with(&db, data.path(), &args).await;
    for _ in 0..1200 {
        if stream.info().await.unwrap().state.messages as usize >= TOTAL {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Anything re-sent after the restart has been published by now: the cursor is at the end.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    drop(hub);
    let ids = readback.ids().await;
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(
        distinct.len(),
        TOTAL,
        "every event reached the stream ({at_kill} at the kill)"
    );
    assert_eq!(ids.len(), TOTAL, "no event is in the stream twice");
}

/// The test send goes to the broker like an event (and `preview` shows the destination and
/// body without sending): for each broker, one message arrives with the test event's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_send_reaches_each_broker_and_a_preview_names_its_destination() {
    for kind in ["nats", "rabbitmq", "mqtt", "redis"] {
        let db = TestDb::new(Backend::Sqlite).await;
        let dest = unique("falconer");
        let mut readback = bus(kind, &dest).await;
        let secrets = secrets(kind);
        let declared = consumer(spec(kind, target(kind), &dest), &secrets);
        let app =
            TestApp::spawn_with_consumers(&db, hub_config(), db.store_config(), vec![declared])
                .await;
        let reply = app
            .post("/api/v1/consumers/bus/test", "application/json", "")
            .await;
        assert_eq!(reply.status, 200, "{kind}: {}", reply.text);
        assert_eq!(reply.json()["delivered"], true, "{kind}: {}", reply.text);
        let mut ids = Vec::new();
        for _ in 0..200 {
            ids = readback.ids().await;
            if !ids.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(ids.len(), 1, "{kind}: one test message");

        let preview = app
            .post("/api/v1/consumers/bus/preview", "application/json", "")
            .await;
        assert_eq!(preview.status, 200, "{kind}: {}", preview.text);
        let shown = preview.json().to_string();
        assert!(shown.contains(&dest), "{kind}: the destination in {shown}");
        app.stop().await;
    }
}

/// On a NATS server with a small `max_payload` and a user who may publish only under
/// `allowed.>`: an event over the limit, and every event to a subject the user may not
/// publish to, go to the dead letters with the reason; the others are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_dead_letters_a_message_over_max_payload_and_one_the_user_may_not_publish() {
    let server = falconer_testkit::nats::NatsServer::start(
        "max_payload: 16384\n\
         authorization { users: [\n\
           {user: falconer, password: pw, permissions: {publish: {allow: [\"allowed.>\", \"$JS.API.>\"]}, subscribe: {allow: [\"_INBOX.>\"]}}}\n\
           {user: admin, password: pw}\n\
         ] }",
    )
    .await;
    let url = format!("127.0.0.1:{}", server.port);
    let admin = async_nats::ConnectOptions::with_user_and_password("admin".into(), "pw".into())
        .connect(url.as_str())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(admin);
    let mut stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "ALL".into(),
            subjects: vec!["allowed.>".into(), "denied.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();

    let db = TestDb::new(Backend::Sqlite).await;
    let login = [("username", "falconer"), ("password", "pw")];
    let allowed = consumer(spec("nats", &url, "allowed"), &login);
    let mut denied = spec("nats", &url, "denied");
    denied["name"] = json!("denied");
    let denied = consumer(denied, &login);
    let app =
        TestApp::spawn_with_consumers(&db, hub_config(), db.store_config(), vec![allowed, denied])
            .await;
    let big = "x".repeat(20_000);
    let body = json!([
        crate::helpers::alert("bus", "2026-05-04T10:00:00Z", "small 1"),
        crate::helpers::alert("bus", "2026-05-04T10:00:00Z", &big),
        crate::helpers::alert("bus", "2026-05-04T10:00:00Z", "small 2"),
    ]);
    let reply = app.ingest(body.to_string()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let ids = reply.ids();

    let letters = |name: &'static str, n: usize| {
        let app = &app;
        async move {
            let path = format!("/api/v1/consumers/{name}/dead-letters");
            let mut found = Vec::new();
            for _ in 0..1200 {
                found = app.get(&path).await.json()["dead_letters"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if found.len() >= n {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            found
        }
    };
    let too_big = letters("bus", 1).await;
    assert_eq!(too_big.len(), 1, "{too_big:?}");
    assert_eq!(too_big[0]["event_id"], ids[1].as_str());
    assert!(
        too_big[0]["reason"]
            .as_str()
            .unwrap()
            .contains("max_payload"),
        "{}",
        too_big[0]
    );
    let refused = letters("denied", 3).await;
    assert_eq!(refused.len(), 3, "{refused:?}");
    for letter in &refused {
        let reason = letter["reason"].as_str().unwrap();
        // The size is checked before the subject's permission.
        let expected = if letter["event_id"] == ids[1].as_str() {
            "max_payload"
        } else {
            "not authorized: nats: permissions violation"
        };
        assert!(
            reason.to_lowercase().contains(&expected.to_lowercase()),
            "{letter}"
        );
    }
    let state = stream.info().await.unwrap().state.messages;
    assert_eq!(
        state, 2,
        "the two small events, only from the allowed consumer"
    );
    app.stop().await;
}
