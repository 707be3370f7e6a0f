//! The store conformance suite: the rules every [`Store`] keeps, written once and run on each
//! backend.

use std::collections::BTreeSet;
use std::sync::Arc;

use mixer_lib::store::{
    Convergence, MemoryStore, Put, RackRecord, RackStatus, ScenarioRecord, Store, StoreError,
};

fn rack(id: &str, name: &str) -> RackRecord {
    RackRecord::new(id, name, format!("sha256$salt${id}"), 1_000)
}

fn scenario(name: &str, version: &str, hash: &str) -> ScenarioRecord {
    ScenarioRecord {
        name: name.to_owned(),
        version: version.to_owned(),
        hash: hash.to_owned(),
        yaml: format!("meta: {{ name: {name}, version: {version} }}\n"),
        imported_at: 5,
    }
}

pub(crate) async fn racks_are_kept_by_id_with_unique_names(store: &dyn Store) {
    let mut a = rack("a-id", "edge-a");
    store.insert_rack(&a).await.expect("insert");
    store
        .insert_rack(&rack("b-id", "edge-b"))
        .await
        .expect("insert");
    let again = store.insert_rack(&rack("c-id", "edge-a")).await;
    assert!(
        matches!(again, Err(StoreError::NameTaken(ref n)) if n == "edge-a"),
        "{again:?}"
    );
    a.status = RackStatus::Active;
    a.machine_id = Some(101);
    a.labels.insert("zone".into(), "eu".into());
    a.health.insert("acceptor".into(), "ok".into());
    a.stats = serde_json::json!({ "cpu": 0.5 });
    a.applied_hash = "ab12".into();
    a.last_seen = 2_000;
    store.update_rack(&a).await.expect("update");
    assert_eq!(
        store.rack_by_name("edge-a").await.expect("get"),
        Some(a.clone())
    );
    assert_eq!(
        store.rack_by_id("a-id").await.expect("get"),
        Some(a.clone())
    );
    assert_eq!(store.rack_by_name("nope").await.expect("get"), None);
    let mut clash = rack("b-id", "edge-a");
    clash.status = RackStatus::Active;
    assert!(matches!(
        store.update_rack(&clash).await,
        Err(StoreError::NameTaken(_))
    ));
    assert!(matches!(
        store.update_rack(&rack("z-id", "edge-z")).await,
        Err(StoreError::NoRack(_))
    ));
    let names: Vec<String> = store
        .racks()
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["edge-a", "edge-b"]);
    assert!(store.delete_rack("a-id").await.expect("delete"));
    assert!(!store.delete_rack("a-id").await.expect("delete"));
    assert_eq!(store.rack_by_name("edge-a").await.expect("get"), None);
}

pub(crate) async fn leases_are_exclusive_renewed_and_reused_only_after_expiry(store: &dyn Store) {
    let first = store
        .acquire_lease("r1", 100..=102, 0, 1_000)
        .await
        .expect("lease");
    assert_eq!((first.machine_id, first.expires_at), (100, 1_000));
    // Asked again by its holder: the same id, renewed.
    let again = store
        .acquire_lease("r1", 100..=102, 500, 1_000)
        .await
        .expect("lease");
    assert_eq!((again.machine_id, again.expires_at), (100, 1_500));
    let second = store
        .acquire_lease("r2", 100..=102, 500, 1_000)
        .await
        .expect("lease");
    assert_eq!(second.machine_id, 101);
    let third = store
        .acquire_lease("r3", 100..=102, 500, 1_000)
        .await
        .expect("lease");
    assert_eq!(third.machine_id, 102);
    let full = store.acquire_lease("r4", 100..=102, 600, 1_000).await;
    assert!(matches!(full, Err(StoreError::NoFreeMachineId)), "{full:?}");
    // Renewals: only by the holder, only before expiry.
    assert!(
        store
            .renew_lease(101, "r2", 1_000, 1_000)
            .await
            .expect("renew")
    );
    assert!(
        !store
            .renew_lease(101, "r1", 1_000, 1_000)
            .await
            .expect("renew")
    );
    assert!(
        !store
            .renew_lease(102, "r3", 1_600, 1_000)
            .await
            .expect("renew")
    );
    // r1's lease (to 1,500) and r3's (to 1,500) expired at 1,600; r2's runs to 2,000.
    let reused = store
        .acquire_lease("r4", 100..=102, 1_600, 1_000)
        .await
        .expect("lease");
    assert_eq!(reused.machine_id, 100);
    let r2 = store.acquire_lease("r5", 101..=101, 1_600, 1_000).await;
    assert!(matches!(r2, Err(StoreError::NoFreeMachineId)), "{r2:?}");
    store.release_leases("r2").await.expect("release");
    let freed = store
        .acquire_lease("r5", 101..=101, 1_600, 1_000)
        .await
        .expect("lease");
    assert_eq!(freed.machine_id, 101);
    let holders: Vec<(u16, String)> = store
        .leases()
        .await
        .expect("leases")
        .into_iter()
        .filter(|l| l.expires_at > 1_600)
        .map(|l| (l.machine_id, l.holder))
        .collect();
    assert_eq!(holders, [(100, "r4".to_owned()), (101, "r5".to_owned())]);
    // Removing a rack ends its lease.
    store
        .insert_rack(&rack("r4", "edge-r4"))
        .await
        .expect("insert");
    store.delete_rack("r4").await.expect("delete");
    assert!(
        store
            .leases()
            .await
            .expect("leases")
            .iter()
            .all(|l| l.holder != "r4")
    );
}

/// Many holders asking at once each get their own id.
pub(crate) async fn concurrent_leases_never_share_an_id(store: Arc<dyn Store>) {
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .acquire_lease(&format!("holder-{i}"), 1_000..=1_099, 0, 60_000)
                    .await
                    .expect("a lease")
                    .machine_id
            })
        })
        .collect();
    let mut ids = BTreeSet::new();
    for t in tasks {
        assert!(ids.insert(t.await.expect("task")), "an id leased twice");
    }
    assert_eq!(ids.len(), 50);
}

pub(crate) async fn scenario_versions_are_immutable(store: &dyn Store) {
    assert_eq!(
        store
            .put_scenario(&scenario("switch", "1.0.0", "h1"))
            .await
            .expect("put"),
        Put::Stored
    );
    assert_eq!(
        store
            .put_scenario(&scenario("switch", "1.0.0", "h1"))
            .await
            .expect("put"),
        Put::Unchanged
    );
    let changed = store.put_scenario(&scenario("switch", "1.0.0", "h2")).await;
    assert!(
        matches!(changed, Err(StoreError::VersionExists { .. })),
        "{changed:?}"
    );
    store
        .put_scenario(&scenario("switch", "1.1.0", "h2"))
        .await
        .expect("put");
    store
        .put_scenario(&scenario("echo", "0.1.0", "h3"))
        .await
        .expect("put");
    let versions: Vec<String> = store
        .scenario_versions("switch")
        .await
        .expect("versions")
        .into_iter()
        .map(|s| s.version)
        .collect();
    assert_eq!(versions, ["1.0.0", "1.1.0"]);
    assert_eq!(
        store.scenario("switch", "1.1.0").await.expect("get"),
        Some(scenario("switch", "1.1.0", "h2"))
    );
    assert_eq!(store.scenario("switch", "9.9.9").await.expect("get"), None);
    assert_eq!(
        store.scenario_names().await.expect("names"),
        ["echo", "switch"]
    );
    assert_eq!(store.active().await.expect("active"), None);
    let missing = store.set_active("switch", "2.0.0").await;
    assert!(
        matches!(missing, Err(StoreError::NoScenario { .. })),
        "{missing:?}"
    );
    store.set_active("switch", "1.1.0").await.expect("activate");
    assert_eq!(
        store.active().await.expect("active"),
        Some(("switch".to_owned(), "1.1.0".to_owned()))
    );
}

pub(crate) async fn convergence_and_settings_are_upserted(store: &dyn Store) {
    let mut row = Convergence {
        rack: "edge-a".into(),
        asked_version: "1.0.0".into(),
        asked_hash: "h1".into(),
        applied_hash: String::new(),
        status: "pushed".into(),
        error: String::new(),
        updated_at: 1,
    };
    store.put_convergence(&row).await.expect("put");
    row.status = "failed".into();
    row.error = "gear risk: cannot start".into();
    row.updated_at = 2;
    store.put_convergence(&row).await.expect("put");
    assert_eq!(store.convergence().await.expect("rows"), [row]);
    assert_eq!(store.setting("mixer.id").await.expect("get"), None);
    store.set_setting("mixer.id", "m-1").await.expect("set");
    store.set_setting("mixer.id", "m-2").await.expect("set");
    assert_eq!(
        store.setting("mixer.id").await.expect("get"),
        Some("m-2".to_owned())
    );
}

/// Every case, as tests over one backend: `$make` is an async expression giving a fresh
/// `Arc<dyn Store>` (and whatever must live as long, as a guard).
macro_rules! conformance {
    ($make:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn racks_are_kept_by_id_with_unique_names() {
            let (store, _guard) = $make;
            super::racks_are_kept_by_id_with_unique_names(&*store).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn leases_are_exclusive_renewed_and_reused_only_after_expiry() {
            let (store, _guard) = $make;
            super::leases_are_exclusive_renewed_and_reused_only_after_expiry(&*store).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_leases_never_share_an_id() {
            let (store, _guard) = $make;
            super::concurrent_leases_never_share_an_id(store).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn scenario_versions_are_immutable() {
            let (store, _guard) = $make;
            super::scenario_versions_are_immutable(&*store).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn convergence_and_settings_are_upserted() {
            let (store, _guard) = $make;
            super::convergence_and_settings_are_upserted(&*store).await;
        }
    };
}

mod memory {
    use super::*;

    conformance!((Arc::new(MemoryStore::new()) as Arc<dyn Store>, ()));
}
