//! One run per lock name at a time, across processes (and, with a shared
//! store, across hosts): the run lock is a lease taken from the store.
//!
//! A backend decides how: SQLite with an OS file lock beside the database
//! (`sqlite/lock.rs`; the kernel frees it when its process dies), a shared
//! store with a row whose holder renews it. Either way the lease names its
//! holder, so the loser can say who holds it, and a lease whose holder died
//! becomes free again: the next run finds the dead run still recorded
//! `running` and records it `crashed` (recovery rule 1).

use std::future::Future;
use std::pin::Pin;

use super::StateError;

/// Who holds a lease, as recorded with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The run.
    pub run_id: String,
    /// Its process.
    pub pid: u32,
    /// Its host.
    pub host: String,
    /// When it took the lease (local time, text).
    pub since: String,
}

/// Why a lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Someone else holds it.
    #[error("another run holds the lock `{name}`: {}", describe(.holder))]
    Held {
        /// Lock name.
        name: String,
        /// Who, if the store says.
        holder: Option<LeaseHolder>,
    },
    /// The lease could not be taken or recorded, not because another run
    /// holds it (SQLite: a lock file that cannot be used, a symlink, not a
    /// regular file, another user's, writable by others).
    #[error("{0}")]
    State(#[from] StateError),
}

fn describe(holder: &Option<LeaseHolder>) -> String {
    match holder {
        Some(h) => format!(
            "run {} (pid {} on {}) since {}",
            h.run_id, h.pid, h.host, h.since
        ),
        None => "a process that did not record itself".to_owned(),
    }
}

/// What [`Store::acquire_lease`](super::Store::acquire_lease) returns.
pub type LeaseFuture<'a> = Pin<Box<dyn Future<Output = Result<Lease, LeaseError>> + Send + 'a>>;

/// What a backend hands out for a lease it granted. Dropping it releases
/// the lease (as well as the backend can without waiting: a shared store
/// may leave the row to expire); `release` does it and waits.
pub trait LeaseGuard: Send + std::fmt::Debug {
    /// Releases the lease.
    fn release(self: Box<Self>) -> Pin<Box<dyn Future<Output = Result<(), StateError>> + Send>>;
}

/// A held run lock, released when dropped, by [`Lease::release`], or when
/// its process dies.
#[derive(Debug)]
pub struct Lease {
    name: String,
    guard: Box<dyn LeaseGuard>,
}

impl Lease {
    /// A lease a backend granted.
    pub fn new(name: &str, guard: Box<dyn LeaseGuard>) -> Lease {
        Lease {
            name: name.to_owned(),
            guard,
        }
    }

    /// The lock name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Releases the lease and waits until the store has it back.
    pub async fn release(self) -> Result<(), StateError> {
        self.guard.release().await
    }
}
