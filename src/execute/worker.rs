//! `ward worker`: runs the items of `workers:` steps, claimed from a shared
//! store (`state/queue.rs`), for runs whose own ward only lists and
//! watches them.
//!
//! The loop: look for open offers (every [`OFFER_POLL`]) whose tags this
//! worker carries; for each, the run's plan is read as `ward resume` reads
//! it (the caller's [`LoadPlan`], which refuses a step whose definition
//! differs from the one the run recorded); claim up to the step's
//! `max_parallel` items (and `--max-parallel` over all), start each
//! exactly as the run's ward would (`item.rs`), and record the ends of
//! those that ended in one batch per turn. A claim holds while this
//! worker's lease does; the lease's keeper counts the worker lost when it
//! cannot renew for half the lease, and then every item is stopped before
//! another worker may claim it.
//!
//! Stops: a first SIGTERM/SIGINT/SIGHUP stops claiming and stops the
//! running items (each is recorded pending again, claimable by others);
//! a second kills them at once. An offer the run's ward sets `stopping`
//! (it was interrupted) stops that step's items the same way.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::item::{ActionEnv, ItemRun, start_item};
use super::process::{AttemptEnd, AttemptResult, Cancel, Exit};
use super::scheduler::{failure_message, next_signal};
use super::signals::{Received, Signals};
use crate::plan::Plan;
use crate::state::queue::{Claimed, ItemEnd, Offer, OfferState, Queue, WorkerId};
use crate::state::{ItemState, RunState, StateError, Store};

/// How often an idle worker looks for offers, and how often a busy one
/// looks whether its offers were closed or set stopping.
pub const OFFER_POLL: Duration = Duration::from_millis(500);

/// How long a step that had nothing to claim is left alone before the
/// next claim (its items may be paused, or all taken by other workers).
const CLAIM_PAUSE: Duration = Duration::from_millis(250);

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Its identity (claims and the lease name it).
    pub id: WorkerId,
    /// Tags it carries: it claims only items of offers whose tags it all
    /// carries.
    pub tags: Vec<String>,
    /// Only this run's items; the worker ends when the run has ended.
    pub run: Option<String>,
    /// At most this many items at once over all steps (each step's own
    /// `max_parallel` applies too).
    pub max_parallel: Option<usize>,
    /// Wait between SIGTERM and SIGKILL for an item's processes.
    pub kill_grace: Duration,
    /// Where `rsync` items keep their stamps (as the run's ward would).
    pub copies_dir: Option<PathBuf>,
}

/// The plan of a run, read as `ward resume` reads it, and the attempt of
/// the step whose items are claimed; or why this worker cannot run them.
pub struct Loaded {
    pub plan: Arc<Plan>,
    pub step_attempt: u32,
    /// Told each item's recorded end (`on_item:`), as the run's ward
    /// would tell it.
    pub notifier: Option<Arc<dyn super::ItemNotifier>>,
}

/// How the worker gets a run's plan (the CLI reads the playbook, as
/// `ward resume` does; the executor has no parser).
pub trait PlanSource {
    /// The plan of the offer's run, or why this worker cannot run its
    /// items (the playbook differs here, a secret is missing).
    fn load<'a>(
        &'a mut self,
        store: &'a dyn Store,
        offer: &'a Offer,
    ) -> Pin<Box<dyn Future<Output = Result<Loaded, String>> + 'a>>;
}

/// How a worker ended.
#[derive(Debug)]
pub enum WorkerEnd {
    /// `--run` was given and that run has ended.
    RunEnded,
    /// A signal stopped it.
    Interrupted(Received),
    /// Its lease was lost: it records nothing more.
    LeaseLost(StateError),
}

/// What a worker did.
#[derive(Debug)]
pub struct WorkerSummary {
    pub end: WorkerEnd,
    /// Items it recorded succeeded.
    pub succeeded: usize,
    /// Items it recorded failed.
    pub failed: usize,
    /// Items it stopped (recorded pending again).
    pub stopped: usize,
    /// Item ends not recorded because the claim was gone.
    pub lost: usize,
    /// How long each claim that took items took, sorted (for its
    /// percentiles: the store's side of a worker's pace).
    pub claim_times: Vec<Duration>,
}

/// One offer this worker works on.
struct Job {
    offer: Offer,
    /// None: this worker cannot run the step's items (said once).
    loaded: Option<(Loaded, usize)>,
    /// Its items running here, or whose end is not recorded yet: each
    /// item's value and log (for `on_item:`).
    items: HashMap<String, (serde_json::Value, PathBuf)>,
    /// Keys of its items running here.
    running: HashSet<String>,
    /// Ends to record at the next turn.
    ends: Vec<ItemEnd>,
    /// Stops this step's items.
    cancel: watch::Sender<Cancel>,
    /// No claim before this (nothing was claimable).
    rest_until: Option<Instant>,
    /// Still listed among the open or stopping offers.
    listed: bool,
}

type JobKey = (String, String);

struct Ended {
    job: JobKey,
    /// The plan the item ran from, and its step's index: its end is
    /// judged by that step (the job may have read its plan again since).
    plan: Arc<Plan>,
    index: usize,
    key: String,
    position: usize,
    attempt: u32,
    result: AttemptResult,
}

/// Runs items until `--run`'s run ended, a signal, or the lease is lost.
pub async fn serve(
    store: &dyn Store,
    opts: WorkerOptions,
    load: &mut dyn PlanSource,
) -> WorkerSummary {
    let Some(queue) = store.queue() else {
        return WorkerSummary {
            end: WorkerEnd::LeaseLost(StateError::Backend {
                db: store.describe().to_owned(),
                detail: "this state has no queue for workers (a shared PostgreSQL state has)"
                    .to_owned(),
            }),
            succeeded: 0,
            failed: 0,
            stopped: 0,
            lost: 0,
            claim_times: Vec::new(),
        };
    };
    super::orphans::become_subreaper();
    let mut w = Worker {
        store,
        queue,
        opts,
        jobs: HashMap::new(),
        tasks: JoinSet::new(),
        interrupted: None,
        signals_seen: 0,
        lost: None,
        summary: (0, 0, 0, 0),
        claim_times: Vec::new(),
        next_look: Instant::now(),
    };
    let mut signals = Signals::install().ok();
    let mut tick = tokio::time::interval(OFFER_POLL / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let end = loop {
        if w.lost.is_none() && store.lease_lost().is_some() {
            // The store's words are a run lock's (another run took it); a
            // worker's lease is only this worker's.
            let e = StateError::LeaseLost {
                db: store.describe().to_owned(),
                detail: format!(
                    "the lease of worker {} could not be renewed in time: its items are \
                     stopped and their ends not recorded; other workers claim them once the \
                     lease ran out",
                    w.opts.id.id
                ),
            };
            tracing::error!("{e}");
            w.lost = Some(e);
            w.stop_all(Cancel::Terminate);
        }
        if w.interrupted.is_none() && w.lost.is_none() && Instant::now() >= w.next_look {
            w.look(load).await;
        }
        w.turn().await;
        let running = w.tasks.len();
        if running == 0 {
            if let Some(e) = w.lost.take() {
                break WorkerEnd::LeaseLost(e);
            }
            if let Some(sig) = w.interrupted {
                break WorkerEnd::Interrupted(sig);
            }
            if w.run_ended().await {
                break WorkerEnd::RunEnded;
            }
        }
        tokio::select! {
            Some(joined) = w.tasks.join_next(), if running > 0 => {
                w.ended(joined);
                while let Some(joined) = w.tasks.try_join_next() {
                    w.ended(joined);
                }
            }
            _ = tick.tick() => {}
            Some(sig) = next_signal(&mut signals) => w.on_signal(sig),
        }
    };
    w.turn().await;
    let (succeeded, failed, stopped, lost) = w.summary;
    let mut claim_times = w.claim_times;
    claim_times.sort();
    WorkerSummary {
        end,
        succeeded,
        failed,
        stopped,
        lost,
        claim_times,
    }
}

struct Worker<'s> {
    store: &'s dyn Store,
    queue: &'s dyn Queue,
    opts: WorkerOptions,
    jobs: HashMap<JobKey, Job>,
    tasks: JoinSet<Ended>,
    interrupted: Option<Received>,
    signals_seen: u32,
    lost: Option<StateError>,
    /// Succeeded, failed, stopped, lost.
    summary: (usize, usize, usize, usize),
    claim_times: Vec<Duration>,
    next_look: Instant,
}

impl Worker<'_> {
    /// Reads the offers: new ones become jobs (their plan read), closed or
    /// stopping ones stop claiming (stopping ones stop their items too).
    async fn look(&mut self, load: &mut dyn PlanSource) {
        self.next_look = Instant::now() + OFFER_POLL;
        let offers = match self.queue.offers(self.opts.run.as_deref()).await {
            Ok(offers) => offers,
            Err(e) => {
                tracing::warn!("cannot read the offers: {e}");
                return;
            }
        };
        for job in self.jobs.values_mut() {
            job.listed = false;
        }
        for offer in offers {
            if !offer.tags.iter().all(|t| self.opts.tags.contains(t)) {
                continue;
            }
            let key = (offer.run_id.clone(), offer.step_id.clone());
            // An offer open again after it closed or stopped: the run was
            // resumed (a new step attempt, its stop signal spent); its plan
            // is read again and its items get a new stop signal, while what
            // still runs or waits to be recorded here is kept.
            let mut kept = None;
            if self.jobs.get(&key).is_some_and(|j| {
                j.offer.state != OfferState::Open && offer.state == OfferState::Open
            }) {
                kept = self.jobs.remove(&key).map(|j| (j.items, j.running, j.ends));
            }
            if let Some(job) = self.jobs.get_mut(&key) {
                job.listed = true;
                if offer.state == OfferState::Stopping && job.offer.state != OfferState::Stopping {
                    tracing::info!(
                        "run {} stops: stopping the items of step `{}` here",
                        key.0,
                        key.1
                    );
                    let _ = job.cancel.send(Cancel::Terminate);
                }
                job.offer = offer;
                continue;
            }
            let loaded = match load.load(self.store, &offer).await {
                Ok(loaded) => {
                    let index = loaded
                        .plan
                        .steps
                        .iter()
                        .position(|s| s.id == offer.step_id && s.fan_out.is_some());
                    match index {
                        Some(i) => Some((loaded, i)),
                        None => {
                            // On standard error whatever `-v` says: a worker
                            // that claims nothing must say why.
                            eprintln!(
                                "warning: run {}: its playbook has no `for_each` step `{}` \
                                 here; this worker leaves its items to others",
                                offer.run_id, offer.step_id
                            );
                            None
                        }
                    }
                }
                Err(why) => {
                    eprintln!(
                        "warning: run {}, step `{}`: {why}; this worker leaves its items to \
                         others",
                        offer.run_id, offer.step_id
                    );
                    None
                }
            };
            if loaded.is_some() {
                tracing::info!(
                    "claiming items of run {}, step `{}` (up to {} at once)",
                    offer.run_id,
                    offer.step_id,
                    offer.max_parallel
                );
            }
            let (cancel, _) = watch::channel(Cancel::No);
            let (items, running, ends) = kept.unwrap_or_default();
            self.jobs.insert(
                key,
                Job {
                    offer,
                    loaded,
                    items,
                    running,
                    ends,
                    cancel,
                    rest_until: None,
                    listed: true,
                },
            );
        }
        // Offers gone (closed, or their run ended): no more claims; a job
        // is forgotten once its items here ended and were recorded. The
        // listing shows only running runs, and a stopped run's ward sets
        // its offer `stopping` just before its run ends: an offer that went
        // unseen between two looks is read once more, so that a stop is not
        // taken for a close (the items would run on to their end).
        let gone: Vec<JobKey> = self
            .jobs
            .iter()
            .filter(|(_, j)| !j.listed && j.offer.state == OfferState::Open)
            .map(|(k, _)| k.clone())
            .collect();
        for key in gone {
            let stopping = !self.jobs[&key].running.is_empty()
                && matches!(
                    self.queue.counts(&key.0, &key.1).await,
                    Ok((_, Some(OfferState::Stopping)))
                );
            let Some(job) = self.jobs.get_mut(&key) else {
                continue;
            };
            if stopping {
                tracing::info!(
                    "run {} stopped: stopping the items of step `{}` here",
                    key.0,
                    key.1
                );
                job.offer.state = OfferState::Stopping;
                let _ = job.cancel.send(Cancel::Terminate);
            } else {
                job.offer.state = OfferState::Closed;
            }
        }
        self.jobs
            .retain(|_, j| j.listed || !j.running.is_empty() || !j.ends.is_empty());
    }

    fn running(&self) -> usize {
        self.jobs.values().map(|j| j.running.len()).sum()
    }

    /// One turn: for each step, the ends gathered since the last turn are
    /// recorded and new items claimed (up to the step's `max_parallel`,
    /// and `--max-parallel` over all), in one transaction per step. No
    /// claims after a stop; nothing at all once the lease is lost (the
    /// fence would refuse it).
    async fn turn(&mut self) {
        if self.lost.is_some() {
            for job in self.jobs.values_mut() {
                // Counted as ends not recorded, so that the summary does
                // not read as if nothing had run here.
                self.summary.3 += job.ends.len();
                job.ends.clear();
            }
            return;
        }
        let claiming = self.interrupted.is_none();
        let keys: Vec<JobKey> = self.jobs.keys().cloned().collect();
        for key in keys {
            let cap = self
                .opts
                .max_parallel
                .map_or(usize::MAX, |m| m.saturating_sub(self.running()));
            let Some(job) = self.jobs.get_mut(&key) else {
                continue;
            };
            let may_claim = claiming
                && job.loaded.is_some()
                && job.offer.state == OfferState::Open
                && job.rest_until.is_none_or(|t| Instant::now() >= t);
            let n = if may_claim {
                job.offer
                    .max_parallel
                    .saturating_sub(job.running.len())
                    .min(cap)
            } else {
                0
            };
            if n == 0 && job.ends.is_empty() {
                continue;
            }
            let ends = std::mem::take(&mut job.ends);
            // Items whose end is recorded in this very turn are no longer
            // claimed; the others still running here are (a claim takes
            // back only those this worker lost track of).
            let running: Vec<String> = job.running.iter().cloned().collect();
            let asked = Instant::now();
            let answer = self
                .queue
                .exchange(&self.opts.id, &key.0, &key.1, ends.clone(), n, &running)
                .await;
            let (kept, claimed) = match answer {
                Ok(answer) => answer,
                Err(e) => {
                    tracing::warn!(
                        "run {}, step `{}`: cannot record item ends or claim items: {e}",
                        key.0,
                        key.1
                    );
                    if matches!(e, StateError::LeaseLost { .. }) {
                        // Its fence refused them: not recorded, and said so.
                        self.summary.3 += ends.len();
                        self.lost.get_or_insert(e);
                        self.stop_all(Cancel::Terminate);
                    } else if let Some(job) = self.jobs.get_mut(&key) {
                        // Tried again next turn (the store reconnects).
                        job.ends.extend(ends);
                        job.rest_until = Some(Instant::now() + CLAIM_PAUSE);
                    }
                    continue;
                }
            };
            if !claimed.is_empty() {
                self.claim_times.push(asked.elapsed());
            }
            self.recorded(&key, &ends, kept);
            if let Some(job) = self.jobs.get_mut(&key) {
                job.rest_until = (claimed.len() < n).then(|| Instant::now() + CLAIM_PAUSE);
            }
            for c in claimed {
                self.start(&key, c);
            }
        }
    }

    /// Starts a claimed item (or records it failed when the step cannot
    /// be rendered for it).
    fn start(&mut self, key: &JobKey, c: Claimed) {
        let Some(job) = self.jobs.get_mut(key) else {
            return;
        };
        let Some((loaded, index)) = &job.loaded else {
            return;
        };
        if let Some(from) = &c.expired_from {
            tracing::info!(
                "item `{}` of step `{}`: claimed again, the lease of worker {from} ran out",
                c.key,
                key.1
            );
        }
        let plan = loaded.plan.clone();
        let step = &plan.steps[*index];
        let fan = step.fan_out.as_ref().expect("a for_each step");
        let work = match fan.each.work(&c.item) {
            Ok(work) => work,
            Err(why) => {
                job.ends.push(ItemEnd {
                    key: c.key,
                    attempt: c.attempt,
                    state: ItemState::Failed,
                    exit_code: None,
                    message: Some(why),
                    at: crate::clock::wall_ms(),
                });
                return;
            }
        };
        let logs = self.store.run_logs(&key.0);
        if let Err(e) = crate::state::private::ensure_dir(&logs, "the run's log folder") {
            job.ends.push(ItemEnd {
                key: c.key,
                attempt: c.attempt,
                state: ItemState::Pending,
                exit_code: None,
                message: Some(format!("not started on worker {}: {e}", self.opts.id.id)),
                at: crate::clock::wall_ms(),
            });
            return;
        }
        let log = logs.join(format!(
            "{}.item-{}.{}.log",
            step.id,
            c.position + 1,
            c.attempt
        ));
        let spec = ItemRun {
            run_id: &key.0,
            playbook: &plan.playbook.name.value,
            step,
            index: *index,
            step_attempt: loaded.step_attempt,
            position: c.position,
            key: &c.key,
            attempt: c.attempt,
            work: &work,
            log: &log,
            cwd: &crate::source::playbook_dir(plan.playbook.source.path()),
            kill_grace: self.opts.kill_grace,
            shield: false,
            mask: plan.output_mask(),
        }
        .attempt(None);
        let env = ActionEnv {
            facts: plan.facts.clone(),
            playbook_hash: plan.playbook.source.sha256(),
            copies_dir: self.opts.copies_dir.clone(),
        };
        // A worker of this host whose lease ran out (killed with SIGKILL)
        // may have left the item's processes running: they are stopped
        // before the item starts again, so it never runs twice at once
        // here. (On another host they end with that host, or run on
        // until they end: docs/design.md, "Workers".)
        let stale = c
            .expired_from
            .as_deref()
            .filter(|w| w.rsplitn(3, ':').nth(2) == Some(self.opts.id.host.as_str()))
            .map(|_| {
                super::item::item_attempt_id(
                    &key.0,
                    &step.id,
                    loaded.step_attempt,
                    c.position,
                    c.attempt.saturating_sub(1),
                )
            });
        let (cancel, index, grace) = (job.cancel.subscribe(), *index, self.opts.kill_grace);
        job.running.insert(c.key.clone());
        job.items.insert(c.key.clone(), (c.item, log));
        let (job_key, key, position, attempt) = (key.clone(), c.key, c.position, c.attempt);
        self.tasks.spawn(async move {
            if let Some(old) = stale {
                let left = tokio::task::spawn_blocking(move || {
                    super::orphans::stop_left_behind(&old, grace)
                })
                .await
                .unwrap_or_default();
                if !left.is_empty() {
                    tracing::warn!(
                        "item `{key}`: stopped {} processes its earlier attempt left running \
                         on this host",
                        left.len()
                    );
                }
            }
            let result = start_item(&plan.steps[index], spec, &work, env, cancel).await;
            Ended {
                job: job_key,
                plan,
                index,
                key,
                position,
                attempt,
                result,
            }
        });
    }

    /// An item ended here: its end is recorded at the next turn.
    fn ended(&mut self, joined: Result<Ended, tokio::task::JoinError>) {
        let Ok(e) = joined else {
            // A task that panicked: its claim runs out with this worker's
            // lease... which lives on; said loudly instead.
            tracing::error!("an item's task ended without a result");
            return;
        };
        let Some(job) = self.jobs.get_mut(&e.job) else {
            return;
        };
        job.running.remove(&e.key);
        let step = &e.plan.steps[e.index];
        let ok =
            matches!(e.result.end, AttemptEnd::Exited(Exit::Code(c)) if step.ok_codes.contains(&c));
        let (state, message) = if ok {
            (ItemState::Succeeded, None)
        } else if matches!(e.result.end, AttemptEnd::Stopped { .. }) {
            let why = match (self.interrupted, &self.lost) {
                (Some(sig), _) => format!(
                    "stopped because worker {} was interrupted ({})",
                    self.opts.id.id,
                    sig.name()
                ),
                (None, _) if self.lost.is_some() => {
                    format!("stopped because worker {} lost its lease", self.opts.id.id)
                }
                // A stopping offer (it may be open again by now: a resume).
                _ => "stopped because the run's ward stopped".into(),
            };
            (ItemState::Pending, Some(why))
        } else {
            (
                ItemState::Failed,
                Some(failure_message(&e.result, step, "stopped")),
            )
        };
        if state == ItemState::Failed {
            tracing::warn!(
                "item {} `{}` of step `{}` failed: {}",
                e.position + 1,
                e.key,
                step.id,
                message.as_deref().unwrap_or("")
            );
        }
        job.ends.push(ItemEnd {
            key: e.key,
            attempt: e.attempt,
            state,
            exit_code: e.result.end.exit_code(),
            message,
            at: crate::clock::wall_ms(),
        });
    }

    /// What a turn recorded of `ends`: `on_item:` is told of each kept
    /// end, a lost one is said, and each is counted.
    fn recorded(&mut self, key: &JobKey, ends: &[ItemEnd], kept: Vec<bool>) {
        let job = self.jobs.get_mut(key);
        let (notifier, mut items) = match job {
            Some(j) => (
                j.loaded.as_ref().and_then(|(l, _)| l.notifier.clone()),
                Some(&mut j.items),
            ),
            None => (None, None),
        };
        for (end, kept) in ends.iter().zip(kept) {
            let item = items.as_mut().and_then(|m| m.remove(&end.key));
            if kept && let (Some(n), Some((value, log))) = (&notifier, &item) {
                n.item_ended(super::ItemEnded {
                    run_id: &key.0,
                    step: &key.1,
                    key: &end.key,
                    item: value,
                    state: end.state,
                    message: end.message.as_deref(),
                    step_log: log,
                });
            }
            if !kept {
                self.summary.3 += 1;
                tracing::warn!(
                    "item `{}` of step `{}`: its end ({}) is not recorded: its \
                     claim was gone (another worker took it after this worker's \
                     lease ran out, or an operator changed it)",
                    end.key,
                    key.1,
                    end.state
                );
                continue;
            }
            match end.state {
                ItemState::Succeeded => self.summary.0 += 1,
                ItemState::Failed => self.summary.1 += 1,
                _ => self.summary.2 += 1,
            }
        }
    }

    /// With `--run`: true once that run is no longer running here or
    /// anywhere (ended, or its record is gone).
    async fn run_ended(&mut self) -> bool {
        let Some(run) = &self.opts.run else {
            return false;
        };
        if self.jobs.values().any(|j| j.listed) {
            return false;
        }
        match self.store.run(run).await {
            Ok(Some(r)) => r.state != RunState::Running,
            Ok(None) => true,
            Err(e) => {
                tracing::warn!("cannot read run {run}: {e}");
                false
            }
        }
    }

    fn stop_all(&mut self, how: Cancel) {
        for job in self.jobs.values() {
            let _ = job.cancel.send(how);
        }
    }

    fn on_signal(&mut self, sig: Received) {
        self.signals_seen += 1;
        if self.interrupted.is_none() {
            self.interrupted = Some(sig);
            tracing::warn!(
                "{}: no more claims; stopping the {} items running here (they go back to \
                 pending); a second signal kills them at once",
                sig.name(),
                self.running()
            );
            self.stop_all(Cancel::Terminate);
        } else if self.signals_seen >= 2 || sig == Received::Quit {
            self.stop_all(Cancel::Kill);
        }
    }
}
