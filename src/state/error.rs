//! Why the state store failed, in words that name no backend.
//!
//! A backend turns its own errors (rusqlite's, later tokio-postgres's)
//! into these in its own file; nothing above `state/` sees a backend type.
//! `db` is where the database is, as the operator knows it: a file path,
//! or (later) a connection address without its password.

use std::path::PathBuf;

/// Why the state store failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The backend reported an error (SQLite's or PostgreSQL's own words,
    /// with the cause ward found when the backend gives none).
    #[error("state database {db}: {detail}")]
    Backend {
        /// The database.
        db: String,
        /// What the backend said, and why if ward found out.
        detail: String,
    },
    /// The database was written by a newer ward.
    #[error(
        "state database {db} has schema version {found}; this ward knows up to {supported}: upgrade ward"
    )]
    TooNew {
        /// The database.
        db: String,
        /// Its version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
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
    /// No database there; read commands and `resume` never create one.
    #[error(
        "no state database at {db}{}; check `--state` and `$WARD_STATE` (only `ward run` creates a database)",
        missing.as_ref().map(|m| format!(" ({} does not exist)", m.display())).unwrap_or_default()
    )]
    Missing {
        /// The database.
        db: String,
        /// The first folder on the way that does not exist, if any.
        missing: Option<PathBuf>,
    },
    /// Not a usable database (empty, not a database, corrupt). ward never
    /// starts a fresh history over it.
    #[error("state database {db} is damaged: {problem}. Nothing was changed. {fix}")]
    Damaged {
        /// The database.
        db: String,
        /// What is wrong.
        problem: String,
        /// How to keep it aside and start a new history (the backend knows).
        fix: String,
    },
    /// A database that is not ward's (another program's tables, or none):
    /// refused before anything touches it, so that no command adds ward's
    /// tables or changes its settings.
    #[error(
        "refusing {db}: not ward's state database ({problem}); nothing was changed\n  fix: \
         point `--state` (or `$WARD_STATE`) at ward's own database, or at a new file name \
         in a private folder for a new history"
    )]
    Foreign {
        /// The database.
        db: String,
        /// What was found instead.
        problem: String,
    },
    /// A database of an older ward opened by a read command, which never
    /// writes (an upgrade is a write).
    #[error(
        "state database {db} has schema version {found}, older than this ward's {supported}; \
         read commands never change it: run `ward run` or `ward resume` once to upgrade it"
    )]
    NeedsUpgrade {
        /// The database.
        db: String,
        /// Its version.
        found: i64,
        /// This build's version.
        supported: i64,
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
    #[error("state database {db}: {message}")]
    Corrupt {
        /// The database.
        db: String,
        /// What is wrong.
        message: String,
    },
    /// The run lock was lost: this ward could not renew its lease in time
    /// and another run took it (a shared store's lease; a local lock
    /// cannot be lost). Nothing more may be recorded for this run.
    #[error("state database {db}: {detail}")]
    LeaseLost {
        /// The database.
        db: String,
        /// Which lock, for how long it went unrenewed, and what the new
        /// holder does with this run.
        detail: String,
    },
    /// `--state` (or `$WARD_STATE`) names a kind of store this ward does
    /// not have (e.g. a `postgres://` address before PostgreSQL state is
    /// built). Nothing was opened or created.
    #[error("state `{value}`: {why}")]
    Unsupported {
        /// The value as given (a password in it masked).
        value: String,
        /// Why, and what to pass instead.
        why: String,
    },
}
