//! How far a running action has got: files and bytes done, and the totals
//! when they are known. One [`Progress`] per attempt; the action (and the
//! library code it calls: tree walks, manifests, compressors) adds to it,
//! and a reporter reads it on a timer.
//!
//! A leaf below every layer (it imports nothing from the crate), so that
//! `fs`, `compress` and the actions can all count into it, and `execute`
//! and `report` can read it.
//!
//! Everything is a relaxed atomic: counting costs one uncontended add, no
//! lock and no thread, so the executor is as fast with progress as without
//! it. Callers add per folder or per buffer, never per byte. A reader may
//! see files and bytes from slightly different moments; for a progress line
//! that is fine. The phase (a word such as "hashing") is behind a mutex
//! because it changes a handful of times per step.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// "Not known" in a total's atomic.
const UNKNOWN: u64 = u64::MAX;

/// Counters of one running attempt.
#[derive(Debug)]
pub struct Progress {
    files: AtomicU64,
    bytes: AtomicU64,
    files_total: AtomicU64,
    bytes_total: AtomicU64,
    /// Bumped by [`restart`](Self::restart): a reader measuring a rate
    /// starts again when it changes.
    generation: AtomicU64,
    phase: Mutex<Option<&'static str>>,
}

impl Default for Progress {
    fn default() -> Progress {
        Progress {
            files: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            files_total: AtomicU64::new(UNKNOWN),
            bytes_total: AtomicU64::new(UNKNOWN),
            generation: AtomicU64::new(0),
            phase: Mutex::new(None),
        }
    }
}

/// What a reader sees at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// Files (or entries) done.
    pub files: u64,
    /// Bytes done.
    pub bytes: u64,
    /// Files in all, when known.
    pub files_total: Option<u64>,
    /// Bytes in all, when known.
    pub bytes_total: Option<u64>,
    /// What the action is doing now, if it said.
    pub phase: Option<&'static str>,
    /// Changes when the action starts a new phase (its counters restart).
    pub generation: u64,
}

fn known(v: u64) -> Option<u64> {
    (v != UNKNOWN).then_some(v)
}

impl Progress {
    /// Adds `n` files done.
    pub fn add_files(&self, n: u64) {
        self.files.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds `n` bytes done.
    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the files done (for sources that report a running total).
    pub fn set_files(&self, n: u64) {
        self.files.store(n, Ordering::Relaxed);
    }

    /// Sets the bytes done (for sources that report a running total).
    pub fn set_bytes(&self, n: u64) {
        self.bytes.store(n, Ordering::Relaxed);
    }

    /// Sets the totals; None when not known (no ETA is shown then).
    pub fn set_totals(&self, files: Option<u64>, bytes: Option<u64>) {
        self.files_total
            .store(files.unwrap_or(UNKNOWN), Ordering::Relaxed);
        self.bytes_total
            .store(bytes.unwrap_or(UNKNOWN), Ordering::Relaxed);
    }

    /// Starts a new phase: counters back to zero, the totals given.
    pub fn restart(&self, phase: &'static str, files: Option<u64>, bytes: Option<u64>) {
        if let Ok(mut p) = self.phase.lock() {
            *p = Some(phase);
        }
        self.files.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        self.set_totals(files, bytes);
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn sample(&self) -> Sample {
        Sample {
            files: self.files.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            files_total: known(self.files_total.load(Ordering::Relaxed)),
            bytes_total: known(self.bytes_total.load(Ordering::Relaxed)),
            // A poisoned lock only loses the word, never the counts.
            phase: self.phase.lock().map(|p| *p).unwrap_or(None),
            generation: self.generation.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_unknown_until_set_and_restart_clears_counts() {
        let p = Progress::default();
        p.add_files(3);
        p.add_bytes(10);
        let s = p.sample();
        assert_eq!(
            (s.files, s.bytes, s.files_total, s.bytes_total),
            (3, 10, None, None)
        );
        p.restart("hashing", None, Some(100));
        let s = p.sample();
        assert_eq!((s.files, s.bytes, s.bytes_total), (0, 0, Some(100)));
        assert_eq!(s.phase, Some("hashing"));
        assert_eq!(s.generation, 1);
    }
}
