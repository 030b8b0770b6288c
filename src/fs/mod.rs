//! File-system work the actions share: parallel tree operations
//! ([`tree`]), what changed in a tree since a moment ([`changed`]),
//! snapshot manifests ([`manifest`]), snapshots folders
//! ([`snapshots`]), whether the way to a folder is safe from other users
//! ([`trust`]), what deleting a snapshot frees ([`unique`]), dumps read to
//! their last line ([`dumpcheck`]), verify's markers ([`verified`]), the
//! spot check against a live source ([`spot`]) and durable file writes
//! ([`AtomicFile`], [`sync_dir`]).
//!
//! This is a library below the actions: it imports nothing from
//! `crate::action` and reports its own [`FsError`], which the actions turn
//! into their error at the edge.

mod atomic;
pub mod changed;
pub(crate) mod clock;
pub mod compare;
pub mod dumpcheck;
pub mod manifest;
pub mod restore_marker;
pub mod snapshots;
pub mod spot;
pub mod tree;
pub mod trust;
pub mod unique;
pub mod verified;

pub use atomic::{AtomicFile, sync_dir, write_atomic};

/// Why a file-system operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FsError {
    /// The caller's cancellation flag was set: the work stopped early.
    Stopped,
    /// The operation failed; the text names what and why, for the operator.
    Failed(String),
}

impl FsError {
    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> FsError {
        FsError::Failed(message.into())
    }
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsError::Stopped => f.write_str("stopped: the work was cancelled"),
            FsError::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for FsError {}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> FsError {
        FsError::Failed(e.to_string())
    }
}

/// Worker threads for tree operations: one per CPU.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
