//! The PostgreSQL store (`--state postgres://...`): the runs of many hosts
//! in one database, with the same logical schema and versions as SQLite
//! (`migrations.rs`), through tokio-postgres (pure Rust, no libpq).
//!
//! Calls are real futures on the caller's runtime: one connection, under
//! an async mutex (writes are one transaction each, as SQLite's). A
//! connection lost before a commit is sent is made again, with pauses
//! ([`conn::RECONNECT_TRIES`]), and the work done again from its start; a
//! connection lost during `COMMIT` fails the call, since the commit may
//! have happened. The run lock is a lease row kept by a thread of its own
//! (`lease.rs`). Logs, lock tickets and the fingerprint key stay in a
//! private local folder (`folder`, chosen by `location.rs`).

mod conn;
mod db;
mod lease;
mod migrations;
mod queue;
mod tls;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio_postgres::Client;

use super::host::HostIdentity;
use super::lease::{Lease, LeaseFuture, LeaseHolder};
use super::queue::{Claimed, ItemCounts, ItemEnd, Offer, OfferState, Queue, WorkerId};
use super::records::{
    AttemptRecord, Change, ItemControlled, ItemRecord, ItemState, NewRun, NewStep, RunRecord,
    StepRecord, UnrunRun,
};
use super::retention::{PruneRequest, PrunedRun};
use super::{Access, EventRecord, RunFilter, StateError, Store, StoreFuture};
use conn::Fail;

/// A run-state database in PostgreSQL.
pub struct PgStore {
    target: conn::Target,
    /// The connection; `None` after it was lost, until the next call makes
    /// a new one.
    client: Arc<Mutex<Option<Client>>>,
    /// The address as it may be shown (password masked).
    shown: Arc<str>,
    folder: PathBuf,
    host: HostIdentity,
    held: lease::Held,
}

/// Does `$work` (an expression using `client: &mut Client`) on the store's
/// connection, again on a new one when the old was lost before a commit
/// was sent.
macro_rules! with_client {
    ($store:expr, |$client:ident| $work:expr) => {{
        let (target, shown, slot) = (
            $store.target.clone(),
            $store.shown.clone(),
            $store.client.clone(),
        );
        async move {
            let mut slot = slot.lock().await;
            let mut tries = 0;
            loop {
                if slot.as_ref().is_none_or(Client::is_closed) {
                    match conn::connect(&target, &shown, lease::lease_length() / 2).await {
                        Ok(c) => *slot = Some(c),
                        Err(e) if tries >= conn::RECONNECT_TRIES => return Err(e),
                        Err(e) => {
                            tries += 1;
                            tracing::warn!(
                                "state: {e}; trying again ({tries} of {})",
                                conn::RECONNECT_TRIES
                            );
                            tokio::time::sleep(conn::pause(tries)).await;
                            continue;
                        }
                    }
                }
                let Some($client) = slot.as_mut() else {
                    continue;
                };
                let shown: &str = &shown;
                let result: Result<_, Fail> = $work(shown).await;
                match result {
                    Ok(v) => return Ok(v),
                    Err(Fail::State(e)) => return Err(e),
                    Err(Fail::Lost(e)) if tries >= conn::RECONNECT_TRIES => {
                        return Err(StateError::Backend {
                            db: shown.to_owned(),
                            detail: format!(
                                "the connection was lost and could not be made again: {}",
                                crate::pg::native_error(&e)
                            ),
                        });
                    }
                    Err(Fail::Lost(e)) => {
                        tries += 1;
                        tracing::warn!(
                            "state: connection to {shown} lost ({}); reconnecting ({tries} of {})",
                            crate::pg::native_error(&e),
                            conn::RECONNECT_TRIES
                        );
                        *slot = None;
                        tokio::time::sleep(conn::pause(tries)).await;
                    }
                }
            }
        }
    }};
}

impl PgStore {
    /// Connects to `address` and checks or migrates its schema (creating
    /// it only for [`Access::Create`]; read commands never change it).
    /// `folder` is the local state folder, already checked.
    pub async fn open(
        address: &str,
        shown: String,
        folder: PathBuf,
        access: Access,
        host: HostIdentity,
    ) -> Result<PgStore, StateError> {
        let target = conn::config(address, &shown)?;
        let store = PgStore {
            target,
            client: Arc::new(Mutex::new(None)),
            shown: shown.into(),
            folder,
            host,
            held: lease::Held::default(),
        };
        // The first connection is not tried again: a wrong address,
        // password or certificate is said at once. Only a connection lost
        // later (a server restarting under a run) is made again.
        let first = conn::connect(&store.target, &store.shown, lease::lease_length() / 2).await?;
        *store.client.lock().await = Some(first);
        let (create, write) = (access == Access::Create, access != Access::Read);
        with_client!(store, |client| async |shown: &str| {
            if write {
                migrations::migrate(client, shown, create, true).await
            } else {
                migrations::migrate(client, shown, false, false).await
            }
        })
        .await?;
        Ok(store)
    }
}

impl Store for PgStore {
    fn describe(&self) -> &str {
        &self.shown
    }

    fn queue(&self) -> Option<&dyn Queue> {
        Some(self)
    }

    fn lease_lost(&self) -> Option<StateError> {
        self.held.tokens(&self.shown).err()
    }

    fn folder(&self) -> &Path {
        &self.folder
    }

    fn host(&self) -> &HostIdentity {
        &self.host
    }

    fn acquire_lease<'a>(&'a self, name: &'a str, holder: &'a LeaseHolder) -> LeaseFuture<'a> {
        let request = lease::Request {
            target: self.target.clone(),
            shown: self.shown.to_string(),
            name: name.to_owned(),
            holder: holder.clone(),
            boot_id: self.host.boot_id.clone(),
            hostname: self.host.hostname.clone(),
        };
        let held = self.held.clone();
        Box::pin(async move {
            let guard = lease::acquire(request, held).await?;
            Ok(Lease::new(name, Box::new(guard)))
        })
    }

    fn create_run(&mut self, run: NewRun, steps: Vec<NewStep>) -> StoreFuture<'_, ()> {
        let held = self.held.clone();
        Box::pin(with_client!(self, |client| async |shown: &str| {
            let tokens = held.tokens(shown)?;
            db::create_run(client, shown, &run, &steps, &tokens).await
        }))
    }

    fn record_unrun(&mut self, run: UnrunRun) -> StoreFuture<'_, bool> {
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::record_unrun(client, shown, &run).await
        }))
    }

    fn apply(&mut self, run_id: &str, changes: Vec<Change>) -> StoreFuture<'_, ()> {
        if changes.is_empty() {
            return Box::pin(std::future::ready(Ok(())));
        }
        let (run_id, held) = (run_id.to_owned(), self.held.clone());
        Box::pin(with_client!(self, |client| async |shown: &str| {
            let tokens = held.tokens(shown)?;
            db::apply(client, shown, &run_id, &changes, &tokens).await
        }))
    }

    fn run(&self, id: &str) -> StoreFuture<'_, Option<RunRecord>> {
        let id = id.to_owned();
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::run(client, shown, &id).await
        }))
    }

    fn runs(&self, playbook: Option<&str>, limit: usize) -> StoreFuture<'_, Vec<RunRecord>> {
        self.runs_matching(&RunFilter {
            playbook: playbook.map(str::to_owned),
            limit,
            ..RunFilter::default()
        })
    }

    fn runs_matching(&self, filter: &RunFilter) -> StoreFuture<'_, Vec<RunRecord>> {
        let filter = filter.clone();
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::runs_matching(client, shown, &filter).await
        }))
    }

    fn steps(&self, run_id: &str) -> StoreFuture<'_, Vec<StepRecord>> {
        let run_id = run_id.to_owned();
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::steps(client, shown, &run_id).await
        }))
    }

    fn attempts(&self, run_id: &str, step: Option<&str>) -> StoreFuture<'_, Vec<AttemptRecord>> {
        let (run_id, step) = (run_id.to_owned(), step.map(str::to_owned));
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::attempts(client, shown, &run_id, step.as_deref()).await
        }))
    }

    fn items(
        &self,
        run_id: &str,
        step: Option<&str>,
        state: Option<ItemState>,
    ) -> StoreFuture<'_, Vec<ItemRecord>> {
        let (run_id, step) = (run_id.to_owned(), step.map(str::to_owned));
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::items(client, shown, &run_id, step.as_deref(), state).await
        }))
    }

    fn events(&self, run_id: &str) -> StoreFuture<'_, Vec<EventRecord>> {
        let run_id = run_id.to_owned();
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::events(client, shown, &run_id).await
        }))
    }

    fn item_controls(
        &self,
        run_id: &str,
        after: i64,
    ) -> StoreFuture<'_, (i64, Vec<ItemControlled>)> {
        let run_id = run_id.to_owned();
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::item_controls(client, shown, &run_id, after).await
        }))
    }

    fn running_with_lock(&self, lock: &str) -> StoreFuture<'_, Vec<RunRecord>> {
        let lock = lock.to_owned();
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::running_with_lock(client, shown, &lock).await
        }))
    }

    fn last_succeeded(&self, playbook: &str) -> StoreFuture<'_, Option<RunRecord>> {
        let playbook = playbook.to_owned();
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::last_succeeded(client, shown, &playbook).await
        }))
    }

    fn playbook_names(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::strings(
                client,
                shown,
                "SELECT DISTINCT playbook_name COLLATE \"C\" FROM ward.runs ORDER BY 1",
            )
            .await
        }))
    }

    fn prune_runs(&mut self, request: &PruneRequest) -> StoreFuture<'_, Vec<PrunedRun>> {
        let request = request.clone();
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::prune_runs(client, shown, &request).await
        }))
    }

    fn run_ids(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::strings(client, shown, "SELECT id FROM ward.runs").await
        }))
    }

    fn lease_holders(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(with_client!(self, |client| async |shown: &str| {
            db::strings(
                client,
                shown,
                "SELECT run_id FROM ward.leases ORDER BY name",
            )
            .await
        }))
    }
}

impl Queue for PgStore {
    fn offers(&self, run: Option<&str>) -> StoreFuture<'_, Vec<Offer>> {
        let run = run.map(str::to_owned);
        Box::pin(with_client!(self, |client| async |shown: &str| {
            queue::offers(client, shown, run.as_deref()).await
        }))
    }

    fn exchange(
        &self,
        worker: &WorkerId,
        run: &str,
        step: &str,
        ends: Vec<ItemEnd>,
        n: usize,
        running: &[String],
    ) -> StoreFuture<'_, (Vec<bool>, Vec<Claimed>)> {
        let (worker, run, step) = (worker.clone(), run.to_owned(), step.to_owned());
        let running = running.to_vec();
        let at = crate::clock::wall_ms();
        // Each item's log is recorded as the claim is: on the worker's host.
        let logs = self.run_logs(&run).display().to_string();
        Box::pin(with_client!(self, |client| async |shown: &str| {
            let claim = queue::Claim {
                worker: &worker,
                run: &run,
                step: &step,
                n,
                running: &running,
                logs: &logs,
                at,
            };
            queue::exchange(client, shown, &claim, &ends).await
        }))
    }

    fn counts(&self, run: &str, step: &str) -> StoreFuture<'_, (ItemCounts, Option<OfferState>)> {
        let (run, step) = (run.to_owned(), step.to_owned());
        Box::pin(with_client!(self, |client| async |shown: &str| {
            queue::counts(client, shown, &run, &step).await
        }))
    }
}

// The throwaway cluster of the integration tests, for the unit tests below.
#[cfg(test)]
#[allow(dead_code)]
#[path = "../../../tests/support/pg_cluster.rs"]
mod pg_cluster;

#[cfg(test)]
mod tests {
    //! The PostgreSQL store against a real server, side by side with the
    //! SQLite store: the same calls must read back the same records.

    use super::pg_cluster;
    use super::*;
    use crate::state::retention::{PolicyRecord, Retention};
    use crate::state::sqlite::{SqliteStore, StatePaths};
    use crate::state::{
        AttemptOutcome, CheckRecord, LeaseError, NewItem, NoteKind, PreconditionsRecord,
        RecordedFacts, RunState, StepState, Unflushed,
    };

    fn new_run(id: &str, started_at: i64) -> NewRun {
        NewRun {
            id: id.into(),
            playbook_name: "p".into(),
            playbook_path: "/p.yml".into(),
            playbook_hash: "hash".into(),
            playbook_text: "text ' \" \\ ü".into(),
            lock_name: "p".into(),
            vars: [("v".to_owned(), serde_json::json!({"a": [1, "x"]}))].into(),
            overrides: Default::default(),
            facts: RecordedFacts {
                date: "2026-12-02".into(),
                time: "04:00:00".into(),
                timestamp: "2026-12-02T04:00:00".into(),
                weekday: "Wed".into(),
                host: "h".into(),
                run_id: id.into(),
                playbook_dir: "/".into(),
            },
            host: "h".into(),
            pid: 42,
            ward_version: "0".into(),
            started_at,
            max_age_ms: Some(86_400_000),
            preconditions: Some(PreconditionsRecord {
                skipped_by_operator: false,
                checks: vec![CheckRecord {
                    check: "tcp db:5432".into(),
                    passed: true,
                    detail: "open".into(),
                }],
                log_path: None,
            }),
        }
    }

    fn steps() -> Vec<NewStep> {
        ["a", "b"]
            .iter()
            .enumerate()
            .map(|(i, id)| NewStep {
                id: (*id).into(),
                position: i,
                definition: format!("{{\"run\":\"{id}\"}}"),
                compensation: i == 1,
            })
            .collect()
    }

    /// Every kind of change, in one run's life.
    fn changes() -> Vec<Vec<Change>> {
        let items = |keys: &[&str]| Change::ItemsListed {
            step: "b".into(),
            items: keys
                .iter()
                .enumerate()
                .map(|(i, k)| NewItem {
                    key: (*k).into(),
                    position: i,
                    value: serde_json::json!({ "name": k }),
                    priority: i as f64,
                })
                .collect(),
        };
        vec![
            vec![
                Change::AttemptStarted {
                    step: "a".into(),
                    attempt: 1,
                    log_path: "/logs/a.1.log".into(),
                    at: 10,
                },
                Change::Note {
                    kind: NoteKind::SnapshotChosen,
                    message: "snap 3".into(),
                    at: 10,
                },
            ],
            vec![
                Change::AttemptFinished {
                    step: "a".into(),
                    attempt: 1,
                    state: StepState::Succeeded,
                    outcome: AttemptOutcome::Succeeded,
                    exit_code: Some(0),
                    signal: None,
                    message: None,
                    details: Some(serde_json::json!({"bytes": 12})),
                    at: 20,
                },
                Change::Durability {
                    step: "a".into(),
                    unflushed: Some(Unflushed {
                        boot_id: "boot".into(),
                        paths: vec!["/x".into()],
                    }),
                },
                items(&["alice", "bob"]),
            ],
            vec![
                Change::Durability {
                    step: "a".into(),
                    unflushed: None,
                },
                items(&["alice", "bob", "carol"]),
                Change::ItemStarted {
                    step: "b".into(),
                    key: "bob".into(),
                    attempt: 1,
                    log_path: "/logs/b.bob.log".into(),
                    at: 30,
                },
            ],
            vec![
                Change::ItemFinished {
                    step: "b".into(),
                    key: "bob".into(),
                    state: ItemState::Failed,
                    exit_code: Some(3),
                    message: Some("exit 3".into()),
                    at: 40,
                },
                Change::Step {
                    step: "b".into(),
                    state: StepState::Failed,
                    reason: Some("an item failed".into()),
                    at: 40,
                },
                Change::Run {
                    state: RunState::Failed,
                    message: Some("b failed".into()),
                    at: 41,
                },
            ],
            vec![Change::Resumed {
                pid: 43,
                host: "h2".into(),
                at: 50,
            }],
            vec![Change::Run {
                state: RunState::Succeeded,
                message: None,
                at: 60,
            }],
        ]
    }

    /// What every read of `store` says, as JSON.
    async fn readings(store: &mut dyn Store) -> Vec<(String, serde_json::Value)> {
        let json = |v: &dyn Erased| v.json();
        trait Erased {
            fn json(&self) -> serde_json::Value;
        }
        impl<T: serde::Serialize> Erased for T {
            fn json(&self) -> serde_json::Value {
                serde_json::to_value(self).expect("json")
            }
        }
        let filter = RunFilter {
            playbook: Some("p".into()),
            states: vec![RunState::Succeeded, RunState::Missed],
            since_ms: Some(1),
            until_ms: Some(10_000_000),
            limit: 10,
        };
        let r = "20260101-000000-0001";
        let run = store.run(r).await.expect("run").expect("recorded");
        assert!(run.vars.is_ok() && run.facts.is_ok() && run.overrides.is_ok());
        assert_eq!(run.playbook_text, "text ' \" \\ ü");
        let definitions: Vec<String> = store
            .steps(r)
            .await
            .expect("steps")
            .into_iter()
            .map(|s| s.definition)
            .collect();
        vec![
            ("run".into(), json(&run)),
            (
                "runs".into(),
                json(&store.runs(None, 10).await.expect("runs")),
            ),
            (
                "matching".into(),
                json(&store.runs_matching(&filter).await.expect("m")),
            ),
            ("steps".into(), json(&store.steps(r).await.expect("steps"))),
            ("definitions".into(), json(&definitions)),
            (
                "attempts".into(),
                json(&store.attempts(r, None).await.expect("a")),
            ),
            (
                "attempts a".into(),
                json(&store.attempts(r, Some("a")).await.expect("a")),
            ),
            (
                "items".into(),
                json(&store.items(r, None, None).await.expect("i")),
            ),
            (
                "items failed".into(),
                json(
                    &store
                        .items(r, Some("b"), Some(ItemState::Failed))
                        .await
                        .expect("i"),
                ),
            ),
            ("events".into(), json(&store.events(r).await.expect("e"))),
            (
                "running".into(),
                json(&store.running_with_lock("p").await.expect("r")),
            ),
            (
                "last".into(),
                json(&store.last_succeeded("p").await.expect("l")),
            ),
            (
                "names".into(),
                json(&store.playbook_names().await.expect("n")),
            ),
            (
                "ids".into(),
                json(&{
                    let mut ids = store.run_ids().await.expect("ids");
                    ids.sort();
                    ids
                }),
            ),
        ]
    }

    async fn exercise(store: &mut dyn Store) -> Vec<(String, serde_json::Value)> {
        let r = "20260101-000000-0001";
        store
            .create_run(new_run(r, 5), steps())
            .await
            .expect("create");
        for batch in changes() {
            store.apply(r, batch).await.expect("apply");
        }
        let missed = |id: &str| UnrunRun {
            id: id.into(),
            state: RunState::Missed,
            playbook_name: "p".into(),
            playbook_path: "/p.yml".into(),
            playbook_hash: "hash".into(),
            playbook_text: "text".into(),
            lock_name: "p".into(),
            host: "h".into(),
            pid: 1,
            ward_version: "0".into(),
            at: 3,
            message: "the machine was off".into(),
            slot_at: Some(3),
            max_age_ms: None,
        };
        assert!(
            store
                .record_unrun(missed("20260101-000000-0002"))
                .await
                .expect("missed")
        );
        assert!(
            !store
                .record_unrun(missed("20260101-000000-0003"))
                .await
                .expect("again")
        );
        let mut out = readings(store).await;
        let request = PruneRequest {
            playbook: None,
            now_ms: 400 * 86_400_000,
            protect: Default::default(),
            apply: true,
            record: Some(PolicyRecord {
                playbook: "p".into(),
                policy: Some(Retention {
                    keep_days: 0,
                    keep_runs: 0,
                }),
                run_id: r.into(),
                at: 70,
            }),
        };
        let pruned = store.prune_runs(&request).await.expect("prune");
        out.push((
            "pruned".into(),
            serde_json::to_value(&pruned).expect("json"),
        ));
        out.push((
            "ids after".into(),
            serde_json::to_value(store.run_ids().await.expect("ids")).expect("json"),
        ));
        out
    }

    #[test]
    fn the_same_calls_read_back_the_same_as_sqlite() {
        let cluster = pg_cluster::Cluster::start();
        cluster.psql("postgres", "CREATE DATABASE w");
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let address = format!("postgres://postgres@127.0.0.1:{}/w", cluster.port);
            let mut pg = PgStore::open(
                &address,
                address.clone(),
                dir.path().join("pg"),
                Access::Create,
                HostIdentity::current(),
            )
            .await
            .expect("open postgres");
            let mut sqlite = SqliteStore::open(
                StatePaths {
                    db: dir.path().join("sqlite").join("ward.db"),
                },
                Access::Create,
                HostIdentity::current(),
            )
            .await
            .expect("open sqlite");
            let from_pg = exercise(&mut pg).await;
            let from_sqlite = exercise(&mut sqlite).await;
            for ((what, p), (_, s)) in from_pg.iter().zip(&from_sqlite) {
                assert_eq!(p, s, "{what}");
            }
            assert_eq!(from_pg.len(), from_sqlite.len());

            // The lease: held, refused with its holder, released, taken again.
            let holder = |run: &str| LeaseHolder {
                run_id: run.into(),
                pid: std::process::id(),
                host: "h".into(),
                since: "now".into(),
            };
            let lease = pg.acquire_lease("p", &holder("r1")).await.expect("lease");
            match pg.acquire_lease("p", &holder("r2")).await {
                Err(LeaseError::Held {
                    holder: Some(h), ..
                }) => assert_eq!(h.run_id, "r1"),
                other => panic!("expected Held, got {other:?}"),
            }
            lease.release().await.expect("release");
            drop(
                pg.acquire_lease("p", &holder("r3"))
                    .await
                    .expect("free again"),
            );
            assert_eq!(pg.lease_holders().await.expect("holders"), ["r3"]);
        });
    }
}
