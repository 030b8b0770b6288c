//! `workers:` steps: the items are run by `ward worker` processes, on this
//! host or others, which claim them from the shared store
//! (`state/queue.rs`); the run's ward only lists them, opens the step's
//! offer, and watches.
//!
//! It asks the store for the step's counts every [`WORKERS_POLL`] (one
//! indexed `GROUP BY`, however many workers there are). The step ends when
//! no item is pending or claimed; a `max_failed:` past its bound, a
//! failure elsewhere or a stop closes the offer first (a stop also tells
//! the workers to stop their items, which go back to pending). Then the
//! items are read once, as recorded, and the step ends as a local fan-out
//! does (`finish_fan`).

use std::time::Instant;

use super::super::super::events::Event;
use super::{Fan, FanItem, Scheduler};
use crate::state::queue::OfferState;
use crate::state::{Change, ItemState, Store};

/// How often the run's ward counts a `workers:` step's items: each count
/// reads the step's rows (an indexed `GROUP BY`), which the workers' claims
/// on the same server pay for; a step's end is seen at most this late.
const WORKERS_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// What the run's ward knows of a `workers:` step's items.
pub(in super::super) struct Remote {
    /// When the store was last asked.
    polled: Option<Instant>,
    /// Items counted as ended so far (for the progress display).
    reported: (usize, usize),
    /// This ward closed the offer.
    closed: bool,
    /// The items were read back: the step ends at the next turn.
    pub done: bool,
}

impl Scheduler<'_, '_> {
    /// Opens step `i`'s offer to workers if it has `workers:` (listed or
    /// resumed: either way its items wait for workers now).
    pub(super) fn offer(&mut self, i: usize, items: &[FanItem]) -> Option<Remote> {
        let fan = self.steps[i].fan_out.as_ref()?;
        let tags = fan.workers.clone()?;
        self.changes.push(Change::Offered {
            step: self.steps[i].id.clone(),
            tags,
            max_parallel: fan.max_parallel,
            at: crate::clock::wall_ms(),
        });
        // Those that succeeded before a resume are kept (`ItemsKept`), not
        // this run's pace.
        let kept = items
            .iter()
            .filter(|it| it.state == ItemState::Succeeded)
            .count();
        tracing::info!(
            "step `{}`: {} items wait for workers (`ward worker{} --run {}`)",
            self.steps[i].id,
            items.len() - kept,
            self.options.state_flag,
            self.run_id
        );
        Some(Remote {
            polled: None,
            reported: (kept, 0),
            closed: false,
            done: false,
        })
    }

    /// True while a `workers:` step waits for its workers: the loop then
    /// goes on with no task of its own.
    pub(in super::super) fn waits_for_workers(&self) -> bool {
        self.fans
            .iter()
            .flatten()
            .any(|f| f.remote.as_ref().is_some_and(|r| !r.done))
    }

    /// Asks the store how the `workers:` steps' items stand (at most every
    /// [`WORKERS_POLL`], at once when the run stops or failed), closes
    /// offers that must close, and reads back the items of a step that is
    /// done.
    pub(in super::super) async fn poll_workers(&mut self, store: &mut dyn Store) {
        for i in 0..self.steps.len() {
            let Some(mut fan) = self.fans[i].take() else {
                continue;
            };
            if fan.remote.as_ref().is_some_and(|r| !r.done) {
                self.poll_step(i, &mut fan, store).await;
            }
            self.fans[i] = Some(fan);
        }
    }

    async fn poll_step(&mut self, i: usize, fan: &mut Fan, store: &mut dyn Store) {
        let stop = self.stop_reason(i);
        let Some(remote) = fan.remote.as_mut() else {
            return;
        };
        let due = remote.polled.is_none_or(|t| t.elapsed() >= WORKERS_POLL);
        if !due && (stop.is_none() || remote.closed) {
            return;
        }
        remote.polled = Some(Instant::now());
        let run_id = self.run_id;
        let step = self.steps[i].id.clone();
        let Some(queue) = store.queue() else {
            // Refused before the run starts (`session`); kept as a
            // safeguard: the step fails rather than waiting forever.
            remote.closed = true;
            remote.done = true;
            fan.items.clear();
            tracing::error!(
                "step `{step}`: `workers:` needs a shared state (--state postgres://...)"
            );
            return;
        };
        let (counts, offer) = match queue.counts(run_id, &step).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("step `{step}`: cannot read its items' states: {e}");
                return;
            }
        };
        let (was_ok, was_failed) = remote.reported;
        for (n, state) in [
            (
                counts.succeeded.saturating_sub(was_ok),
                ItemState::Succeeded,
            ),
            (counts.failed.saturating_sub(was_failed), ItemState::Failed),
        ] {
            for _ in 0..n {
                self.reporter.event(&Event::ItemFinished {
                    step: &step,
                    key: "",
                    state,
                    total: counts.total(),
                });
            }
        }
        remote.reported = (counts.succeeded, counts.failed);
        fan.failed = counts.failed;
        let past_bound = self.steps[i]
            .fan_out
            .as_ref()
            .and_then(|f| f.max_failed)
            .is_some_and(|m| counts.failed > m.bound(counts.total()));
        let Some(remote) = fan.remote.as_mut() else {
            return;
        };
        if !remote.closed && offer == Some(OfferState::Open) && (stop.is_some() || past_bound) {
            // A stop of this ward stops the workers' items too; a failure
            // elsewhere skips what has not started (as a local fan-out
            // does), and a step past `max_failed` leaves it pending.
            let halted =
                self.interrupted.is_some() || self.abandoned.is_some() || self.state_lost.is_some();
            let skip = stop.filter(|_| !halted && self.failure.is_some());
            self.changes.push(Change::OfferClosed {
                step: step.clone(),
                stop: halted,
                skip,
                at: crate::clock::wall_ms(),
            });
            remote.closed = true;
            // Counted again once the close is committed.
            remote.polled = None;
            return;
        }
        let halted = remote.closed && (self.interrupted.is_some() || self.state_lost.is_some());
        if counts.pending + counts.running > 0 && !(remote.closed && counts.running == 0) && !halted
        {
            return;
        }
        if !remote.closed && offer == Some(OfferState::Open) {
            self.changes.push(Change::OfferClosed {
                step: step.clone(),
                stop: false,
                skip: None,
                at: crate::clock::wall_ms(),
            });
            remote.closed = true;
        }
        match store.items(run_id, Some(&step), None).await {
            Ok(records) => {
                fan.items = records
                    .into_iter()
                    .map(|r| FanItem {
                        key: r.key,
                        position: r.position,
                        value: r.item,
                        // A claim the workers still hold when this ward
                        // stops is not done: a resume offers it again.
                        state: if r.state == ItemState::Running {
                            ItemState::Pending
                        } else {
                            r.state
                        },
                        attempts: r.attempts,
                        message: r.message,
                        priority: 0.0,
                    })
                    .collect();
                if let Some(remote) = fan.remote.as_mut() {
                    remote.done = true;
                }
            }
            Err(e) => tracing::warn!("step `{step}`: cannot read its items: {e}"),
        }
    }
}
