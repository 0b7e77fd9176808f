//! The embedded SQLite store on a full disk: every request answered 202 is in the file, the
//! rest are refused with 507, and ingest recovers by itself when space returns. The disk is a
//! small tmpfs the test mounts (root only; elsewhere the test says it was skipped).

use crate::helpers::{Backend, TestApp, TestDb, alert, hub_config};
use serde_json::json;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of `size`, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
    _parent: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let parent = tempfile::tempdir().expect("temporary directory");
        let path = parent.path().join("disk");
        std::fs::create_dir(&path).expect("mount point");
        let mounted = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "falconer-test",
            ])
            .arg(&path)
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(SmallDisk {
            path,
            _parent: parent,
        })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a failed test may still hold files open on it.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn ballast(path: &Path, bytes: usize) {
    std::fs::write(path, vec![0x5a_u8; bytes]).expect("write ballast");
}

/// One request of 50 alerts, each with an output of about 2 KB.
fn batch(request: usize) -> String {
    let padding = "x".repeat(2000);
    let alerts: Vec<_> = (0..50)
        .map(|i| {
            alert(
                "disk fills",
                "2026-05-04T10:00:00Z",
                &format!("request {request} alert {i} {padding}"),
            )
        })
        .collect();
    json!(alerts).to_string()
}

#[tokio::test]
async fn sqlite_on_a_full_disk_answers_507_keeps_every_acknowledged_event_and_recovers() {
    let Some(disk) = SmallDisk::mount("24m") else {
        eprintln!("skipped: mounting a tmpfs needs root (mount -t tmpfs)");
        return;
    };
    let db = TestDb::new(Backend::Sqlite).await;
    let mut store = db.store_config();
    store.data_dir = disk.path.join("data");
    // Room to give back once the disk is full.
    let spare = disk.path.join("spare");
    ballast(&spare, 6 * 1024 * 1024);

    let app = TestApp::spawn_with(&db, hub_config(), store.clone()).await;
    let mut acknowledged = HashSet::new();
    let mut refused = 0;
    let mut request = 0;
    // Fill the disk, then go on: every later request must be refused, not "accepted".
    while refused < 20 {
        assert!(request < 2_000, "the 24 MiB disk never filled");
        let reply = app.ingest(batch(request)).await;
        request += 1;
        match reply.status {
            202 => acknowledged.extend(reply.ids()),
            507 => {
                refused += 1;
                assert!(
                    reply.header("retry-after").is_some(),
                    "507 without Retry-After"
                );
                assert!(reply.text.contains("disk is full"), "{}", reply.text);
            }
            other => panic!("request {request}: status {other}: {:?}", reply.json()),
        }
    }
    assert!(!acknowledged.is_empty());

    // Space returns: ingest recovers without a restart.
    std::fs::remove_file(&spare).expect("remove ballast");
    let mut recovered = None;
    for _ in 0..20 {
        let reply = app.ingest(batch(request)).await;
        request += 1;
        if reply.status == 202 {
            recovered = Some(reply.ids());
            break;
        }
        assert_eq!(reply.status, 507, "{:?}", reply.json());
    }
    let recovered = recovered.expect("ingest recovered once space returned");
    acknowledged.extend(recovered);
    app.stop().await;

    // Everything acknowledged is in the file, read by a new hub.
    let app = TestApp::spawn_with(&db, hub_config(), store).await;
    let mut stored = HashSet::new();
    let mut path = "/api/v1/events?limit=1000".to_string();
    loop {
        let page = app.get(&path).await.json();
        for event in page["events"].as_array().expect("events") {
            stored.insert(event["id"].as_str().expect("id").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/events?limit=1000&cursor={cursor}"),
            None => break,
        }
    }
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged events lost",
        lost.len(),
        acknowledged.len()
    );
    assert_eq!(stored.len(), acknowledged.len());
    app.stop().await;
    drop(disk);
}
