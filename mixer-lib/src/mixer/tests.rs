//! The handlers called directly, in orders the bus may deliver but a test over it cannot
//! force.

use std::path::PathBuf;
use std::sync::Arc;

use fluxmsg::system::{Payload as _, PushStatus};
use snake::{Message, Subject};

use super::Mixer;
use crate::secret;
use crate::store::{Convergence, MemoryStore, RackRecord, Store};

/// A mixer on a memory store, with its data directory (removed by the caller).
async fn mixer(name: &str) -> (Mixer, Arc<dyn Store>, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "mixer-unit-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mixer = Mixer::builder()
        .data_dir(&dir)
        .store(Arc::clone(&store))
        .start()
        .await
        .expect("a mixer");
    (mixer, store, dir)
}

/// A rack `edge-1` with the secret `s3cret`, asked to run `new` while it runs `old`.
async fn pushed_rack(store: &dyn Store) {
    let hashed = secret::hash("s3cret").expect("randomness");
    let rack = RackRecord::new("id-1", "edge-1", hashed, 0);
    store.insert_rack(&rack).await.expect("insert");
    store
        .put_convergence(&Convergence {
            rack: "edge-1".into(),
            asked_version: "1.0.0".into(),
            asked_hash: "new".into(),
            applied_hash: "old".into(),
            status: "pushed".into(),
            error: String::new(),
            updated_at: 0,
        })
        .await
        .expect("row");
}

fn report(hash: &str, status: &str, running_hash: &str) -> Message {
    let report = PushStatus {
        name: "edge-1".into(),
        secret: "s3cret".into(),
        version: "1.0.0".into(),
        hash: hash.into(),
        status: status.into(),
        running_hash: running_hash.into(),
        ..PushStatus::default()
    };
    Message::new(Subject::status(), report.to_message().expect("encode"))
}

#[tokio::test]
async fn a_late_applying_report_does_not_undo_the_outcome() {
    let (mixer, store, dir) = mixer("late-applying").await;
    pushed_rack(store.as_ref()).await;
    // An agent sends `applying` then `applied` at once; the mixer handles each report in
    // its own task, so the second can be recorded first.
    for (status, running) in [("applied", "new"), ("applying", "old")] {
        mixer
            .inner
            .status(&report("new", status, running))
            .await
            .expect("recorded");
    }
    let rows = store.convergence().await.expect("rows");
    assert_eq!(
        (rows[0].status.as_str(), rows[0].applied_hash.as_str()),
        ("applied", "new")
    );
    // What the rack runs is written with the next batch of what heartbeats changed; the
    // mixer shows it at once.
    let rack = mixer.rack("edge-1").await.expect("read");
    assert_eq!(rack.applied_hash, "new");
    mixer.flush().await.expect("flush");
    let rack = store.rack_by_name("edge-1").await.expect("read");
    assert_eq!(rack.expect("rack").applied_hash, "new");
    mixer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_rack_lock_is_forgotten_once_nobody_holds_or_awaits_it() {
    let (mixer, _store, dir) = mixer("locks").await;
    let inner = &mixer.inner;
    let count = || inner.locks.lock().expect("locks").len();
    // Hellos under names that are refused (no bootstrap secret) leave nothing behind.
    for i in 0..10 {
        let hello = fluxmsg::system::Hello {
            name: format!("stranger-{i}"),
            nonce: "n".into(),
            secret: "guess".into(),
            ..fluxmsg::system::Hello::default()
        };
        let msg = Message::new(Subject::hello(), hello.to_message().expect("encode"));
        inner.hello(&msg).await.expect("answered");
    }
    assert_eq!(count(), 0);

    // One that waits keeps the lock while it is handed over.
    let held = inner.lock_rack("a").await;
    let waiter = tokio::spawn({
        let inner = Arc::clone(&mixer.inner);
        async move {
            let _guard = inner.lock_rack("a").await;
        }
    });
    while inner
        .locks
        .lock()
        .expect("locks")
        .get("a")
        .is_none_or(|lock| Arc::strong_count(lock) < 3)
    {
        tokio::task::yield_now().await;
    }
    drop(held);
    assert_eq!(count(), 1, "the waiter's lock was forgotten");
    waiter.await.expect("the waiter");
    assert_eq!(count(), 0);
    mixer.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
