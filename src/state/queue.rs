//! Items handed to `ward worker`s: what a shared store (PostgreSQL) adds
//! to [`super::Store`] so that processes on many hosts run one step's
//! items together.
//!
//! The run's ward lists a `workers:` step's items and opens its *offer*
//! (`Change::Offered`); workers whose tags cover the offer's *claim*
//! pending items (highest priority first; `FOR UPDATE SKIP LOCKED`, so no
//! two take one), run them and *finish* them. A claim is the item's state
//! `running` with the worker's id; it holds while the worker's lease
//! (`worker/<id>`, renewed by a heartbeat) does. An item whose worker's
//! lease ran out may be claimed again: its attempt was counted, and the
//! new claim counts another. A finish is recorded only if the item is
//! still claimed by that worker in that attempt: a worker that lost its
//! claim never overwrites what another recorded. Every claim, release and
//! expiry is kept with host and pid (`claims`).

use super::{ItemState, StoreFuture};

/// A `ward worker` process, as claims name it.
#[derive(Clone, Debug)]
pub struct WorkerId {
    /// `host:pid:random`, unique across hosts and restarts.
    pub id: String,
    /// Its host name.
    pub host: String,
    /// Its pid.
    pub pid: u32,
}

impl WorkerId {
    /// The name of this worker's lease.
    pub fn lease_name(&self) -> String {
        format!("worker/{}", self.id)
    }
}

/// Whether workers may claim a step's items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfferState {
    /// They may.
    Open,
    /// No new claims; those running finish.
    Closed,
    /// No new claims, and workers stop the items they run (the run's ward
    /// was interrupted): each goes back to pending.
    Stopping,
}

impl OfferState {
    /// The stored word.
    pub fn parse(s: &str) -> Option<OfferState> {
        match s {
            "open" => Some(OfferState::Open),
            "closed" => Some(OfferState::Closed),
            "stopping" => Some(OfferState::Stopping),
            _ => None,
        }
    }
}

/// A step whose items workers may claim.
#[derive(Clone, Debug)]
pub struct Offer {
    /// The run.
    pub run_id: String,
    /// The step.
    pub step_id: String,
    /// Tags a worker must all carry.
    pub tags: Vec<String>,
    /// How many items one worker runs at once.
    pub max_parallel: usize,
    /// Open, closed or stopping.
    pub state: OfferState,
}

/// An item a worker claimed.
#[derive(Clone, Debug)]
pub struct Claimed {
    /// Its key.
    pub key: String,
    /// Its place in the list, from 0.
    pub position: usize,
    /// The item itself.
    pub item: serde_json::Value,
    /// This attempt's number (counted across claims and resumes).
    pub attempt: u32,
    /// The worker whose lease ran out while it held the item, if any.
    pub expired_from: Option<String>,
}

/// How a worker's item ended.
#[derive(Clone, Debug)]
pub struct ItemEnd {
    /// Its key.
    pub key: String,
    /// The attempt the claim gave.
    pub attempt: u32,
    /// `Succeeded`, `Failed`, or `Pending` (stopped: claimable again).
    pub state: ItemState,
    /// Exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Why, in words.
    pub message: Option<String>,
    /// Unix ms.
    pub at: i64,
}

/// How many items of a step are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ItemCounts {
    /// Pending.
    pub pending: usize,
    /// Running (claimed).
    pub running: usize,
    /// Succeeded.
    pub succeeded: usize,
    /// Failed.
    pub failed: usize,
    /// Paused.
    pub paused: usize,
    /// Skipped.
    pub skipped: usize,
}

impl ItemCounts {
    /// Adds `n` items in `state`.
    pub fn add(&mut self, state: ItemState, n: usize) {
        match state {
            ItemState::Pending => self.pending += n,
            ItemState::Running => self.running += n,
            ItemState::Succeeded => self.succeeded += n,
            ItemState::Failed => self.failed += n,
            ItemState::Paused => self.paused += n,
            ItemState::Skipped => self.skipped += n,
        }
    }

    /// All of them.
    pub fn total(&self) -> usize {
        self.pending + self.running + self.succeeded + self.failed + self.paused + self.skipped
    }
}

/// A shared store's queue of items for workers.
pub trait Queue: Send + Sync {
    /// Offers of running runs (only of `run`, if given) that are not
    /// closed, oldest first.
    fn offers(&self, run: Option<&str>) -> StoreFuture<'_, Vec<Offer>>;
    /// One turn of `worker` on a step, in one transaction: records how
    /// its items `ends` ended (for each, whether it was still the
    /// worker's claim; else nothing was recorded for it), then claims up
    /// to `n` items if the step's offer is open: pending ones, and running
    /// ones whose worker's lease ran out. `running`: the keys this worker
    /// runs now (any other item recorded as its claim is one it lost
    /// track of, and is claimed again).
    fn exchange(
        &self,
        worker: &WorkerId,
        run: &str,
        step: &str,
        ends: Vec<ItemEnd>,
        n: usize,
        running: &[String],
    ) -> StoreFuture<'_, (Vec<bool>, Vec<Claimed>)>;
    /// How many of the step's items are in each state, and its offer's
    /// state (None: never offered).
    fn counts(&self, run: &str, step: &str) -> StoreFuture<'_, (ItemCounts, Option<OfferState>)>;
}
