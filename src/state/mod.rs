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
mod fault;
pub use lock::{LockError, LockHolder, RunLock};
pub use paths::{Access, StatePaths};
pub use records::{
    AttemptRecord, Change, NewRun, NewStep, RunRecord, RunState, StepRecord, StepState, Unflushed,
};
pub use sqlite::SqliteStore;

use std::path::PathBuf;

/// Why the state store failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// SQLite reported an error.
    #[error("state database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// SQLite failed for a reason ward found out (SQLite's own message
    /// does not say it).
    #[error("state database {path}: {source}: {cause}")]
    SqliteCause {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
        /// Why, e.g. a read-only file system, no free inodes.
        cause: String,
    },
    /// The database was written by a newer ward.
    #[error(
        "state database {path} has schema version {found}; this ward knows up to {known}: upgrade ward"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// A file system operation in the state folder failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What ward tried, e.g. "cannot create".
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another user could change the state folder, database, `locks/` or
    /// `logs/` (or something there is not what ward made): refused, since
    /// what is recorded there decides what ward runs.
    #[error("refusing {path}: {problem}\n  fix: {fix}")]
    Untrusted {
        /// The offending file or folder.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// What the operator can do.
        fix: String,
    },
    /// No database at that path; read commands and `resume` never create one.
    #[error(
        "no state database at {path}{}; check `--state` and `$WARD_STATE` (only `ward run` creates a database)",
        missing.as_ref().map(|m| format!(" ({} does not exist)", m.display())).unwrap_or_default()
    )]
    Missing {
        /// The database path.
        path: PathBuf,
        /// The first folder on the way that does not exist, if any.
        missing: Option<PathBuf>,
    },
    /// The file is not a usable database (empty, not SQLite, corrupt).
    /// ward never starts a fresh history over it.
    #[error(
        "state database {path} is damaged: {problem}. Nothing was changed. To keep it for \
         inspection and start a new history: `mv {path} {path}.broken` (and its -wal/-shm files, \
         if any), then run again"
    )]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// An SQLite database that is not ward's (another program's tables,
    /// or none): refused before anything touches it, so that no command
    /// adds ward's tables, switches it to WAL or changes its mode.
    #[error(
        "refusing {path}: not ward's state database ({problem}); nothing was changed\n  fix: \
         point `--state` (or `$WARD_STATE`) at ward's own database, or at a new file name \
         in a private folder for a new history"
    )]
    Foreign {
        /// The database file.
        path: PathBuf,
        /// What was found instead.
        problem: String,
    },
    /// A database of an older ward opened by a read command, which never
    /// writes (an upgrade is a write).
    #[error(
        "state database {path} has schema version {found}, older than this ward's {known}; \
         read commands never change it: run `ward run` or `ward resume` once to upgrade it"
    )]
    NeedsUpgrade {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// This build's version.
        known: i64,
    },
    /// The key of the secret fingerprints (beside the database) is unusable.
    #[error("secret fingerprint key {path}: {message}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// A stored value could not be read back.
    #[error("state database {path}: {message}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

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
