//! The store conformance suite: the rules every [`Store`] keeps, written once and run on each
//! backend.

use std::collections::BTreeSet;
use std::sync::Arc;

use mixer_lib::store::{
    Convergence, Lease, MemoryStore, Put, RackRecord, RackStatus, ScenarioRecord, Seen, Store,
    StoreError, StoreFuture,
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

fn row(rack: &str, status: &str, updated_at: i64) -> Convergence {
    Convergence {
        rack: rack.into(),
        asked_version: "1.0.0".into(),
        asked_hash: "h1".into(),
        applied_hash: String::new(),
        status: status.into(),
        error: String::new(),
        updated_at,
    }
}

/// The single-row reads and the batch writes a busy mixer uses agree with the whole tables.
pub(crate) async fn single_rows_and_batches_agree_with_the_tables(store: &dyn Store) {
    let mut a = rack("a-id", "edge-a");
    a.status = RackStatus::Active;
    a.machine_id = Some(101);
    a.labels.insert("zone".into(), "eu".into());
    a.last_seen = 5_000;
    let mut b = rack("b-id", "edge-b");
    b.status = RackStatus::Active;
    b.machine_id = Some(102);
    let c = rack("c-id", "edge-c");
    for r in [&a, &b, &c] {
        store.insert_rack(r).await.expect("insert");
    }
    assert_eq!(
        store.rack_by_machine_id(101).await.expect("get"),
        Some(a.clone())
    );
    assert_eq!(store.rack_by_machine_id(103).await.expect("get"), None);
    let names = |racks: Vec<RackRecord>| racks.into_iter().map(|r| r.name).collect::<Vec<_>>();
    // Only active racks, last seen before the time given.
    assert_eq!(
        names(store.stale_racks(2_000).await.expect("stale")),
        ["edge-b"]
    );
    assert_eq!(
        names(store.stale_racks(10_000).await.expect("stale")),
        ["edge-a", "edge-b"]
    );

    let seen_a = Seen {
        id: "a-id".into(),
        last_seen: 7_000,
        applied_hash: "h2".into(),
        health: [("acceptor".to_owned(), "ok".to_owned())].into(),
        stats: serde_json::json!({ "msgs": 3 }),
    };
    // Older than what the store has: last_seen stays.
    let seen_b = Seen {
        id: "b-id".into(),
        last_seen: 500,
        applied_hash: "h1".into(),
        health: Default::default(),
        stats: serde_json::Value::Null,
    };
    let gone = Seen {
        id: "z-id".into(),
        ..seen_b.clone()
    };
    store
        .put_seen(&[seen_a.clone(), seen_b, gone])
        .await
        .expect("put seen");
    let mut want_a = a.clone();
    seen_a.apply_to(&mut want_a);
    assert_eq!(want_a.last_seen, 7_000);
    assert_eq!(store.rack_by_id("a-id").await.expect("get"), Some(want_a));
    let got_b = store.rack_by_id("b-id").await.expect("get").expect("there");
    assert_eq!(
        (got_b.last_seen, got_b.applied_hash.as_str()),
        (1_000, "h1")
    );
    assert_eq!(store.rack_by_id("z-id").await.expect("get"), None);

    // The listing: every rack by name, whole but for its secret hash and stats.
    let listed = store.rack_list().await.expect("list");
    let mut whole = store.racks().await.expect("racks");
    assert_eq!(names(listed.clone()), ["edge-a", "edge-b", "edge-c"]);
    for r in &mut whole {
        assert!(!r.secret_hash.is_empty(), "{} keeps its hash", r.name);
        r.secret_hash = String::new();
        r.stats = serde_json::Value::Null;
    }
    assert_eq!(listed, whole);

    // The lowest free id: an expired lease, a gap, one released.
    for (holder, ttl) in [("r1", 1_000), ("r2", 1_000), ("r3", 10), ("r4", 1_000)] {
        store
            .acquire_lease(holder, 100..=104, 0, ttl)
            .await
            .expect("lease");
    }
    assert_eq!(
        store.lease(100).await.expect("lease"),
        Some(Lease {
            machine_id: 100,
            holder: "r1".into(),
            expires_at: 1_000
        })
    );
    assert_eq!(store.lease(104).await.expect("lease"), None);
    let next = |holder: &'static str| async move {
        store
            .acquire_lease(holder, 100..=104, 20, 1_000)
            .await
            .map(|l| l.machine_id)
    };
    assert_eq!(next("r5").await.expect("lease"), 102);
    assert_eq!(next("r6").await.expect("lease"), 104);
    store.release_leases("r1").await.expect("release");
    assert_eq!(next("r7").await.expect("lease"), 100);
    assert!(matches!(next("r8").await, Err(StoreError::NoFreeMachineId)));

    // In one batch, the last row of a rack wins.
    let (old_a, new_a, row_b) = (
        row("edge-a", "pushed", 1),
        row("edge-a", "applied", 2),
        row("edge-b", "pushed", 1),
    );
    store
        .put_convergences(&[old_a, row_b.clone(), new_a.clone()])
        .await
        .expect("put rows");
    store.put_convergences(&[]).await.expect("no rows");
    assert_eq!(
        store.convergence_of("edge-a").await.expect("row"),
        Some(new_a.clone())
    );
    assert_eq!(store.convergence_of("edge-z").await.expect("row"), None);
    assert_eq!(store.convergence().await.expect("rows"), [new_a, row_b]);
}

/// A store that implements only what the trait requires: the provided methods, which other
/// stores may rely on, keep the same rules.
#[derive(Debug)]
struct RequiredOnly(MemoryStore);

impl Store for RequiredOnly {
    fn insert_rack<'a>(&'a self, rack: &'a RackRecord) -> StoreFuture<'a, ()> {
        self.0.insert_rack(rack)
    }
    fn update_rack<'a>(&'a self, rack: &'a RackRecord) -> StoreFuture<'a, ()> {
        self.0.update_rack(rack)
    }
    fn rack_by_name<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<RackRecord>> {
        self.0.rack_by_name(name)
    }
    fn rack_by_id<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<RackRecord>> {
        self.0.rack_by_id(id)
    }
    fn racks(&self) -> StoreFuture<'_, Vec<RackRecord>> {
        self.0.racks()
    }
    fn delete_rack<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        self.0.delete_rack(id)
    }
    fn acquire_lease<'a>(
        &'a self,
        holder: &'a str,
        range: std::ops::RangeInclusive<u16>,
        now: i64,
        ttl: i64,
    ) -> StoreFuture<'a, Lease> {
        self.0.acquire_lease(holder, range, now, ttl)
    }
    fn renew_lease<'a>(
        &'a self,
        machine_id: u16,
        holder: &'a str,
        now: i64,
        ttl: i64,
    ) -> StoreFuture<'a, bool> {
        self.0.renew_lease(machine_id, holder, now, ttl)
    }
    fn release_leases<'a>(&'a self, holder: &'a str) -> StoreFuture<'a, ()> {
        self.0.release_leases(holder)
    }
    fn leases(&self) -> StoreFuture<'_, Vec<Lease>> {
        self.0.leases()
    }
    fn put_scenario<'a>(&'a self, scenario: &'a ScenarioRecord) -> StoreFuture<'a, Put> {
        self.0.put_scenario(scenario)
    }
    fn scenario<'a>(
        &'a self,
        name: &'a str,
        version: &'a str,
    ) -> StoreFuture<'a, Option<ScenarioRecord>> {
        self.0.scenario(name, version)
    }
    fn scenario_versions<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Vec<ScenarioRecord>> {
        self.0.scenario_versions(name)
    }
    fn scenario_names(&self) -> StoreFuture<'_, Vec<String>> {
        self.0.scenario_names()
    }
    fn set_active<'a>(&'a self, name: &'a str, version: &'a str) -> StoreFuture<'a, ()> {
        self.0.set_active(name, version)
    }
    fn active(&self) -> StoreFuture<'_, Option<(String, String)>> {
        self.0.active()
    }
    fn put_convergence<'a>(&'a self, row: &'a Convergence) -> StoreFuture<'a, ()> {
        self.0.put_convergence(row)
    }
    fn convergence(&self) -> StoreFuture<'_, Vec<Convergence>> {
        self.0.convergence()
    }
    fn setting<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<String>> {
        self.0.setting(key)
    }
    fn set_setting<'a>(&'a self, key: &'a str, value: &'a str) -> StoreFuture<'a, ()> {
        self.0.set_setting(key, value)
    }
}

/// Two handles on one state (two mixers sharing one database) leasing at once from a range
/// with exactly one id per holder: every holder gets an id, and no id is given twice.
#[cfg(any(feature = "sqlite", feature = "postgres-tests"))]
pub(crate) async fn two_mixers_never_share_an_id(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    const HOLDERS: u16 = 50;
    let tasks: Vec<_> = (0..HOLDERS)
        .map(|i| {
            let store = Arc::clone(if i % 2 == 0 { &a } else { &b });
            tokio::spawn(async move {
                store
                    .acquire_lease(
                        &format!("holder-{i}"),
                        1_000..=1_000 + HOLDERS - 1,
                        0,
                        60_000,
                    )
                    .await
                    .expect("a lease")
            })
        })
        .collect();
    let mut ids = BTreeSet::new();
    for t in tasks {
        let lease = t.await.expect("task");
        assert!(
            ids.insert(lease.machine_id),
            "{} leased twice",
            lease.machine_id
        );
    }
    assert_eq!(ids, (1_000..1_000 + HOLDERS).collect());
    // Both handles see the same 50 holders.
    for store in [&a, &b] {
        let holders: BTreeSet<String> = store
            .leases()
            .await
            .expect("leases")
            .into_iter()
            .map(|l| l.holder)
            .collect();
        assert_eq!(holders.len(), usize::from(HOLDERS));
    }
    let late = a
        .acquire_lease("late", 1_000..=1_000 + HOLDERS - 1, 1, 60_000)
        .await;
    assert!(matches!(late, Err(StoreError::NoFreeMachineId)), "{late:?}");
}

/// One of everything, for [`check_filled`] to find after a restart.
#[cfg(feature = "sqlite")]
pub(crate) async fn fill(store: &dyn Store) {
    let mut a = rack("a-id", "edge-a");
    a.status = RackStatus::Active;
    a.machine_id = Some(7);
    a.labels.insert("zone".into(), "eu-west \u{1F30D}".into());
    a.health.insert("acceptor".into(), "ok".into());
    a.stats = serde_json::json!({
        "cpu": 0.25,
        "in": 18_446_744_073_709_551_615_u64,
        "tags": ["a", null],
    });
    a.ip = "10.1.2.3".into();
    a.version = "0.1.0".into();
    a.applied_hash = "ab12".into();
    store.insert_rack(&a).await.expect("insert");
    store
        .acquire_lease("a-id", 7..=9, 0, 60_000)
        .await
        .expect("lease");
    store
        .put_scenario(&scenario("switch", "1.0.0", "h1"))
        .await
        .expect("put");
    store
        .put_scenario(&scenario("switch", "1.1.0", "h2"))
        .await
        .expect("put");
    store.set_active("switch", "1.0.0").await.expect("activate");
    store
        .put_convergence(&Convergence {
            rack: "edge-a".into(),
            asked_version: "1.0.0".into(),
            asked_hash: "h1".into(),
            applied_hash: "h1".into(),
            status: "applied".into(),
            error: String::new(),
            updated_at: 3,
        })
        .await
        .expect("put");
    store.set_setting("mixer.id", "m-1").await.expect("set");
}

/// What [`fill`] stored, all of it.
#[cfg(feature = "sqlite")]
pub(crate) async fn check_filled(store: &dyn Store) {
    let a = store
        .rack_by_name("edge-a")
        .await
        .expect("get")
        .expect("edge-a");
    assert_eq!(a.machine_id, Some(7));
    assert_eq!(a.labels["zone"], "eu-west \u{1F30D}");
    assert_eq!(
        a.stats["in"],
        serde_json::json!(18_446_744_073_709_551_615_u64)
    );
    assert_eq!((a.ip.as_str(), a.version.as_str()), ("10.1.2.3", "0.1.0"));
    assert_eq!(a.status, RackStatus::Active);
    let leases = store.leases().await.expect("leases");
    assert_eq!(
        leases
            .iter()
            .map(|l| (l.machine_id, l.holder.as_str(), l.expires_at))
            .collect::<Vec<_>>(),
        [(7, "a-id", 60_000)]
    );
    // The lease is still its holder's: renewed, not replaced.
    let again = store
        .acquire_lease("a-id", 7..=9, 10, 60_000)
        .await
        .expect("lease");
    assert_eq!((again.machine_id, again.expires_at), (7, 60_010));
    let versions: Vec<String> = store
        .scenario_versions("switch")
        .await
        .expect("versions")
        .into_iter()
        .map(|s| s.version)
        .collect();
    assert_eq!(versions, ["1.0.0", "1.1.0"]);
    assert_eq!(
        store.active().await.expect("active"),
        Some(("switch".to_owned(), "1.0.0".to_owned()))
    );
    assert_eq!(store.convergence().await.expect("rows").len(), 1);
    assert_eq!(
        store.setting("mixer.id").await.expect("get").as_deref(),
        Some("m-1")
    );
    // Immutable across the restart too.
    let changed = store.put_scenario(&scenario("switch", "1.0.0", "h9")).await;
    assert!(
        matches!(changed, Err(StoreError::VersionExists { .. })),
        "{changed:?}"
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
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn single_rows_and_batches_agree_with_the_tables() {
            let (store, _guard) = $make;
            super::single_rows_and_batches_agree_with_the_tables(&*store).await;
        }
    };
}

/// The cause of a backend failure is its `source()`, so a chain shows it once.
#[test]
fn a_backend_error_shows_its_cause_once() {
    let error = StoreError::Backend("disk full".into());
    let text = testkit::chain(&error);
    assert_eq!(text.matches("disk full").count(), 1, "{text}");
}

mod memory {
    use super::*;

    conformance!((Arc::new(MemoryStore::new()) as Arc<dyn Store>, ()));
}

/// The trait's provided methods, over a store that has only the required ones.
mod provided {
    use super::*;

    conformance!((
        Arc::new(RequiredOnly(MemoryStore::new())) as Arc<dyn Store>,
        ()
    ));
}

/// A fresh directory under the system's temporary directory, removed on drop.
#[cfg(feature = "sqlite")]
#[derive(Debug)]
struct TempDir(std::path::PathBuf);

#[cfg(feature = "sqlite")]
impl TempDir {
    fn new() -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mixer-lib-store-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        // A directory left by an earlier run with the same pid.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        TempDir(dir)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

#[cfg(feature = "sqlite")]
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use mixer_lib::store::SqliteStore;

    use super::*;

    /// A store in a file of its own.
    async fn open() -> (Arc<dyn Store>, TempDir) {
        let dir = TempDir::new();
        let store = SqliteStore::open(dir.path().join("mixer.db"))
            .await
            .expect("open");
        (Arc::new(store) as Arc<dyn Store>, dir)
    }

    conformance!(open().await);

    /// A mixer restart: everything is there when the file is opened again (and the
    /// migrations, already run, run no more).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reopened_file_keeps_everything() {
        let dir = TempDir::new();
        // The parent directories do not exist yet: open creates them.
        let path = dir.path().join("data/mixer/mixer.db");
        let store = SqliteStore::open(&path).await.expect("open");
        super::fill(&store).await;
        store.close().await;
        drop(store);
        let again = SqliteStore::open(&path).await.expect("reopen");
        super::check_filled(&again).await;
        again.close().await;
    }

    /// Two mixers on one file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_handles_on_one_file_never_share_a_lease() {
        let dir = TempDir::new();
        let path = dir.path().join("mixer.db");
        let a = SqliteStore::open(&path).await.expect("open");
        let b = SqliteStore::open(&path).await.expect("open");
        super::two_mixers_never_share_an_id(Arc::new(a.clone()), Arc::new(b.clone())).await;
        a.close().await;
        b.close().await;
    }

    /// What the file holds is outside input: a row that does not read back is an error that
    /// names it, not a panic.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_corrupt_row_is_an_error() {
        use sqlx::Connection as _;

        let dir = TempDir::new();
        let path = dir.path().join("mixer.db");
        let store = SqliteStore::open(&path).await.expect("open");
        store
            .insert_rack(&rack("a-id", "edge-a"))
            .await
            .expect("insert");
        let mut raw = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("connect");
        sqlx::query("UPDATE racks SET status = 'lost', labels = '[1]' WHERE id = 'a-id'")
            .execute(&mut raw)
            .await
            .expect("update");
        raw.close().await.expect("close");
        let read = store.rack_by_id("a-id").await;
        match read {
            Err(StoreError::Backend(e)) => {
                assert!(e.to_string().contains("rack `a-id`: column status"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(store.racks().await, Err(StoreError::Backend(_))));
        store.close().await;
    }
}

#[cfg(feature = "postgres-tests")]
pub(crate) mod postgres {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU32, Ordering};

    use mixer_lib::store::PostgresStore;
    use sqlx::Connection as _;
    use testkit::postgres::Postgres;

    use super::*;

    /// One server for the whole test binary; each test gets a database of its own on it. The
    /// server outlives `main` (a static is never dropped): its guardian stops it and removes
    /// its directory when the process ends.
    static SERVER: OnceLock<Result<Postgres, String>> = OnceLock::new();

    fn server() -> &'static Postgres {
        SERVER
            .get_or_init(|| Postgres::start().map_err(|e| e.to_string()))
            .as_ref()
            .unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"))
    }

    /// The URL of a fresh, empty database.
    pub(crate) async fn database() -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let server = tokio::task::spawn_blocking(server)
            .await
            .expect("the server");
        let name = format!("store_{}", COUNTER.fetch_add(1, Ordering::Relaxed));
        let mut admin = sqlx::PgConnection::connect(&server.url())
            .await
            .expect("connect to the server");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create a database");
        admin.close().await.expect("close");
        server.url_for(&name)
    }

    async fn connect() -> (Arc<dyn Store>, ()) {
        let store = PostgresStore::connect(&database().await)
            .await
            .expect("connect");
        (Arc::new(store) as Arc<dyn Store>, ())
    }

    conformance!(connect().await);

    /// Two mixers sharing one database, connecting (and so migrating) at the same time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_mixers_on_one_database_never_share_a_lease() {
        let url = database().await;
        let (a, b) = tokio::join!(PostgresStore::connect(&url), PostgresStore::connect(&url));
        let (a, b) = (a.expect("connect"), b.expect("connect"));
        super::two_mixers_never_share_an_id(Arc::new(a.clone()), Arc::new(b.clone())).await;
        a.close().await;
        b.close().await;
    }

    /// The harness itself: a server of its own answers, and dropping it stops the server and
    /// removes its directory.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_server_is_stopped_and_removed() {
        let own = tokio::task::spawn_blocking(Postgres::start)
            .await
            .expect("task")
            .expect("a second server");
        let (dir, pid) = (own.dir().to_owned(), own.pid());
        let store = PostgresStore::connect(&own.url()).await.expect("connect");
        store.set_setting("k", "v").await.expect("set");
        store.close().await;
        tokio::task::spawn_blocking(move || drop(own))
            .await
            .expect("drop");
        assert!(!dir.exists(), "{} is still there", dir.display());
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "postgres {pid} still runs"
        );
    }

    /// A connection that cannot be made is an error, and the error does not show the
    /// password of the URL.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_login_is_an_error_without_the_password() {
        let server = tokio::task::spawn_blocking(server)
            .await
            .expect("the server");
        let url = format!(
            "postgres://postgres:hunter2@127.0.0.1:{}/no_such_database",
            server.port()
        );
        let error = PostgresStore::connect(&url).await.expect_err("no database");
        let text = testkit::chain(&error);
        assert!(text.contains("no_such_database"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
