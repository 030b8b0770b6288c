//! Errors that end a ward command, and the exit code each one maps to.
//!
//! Exit codes are part of ward's interface (docs/cli.md): 0 ok, 1 a run
//! failed, 2 invalid playbook or usage, 3 another run holds the lock, 4 the
//! state could not be recorded or read, 5 no state database at that path.

use std::path::PathBuf;

/// Process exit codes.
pub mod exit {
    /// Everything went well.
    pub const OK: i32 = 0;
    /// A run (or a verification) failed.
    pub const FAILED: i32 = 1;
    /// The playbook is invalid or the command line is wrong.
    pub const USAGE: i32 = 2;
    /// Another run holds the lock.
    pub const LOCKED: i32 = 3;
    /// The state could not be recorded or read: a full disk, a damaged
    /// database, or a state folder that others could change (refused). In a
    /// run, the `when: always` steps still ran; the printed outcome says how far
    /// it got.
    pub const STATE: i32 = 4;
    /// No state database at the given path. Read commands and `resume`
    /// never create one.
    pub const NO_STATE: i32 = 5;
}

/// An error that ends a command.
#[derive(Debug, thiserror::Error)]
pub enum WardError {
    /// The playbook file could not be read.
    #[error("cannot read playbook {}: {source}", path.display())]
    ReadPlaybook {
        /// The path given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The path is a directory.
    #[error("{} is a directory, not a playbook file", path.display())]
    PlaybookIsDirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The playbook file is larger than ward reads.
    #[error("playbook {} is larger than {limit} bytes; refusing to read it", path.display())]
    PlaybookTooLarge {
        /// The path given.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// The playbook file is not UTF-8 text.
    #[error("playbook {} is not UTF-8 text (invalid byte at offset {offset})", path.display())]
    PlaybookNotUtf8 {
        /// The path given.
        path: PathBuf,
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// The playbook has errors; they were already reported as diagnostics.
    #[error("{path}: {}; nothing was run", crate::report::count(*count, "error"))]
    Invalid {
        /// The playbook path as given.
        path: String,
        /// Number of errors.
        count: usize,
    },
    /// A command-line argument is wrong.
    #[error("{0}")]
    Usage(String),
    /// Writing output failed (e.g. a closed pipe).
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
    /// Another run holds the lock, or the lock file could not be used.
    #[error("{0}")]
    Locked(#[from] crate::state::LockError),
    /// The state database failed.
    #[error("{0}")]
    State(#[from] crate::state::StateError),
    /// No such run in the state database.
    #[error("{0}")]
    RunNotFound(String),
    /// The playbook changed since the run started.
    #[error("{0}")]
    PlaybookChanged(String),
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

impl WardError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            WardError::State(crate::state::StateError::Missing { .. }) => exit::NO_STATE,
            WardError::State(_) => exit::STATE,
            // Only a lock held by another run is "locked"; a lock file that
            // cannot be used is a state-folder fault.
            WardError::Locked(crate::state::LockError::Held { .. }) => exit::LOCKED,
            WardError::Locked(_) => exit::STATE,
            WardError::Output(_) | WardError::Runtime(_) => exit::FAILED,
            _ => exit::USAGE,
        }
    }
}
