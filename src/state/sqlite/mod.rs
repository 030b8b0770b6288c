//! The embedded SQLite store (the default): one database file in a private
//! state folder, with the logs, lock files and fingerprint key beside it.
//!
//! A call does its work when it is made, under a mutex, and returns a
//! future that is already complete: a checkpoint is one SQLite commit
//! (about two pages and an fsync, 0.2-0.5 ms here), and handing each call
//! to a thread of its own (two thread wake-ups) made the 100-step chain
//! 1.27-1.32x of bash where it had been 1.07x with the commit done in
//! place (one quiet sitting, side by side). The scheduler spawns a turn's
//! children before it commits, so their start-up overlaps the fsync
//! either way; what waits during a commit is the copying of step output
//! into logs (the pipes hold 64 KiB) and the noticing of signals, for the
//! length of one fsync, as before the store became async. A backend whose
//! calls wait on a network (PostgreSQL) returns real futures instead.

mod db;
mod lock;
mod migrations;
mod paths;
mod retention;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::host::HostIdentity;
use super::lease::{Lease, LeaseFuture, LeaseHolder};
use super::records::{
    AttemptRecord, Change, ItemControlled, ItemRecord, ItemState, NewRun, NewStep, RunRecord,
    StepRecord, UnrunRun,
};
use super::retention::{PruneRequest, PrunedRun};
use super::{Access, EventRecord, RunFilter, StateError, Store, StoreFuture};
use db::Db;
use lock::RunLock;
pub use paths::StatePaths;

/// A run-state database in one SQLite file.
pub struct SqliteStore {
    /// The connection; a poisoned lock means a call panicked midway, and
    /// then no more state is written.
    db: Mutex<Db>,
    paths: StatePaths,
    /// The database as the operator names it.
    shown: Arc<str>,
    folder: PathBuf,
    host: HostIdentity,
}

impl SqliteStore {
    /// Checks the state folder and opens the database at `paths` (creating
    /// it only for [`Access::Create`]; see `StatePaths::open`).
    pub async fn open(
        paths: StatePaths,
        access: Access,
        host: HostIdentity,
    ) -> Result<SqliteStore, StateError> {
        let shown: Arc<str> = db::shown(&paths.db).into();
        let db = paths.open(access)?;
        Ok(SqliteStore {
            db: Mutex::new(db),
            folder: paths.dir(),
            paths,
            shown,
            host,
        })
    }

    /// Runs `job` now and returns its answer as a finished future.
    fn call<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Db) -> Result<T, StateError>,
    ) -> StoreFuture<'static, T> {
        let answer = match self.db.lock() {
            Ok(mut db) => job(&mut db),
            Err(_) => Err(StateError::Backend {
                db: self.shown.to_string(),
                detail: "an earlier call panicked while it held the database".to_owned(),
            }),
        };
        Box::pin(std::future::ready(answer))
    }
}

impl Store for SqliteStore {
    fn describe(&self) -> &str {
        &self.shown
    }

    fn folder(&self) -> &Path {
        &self.folder
    }

    fn host(&self) -> &HostIdentity {
        &self.host
    }

    fn acquire_lease<'a>(&'a self, name: &'a str, holder: &'a LeaseHolder) -> LeaseFuture<'a> {
        let (dir, lock, holder) = (self.paths.locks(), name.to_owned(), holder.clone());
        // Taking the lock writes and fsyncs its file.
        let taken = self.call(move |_| Ok(RunLock::acquire(&dir, &lock, &holder)));
        Box::pin(async move {
            let lock = taken.await??;
            tracing::info!("lock `{name}` taken");
            Ok(Lease::new(name, Box::new(lock)))
        })
    }

    fn create_run(&mut self, run: NewRun, steps: Vec<NewStep>) -> StoreFuture<'_, ()> {
        self.call(move |db| db.create_run(&run, &steps))
    }

    fn record_unrun(&mut self, run: UnrunRun) -> StoreFuture<'_, bool> {
        self.call(move |db| db.record_unrun(&run))
    }

    fn apply(&mut self, run_id: &str, changes: Vec<Change>) -> StoreFuture<'_, ()> {
        if changes.is_empty() {
            return Box::pin(std::future::ready(Ok(())));
        }
        let run_id = run_id.to_owned();
        self.call(move |db| db.apply(&run_id, &changes))
    }

    fn run(&self, id: &str) -> StoreFuture<'_, Option<RunRecord>> {
        let id = id.to_owned();
        self.call(move |db| db.run(&id))
    }

    fn runs(&self, playbook: Option<&str>, limit: usize) -> StoreFuture<'_, Vec<RunRecord>> {
        let playbook = playbook.map(str::to_owned);
        self.call(move |db| db.runs(playbook.as_deref(), limit))
    }

    fn runs_matching(&self, filter: &RunFilter) -> StoreFuture<'_, Vec<RunRecord>> {
        let filter = filter.clone();
        self.call(move |db| db.runs_matching(&filter))
    }

    fn steps(&self, run_id: &str) -> StoreFuture<'_, Vec<StepRecord>> {
        let run_id = run_id.to_owned();
        self.call(move |db| db.steps(&run_id))
    }

    fn attempts(&self, run_id: &str, step: Option<&str>) -> StoreFuture<'_, Vec<AttemptRecord>> {
        let (run_id, step) = (run_id.to_owned(), step.map(str::to_owned));
        self.call(move |db| db.attempts(&run_id, step.as_deref()))
    }

    fn items(
        &self,
        run_id: &str,
        step: Option<&str>,
        state: Option<ItemState>,
    ) -> StoreFuture<'_, Vec<ItemRecord>> {
        let (run_id, step) = (run_id.to_owned(), step.map(str::to_owned));
        self.call(move |db| db.items(&run_id, step.as_deref(), state))
    }

    fn item_controls(
        &self,
        run_id: &str,
        after: i64,
    ) -> StoreFuture<'_, (i64, Vec<ItemControlled>)> {
        let run_id = run_id.to_owned();
        self.call(move |db| db.item_controls(&run_id, after))
    }

    fn events(&self, run_id: &str) -> StoreFuture<'_, Vec<EventRecord>> {
        let run_id = run_id.to_owned();
        self.call(move |db| db.events(&run_id))
    }

    fn running_with_lock(&self, lock: &str) -> StoreFuture<'_, Vec<RunRecord>> {
        let lock = lock.to_owned();
        self.call(move |db| db.running_with_lock(&lock))
    }

    fn last_succeeded(&self, playbook: &str) -> StoreFuture<'_, Option<RunRecord>> {
        let playbook = playbook.to_owned();
        self.call(move |db| db.last_succeeded(&playbook))
    }

    fn playbook_names(&self) -> StoreFuture<'_, Vec<String>> {
        self.call(Db::playbook_names)
    }

    fn prune_runs(&mut self, request: &PruneRequest) -> StoreFuture<'_, Vec<PrunedRun>> {
        let request = request.clone();
        self.call(move |db| db.prune_runs(&request))
    }

    fn run_ids(&self) -> StoreFuture<'_, Vec<String>> {
        self.call(Db::run_ids)
    }

    fn lease_holders(&self) -> StoreFuture<'_, Vec<String>> {
        let dir = self.paths.locks();
        Box::pin(std::future::ready(lock::holders(&dir)))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::lock::tests::holder;
    use super::*;
    use crate::state::{LeaseError, RecordedFacts, RunState, StepState};

    pub(in crate::state::sqlite) fn new_run(id: &str) -> NewRun {
        NewRun {
            id: id.into(),
            playbook_name: "p".into(),
            playbook_path: "/p.yml".into(),
            playbook_hash: "hash".into(),
            playbook_text: "text".into(),
            lock_name: "p".into(),
            vars: Default::default(),
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
            started_at: 1,
            max_age_ms: None,
            preconditions: None,
        }
    }

    #[test]
    fn the_store_thread_records_reads_back_and_leases() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = StatePaths {
            db: dir.path().join("ward.db"),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut store = SqliteStore::open(paths, Access::Create, HostIdentity::current())
                .await
                .expect("open");
            let lease = store
                .acquire_lease("p", &holder("r1"))
                .await
                .expect("lease");
            match store.acquire_lease("p", &holder("r2")).await {
                Err(LeaseError::Held {
                    holder: Some(h), ..
                }) => assert_eq!(h.run_id, "r1"),
                other => panic!("expected Held, got {other:?}"),
            }
            let step = NewStep {
                id: "a".into(),
                position: 0,
                definition: "{}".into(),
                compensation: false,
            };
            store
                .create_run(new_run("r1"), vec![step])
                .await
                .expect("create");
            let done = Change::Step {
                step: "a".into(),
                state: StepState::Skipped,
                reason: Some("why".into()),
                at: 2,
            };
            store.apply("r1", vec![done]).await.expect("apply");
            let steps = store.steps("r1").await.expect("steps");
            assert_eq!(steps[0].state, StepState::Skipped);
            let note = Change::Note {
                kind: crate::state::NoteKind::NotifyFailed,
                message: "mail: refused".into(),
                at: 3,
            };
            store.apply("r1", vec![note]).await.expect("note");
            let events = store.events("r1").await.expect("events");
            let kinds: Vec<_> = events
                .iter()
                .map(|e| e.kind.as_text().into_owned())
                .collect();
            assert_eq!(kinds, ["run-started", "step-skipped", "notify-failed"]);
            assert_eq!(events[1].step_id.as_deref(), Some("a"));
            assert_eq!(events[1].message.as_deref(), Some("why"));
            assert_eq!(events[2].at, 3);
            assert!(store.events("other").await.expect("none").is_empty());
            let run = store.run("r1").await.expect("run").expect("recorded");
            assert_eq!(run.state, RunState::Running);
            assert_eq!(
                store.running_with_lock("p").await.expect("running").len(),
                1
            );
            lease.release().await.expect("release");
            store
                .acquire_lease("p", &holder("r3"))
                .await
                .expect("free again");
        });
    }
}
