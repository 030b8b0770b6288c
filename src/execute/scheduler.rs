//! The DAG scheduler: decides which steps start, skip, retry or are
//! compensated, and checkpoints every decision before acting on it.
//!
//! Each turn of the loop (1) decides everything that can be decided now,
//! (2) spawns the attempts it decided to start, and (3) commits all those
//! changes in one transaction (one fsync, overlapping the children's
//! start-up). A crash at any point leaves the database describing a state
//! that `ward resume` handles: a step recorded `succeeded` has finished; a
//! step recorded `running` or `pending` may have started and runs again
//! (after its leftover processes are stopped, see `orphans.rs`).
//!
//! Finalizers (`when: always`/`when: failure` steps and compensations) are
//! what brings a service back, so neither signals nor a state database that
//! can no longer be written skip them:
//! - the first SIGINT/SIGTERM/SIGHUP stops the running normal steps and starts
//!   nothing but `when: always` steps; finalizers already running go on;
//! - a second one is only noted (GNU `timeout` sends two);
//! - a third, or SIGQUIT, abandons everything, finalizers included; the
//!   run is recorded `interrupted` with those finalizers still pending, so
//!   that `ward resume` runs them;
//! - when a commit fails (a full disk), ward goes on from memory: it stops
//!   the running normal steps, starts only the finalizers that are due,
//!   writes nothing more, and exits 4. What was committed before stays
//!   consistent: the run is still recorded `running`, so the next ward finds
//!   it crashed (recovery rule 1) and a resume redoes whole windows (rule 4).

mod fan_out;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::Ending;
use super::ExecOptions;
use super::action_run::{start_action, wait_action};
use super::events::{Event, Reporter, StepEnd};
use super::process::{
    Attempt, AttemptEnd, AttemptResult, Cancel, Exit, run_attempt, spawn_attempt, wait_attempt,
};
use super::signals::{Received, Signals};
use crate::action::{Action, ActionCtx, ServiceStart};
use crate::model::When;
use crate::plan::{EdgeKind, Plan, ResolvedBody, ResolvedStep};
use crate::process::CancelCell;
use crate::state::{
    AttemptOutcome, Change, ItemRecord, NoteKind, RunState, StepState, Store, Unflushed,
};
use fan_out::Fan;

/// A run to carry out.
pub struct Execution<'a> {
    /// What to run.
    pub plan: &'a Plan,
    /// The run's id (already recorded in the store).
    pub run_id: &'a str,
    /// Where the steps start.
    pub start: Start,
    /// Logs, working folder, echo, kill grace.
    pub options: ExecOptions,
}

/// Where a run's steps start: all pending for a new run; for a resume, what
/// `state::recovery` decided.
#[derive(Clone, Debug)]
pub struct Start {
    /// Each step's starting state and how many attempts it already had.
    pub initial: Vec<(StepState, u32)>,
    /// Kept steps whose output must be flushed first (step index, paths).
    pub flush_first: Vec<(usize, Vec<PathBuf>)>,
    /// True for `ward resume`.
    pub resumed: bool,
}

/// How the run ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Final state.
    pub state: RunState,
    /// How it ended (the CLI maps this onto an exit code).
    pub ending: Ending,
    /// Why, if it did not succeed.
    pub message: Option<String>,
}

enum Done {
    Attempt {
        step: usize,
        attempt: u32,
        log: PathBuf,
        result: AttemptResult,
    },
    RetryDue {
        step: usize,
    },
    /// The operator answered a step's `confirm:`.
    Confirmed {
        step: usize,
        answer: super::confirm::Answer,
    },
    /// A succeeded step's output was flushed to disk (or could not be).
    Flushed {
        step: usize,
        result: Result<(), FlushError>,
    },
    /// A `for_each` command listed a step's items (or failed to).
    Listed {
        step: usize,
        attempt: u32,
        log: PathBuf,
        values: Result<Vec<serde_json::Value>, fan_out::ListError>,
    },
    /// An item of a `for_each` step ended its attempt.
    Item {
        step: usize,
        item: usize,
        log: PathBuf,
        result: AttemptResult,
    },
}

/// Why output could not be made durable; said as the step's failure.
#[derive(Debug, thiserror::Error)]
pub(super) enum FlushError {
    /// Neither the output nor any folder above it could be opened.
    #[error("cannot open {} or any folder above it", .0.display())]
    NoFolder(PathBuf),
    /// `syncfs` of the output's file system failed.
    #[error("cannot flush {}: {error}", path.display())]
    FileSystem {
        path: PathBuf,
        error: rustix::io::Errno,
    },
    /// The blocking task that flushed ended abnormally.
    #[error("the flush stopped unexpectedly: {0}")]
    Stopped(tokio::task::JoinError),
    /// A `creates` path (or its folder) could not be flushed.
    #[error("its `creates` path {} could not be flushed to disk: {error}", path.display())]
    Creates {
        path: PathBuf,
        error: std::io::Error,
    },
}

struct Scheduler<'a, 'r> {
    steps: &'a [ResolvedStep],
    /// What each step waits for (from the DAG, computed once).
    deps: Vec<Vec<(usize, EdgeKind)>>,
    v: &'a Plan,
    run_id: &'a str,
    options: ExecOptions,
    state: Vec<StepState>,
    /// Attempt numbers so far, across resumes (log names, records).
    attempts: Vec<u32>,
    /// Attempts in this process (the retry budget restarts on resume).
    tries: Vec<u32>,
    retry_waiting: HashSet<usize>,
    playbook_hash: String,
    running: usize,
    finished_order: Vec<usize>,
    failure: Option<String>,
    /// The first SIGINT/SIGTERM (or SIGQUIT).
    interrupted: Option<Received>,
    /// Signals received so far.
    signals_seen: u32,
    /// The signal that made ward abandon its finalizers.
    abandoned: Option<Received>,
    /// Why the state database could not be written, from the first failure on.
    state_lost: Option<String>,
    /// That failure was the run lock's lease lost to another run (a shared
    /// store): the message then points at that run, not at disk space.
    lease_lost: bool,
    changes: Vec<Change>,
    /// This boot of the machine (recorded with unflushed output).
    boot_id: String,
    /// Steps whose `confirm:` was answered (in this run or, for a step
    /// that had an attempt, before a resume).
    confirmed: Vec<bool>,
    /// The step whose question is on the screen (one at a time).
    asking: Option<usize>,
    /// Questions to put now (decided by `decide`).
    to_ask: Vec<usize>,
    /// The task waiting for the answer on the screen: a signal ends it (the
    /// step is then skipped like every step not yet started).
    ask_task: Option<tokio::task::AbortHandle>,
    /// Why a step was not confirmed (the run then ends `NotConfirmed`).
    not_confirmed: Option<String>,
    /// The run's secrets, masked in what steps print (built once).
    mask: Option<std::sync::Arc<crate::process::Mask>>,
    /// The `for_each` steps in progress, by step index (`fan_out.rs`).
    fans: Vec<Option<Fan>>,
    /// What a resumed run recorded of its items, by step id; taken when
    /// the step starts.
    recorded_items: HashMap<String, Vec<ItemRecord>>,
    /// `for_each` commands to start on tasks: (step, attempt, log, what).
    listings: Vec<(usize, u32, PathBuf, fan_out::Listing)>,
    /// `for_each` steps that failed because some of their items failed, or
    /// were not started after the run failed: a run whose only failed steps
    /// are these, with at least one failed item, ends `ItemsFailed`.
    items_failed: HashSet<usize>,
    /// Some item failed, or was left paused, in this process.
    item_failed: bool,
    /// The last event of the run whose item controls (`ward pause`,
    /// `unpause`, `retry` from other processes) were taken in.
    control_seq: i64,
    reporter: &'r mut dyn Reporter,
}

/// Runs the playbook to its end. A store error does not end it early: the
/// finalizers that are due still run (from memory), and the outcome says
/// that the state could not be recorded (exit 4).
pub async fn execute(
    exec: Execution<'_>,
    store: &mut dyn Store,
    reporter: &mut dyn Reporter,
) -> Outcome {
    let started = Instant::now();
    let v = exec.plan;
    let kept = exec
        .start
        .initial
        .iter()
        .filter(|(s, _)| *s == StepState::Succeeded)
        .count();
    reporter.event(&Event::RunStarted {
        run_id: exec.run_id,
        playbook: &v.playbook.name.value,
        resumed: exec.start.resumed,
        kept,
        total: v.steps.iter().filter(|s| !s.compensation_only).count(),
    });
    let mut s = Scheduler {
        steps: &v.steps,
        deps: (0..v.steps.len())
            .map(|i| v.graph.dependencies(i))
            .collect(),
        v,
        run_id: exec.run_id,
        state: exec.start.initial.iter().map(|(st, _)| *st).collect(),
        attempts: exec.start.initial.iter().map(|(_, a)| *a).collect(),
        tries: vec![0; v.steps.len()],
        options: exec.options,
        retry_waiting: HashSet::new(),
        playbook_hash: v.playbook.source.sha256(),
        running: 0,
        finished_order: Vec::new(),
        failure: None,
        interrupted: None,
        signals_seen: 0,
        abandoned: None,
        state_lost: None,
        lease_lost: false,
        changes: Vec::new(),
        boot_id: store.host().boot_id.clone(),
        // An attempt starts only after its confirmation: a step that had
        // one was confirmed (docs/playbook.md, "Confirm": not asked again
        // on resume).
        confirmed: exec
            .start
            .initial
            .iter()
            .zip(&v.steps)
            .map(|((_, attempts), st)| st.confirm.is_none() || *attempts > 0)
            .collect(),
        asking: None,
        to_ask: Vec::new(),
        ask_task: None,
        not_confirmed: None,
        mask: v.output_mask(),
        fans: (0..v.steps.len()).map(|_| None).collect(),
        recorded_items: HashMap::new(),
        listings: Vec::new(),
        items_failed: HashSet::new(),
        item_failed: false,
        control_seq: 0,
        reporter,
    };
    if let Err(e) = crate::state::private::ensure_log_dir(&s.options.log_dir) {
        let message = format!(
            "cannot create log folder {}: {e}",
            s.options.log_dir.display()
        );
        let mut outcome = s.finish(store, started, Some(message)).await;
        outcome.state = RunState::Failed;
        return outcome;
    }
    let fans = v.steps.iter().any(|st| st.fan_out.is_some());
    if fans {
        // Item controls recorded from here on are taken in while the run
        // goes on; those before are in the items as read below. (Read
        // first, so that none falls between.) Without it they wait for a
        // resume, so a failure only costs that.
        match store.item_controls(exec.run_id, i64::MAX).await {
            Ok((last, _)) => s.control_seq = last,
            Err(e) => tracing::warn!("cannot read the run's item controls: {e}"),
        }
    }
    if exec.start.resumed && fans {
        // What each item did before: succeeded items never run again.
        match store.items(exec.run_id, None, None).await {
            Ok(items) => {
                for item in items {
                    s.recorded_items
                        .entry(item.step_id.clone())
                        .or_default()
                        .push(item);
                }
            }
            Err(e) => {
                let message = format!("cannot read the run's recorded items: {e}");
                let mut outcome = s.finish(store, started, Some(message)).await;
                outcome.state = RunState::Failed;
                return outcome;
            }
        }
    }

    // Normal steps are stopped by the first signal (or a lost state);
    // finalizers only when ward abandons them (a third signal, SIGQUIT).
    let (cancel_tx, cancel_rx) = watch::channel(Cancel::No);
    let (late_tx, late_rx) = watch::channel(Cancel::No);
    let senders = Senders {
        normal: cancel_tx,
        finalizers: late_tx,
    };
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<(usize, String)>();
    let mut signals = match Signals::install() {
        Ok(signals) => Some(signals),
        Err(e) => {
            // The run still goes on (a backup that cannot be interrupted
            // cleanly is better than none), but the operator is told.
            s.reporter.event(&Event::SignalsUnavailable {
                message: &e.to_string(),
            });
            None
        }
    };
    // What steps leave running in the background is handed to ward when
    // their parent ends, so that ward can stop it (and reap it).
    super::orphans::become_subreaper();
    let mut ticker = ticker(s.reporter.tick_interval());
    let mut tasks: JoinSet<Done> = JoinSet::new();
    // Output kept from before a crash (same boot) is flushed before the run
    // can end; the steps after it need not wait (rule 6).
    for (step, paths) in exec.start.flush_first {
        spawn_flush(&mut tasks, step, paths);
    }

    // While items run, the scheduler wakes this often to take in item
    // controls, even if no item ends meanwhile.
    let mut control_ticker = fans.then(|| {
        let mut t = tokio::time::interval(fan_out::CONTROL_POLL);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        t
    });
    // A shared store's lease can be lost while nothing is committed (a
    // long step): asked at least this often.
    let mut lease_ticker = Some({
        let mut t = tokio::time::interval(LEASE_CHECK);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        t
    });
    loop {
        if !s.lease_lost
            && let Some(lost) = store.lease_lost()
        {
            s.lose_lease(&lost, &senders);
        }
        if fans {
            s.take_controls(store).await;
            s.poll_workers(store).await;
        }
        // A `for_each` step that ends lets its dependents start: decide
        // again until nothing more changes.
        let mut launch = Vec::new();
        let mut item_launch = Vec::new();
        loop {
            launch.extend(s.decide());
            let (items, fans_ended) = s.next_items();
            item_launch.extend(items);
            if !fans_ended {
                break;
            }
        }
        for step in std::mem::take(&mut s.to_ask) {
            let answer = s.ask(step);
            s.ask_task = Some(tasks.spawn(async move {
                let answer = answer.await.unwrap_or(super::confirm::Answer::Failed(
                    "the question's thread ended without an answer".into(),
                ));
                Done::Confirmed { step, answer }
            }));
        }
        // Children start first, then the checkpoint is written: the fsync
        // overlaps with their start-up. Safe because a step that started
        // while recorded `pending` is simply run again after a crash, like
        // one recorded `running` (state/recovery.rs, rule 3).
        for (step, attempt, log) in launch {
            let echo = s.options.echo_output.then(|| out_tx.clone());
            let spec = s.attempt_spec(step, attempt, &log, echo);
            let cancel = if s.is_finalizer(step) {
                late_rx.clone()
            } else {
                cancel_rx.clone()
            };
            let cleanup = s.cleanup(step, attempt);
            let of = s.steps[step].retry.attempts.max(s.tries[step]);
            if let ResolvedBody::Action(params) = &s.steps[step].body {
                let (ctx, cell) = s.action_ctx(step, spec);
                let progress = ctx.progress_handle();
                s.reporter.event(&Event::StepStarted {
                    step: &s.steps[step].id,
                    attempt,
                    of,
                    progress: Some(&progress),
                });
                let started = start_action(params.clone(), ctx, cell);
                let timeout = s.steps[step].timeout.map(|t| t.std());
                tasks.spawn(async move {
                    let result = wait_action(started, timeout, cancel.clone()).await;
                    let result = after_attempt(result, cleanup, &cancel).await;
                    Done::Attempt {
                        step,
                        attempt,
                        log,
                        result,
                    }
                });
                continue;
            }
            s.reporter.event(&Event::StepStarted {
                step: &s.steps[step].id,
                attempt,
                of,
                progress: None,
            });
            let started = spawn_attempt(&spec);
            tasks.spawn(async move {
                let result = wait_attempt(started, spec, cancel.clone()).await;
                let result = after_attempt(result, cleanup, &cancel).await;
                Done::Attempt {
                    step,
                    attempt,
                    log,
                    result,
                }
            });
        }
        for (step, attempt, log, listing) in std::mem::take(&mut s.listings) {
            let mut cancel = if s.is_finalizer(step) {
                late_rx.clone()
            } else {
                cancel_rx.clone()
            };
            tasks.spawn(async move {
                // The command runs on a blocking thread, which polls `stop`:
                // a stop of the run kills it there.
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let mut running = tokio::task::spawn_blocking({
                    let stop = stop.clone();
                    move || listing.list(&stop)
                });
                let joined = tokio::select! {
                    joined = &mut running => joined,
                    _ = crate::process::wait_cancel(&mut cancel) => {
                        stop.store(true, std::sync::atomic::Ordering::Relaxed);
                        running.await
                    }
                };
                let values = joined.unwrap_or_else(|e| {
                    Err(fan_out::ListError::Command(format!(
                        "its `for_each` command could not be waited for: {e}"
                    )))
                });
                Done::Listed {
                    step,
                    attempt,
                    log,
                    values,
                }
            });
        }
        for launch in item_launch {
            let echo = s.options.echo_output.then(|| out_tx.clone());
            let cancel = if s.is_finalizer(launch.step) {
                late_rx.clone()
            } else {
                cancel_rx.clone()
            };
            s.spawn_item(launch, &mut tasks, echo, cancel);
        }
        if s.commit(store).await {
            // Without checkpoints no new work may start; the normal steps
            // that run are stopped so that the finalizers come sooner.
            let _ = senders.normal.send(Cancel::Terminate);
            // Steps that became startable meanwhile are skipped now.
            continue;
        }
        if tasks.is_empty() && !s.waits_for_workers() {
            break;
        }
        tokio::select! {
            // Only a reporter that draws progress asks for a timer; it
            // samples counters, so a tick costs the steps nothing.
            () = tick(&mut ticker) => s.reporter.tick(),
            () = tick(&mut control_ticker), if s.fans.iter().any(Option::is_some) => {}
            () = tick(&mut lease_ticker), if !s.lease_lost => {}
            joined = tasks.join_next() => {
                let cancels = [&cancel_rx, &late_rx];
                if let Some(joined) = joined {
                    s.joined(joined, &mut tasks, cancels);
                }
                // What ended meanwhile (items of a fan-out end by the
                // hundred) is taken in this turn too, so that its records
                // share one commit, one fsync, instead of one each.
                while let Some(joined) = tasks.try_join_next() {
                    s.joined(joined, &mut tasks, cancels);
                }
            }
            Some(sig) = next_signal(&mut signals) => s.on_signal(sig, &senders),
            Some((step, line)) = out_rx.recv() => {
                s.reporter.event(&Event::Output { step: &s.steps[step].id, line: &line });
            }
        }
    }
    // Flush output that arrived after the last attempt ended.
    while let Ok((step, line)) = out_rx.try_recv() {
        s.reporter.event(&Event::Output {
            step: &s.steps[step].id,
            line: &line,
        });
    }
    if s.failure.is_some() && s.interrupted.is_none() {
        s.compensate(store, &late_rx, &mut signals, &senders).await;
    }
    s.finish(store, started, None).await
}

/// The reporter's timer, if it wants one (a tick missed while the
/// scheduler was busy is skipped, not caught up).
fn ticker(every: Option<Duration>) -> Option<tokio::time::Interval> {
    every.map(|every| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        t
    })
}

/// The reporter's next tick; never, without a timer.
/// How often the scheduler asks the store whether its lease was lost.
const LEASE_CHECK: Duration = Duration::from_secs(1);

async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// True for steps whose background processes ward leaves running: those
/// with `keep_children: true`, and `service.start`, whose whole point is to
/// leave the service it started running.
pub fn keeps_children(step: &ResolvedStep) -> bool {
    step.keep_children
        || matches!(&step.body,
            ResolvedBody::Action(p) if p.action() == <ServiceStart as Action>::NAME)
}

/// What to stop once an attempt's process ended.
pub(super) struct Cleanup {
    /// The attempt's `WARD_ATTEMPT_ID`.
    pub attempt_id: String,
    /// Wait between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// Stops what the attempt left running (unless its step keeps it), on a
/// blocking thread since it reads /proc and waits out the grace. Done
/// before the attempt counts as ended, so no dependent step starts while
/// a leftover still holds files or ports.
pub(super) async fn after_attempt(
    mut result: AttemptResult,
    cleanup: Option<Cleanup>,
    cancel: &watch::Receiver<Cancel>,
) -> AttemptResult {
    // Nearly always nothing was left: decide that here rather than pay a
    // hop to a blocking thread for every step.
    let cleanup = match cleanup {
        Some(c) if super::orphans::maybe_left_behind(&c.attempt_id) => c,
        _ => {
            super::orphans::reap_orphans();
            return result;
        }
    };
    // When ward abandons the run it does not wait out the grace.
    let hurry = *cancel.borrow() == Cancel::Kill;
    let job = move || {
        let grace = if hurry { Duration::ZERO } else { cleanup.grace };
        super::orphans::stop_left_behind(&cleanup.attempt_id, grace)
    };
    match tokio::task::spawn_blocking(job).await {
        Ok(left) => result.left_behind = left,
        Err(e) => {
            result.end = result.end.failed_after(format!(
                "cannot look for processes the step left running: {e}"
            ));
        }
    }
    result
}

/// Where cancellation goes: normal steps, and finalizers.
struct Senders {
    normal: watch::Sender<Cancel>,
    finalizers: watch::Sender<Cancel>,
}

/// The next stop signal; never, when signals could not be installed.
pub(super) async fn next_signal(signals: &mut Option<Signals>) -> Option<Received> {
    match signals {
        Some(s) => Some(s.recv().await),
        None => std::future::pending().await,
    }
}

impl Scheduler<'_, '_> {
    /// Commits the pending changes. After the first failure nothing more
    /// is written (what is recorded stays a consistent earlier picture);
    /// returns true when this call is that first failure.
    ///
    /// The store commits off the runtime's thread: while it fsyncs, the
    /// tasks of running attempts go on (reading output, noticing exits), but
    /// the scheduler decides nothing until the checkpoint is durable.
    async fn commit(&mut self, store: &mut dyn Store) -> bool {
        if self.changes.is_empty() {
            return false;
        }
        if self.state_lost.is_some() {
            self.changes.clear();
            return false;
        }
        let changes = std::mem::take(&mut self.changes);
        let result = store.apply(self.run_id, changes).await;
        match result {
            Ok(()) => false,
            Err(e) => {
                let message = e.to_string();
                self.reporter.event(&Event::StateLost { message: &message });
                self.lease_lost = matches!(e, crate::state::StateError::LeaseLost { .. });
                self.state_lost = Some(message);
                true
            }
        }
    }

    /// The run lock's lease was lost to another run: nothing more can be
    /// recorded, and the running steps are stopped as for a first SIGTERM
    /// (two runs must not work side by side); `when: always` steps still
    /// run, as after any loss of the state.
    fn lose_lease(&mut self, lost: &crate::state::StateError, senders: &Senders) {
        let message = lost.to_string();
        self.reporter.event(&Event::StateLost { message: &message });
        self.lease_lost = true;
        if self.state_lost.is_none() {
            self.state_lost = Some(message);
        }
        // Changes still queued are dropped by `commit`, as after any loss.
        let _ = senders.normal.send(Cancel::Terminate);
    }

    /// What to stop after attempt `attempt` of step `i` (nothing for a step
    /// that keeps its children).
    fn cleanup(&self, i: usize, attempt: u32) -> Option<Cleanup> {
        let step = &self.steps[i];
        (!keeps_children(step)).then(|| Cleanup {
            attempt_id: super::orphans::attempt_id(self.run_id, &step.id, attempt),
            grace: self.options.kill_grace,
        })
    }

    /// Steps that close a window or undo work: they run even when ward is
    /// interrupted or cannot record its state.
    fn is_finalizer(&self, i: usize) -> bool {
        self.steps[i].when != When::Success || self.steps[i].compensation_only
    }

    /// The first SIGINT/SIGTERM/SIGHUP stops normal steps; a second is noted; a
    /// third or SIGQUIT abandons the finalizers too.
    fn on_signal(&mut self, sig: Received, senders: &Senders) {
        self.signals_seen += 1;
        if let (Some(task), Some(i)) = (self.ask_task.take(), self.asking.take()) {
            // Nobody needs the answer any more; the step is skipped.
            task.abort();
            self.reporter.event(&Event::ConfirmAnswered {
                step: &self.steps[i].id,
                confirmed: false,
            });
        }
        if sig == Received::Quit || self.signals_seen >= 3 {
            if self.abandoned.is_none() {
                self.abandoned = Some(sig);
                self.interrupted.get_or_insert(sig);
                self.reporter.event(&Event::Abandoned { signal: sig });
                let _ = senders.normal.send(Cancel::Kill);
                let _ = senders.finalizers.send(Cancel::Kill);
            }
        } else if self.interrupted.is_none() {
            self.interrupted = Some(sig);
            self.reporter.event(&Event::Interrupted { signal: sig });
            let _ = senders.normal.send(Cancel::Terminate);
        } else {
            self.reporter.event(&Event::SignalNoted {
                signal: sig,
                count: self.signals_seen,
            });
        }
    }

    /// Decides every step that can be decided now; returns the attempts to start.
    fn decide(&mut self) -> Vec<(usize, u32, PathBuf)> {
        let mut launch = Vec::new();
        if self.abandoned.is_some() {
            // Nothing starts; what did not run stays pending for a resume.
            return launch;
        }
        loop {
            let mut progressed = false;
            for i in 0..self.steps.len() {
                if self.state[i] != StepState::Pending
                    || self.steps[i].compensation_only
                    || self.retry_waiting.contains(&i)
                {
                    continue;
                }
                if self.deps[i]
                    .iter()
                    .any(|(d, _)| !self.state[*d].is_terminal())
                {
                    continue;
                }
                if let Some(reason) = self.skip_reason(i) {
                    tracing::info!("step `{}` skipped: {reason}", self.steps[i].id);
                    self.set_state(i, StepState::Skipped, Some(reason));
                    progressed = true;
                    continue;
                }
                if self.running >= self.v.playbook.max_parallel {
                    continue;
                }
                if let Some(path) = self.steps[i]
                    .creates
                    .as_deref()
                    .filter(|p| self.resolve(p).exists())
                {
                    let reason = format!("`creates` path {path} exists: already done");
                    tracing::info!("step `{}` not run: {reason}", self.steps[i].id);
                    self.set_state(i, StepState::Succeeded, Some(reason));
                    self.finished_order.push(i);
                    progressed = true;
                    continue;
                }
                if !self.confirmed[i] {
                    if self.confirm_now(i) {
                        progressed = true;
                    } else {
                        continue;
                    }
                    if !self.confirmed[i] {
                        continue;
                    }
                }
                if self.steps[i].fan_out.is_some() {
                    // Its items are started by `next_items`.
                    self.start_fan(i);
                } else {
                    launch.push(self.start_attempt(i));
                }
                progressed = true;
            }
            if !progressed {
                return launch;
            }
        }
    }

    /// Step `i` is ready and not yet confirmed: with `--yes` it is
    /// confirmed now (recorded); at a terminal its question is put unless
    /// another one is on the screen. True when something was decided.
    fn confirm_now(&mut self, i: usize) -> bool {
        use super::confirm::ConfirmBy;
        let step = &self.steps[i];
        match self.options.confirm.by {
            ConfirmBy::Yes => {
                self.confirmed[i] = true;
                let message = format!(
                    "step `{}` confirmed with --yes by {} (`{}`)",
                    step.id,
                    self.options.confirm.who,
                    step.confirm.as_ref().map_or("", |c| c.prompt.as_str())
                );
                tracing::info!("{message}");
                self.note(NoteKind::Confirmed, message);
                true
            }
            ConfirmBy::Terminal => {
                if self.asking.is_some() {
                    return false;
                }
                self.asking = Some(i);
                self.to_ask.push(i);
                false
            }
            ConfirmBy::Nobody => {
                // Refused before the run started (session::check_confirmable);
                // reached only if that check missed a step.
                let why = format!(
                    "step `{}` was not confirmed: no terminal to ask at and no --yes",
                    step.id
                );
                self.refuse_unconfirmed(i, why);
                true
            }
        }
    }

    /// Puts step `i`'s question on the terminal; the answer comes later.
    fn ask(&mut self, i: usize) -> tokio::sync::oneshot::Receiver<super::confirm::Answer> {
        let step = &self.steps[i];
        self.reporter.event(&Event::ConfirmAsked { step: &step.id });
        let (prompt, word) = step
            .confirm
            .as_ref()
            .map_or(("", ""), |c| (c.prompt.as_str(), c.word.as_str()));
        let text = super::confirm::question(
            &self.options.confirm,
            &step.id,
            &step.body.shown(),
            prompt,
            word,
        );
        super::confirm::ask(text)
    }

    /// The operator answered step `i`'s question.
    fn answered(&mut self, i: usize, answer: super::confirm::Answer) {
        use super::confirm::Answer;
        self.asking = None;
        self.ask_task = None;
        let step = &self.steps[i];
        let word = step.confirm.as_ref().map_or("", |c| c.word.as_str());
        let who = &self.options.confirm.who;
        let refused = match answer {
            Answer::Typed(t) if t.trim() == word => None,
            Answer::Typed(t) => Some(format!(
                "`{}` was typed, not `{word}`",
                super::confirm::plain(t.trim())
            )),
            Answer::Closed => Some("the terminal closed before an answer".to_owned()),
            Answer::Failed(e) => Some(format!("the answer could not be read: {e}")),
        };
        let confirmed = refused.is_none();
        self.reporter.event(&Event::ConfirmAnswered {
            step: &step.id,
            confirmed,
        });
        match refused {
            None => {
                self.confirmed[i] = true;
                let message = format!(
                    "step `{}` confirmed at the terminal by {who}: typed `{word}` (`{}`)",
                    step.id,
                    step.confirm.as_ref().map_or("", |c| c.prompt.as_str())
                );
                self.note(NoteKind::Confirmed, message);
            }
            Some(why) => {
                let why = format!("step `{}` was not confirmed by {who}: {why}", step.id);
                self.refuse_unconfirmed(i, why);
            }
        }
    }

    /// Step `i` fails as not confirmed; the run stops there.
    fn refuse_unconfirmed(&mut self, i: usize, why: String) {
        if self.interrupted.is_some() {
            // The signal's own skip reason says it.
            return;
        }
        self.note(NoteKind::NotConfirmed, why.clone());
        self.set_state(i, StepState::Failed, Some(why.clone()));
        self.finished_order.push(i);
        self.failure.get_or_insert_with(|| why.clone());
        self.not_confirmed.get_or_insert(why);
    }

    fn note(&mut self, kind: NoteKind, message: String) {
        self.changes.push(Change::Note {
            kind,
            message,
            at: crate::clock::wall_ms(),
        });
    }

    fn skip_reason(&self, i: usize) -> Option<String> {
        let steps = self.steps;
        let step = &steps[i];
        if let Some(sig) = self.interrupted
            && step.when != When::Always
        {
            return Some(format!(
                "not started: ward was interrupted ({})",
                sig.name()
            ));
        }
        if self.state_lost.is_some() && step.when == When::Success {
            return Some("not started: the state could not be recorded".into());
        }
        for &(dep, kind) in &self.deps[i] {
            if kind == EdgeKind::Needs && self.state[dep] != StepState::Succeeded {
                return Some(format!(
                    "needs `{}`, which {}",
                    self.steps[dep].id,
                    past_tense(self.state[dep])
                ));
            }
        }
        match (step.when, &self.failure) {
            (When::Success, Some(f)) => return Some(format!("the run has failed ({f})")),
            (When::Failure, None) => {
                return Some("`when: failure` and the run has not failed".into());
            }
            _ => {}
        }
        if let Some(c) = step.condition.as_ref().filter(|c| !c.value) {
            return Some(format!("`if` is false: {}", c.expr));
        }
        None
    }

    fn resolve(&self, path: &str) -> PathBuf {
        self.options.work_dir.join(path)
    }

    fn set_state(&mut self, i: usize, state: StepState, reason: Option<String>) {
        self.state[i] = state;
        if state == StepState::Skipped {
            self.reporter.event(&Event::StepSkipped {
                step: &self.steps[i].id,
                reason: reason.as_deref().unwrap_or(""),
            });
        }
        self.changes.push(Change::Step {
            step: self.steps[i].id.clone(),
            state,
            reason,
            at: crate::clock::wall_ms(),
        });
    }

    fn start_attempt(&mut self, i: usize) -> (usize, u32, PathBuf) {
        self.attempts[i] += 1;
        self.tries[i] += 1;
        self.running += 1;
        self.state[i] = StepState::Running;
        let attempt = self.attempts[i];
        let log = self
            .options
            .log_dir
            .join(format!("{}.{attempt}.log", self.steps[i].id));
        self.changes.push(Change::AttemptStarted {
            step: self.steps[i].id.clone(),
            attempt,
            log_path: log.display().to_string(),
            at: crate::clock::wall_ms(),
        });
        (i, attempt, log)
    }

    /// The context for an action attempt, and the cell that cancels it.
    fn action_ctx(&self, i: usize, attempt: Attempt) -> (ActionCtx, Arc<CancelCell>) {
        let (mut ctx, cancel) = ActionCtx::new(
            attempt,
            self.v.facts.clone(),
            self.playbook_hash.clone(),
            self.steps[i].param_vars.clone(),
        );
        ctx.copies_dir = self.options.copies_dir.clone();
        (ctx, cancel)
    }

    /// The one value an attempt of step `i` is run from (a command step's
    /// program, an action's context).
    fn attempt_spec(
        &self,
        i: usize,
        attempt: u32,
        log: &Path,
        echo: Option<mpsc::UnboundedSender<(usize, String)>>,
    ) -> Attempt {
        let step = &self.steps[i];
        let argv = super::item::argv_of(&step.body);
        let mut env = super::item::ward_env(
            self.run_id,
            &self.v.playbook.name.value,
            &step.id,
            attempt,
            super::orphans::attempt_id(self.run_id, &step.id, attempt),
        );
        env.extend(step.env.iter().cloned());
        Attempt {
            step: step.id.clone(),
            index: i,
            run_id: self.run_id.to_owned(),
            argv,
            env,
            cwd: self.options.work_dir.clone(),
            log_path: log.to_path_buf(),
            timeout: step.timeout.map(|t| t.std()),
            kill_grace: self.options.kill_grace,
            shield_from_group_signals: self.is_finalizer(i) || self.interrupted.is_some(),
            echo,
            mask: self.mask.clone(),
        }
    }

    fn attempt_done(
        &mut self,
        i: usize,
        attempt: u32,
        log: &Path,
        r: &AttemptResult,
        tasks: &mut JoinSet<Done>,
        cancel: &watch::Receiver<Cancel>,
    ) {
        self.running -= 1;
        let steps = self.steps;
        let step = &steps[i];
        if !r.left_behind.is_empty() {
            self.report_left_behind(i, log, &r.left_behind);
        }
        let ok = matches!(r.end, AttemptEnd::Exited(Exit::Code(c)) if step.ok_codes.contains(&c));
        // What the step says it made must be on disk before its success is
        // recorded: a resume skips a step whose `creates` path exists.
        let unsynced = match (&step.creates, ok) {
            (Some(path), true) => sync_path(&self.resolve(path)).err().map(|e| e.to_string()),
            _ => None,
        };
        let (state, outcome, message, will_retry) = if let Some(why) = unsynced {
            (StepState::Failed, AttemptOutcome::Failed, Some(why), false)
        } else if ok {
            if !r.unflushed.is_empty() {
                // Recorded in the same commit as the success, so a resume
                // never trusts this output without knowing it was unflushed.
                self.changes.push(Change::Durability {
                    step: step.id.clone(),
                    unflushed: Some(Unflushed {
                        boot_id: self.boot_id.clone(),
                        paths: r
                            .unflushed
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect(),
                    }),
                });
                spawn_flush(tasks, i, r.unflushed.clone());
            }
            (
                StepState::Succeeded,
                AttemptOutcome::Succeeded,
                r.note.clone(),
                false,
            )
        } else {
            let stopped_why = match (self.interrupted, &self.state_lost) {
                (Some(sig), _) => format!("stopped because ward was interrupted ({})", sig.name()),
                (None, Some(_)) => "stopped because the state could not be recorded".to_owned(),
                (None, None) => "stopped".to_owned(),
            };
            let message = failure_message(r, step, &stopped_why);
            let outcome = match r.end {
                AttemptEnd::TimedOut(_) => AttemptOutcome::TimedOut,
                _ => AttemptOutcome::Failed,
            };
            if matches!(r.end, AttemptEnd::Stopped { .. }) {
                (
                    StepState::Interrupted,
                    AttemptOutcome::Interrupted,
                    Some(message),
                    false,
                )
            } else if self.tries[i] < step.retry.attempts && self.interrupted.is_none() {
                (StepState::Pending, outcome, Some(message), true)
            } else {
                (StepState::Failed, outcome, Some(message), false)
            }
        };
        self.reporter.event(&Event::StepFinished(StepEnd {
            step: &step.id,
            state,
            attempt,
            elapsed: r.elapsed,
            exit_code: r.end.exit_code(),
            message: message.as_deref(),
            log,
            will_retry,
        }));
        self.state[i] = state;
        match state {
            StepState::Succeeded => self.finished_order.push(i),
            StepState::Failed if self.failure.is_none() => {
                self.failure = Some(format!(
                    "step `{}` failed: {}",
                    step.id,
                    message.as_deref().unwrap_or("")
                ));
            }
            _ => {}
        }
        if will_retry {
            let delay = jittered(step.retry.delay_before(self.tries[i] + 1));
            self.retry_waiting.insert(i);
            let mut cancel = cancel.clone();
            tasks.spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = cancel.wait_for(|c| *c != Cancel::No) => {}
                }
                Done::RetryDue { step: i }
            });
        }
        self.changes.push(Change::AttemptFinished {
            step: step.id.clone(),
            attempt,
            state,
            outcome,
            exit_code: r.end.exit_code(),
            signal: r.end.signal(),
            message,
            details: r.details.clone(),
            at: crate::clock::wall_ms(),
        });
    }

    /// Says (terminal, log, state) which processes an attempt left running
    /// and ward stopped.
    fn report_left_behind(&mut self, i: usize, log: &Path, left: &[super::orphans::LeftBehind]) {
        let list = left
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        self.reporter.event(&Event::ChildrenStopped {
            step: &self.steps[i].id,
            processes: &list,
        });
        let line = format!(
            "ward: stopped what this attempt left running (`keep_children: true` keeps it): {list}\n"
        );
        // The log is best effort, like the step's own output.
        if let Ok(mut f) = crate::state::private::open_log(log) {
            let _ = std::io::Write::write_all(&mut f, line.as_bytes());
        }
        self.changes.push(Change::Note {
            kind: NoteKind::ChildrenStopped,
            message: format!("step `{}`: stopped {list}", self.steps[i].id),
            at: crate::clock::wall_ms(),
        });
    }

    /// Records that a step's output reached the disk, or fails the step
    /// (and the run) when it could not: its output is not safe to keep.
    fn flushed(&mut self, i: usize, result: Result<(), FlushError>) {
        match result {
            Ok(()) => self.changes.push(Change::Durability {
                step: self.steps[i].id.clone(),
                unflushed: None,
            }),
            Err(e) => {
                let message = format!("its output could not be written to disk: {e}");
                self.reporter.event(&Event::FlushFailed {
                    step: &self.steps[i].id,
                    message: &message,
                });
                if self.failure.is_none() {
                    self.failure = Some(format!("step `{}` failed: {message}", self.steps[i].id));
                }
                self.set_state(i, StepState::Failed, Some(message));
            }
        }
    }

    fn internal_failure(&mut self, message: String) {
        self.running = self.running.saturating_sub(1);
        if self.failure.is_none() {
            self.failure = Some(message);
        }
    }

    /// Runs the compensation of every succeeded step that has one, newest
    /// first, one at a time. Signals are still heard: compensations are
    /// finalizers, so only ward abandoning them stops them.
    async fn compensate(
        &mut self,
        store: &mut dyn Store,
        cancel: &watch::Receiver<Cancel>,
        signals: &mut Option<Signals>,
        senders: &Senders,
    ) {
        let order: Vec<usize> = self.finished_order.iter().rev().copied().collect();
        for i in order {
            if self.abandoned.is_some() {
                return;
            }
            let Some(target) = self.steps[i].compensate.clone() else {
                continue;
            };
            if self.state[i] != StepState::Succeeded {
                continue;
            }
            let Some(c) = self.steps.iter().position(|s| s.id == target) else {
                continue;
            };
            let succeeded = self
                .attempt_compensation(c, store, cancel, signals, senders)
                .await;
            if succeeded {
                let reason = format!("undone by `{target}` because the run failed");
                self.set_state(i, StepState::Compensated, Some(reason));
                self.commit(store).await;
            }
        }
    }

    /// Attempts compensating step `c`, with its retries, outside the DAG;
    /// true if it succeeded.
    async fn attempt_compensation(
        &mut self,
        c: usize,
        store: &mut dyn Store,
        cancel: &watch::Receiver<Cancel>,
        signals: &mut Option<Signals>,
        senders: &Senders,
    ) -> bool {
        self.tries[c] = 0;
        loop {
            let (_, attempt, log) = self.start_attempt(c);
            self.commit(store).await;
            let spec = self.attempt_spec(c, attempt, &log, None);
            let cleanup = self.cleanup(c, attempt);
            let cancel_attempt = cancel.clone();
            let of = self.steps[c].retry.attempts;
            let attempt_run = match &self.steps[c].body {
                ResolvedBody::Action(params) => {
                    let timeout = self.steps[c].timeout.map(|t| t.std());
                    let (ctx, cell) = self.action_ctx(c, spec);
                    self.reporter.event(&Event::StepStarted {
                        step: &self.steps[c].id,
                        attempt,
                        of,
                        progress: Some(&ctx.progress_handle()),
                    });
                    let started = start_action(params.clone(), ctx, cell);
                    tokio::spawn(async move {
                        let result = wait_action(started, timeout, cancel_attempt.clone()).await;
                        after_attempt(result, cleanup, &cancel_attempt).await
                    })
                }
                _ => {
                    self.reporter.event(&Event::StepStarted {
                        step: &self.steps[c].id,
                        attempt,
                        of,
                        progress: None,
                    });
                    tokio::spawn(async move {
                        let result = run_attempt(spec, cancel_attempt.clone()).await;
                        after_attempt(result, cleanup, &cancel_attempt).await
                    })
                }
            };
            tokio::pin!(attempt_run);
            let mut ticker = ticker(self.reporter.tick_interval());
            let result = loop {
                tokio::select! {
                    joined = &mut attempt_run => break joined,
                    Some(sig) = next_signal(signals) => self.on_signal(sig, senders),
                    () = tick(&mut ticker) => self.reporter.tick(),
                }
            };
            let result = match result {
                Ok(r) => r,
                Err(e) => {
                    self.internal_failure(format!("internal error in a step task: {e}"));
                    return false;
                }
            };
            let mut timers = JoinSet::new();
            self.attempt_done(c, attempt, &log, &result, &mut timers, cancel);
            self.commit(store).await;
            match self.state[c] {
                StepState::Succeeded => {
                    // Its output, if unflushed, is on disk before the run ends.
                    while let Some(done) = timers.join_next().await {
                        if let Ok(Done::Flushed { step, result }) = done {
                            self.flushed(step, result);
                        }
                    }
                    self.commit(store).await;
                    return self.state[c] == StepState::Succeeded;
                }
                StepState::Pending if self.abandoned.is_none() => {
                    // Wait out the retry delay, then go again.
                    while timers.join_next().await.is_some() {}
                    self.retry_waiting.remove(&c);
                }
                _ => return false,
            }
        }
    }

    /// Records the run's end (unless the state is lost) and reports it.
    async fn finish(
        &mut self,
        store: &mut dyn Store,
        started: Instant,
        fatal: Option<String>,
    ) -> Outcome {
        if let Some(sig) = self.abandoned {
            // Finalizers that did not run stay pending, with the reason, so
            // that `ward status` shows them and `ward resume` runs them.
            let reason = format!(
                "not run: ward abandoned it on {}; `ward resume{} {}` runs it",
                sig.name(),
                self.options.state_flag,
                self.run_id
            );
            for i in 0..self.steps.len() {
                if self.state[i] == StepState::Pending && self.abandoned_finalizer(i) {
                    self.set_state(i, StepState::Pending, Some(reason.clone()));
                }
            }
        }
        let (state, ending, message) = self.verdict(fatal.clone());
        self.changes.push(Change::Run {
            state,
            message: message.clone(),
            at: crate::clock::wall_ms(),
        });
        self.commit(store).await;
        // The last commit itself may have been the one that failed.
        let (state, ending, message) = if self.state_lost.is_some() {
            self.verdict(fatal)
        } else {
            (state, ending, message)
        };
        self.reporter.event(&Event::RunFinished {
            run_id: self.run_id,
            state,
            message: message.as_deref(),
            elapsed: started.elapsed(),
        });
        Outcome {
            state,
            ending,
            message,
        }
    }

    /// A finalizer that was due but did not finish because ward abandoned it.
    fn abandoned_finalizer(&self, i: usize) -> bool {
        let due = match self.steps[i].when {
            When::Always => true,
            When::Failure => self.failure.is_some(),
            When::Success => false,
        };
        due && !self.steps[i].compensation_only
            && matches!(
                self.state[i],
                StepState::Pending | StepState::Running | StepState::Interrupted
            )
    }

    /// The run's final state, how it ended and the message.
    fn verdict(&self, fatal: Option<String>) -> (RunState, Ending, Option<String>) {
        let failure = fatal.or_else(|| self.failure.clone());
        if let Some(lost) = &self.state_lost {
            let state = if self.interrupted.is_some() {
                RunState::Interrupted
            } else {
                RunState::Failed
            };
            let mut message = if self.lease_lost {
                // Another run holds the lock now: a resume would be refused
                // while it runs, and that run records this one `crashed`.
                format!(
                    "the state could not be recorded ({lost}); the outcomes printed above are \
                     not in the state database: see `ward status{} {}` once the run holding the \
                     lock ended, then `ward resume` it if it is still to finish",
                    self.options.state_flag, self.run_id
                )
            } else {
                format!(
                    "the state could not be recorded ({lost}); the outcomes printed above are \
                     not in the state database: make room, then run `ward resume{} {}`",
                    self.options.state_flag, self.run_id
                )
            };
            if let Some(f) = failure {
                message.push_str(&format!("; before that, {f}"));
            }
            return (state, Ending::StateLost, Some(message));
        }
        if let Some(sig) = self.abandoned {
            let left: Vec<String> = (0..self.steps.len())
                .filter(|&i| self.abandoned_finalizer(i))
                .map(|i| format!("`{}`", self.steps[i].id))
                .collect();
            let message = if left.is_empty() {
                format!("abandoned on {}", sig.name())
            } else {
                format!(
                    "abandoned on {}: {} did not run; `ward resume{} {}` runs {}",
                    sig.name(),
                    left.join(", "),
                    self.options.state_flag,
                    self.run_id,
                    if left.len() == 1 { "it" } else { "them" }
                )
            };
            return (RunState::Interrupted, Ending::Abandoned(sig), Some(message));
        }
        match (self.interrupted, failure) {
            (Some(sig), _) => (
                RunState::Interrupted,
                Ending::Interrupted(sig),
                Some(format!("interrupted by {}", sig.name())),
            ),
            (None, Some(f)) if self.not_confirmed.is_some() => {
                (RunState::Failed, Ending::NotConfirmed, Some(f))
            }
            (None, Some(f)) if self.only_items_failed() => {
                (RunState::Failed, Ending::ItemsFailed, Some(f))
            }
            (None, Some(f)) => (RunState::Failed, Ending::Failed, Some(f)),
            (None, None) => (RunState::Succeeded, Ending::Succeeded, None),
        }
    }
}

impl Scheduler<'_, '_> {
    /// A task ended: its result is taken in (`cancels`: the normal steps'
    /// and the finalizers' cancel signals).
    fn joined(
        &mut self,
        joined: Result<Done, tokio::task::JoinError>,
        tasks: &mut JoinSet<Done>,
        [cancel_rx, late_rx]: [&watch::Receiver<Cancel>; 2],
    ) {
        match joined {
            Ok(Done::Attempt {
                step,
                attempt,
                log,
                result,
            }) => {
                // A finalizer's retry wait is not cut short by the first signal.
                let cancel = if self.is_finalizer(step) {
                    late_rx
                } else {
                    cancel_rx
                };
                self.attempt_done(step, attempt, &log, &result, tasks, cancel);
            }
            Ok(Done::RetryDue { step }) => {
                self.retry_waiting.remove(&step);
            }
            Ok(Done::Confirmed { step, answer }) => self.answered(step, answer),
            Ok(Done::Flushed { step, result }) => self.flushed(step, result),
            Ok(Done::Item {
                step,
                item,
                log,
                result,
            }) => self.item_done(step, item, &log, &result),
            Ok(Done::Listed {
                step,
                attempt,
                log,
                values,
            }) => self.listed(step, attempt, log, values),
            Err(e) if e.is_cancelled() => {}
            Err(e) => self.internal_failure(format!("internal error in a step task: {e}")),
        }
    }

    /// True when the run failed only because items of `for_each` steps
    /// failed: every failed step is such a step (exit 10, not 1).
    fn only_items_failed(&self) -> bool {
        let mut failed = (0..self.steps.len())
            .filter(|&i| self.state[i] == StepState::Failed)
            .peekable();
        failed.peek().is_some()
            && failed.all(|i| self.items_failed.contains(&i))
            && self.item_failed
    }
}

fn past_tense(state: StepState) -> &'static str {
    match state {
        StepState::Failed => "failed",
        StepState::Skipped => "was skipped",
        StepState::Interrupted => "was interrupted",
        StepState::Compensated => "was undone",
        StepState::Succeeded => "succeeded",
        StepState::Pending | StepState::Running => "did not finish",
    }
}

pub(super) fn failure_message(r: &AttemptResult, step: &ResolvedStep, stopped_why: &str) -> String {
    match &r.end {
        AttemptEnd::TimedOut(_) => {
            let limit = step.timeout.map(|t| t.to_string()).unwrap_or_default();
            format!("timed out after {limit}; its process group was stopped")
        }
        AttemptEnd::Failed { error, .. }
        | AttemptEnd::Stopped {
            error: Some(error), ..
        } => error.clone(),
        AttemptEnd::Stopped { error: None, .. } => stopped_why.to_owned(),
        AttemptEnd::Exited(Exit::Code(code)) => {
            if step.ok_codes == [0] {
                format!("exit code {code}")
            } else {
                let ok: Vec<String> = step.ok_codes.iter().map(i32::to_string).collect();
                format!("exit code {code} (ok: {})", ok.join(", "))
            }
        }
        AttemptEnd::Exited(Exit::Signal(sig)) => format!("killed by signal {sig}"),
    }
}

/// ±20% so that retries of many steps (or hosts) do not fall in step.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.8 + 0.4 * fastrand::f64())
}

/// Flushes the file systems holding `paths` on a blocking thread, started
/// at once (not when the task is first polled, after the next checkpoint).
fn spawn_flush(tasks: &mut JoinSet<Done>, step: usize, paths: Vec<PathBuf>) {
    let flush = tokio::task::spawn_blocking(move || flush_paths(&paths));
    tasks.spawn(async move {
        let result = flush.await.unwrap_or_else(|e| Err(FlushError::Stopped(e)));
        Done::Flushed { step, result }
    });
}

/// Flushes the file systems holding `paths` (blocking).
pub(super) fn flush_paths(paths: &[PathBuf]) -> Result<(), FlushError> {
    for path in paths {
        // A later step may already have removed the output (a staging
        // folder): then its nearest remaining folder is flushed, which
        // is on the same file system and makes the removal durable.
        let dir = path
            .ancestors()
            .find_map(|p| std::fs::File::open(p).ok())
            .ok_or_else(|| FlushError::NoFolder(path.clone()))?;
        rustix::fs::syncfs(&dir).map_err(|error| FlushError::FileSystem {
            path: path.clone(),
            error,
        })?;
    }
    Ok(())
}

/// Makes a `creates` path (file or folder) and its folder entry durable.
/// A path the step did not make is no error (the next run does the step
/// again), nor is one ward cannot open to flush (e.g. a write-only file of
/// another user's step); a flush that fails (EIO, a full or lost disk) is.
fn sync_path(path: &Path) -> Result<(), FlushError> {
    let flush = |p: &Path| match std::fs::File::open(p) {
        Ok(f) => f.sync_all().map_err(|error| FlushError::Creates {
            path: p.to_path_buf(),
            error,
        }),
        Err(_) => Ok(()),
    };
    flush(path)?;
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => flush(parent),
        _ => Ok(()),
    }
}
