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

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::ExecOptions;
use super::action_run::{start_action, wait_action};
use super::events::{Event, Reporter, StepEnd};
use super::process::{
    AttemptResult, AttemptSpec, Cancel, run_attempt, spawn_attempt, wait_attempt,
};
use super::signals::{Received, Signals};
use crate::action::{ActionCtx, CtxParts};
use crate::model::When;
use crate::state::{Change, RunState, StateError, StepState, Store, Unflushed};
use crate::validate::{ResolvedBody, ResolvedStep, Validated};

/// A run to carry out.
pub struct Execution<'a> {
    /// The validated playbook.
    pub validated: &'a Validated,
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
    /// Process exit code to use (0, 1, 130, 143).
    pub exit_code: i32,
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
    /// A succeeded step's output was flushed to disk (or could not be).
    Flushed {
        step: usize,
        result: Result<(), String>,
    },
}

struct Scheduler<'a, 'r> {
    steps: &'a [ResolvedStep],
    /// What each step waits for (from the DAG, computed once).
    deps: Vec<Vec<(usize, crate::plan::EdgeKind)>>,
    v: &'a Validated,
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
    interrupted: Option<Received>,
    changes: Vec<Change>,
    /// This boot of the machine (recorded with unflushed output).
    boot_id: String,
    reporter: &'r mut dyn Reporter,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs the playbook to its end. Store errors abort the run (and are
/// returned): ward does not go on without its checkpoints.
pub async fn execute(
    exec: Execution<'_>,
    store: &mut dyn Store,
    reporter: &mut dyn Reporter,
) -> Result<Outcome, StateError> {
    let started = Instant::now();
    let v = exec.validated;
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
        playbook_hash: crate::run::hash(v.playbook.source.text()),
        running: 0,
        finished_order: Vec::new(),
        failure: None,
        interrupted: None,
        changes: Vec::new(),
        boot_id: crate::state::boot::boot_id(),
        reporter,
    };
    if let Err(e) = crate::state::private::ensure_log_dir(&s.options.log_dir) {
        let message = format!(
            "cannot create log folder {}: {e}",
            s.options.log_dir.display()
        );
        return s.finish(store, started, Some(message)).map(|mut o| {
            o.state = RunState::Failed;
            o
        });
    }

    // Attempts started before an interruption are stopped by it; the
    // `when: always` steps started after it only by a second signal.
    let (cancel_tx, cancel_rx) = watch::channel(Cancel::No);
    let (late_tx, late_rx) = watch::channel(Cancel::No);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<(usize, String)>();
    let mut signals = Signals::install().ok();
    let mut tasks: JoinSet<Done> = JoinSet::new();
    // Output kept from before a crash (same boot) is flushed before the run
    // can end; the steps after it need not wait (rule 6).
    for (step, paths) in exec.start.flush_first {
        spawn_flush(&mut tasks, step, paths);
    }

    loop {
        let launch = s.decide();
        // Children start first, then the checkpoint is written: the fsync
        // overlaps with their start-up. Safe because a step that started
        // while recorded `pending` is simply run again after a crash, like
        // one recorded `running` (state/recovery.rs, rule 3).
        for (step, attempt, log) in launch {
            s.reporter.event(&Event::StepStarted {
                step: &s.steps[step].id,
                attempt,
                of: s.steps[step].retry.attempts.max(s.tries[step]),
            });
            let spec = s.attempt_spec(step, attempt, &log);
            let echo = s.options.echo_output.then(|| (step, out_tx.clone()));
            let cancel = if s.interrupted.is_some() {
                late_rx.clone()
            } else {
                cancel_rx.clone()
            };
            if let ResolvedBody::Action(params) = &s.steps[step].body {
                let (ctx, flag) = s.action_ctx(step, spec, echo);
                let started = start_action(params.clone(), ctx, flag);
                let timeout = s.steps[step].timeout.map(|t| t.std());
                tasks.spawn(async move {
                    let result = wait_action(started, timeout, cancel).await;
                    Done::Attempt {
                        step,
                        attempt,
                        log,
                        result,
                    }
                });
                continue;
            }
            let started = spawn_attempt(&spec, echo);
            tasks.spawn(async move {
                let result = wait_attempt(started, spec, cancel).await;
                Done::Attempt {
                    step,
                    attempt,
                    log,
                    result,
                }
            });
        }
        if let Err(e) = store.apply(s.run_id, &s.changes) {
            // Without checkpoints ward must not go on: stop what runs, then report.
            let _ = cancel_tx.send(Cancel::Kill);
            let _ = late_tx.send(Cancel::Kill);
            while tasks.join_next().await.is_some() {}
            return Err(e);
        }
        s.changes.clear();
        if tasks.is_empty() {
            break;
        }
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(Ok(Done::Attempt { step, attempt, log, result })) => s.attempt_done(step, attempt, &log, &result, &mut tasks, &cancel_rx),
                Some(Ok(Done::RetryDue { step })) => { s.retry_waiting.remove(&step); }
                Some(Ok(Done::Flushed { step, result })) => s.flushed(step, result),
                Some(Err(e)) => s.internal_failure(format!("internal error in a step task: {e}")),
                None => {}
            },
            Some(sig) = next_signal(&mut signals) => {
                if s.interrupted.is_none() {
                    s.interrupted = Some(sig);
                    s.reporter.event(&Event::Interrupted { signal: sig.name() });
                    let _ = cancel_tx.send(Cancel::Terminate);
                } else {
                    let _ = cancel_tx.send(Cancel::Kill);
                    let _ = late_tx.send(Cancel::Kill);
                }
            }
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
        s.compensate(store, &cancel_rx).await?;
    }
    s.finish(store, started, None)
}

async fn next_signal(signals: &mut Option<Signals>) -> Option<Received> {
    match signals {
        Some(s) => Some(s.recv().await),
        None => std::future::pending().await,
    }
}

impl Scheduler<'_, '_> {
    /// Decides every step that can be decided now; returns the attempts to start.
    fn decide(&mut self) -> Vec<(usize, u32, PathBuf)> {
        let mut launch = Vec::new();
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
                    self.set_state(i, StepState::Succeeded, Some(reason));
                    self.finished_order.push(i);
                    progressed = true;
                    continue;
                }
                launch.push(self.start_attempt(i));
                progressed = true;
            }
            if !progressed {
                return launch;
            }
        }
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
        for &(dep, kind) in &self.deps[i] {
            if kind == crate::plan::EdgeKind::Needs && self.state[dep] != StepState::Succeeded {
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
            at: now_ms(),
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
            at: now_ms(),
        });
        (i, attempt, log)
    }

    /// The context for an action attempt, and its cancellation flag.
    fn action_ctx(
        &self,
        i: usize,
        spec: AttemptSpec,
        echo: Option<(usize, mpsc::UnboundedSender<(usize, String)>)>,
    ) -> (ActionCtx, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        let ctx = ActionCtx::new(CtxParts {
            step: self.steps[i].id.clone(),
            index: i,
            run_id: self.run_id.to_owned(),
            work_dir: spec.cwd,
            env: spec.env,
            facts: self.v.facts.clone(),
            playbook_hash: self.playbook_hash.clone(),
            kill_grace: spec.kill_grace,
            log_path: spec.log_path,
            cancelled: flag.clone(),
            echo: echo.map(|(_, tx)| tx),
        });
        (ctx, flag)
    }

    fn attempt_spec(&self, i: usize, attempt: u32, log: &Path) -> AttemptSpec {
        let step = &self.steps[i];
        let argv = match &step.body {
            ResolvedBody::Run(line) => [
                "bash", "-o", "errexit", "-o", "nounset", "-o", "pipefail", "-c", line,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            ResolvedBody::Cmd(argv) => argv.clone(),
            // `ward run` refuses playbooks with actions before anything starts.
            ResolvedBody::Action(_) => Vec::new(),
        };
        let mut env = vec![
            ("WARD_RUN_ID".to_owned(), self.run_id.to_owned()),
            ("WARD_STEP".to_owned(), step.id.clone()),
            ("WARD_ATTEMPT".to_owned(), attempt.to_string()),
        ];
        env.extend(step.env.iter().cloned());
        AttemptSpec {
            argv,
            env,
            cwd: self.options.work_dir.clone(),
            log_path: log.to_path_buf(),
            timeout: step.timeout.map(|t| t.std()),
            kill_grace: self.options.kill_grace,
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
        let ok = r.error.is_none()
            && !r.timed_out
            && !r.interrupted
            && r.exit_code.is_some_and(|c| step.ok_codes.contains(&c));
        let (state, outcome, message, will_retry) = if ok {
            if let Some(path) = &step.creates {
                sync_path(&self.resolve(path));
            }
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
            (StepState::Succeeded, "succeeded", r.note.clone(), false)
        } else {
            let message = failure_message(r, step);
            if r.interrupted {
                (StepState::Interrupted, "interrupted", Some(message), false)
            } else if self.tries[i] < step.retry.attempts && self.interrupted.is_none() {
                (
                    StepState::Pending,
                    if r.timed_out { "timed-out" } else { "failed" },
                    Some(message),
                    true,
                )
            } else {
                (
                    StepState::Failed,
                    if r.timed_out { "timed-out" } else { "failed" },
                    Some(message),
                    false,
                )
            }
        };
        self.reporter.event(&Event::StepFinished(StepEnd {
            step: &step.id,
            state,
            attempt,
            elapsed: r.elapsed,
            exit_code: r.exit_code,
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
            exit_code: r.exit_code,
            signal: r.signal,
            message,
            details: r.details.as_ref().map(|d| d.to_string()),
            at: now_ms(),
        });
    }

    /// Records that a step's output reached the disk, or fails the step
    /// (and the run) when it could not: its output is not safe to keep.
    fn flushed(&mut self, i: usize, result: Result<(), String>) {
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
    /// first, one at a time.
    async fn compensate(
        &mut self,
        store: &mut dyn Store,
        cancel: &watch::Receiver<Cancel>,
    ) -> Result<(), StateError> {
        let order: Vec<usize> = self.finished_order.iter().rev().copied().collect();
        for i in order {
            let Some(target) = self.steps[i].compensate.clone() else {
                continue;
            };
            if self.state[i] != StepState::Succeeded {
                continue;
            }
            let Some(c) = self.steps.iter().position(|s| s.id == target) else {
                continue;
            };
            let succeeded = self.run_alone(c, store, cancel).await?;
            if succeeded {
                let reason = format!("undone by `{target}` because the run failed");
                self.set_state(i, StepState::Compensated, Some(reason));
                store.apply(self.run_id, &self.changes)?;
                self.changes.clear();
            }
        }
        Ok(())
    }

    /// Runs one step with its retries, outside the DAG (compensation).
    async fn run_alone(
        &mut self,
        c: usize,
        store: &mut dyn Store,
        cancel: &watch::Receiver<Cancel>,
    ) -> Result<bool, StateError> {
        self.tries[c] = 0;
        loop {
            let (_, attempt, log) = self.start_attempt(c);
            store.apply(self.run_id, &self.changes)?;
            self.changes.clear();
            self.reporter.event(&Event::StepStarted {
                step: &self.steps[c].id,
                attempt,
                of: self.steps[c].retry.attempts,
            });
            let spec = self.attempt_spec(c, attempt, &log);
            let result = match &self.steps[c].body {
                ResolvedBody::Action(params) => {
                    let timeout = self.steps[c].timeout.map(|t| t.std());
                    let (ctx, flag) = self.action_ctx(c, spec, None);
                    let started = start_action(params.clone(), ctx, flag);
                    wait_action(started, timeout, cancel.clone()).await
                }
                _ => run_attempt(spec, cancel.clone(), None).await,
            };
            let mut timers = JoinSet::new();
            self.attempt_done(c, attempt, &log, &result, &mut timers, cancel);
            store.apply(self.run_id, &self.changes)?;
            self.changes.clear();
            match self.state[c] {
                StepState::Succeeded => {
                    // Its output, if unflushed, is on disk before the run ends.
                    while let Some(done) = timers.join_next().await {
                        if let Ok(Done::Flushed { step, result }) = done {
                            self.flushed(step, result);
                        }
                    }
                    store.apply(self.run_id, &self.changes)?;
                    self.changes.clear();
                    return Ok(self.state[c] == StepState::Succeeded);
                }
                StepState::Pending => {
                    // Wait out the retry delay, then go again.
                    while timers.join_next().await.is_some() {}
                    self.retry_waiting.remove(&c);
                }
                _ => return Ok(false),
            }
        }
    }

    fn finish(
        &mut self,
        store: &mut dyn Store,
        started: Instant,
        fatal: Option<String>,
    ) -> Result<Outcome, StateError> {
        let (state, exit_code, message) =
            match (self.interrupted, fatal.or_else(|| self.failure.clone())) {
                (Some(sig), _) => (
                    RunState::Interrupted,
                    sig.exit_code(),
                    Some(format!("interrupted by {}", sig.name())),
                ),
                (None, Some(f)) => (RunState::Failed, crate::error::exit::FAILED, Some(f)),
                (None, None) => (RunState::Succeeded, crate::error::exit::OK, None),
            };
        self.changes.push(Change::Run {
            state,
            message: message.clone(),
            at: now_ms(),
        });
        store.apply(self.run_id, &self.changes)?;
        self.changes.clear();
        self.reporter.event(&Event::RunFinished {
            run_id: self.run_id,
            state,
            message: message.as_deref(),
            elapsed: started.elapsed(),
        });
        Ok(Outcome {
            state,
            exit_code,
            message,
        })
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

fn failure_message(r: &AttemptResult, step: &ResolvedStep) -> String {
    if r.timed_out {
        let limit = step.timeout.map(|t| t.to_string()).unwrap_or_default();
        return format!("timed out after {limit}; its process group was stopped");
    }
    if let Some(e) = &r.error {
        return e.clone();
    }
    if r.interrupted {
        return "stopped because ward was interrupted".into();
    }
    match (r.exit_code, r.signal) {
        (Some(code), _) => {
            if step.ok_codes == [0] {
                format!("exit code {code}")
            } else {
                let ok: Vec<String> = step.ok_codes.iter().map(i32::to_string).collect();
                format!("exit code {code} (ok: {})", ok.join(", "))
            }
        }
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => "ended without a status".into(),
    }
}

/// ±20% so that retries of many steps (or hosts) do not fall in step.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.8 + 0.4 * fastrand::f64())
}

/// Flushes the file systems holding `paths` on a blocking thread, started
/// at once (not when the task is first polled, after the next checkpoint).
fn spawn_flush(tasks: &mut JoinSet<Done>, step: usize, paths: Vec<PathBuf>) {
    let flush = tokio::task::spawn_blocking(move || {
        for path in &paths {
            // A later step may already have removed the output (a staging
            // folder): then its nearest remaining folder is flushed, which
            // is on the same file system and makes the removal durable.
            let dir = path
                .ancestors()
                .find_map(|p| std::fs::File::open(p).ok())
                .ok_or_else(|| format!("cannot open {} or any folder above it", path.display()))?;
            rustix::fs::syncfs(&dir)
                .map_err(|e| format!("cannot flush {}: {e}", path.display()))?;
        }
        Ok(())
    });
    tasks.spawn(async move {
        let result = flush
            .await
            .unwrap_or_else(|e| Err(format!("the flush stopped unexpectedly: {e}")));
        Done::Flushed { step, result }
    });
}

/// Makes a `creates` path (file or folder) and its folder entry durable.
fn sync_path(path: &Path) {
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.sync_all();
    }
    if let Some(parent) = path.parent()
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
}
