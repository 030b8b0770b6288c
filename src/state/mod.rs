//! Durable run state: runs, steps, attempts and events.
//!
//! The executor never writes rows itself: it hands a batch of [`Change`]s to
//! a [`Store`], which commits them in one transaction (one fsync); see
//! `execute/scheduler.rs` for why children may start just before that.
//!
//! The store is backend-neutral: [`open`] reads `--state`/`$WARD_STATE`
//! (`location.rs`) and returns a `Box<dyn Store>`; a backend owns its
//! connection, its run lock ([`Lease`]), its migrations (to the versions of
//! `schema.rs`), and turns its errors into [`StateError`]. SQLite is the
//! embedded default (`sqlite/`); `postgres/` keeps the runs of many hosts
//! in one PostgreSQL database (`--state postgres://...`), its run lock a
//! lease row renewed by a heartbeat. Crash and
//! resume rules live in `recovery.rs`, the host identity they need in
//! `host.rs`.

mod error;
mod events;
mod fault;
pub mod host;
mod lease;
mod location;
mod postgres;
mod preflight;
pub mod private;
pub mod queue;
mod records;
pub mod recovery;
pub mod retention;
mod schema;
mod sqlite;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

pub use error::StateError;
pub use events::{EventKind, EventRecord};
pub use host::HostIdentity;
pub use lease::{Lease, LeaseError, LeaseFuture, LeaseGuard, LeaseHolder};
pub use location::{
    Location, has_password as address_has_password, open, parse as parse_location,
    shown as shown_location,
};
pub use preflight::{CheckRecord, PreconditionsRecord};
pub use records::{
    AttemptOutcome, AttemptRecord, Change, ItemControl, ItemControlled, ItemRecord, ItemState,
    NewItem, NewRun, NewStep, NoteKind, Recorded, RecordedFacts, RunRecord, RunState, StepRecord,
    StepState, Unflushed, Unreadable, UnrunRun,
};

/// Which runs [`Store::runs_matching`] lists; every part that is set must
/// hold.
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// Only runs of this playbook `name:`.
    pub playbook: Option<String>,
    /// Only runs in one of these states (none: any state).
    pub states: Vec<RunState>,
    /// Only runs started at or after this (Unix ms).
    pub since_ms: Option<i64>,
    /// Only runs started before this (Unix ms).
    pub until_ms: Option<i64>,
    /// At most this many, the newest.
    pub limit: usize,
}

/// What a command may do to the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `ward run`: create the database (and its folder) if missing.
    Create,
    /// `ward resume`: the database must exist; it is upgraded if older.
    Write,
    /// `status`, `runs`, `log`: the database must exist; nothing is created
    /// or changed (a database of an older ward is refused with a hint to
    /// upgrade it with `ward run` or `ward resume`).
    Read,
}

/// What a [`Store`] call returns: a boxed future, so that the store can be
/// a `dyn Store` chosen at run time by `--state`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StateError>> + Send + 'a>>;

/// Where runs are recorded. Every write either fully happens or not at
/// all, and is durable when its future resolves. A store never blocks the
/// async runtime that awaits it.
pub trait Store: Send + Sync {
    /// The database as the operator names it (a path, or an address with
    /// its password masked; never a password).
    fn describe(&self) -> &str;
    /// The private local folder of this state: `logs/` and the
    /// fingerprint key live there.
    fn folder(&self) -> &Path;
    /// The host this store records runs under (and leases for).
    fn host(&self) -> &HostIdentity;
    /// Takes the run lock `name` without waiting, or says who holds it.
    fn acquire_lease<'a>(&'a self, name: &'a str, holder: &'a LeaseHolder) -> LeaseFuture<'a>;
    /// Records a new run and its steps (all `pending`).
    fn create_run(&mut self, run: NewRun, steps: Vec<NewStep>) -> StoreFuture<'_, ()>;
    /// Records a run that ended without running a step (a missed slot, a
    /// skipped overlap). False when it is a missed slot already recorded
    /// (same playbook name and `slot_at`): then nothing was written.
    fn record_unrun(&mut self, run: UnrunRun) -> StoreFuture<'_, bool>;
    /// Commits a batch of changes to one run atomically and durably.
    fn apply(&mut self, run_id: &str, changes: Vec<Change>) -> StoreFuture<'_, ()>;
    /// One run by id.
    fn run(&self, id: &str) -> StoreFuture<'_, Option<RunRecord>>;
    /// Runs, newest first, optionally of one playbook.
    fn runs(&self, playbook: Option<&str>, limit: usize) -> StoreFuture<'_, Vec<RunRecord>>;
    /// Runs that match `filter`, newest first (`ward runs`).
    fn runs_matching(&self, filter: &RunFilter) -> StoreFuture<'_, Vec<RunRecord>>;
    /// The steps of a run, in playbook order.
    fn steps(&self, run_id: &str) -> StoreFuture<'_, Vec<StepRecord>>;
    /// Attempts of a run (optionally of one step), in order.
    fn attempts(&self, run_id: &str, step: Option<&str>) -> StoreFuture<'_, Vec<AttemptRecord>>;
    /// The items of a run's `for_each` steps (optionally of one step, in
    /// one state), in step order, then list order.
    fn items(
        &self,
        run_id: &str,
        step: Option<&str>,
        state: Option<ItemState>,
    ) -> StoreFuture<'_, Vec<ItemRecord>>;
    /// The run's event log, in the order it was recorded.
    fn events(&self, run_id: &str) -> StoreFuture<'_, Vec<EventRecord>>;
    /// Runs still marked `running` that use this lock.
    fn running_with_lock(&self, lock: &str) -> StoreFuture<'_, Vec<RunRecord>>;
    /// The most recent succeeded run of a playbook (by its `name:`).
    fn last_succeeded(&self, playbook: &str) -> StoreFuture<'_, Option<RunRecord>>;
    /// Every playbook name with a recorded run, sorted.
    fn playbook_names(&self) -> StoreFuture<'_, Vec<String>>;
    /// Records `request.record` (if any), then chooses by
    /// `retention::select`, over the runs as they are at that moment, the
    /// runs the policies let go and (with `request.apply`) deletes them
    /// with every row that refers to them; all in one transaction. Returns
    /// them, oldest first. Logs are the caller's (`retention::prune`).
    fn prune_runs(
        &mut self,
        request: &retention::PruneRequest,
    ) -> StoreFuture<'_, Vec<retention::PrunedRun>>;
    /// The id of every recorded run.
    fn run_ids(&self) -> StoreFuture<'_, Vec<String>>;
    /// The run ids the leases name: the current or last holder of each
    /// lock (read without taking any lock).
    fn lease_holders(&self) -> StoreFuture<'_, Vec<String>>;

    /// What operators changed in the run's items from other processes
    /// (`ward pause|unpause|retry`), recorded after event `after`, in
    /// order; and the run's last event number (the next call's `after`).
    /// The run's ward asks at most a few times a second while items run
    /// (docs/design.md, "Fan-out"). A store without it reports nothing
    /// (the changes then take effect at the next `ward resume`).
    fn item_controls(
        &self,
        run_id: &str,
        after: i64,
    ) -> StoreFuture<'_, (i64, Vec<ItemControlled>)> {
        let _ = (run_id, after);
        Box::pin(std::future::ready(Ok((after, Vec::new()))))
    }

    /// Why this store may record nothing more for the run whose lease it
    /// holds: the lease was lost to another run (a shared store's lease,
    /// which a heartbeat renews). A local lock cannot be lost: None. The
    /// executor asks every turn and at least once a second, and stops the
    /// running steps as for a first SIGTERM: the lock exists so that two
    /// runs never work side by side.
    fn lease_lost(&self) -> Option<StateError> {
        None
    }

    /// The queue that hands items to `ward worker`s: only a shared store
    /// (PostgreSQL) has one.
    fn queue(&self) -> Option<&dyn queue::Queue> {
        None
    }

    /// Logs of one run: `<folder>/logs/<run id>/`.
    fn run_logs(&self, run_id: &str) -> PathBuf {
        self.folder().join("logs").join(run_id)
    }
}
