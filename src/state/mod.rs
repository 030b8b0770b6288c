//! Durable run state: runs, steps, attempts and events.
//!
//! The executor never writes rows itself: it hands a batch of [`Change`]s to
//! a [`Store`], which commits them in one transaction (one fsync); see
//! `execute/scheduler.rs` for why children may start just before that. SQLite is the embedded default
//! (`sqlite.rs`); a PostgreSQL store shared by many hosts implements the
//! same trait later. Crash and resume rules live in `recovery.rs`.

mod lock;
mod paths;
pub mod private;
mod records;
pub mod recovery;
mod schema;
mod sqlite;

pub mod boot;
mod error;
mod fault;
pub use error::StateError;
pub use lock::{LockError, LockHolder, RunLock};
pub use paths::{Access, StatePaths};
pub use records::{
    AttemptRecord, Change, NewRun, NewStep, RunRecord, RunState, StepRecord, StepState, Unflushed,
};
pub use sqlite::SqliteStore;

/// Where runs are recorded. Every method either fully happens or not at all.
pub trait Store {
    /// Records a new run and its steps (all `pending`).
    fn create_run(&mut self, run: &NewRun, steps: &[NewStep]) -> Result<(), StateError>;
    /// Commits a batch of changes to one run atomically and durably.
    fn apply(&mut self, run_id: &str, changes: &[Change]) -> Result<(), StateError>;
    /// One run by id.
    fn run(&self, id: &str) -> Result<Option<RunRecord>, StateError>;
    /// Runs, newest first, optionally of one playbook.
    fn runs(&self, playbook: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, StateError>;
    /// The steps of a run, in playbook order.
    fn steps(&self, run_id: &str) -> Result<Vec<StepRecord>, StateError>;
    /// Attempts of a run (optionally of one step), in order.
    fn attempts(&self, run_id: &str, step: Option<&str>) -> Result<Vec<AttemptRecord>, StateError>;
    /// Runs still marked `running` that use this lock.
    fn running_with_lock(&self, lock: &str) -> Result<Vec<RunRecord>, StateError>;
}
