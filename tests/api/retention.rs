//! Retention (DESIGN.md §4): old events go, whole days on PostgreSQL; what a consumer has not
//! delivered stays; cursors and deduplication keep working across it.

use crate::helpers::{Backend, TestDb, wait_until};
use crate::on_both_stores;
use chrono::{DateTime, TimeDelta, Utc};
use falconer_delivery::Delivery;
use falconer_delivery::config::DeliveryConfig;
use falconer_delivery::declared::Observed;
use falconer_hub::retention::{Outcome, Retention};
use falconer_store::retention::RetentionRun;
use falconer_store::{Event, Position, Progress, Start, Store, StoreConfig};
use prometheus_client::registry::Registry;
use uuid::Uuid;

async fn open(db: &TestDb) -> Store {
    open_with(db.store_config()).await
}

async fn open_with(config: StoreConfig) -> Store {
    Store::open(&config, &mut Registry::default())
        .await
        .expect("open the test store")
}

fn received(ago: TimeDelta, rule: &str) -> Event {
    let mut event = falconer_delivery::engine::synthetic_event();
    event.id = Uuid::now_v7();
    event.received_at = Utc::now() - ago;
    event.time = event.received_at;
    event.rule = rule.into();
    event
}

async fn insert(store: &Store, events: Vec<Event>) -> Vec<Uuid> {
    store
        .insert(events)
        .await
        .expect("insert")
        .into_iter()
        .map(|s| s.id)
        .collect()
}

async fn stored_rules(store: &Store) -> Vec<String> {
    let query = falconer_store::EventQuery {
        limit: 1000,
        ..Default::default()
    };
    let mut rules: Vec<String> = store
        .events(query)
        .await
        .expect("list events")
        .events
        .into_iter()
        .map(|e| e.rule)
        .collect();
    rules.sort();
    rules
}

/// The events after `position`, once `n` are readable: on PostgreSQL a cursor reads only
/// what every older transaction of the server (other tests run beside) has settled.
async fn read_after(store: &Store, position: Position, n: usize) -> Vec<(Position, Event)> {
    let read = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    wait_until(&format!("{n} events readable after the cursor"), || {
        let (store, read) = (store.clone(), read.clone());
        async move {
            let events = store.events_after(position, 100).await.unwrap();
            let done = events.len() >= n;
            *read.lock().unwrap() = events;
            done
        }
    })
    .await;
    std::mem::take(&mut *read.lock().unwrap())
}

fn cutoff(days: i64) -> DateTime<Utc> {
    Utc::now() - TimeDelta::days(days)
}

async fn enforce(store: &Store, days: i64, holders: &[&str]) -> RetentionRun {
    let holders: Vec<String> = holders.iter().map(|h| h.to_string()).collect();
    store
        .enforce_retention(cutoff(days), &holders)
        .await
        .expect("enforce retention")
        .expect("no other hub runs retention")
}

fn suppression(expired_days_ago: i64) -> falconer_store::Suppression {
    falconer_store::Suppression {
        id: Uuid::now_v7(),
        filter: serde_json::from_value(serde_json::json!({"rules": ["nothing"]})).unwrap(),
        reason: format!("expired {expired_days_ago} days ago"),
        expires: Utc::now() - TimeDelta::days(expired_days_ago),
        created_at: Utc::now() - TimeDelta::days(60),
        created_by: "test".into(),
        origin: "api".into(),
    }
}

async fn group_rules(store: &Store) -> Vec<String> {
    let query = falconer_store::GroupQuery {
        limit: 1000,
        ..Default::default()
    };
    let mut rules: Vec<String> = store
        .groups(query)
        .await
        .expect("list groups")
        .groups
        .into_iter()
        .map(|g| g.rule)
        .collect();
    rules.sort();
    rules
}

async fn events_received_before_the_retention_are_removed_and_later_ones_kept(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    for days in [40, 1] {
        store.create_suppression(suppression(days)).await.unwrap();
    }
    let old = TimeDelta::days(40);
    insert(
        &store,
        vec![
            received(old, "old-1"),
            received(old, "old-2"),
            received(old, "old-3"),
            received(TimeDelta::days(10), "recent"),
            received(TimeDelta::zero(), "new"),
        ],
    )
    .await;

    let run = enforce(&store, 30, &[]).await;
    assert_eq!(run.removed, 3, "{run:?}");
    assert_eq!(run.held_by, None);
    if backend == Backend::Postgres {
        assert_eq!(run.days_dropped, 1, "the old day went whole: {run:?}");
    }
    assert_eq!(stored_rules(&store).await, ["new", "recent"]);
    // The groups of the removed events go with them, and so do suppressions long expired.
    assert_eq!(run.groups_removed, 3, "{run:?}");
    assert_eq!(group_rules(&store).await, ["new", "recent"]);
    assert_eq!(run.suppressions_removed, 1, "{run:?}");
    let kept = store.suppressions(true).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].reason, "expired 1 days ago");
    assert_eq!(
        enforce(&store, 30, &[]).await.removed,
        0,
        "nothing left to remove"
    );
    store.close().await;
}

async fn retention_keeps_what_a_declared_consumer_has_not_delivered_until_it_has(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    let since = Start::ReceivedSince(Utc::now() - TimeDelta::days(50));
    let start = store.ensure_consumer("slow", since).await.unwrap().position;
    let mut events: Vec<Event> = (0..3)
        .map(|i| received(TimeDelta::days(40), &format!("old-{i}")))
        .collect();
    events.push(received(TimeDelta::zero(), "new"));
    insert(&store, events).await;

    let run = enforce(&store, 30, &["slow"]).await;
    assert_eq!(run.held_by.as_deref(), Some("slow"), "{run:?}");
    assert_eq!(run.removed, 0);
    assert_eq!(stored_rules(&store).await.len(), 4);

    // Once it has delivered them, they go.
    let read = read_after(&store, start, 4).await;
    assert_eq!(read.len(), 4);
    let last = read[2].0;
    let progress = Progress {
        delivered: 3,
        ..Progress::default()
    };
    store.save_progress("slow", last, progress).await.unwrap();
    let run = enforce(&store, 30, &["slow"]).await;
    assert_eq!((run.removed, run.held_by), (3, None));
    store.close().await;
}

async fn a_consumer_no_longer_declared_does_not_hold_retention(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    let since = Start::ReceivedSince(Utc::now() - TimeDelta::days(50));
    store.ensure_consumer("removed", since).await.unwrap();
    insert(
        &store,
        vec![
            received(TimeDelta::days(40), "old"),
            received(TimeDelta::zero(), "new"),
        ],
    )
    .await;
    let run = enforce(&store, 30, &["another"]).await;
    assert_eq!((run.removed, run.held_by), (1, None));
    store.close().await;
}

async fn a_cursor_at_the_end_gets_new_events_after_retention_removed_everything_old(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    insert(
        &store,
        (0..4)
            .map(|i| received(TimeDelta::days(40), &format!("old-{i}")))
            .collect(),
    )
    .await;
    // A consumer that has delivered all of them.
    store
        .ensure_consumer("caught-up", Start::Now)
        .await
        .unwrap();
    let beginning = Position {
        tx: 0,
        id: Uuid::nil(),
    };
    let position = read_after(&store, beginning, 4).await[3].0;
    store
        .save_progress("caught-up", position, Progress::default())
        .await
        .unwrap();
    let run = enforce(&store, 30, &["caught-up"]).await;
    assert!(run.removed >= 3, "{run:?}");
    // SQLite keeps its newest event so that event numbers never repeat.
    let left = if backend == Backend::Sqlite { 1 } else { 0 };
    assert_eq!(stored_rules(&store).await.len(), left);

    let new = insert(&store, vec![received(TimeDelta::zero(), "after")]).await;
    let read = read_after(&store, position, 1).await;
    let ids: Vec<Uuid> = read.iter().map(|(_, e)| e.id).collect();
    assert_eq!(ids, new, "the cursor sees the new event and nothing else");
    store.close().await;
}

async fn a_retry_received_the_next_day_is_recognised_as_a_duplicate(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = open(&db).await;
    let key = falconer_store::dedup_key("test", &[b"one alert"]);
    // Stored a minute before midnight (UTC), retried now: the next day.
    let midnight = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let mut first = received(Utc::now() - midnight + TimeDelta::minutes(1), "retried");
    first.dedup_key = Some(key);
    let first_id = insert(&store, vec![first]).await;
    let mut retry = received(TimeDelta::zero(), "retried");
    retry.dedup_key = Some(key);
    let stored = store.insert(vec![retry]).await.unwrap();
    assert_eq!(stored[0].id, first_id[0]);
    assert!(stored[0].duplicate);
    assert_eq!(stored_rules(&store).await, ["retried"]);
    store.close().await;
}

async fn the_hub_applies_the_settings_retention_else_its_own_and_forever_removes_nothing(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let config = db.store_config();
    let store = open_with(config.clone()).await;
    insert(
        &store,
        vec![
            received(TimeDelta::days(40), "old"),
            received(TimeDelta::days(3), "recent"),
            received(TimeDelta::zero(), "new"),
        ],
    )
    .await;
    let mut registry = Registry::default();
    let delivery = Delivery::new(store.clone(), DeliveryConfig::default(), &mut registry);
    let (settings, observed) = tokio::sync::watch::channel(Observed::default());

    // A config of forever, in a cluster whose Settings were not read yet: nothing happens.
    let forever = StoreConfig {
        retention: "forever".into(),
        ..config.clone()
    };
    let retention = Retention::new(
        store.clone(),
        delivery.clone(),
        &forever,
        Some(observed),
        &mut registry,
    );
    assert!(matches!(
        retention.run_once().await,
        Ok(Outcome::Skipped(_))
    ));
    settings.send_modify(|o| o.synced = true);
    assert_eq!(
        retention.run_once().await.unwrap(),
        Outcome::Skipped("retention is forever")
    );
    assert_eq!(stored_rules(&store).await, ["new", "old", "recent"]);

    // A Setting's retention overrides the config.
    settings.send_modify(|o| o.retention = Some("2d".into()));
    assert_eq!(retention.age().0, Some(TimeDelta::days(2)));
    let Outcome::Done(run) = retention.run_once().await.unwrap() else {
        panic!("retention did not run");
    };
    assert_eq!(run.removed, 2, "{run:?}");
    assert_eq!(stored_rules(&store).await, ["new"]);
    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, &registry).unwrap();
    assert!(
        metrics.contains("falconer_retention_removed_events_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("falconer_retention_age_seconds 172800"),
        "{metrics}"
    );

    // Without Settings, the config's own.
    let own = Retention::new(
        store.clone(),
        delivery,
        &config,
        None,
        &mut Registry::default(),
    );
    assert_eq!(own.age().0, Some(TimeDelta::days(30)));
    store.close().await;
}

on_both_stores!(
    events_received_before_the_retention_are_removed_and_later_ones_kept,
    retention_keeps_what_a_declared_consumer_has_not_delivered_until_it_has,
    a_consumer_no_longer_declared_does_not_hold_retention,
    a_cursor_at_the_end_gets_new_events_after_retention_removed_everything_old,
    a_retry_received_the_next_day_is_recognised_as_a_duplicate,
    the_hub_applies_the_settings_retention_else_its_own_and_forever_removes_nothing,
);

/// Events stored before partitioning keep their rows and their commit positions: no consumer
/// gets them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_partitioning_keeps_existing_events_and_their_commit_positions() {
    let db = TestDb::new(Backend::Postgres).await;
    let url = match db.store_config().database_url {
        Some(url) => url.expose().to_string(),
        None => unreachable!("a PostgreSQL test database"),
    };
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    let all = sqlx::migrate::Migrator::new(dir.as_path()).await.unwrap();
    let partitioning = all
        .iter()
        .position(|m| m.description.contains("partition events"))
        .expect("the partitioning migration");
    let before = sqlx::migrate::Migrator {
        migrations: all.migrations[..partitioning].to_vec().into(),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    before.run(&pool).await.unwrap();
    let (id, tx): (Uuid, String) = sqlx::query_as(
        "INSERT INTO events (id, dedup_key, time, received_at, source, kind, severity, \
         severity_raw, rule, message, cluster, raw) VALUES (gen_random_uuid(), \
         gen_random_uuid(), now() - interval '3 days', now() - interval '3 days', 'falco', \
         'runtime_alert', 4, 'Warning', 'before', 'stored before partitioning', 'home', '{}') \
         RETURNING id, tx::text",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = open(&db).await;
    let event = store
        .event(id)
        .await
        .unwrap()
        .expect("the event is still there");
    assert_eq!(event.rule, "before");
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let (kept_tx, day): (String, String) =
        sqlx::query_as("SELECT tx::text, day::text FROM events WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(kept_tx, tx, "the commit position is kept");
    // The UTC day it was received (read back: a run across midnight must not fail).
    let expected_day = event.received_at.date_naive().to_string();
    assert_eq!(day, expected_day);
    let partitions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        partitions >= 10,
        "its day and the days around today: {partitions}"
    );
    pool.close().await;
    store.close().await;
}
