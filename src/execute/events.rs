//! What the executor tells the outside world while it runs.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::StopSignal;
use crate::progress::Progress;
use crate::state::{ItemState, RunState, StepState};

/// Told when an item of a `for_each` step ends (succeeded, failed, or
/// stopped to run again), for `on_item:` notifications. Called from the
/// scheduler's loop: it must return at once and never fail (sending is the
/// notifier's business, on threads of its own).
pub trait ItemNotifier: Send + Sync + std::fmt::Debug {
    /// One item ended.
    fn item_ended(&self, ended: ItemEnded<'_>);
}

/// An item that ended, as [`ItemNotifier::item_ended`] is told.
#[derive(Clone, Copy, Debug)]
pub struct ItemEnded<'a> {
    /// The run.
    pub run_id: &'a str,
    /// The `for_each` step.
    pub step: &'a str,
    /// The item's key.
    pub key: &'a str,
    /// The item itself.
    pub item: &'a serde_json::Value,
    /// Its new state.
    pub state: ItemState,
    /// Why it failed (or was stopped).
    pub message: Option<&'a str>,
    /// The step attempt's log (one line per item), where a notification
    /// that could not be sent is said.
    pub step_log: &'a Path,
}

/// How an attempt or step ended, for reporters.
#[derive(Clone, Debug)]
pub struct StepEnd<'a> {
    /// The step.
    pub step: &'a str,
    /// Its new state.
    pub state: StepState,
    /// Attempt number.
    pub attempt: u32,
    /// How long the attempt took.
    pub elapsed: Duration,
    /// Exit code, if the process exited.
    pub exit_code: Option<i32>,
    /// What happened, in words (failures, timeouts).
    pub message: Option<&'a str>,
    /// The attempt's log.
    pub log: &'a Path,
    /// True if another attempt will follow.
    pub will_retry: bool,
}

/// One thing that happened during a run.
#[derive(Clone, Debug)]
pub enum Event<'a> {
    /// The run starts (or resumes).
    RunStarted {
        /// Run id.
        run_id: &'a str,
        /// Playbook name.
        playbook: &'a str,
        /// True for `ward resume`.
        resumed: bool,
        /// Steps that will not run again (already succeeded).
        kept: usize,
        /// Steps in the run.
        total: usize,
    },
    /// An attempt starts.
    StepStarted {
        /// The step.
        step: &'a str,
        /// Attempt number.
        attempt: u32,
        /// Attempts allowed.
        of: u32,
        /// The attempt's counters, for actions (a command step has none:
        /// its progress is its elapsed time).
        progress: Option<&'a Arc<Progress>>,
    },
    /// A line of a step's output (only when echoing).
    Output {
        /// The step.
        step: &'a str,
        /// The line, without its newline.
        line: &'a str,
    },
    /// An attempt ended.
    StepFinished(StepEnd<'a>),
    /// An item of a `for_each` step ended: its attempt succeeded or failed,
    /// or it was stopped (`Pending` again). Reporters count these; they
    /// print nothing per item (10,000 items must not mean 10,000 lines).
    ItemFinished {
        /// The `for_each` step.
        step: &'a str,
        /// The item's key.
        key: &'a str,
        /// Its new state.
        state: ItemState,
        /// Items in the step's list.
        total: usize,
    },
    /// A resumed `for_each` step's items that succeeded before the resume
    /// (they do not run again): counted as done, not in the rate.
    ItemsKept {
        /// The `for_each` step.
        step: &'a str,
        /// Items that succeeded earlier.
        kept: usize,
        /// Items in the step's list.
        total: usize,
    },
    /// A step will not run.
    StepSkipped {
        /// The step.
        step: &'a str,
        /// Why.
        reason: &'a str,
    },
    /// A succeeded step's output could not be flushed to disk: the step
    /// now counts as failed.
    FlushFailed {
        /// The step.
        step: &'a str,
        /// Why.
        message: &'a str,
    },
    /// ward got a signal and is stopping: running steps are stopped and
    /// only `when: always` steps still start.
    Interrupted {
        /// The signal.
        signal: StopSignal,
    },
    /// ward could not install its signal handlers: a signal will end it at
    /// once, without the `when: always` steps. Said before the run starts.
    SignalsUnavailable {
        /// Why.
        message: &'a str,
    },
    /// Another SIGINT/SIGTERM arrived while stopping: noted, nothing changes
    /// (the `when: always` steps still run).
    SignalNoted {
        /// The signal.
        signal: StopSignal,
        /// Signals received so far.
        count: u32,
    },
    /// A third signal or SIGQUIT: ward stops everything, `when: always`
    /// steps included, and leaves them pending for `ward resume`.
    Abandoned {
        /// The signal.
        signal: StopSignal,
    },
    /// The state database could not be written: from now on ward works from
    /// memory, runs only what must still happen, and exits 4.
    StateLost {
        /// Why.
        message: &'a str,
    },
    /// A step's attempt left processes behind, and ward stopped them.
    ChildrenStopped {
        /// The step.
        step: &'a str,
        /// `name (pid N)` of each one.
        processes: &'a str,
    },
    /// A step waits for the operator to confirm it (`confirm:`): the
    /// question is being asked on the terminal, so nothing else is drawn
    /// until [`Event::ConfirmAnswered`].
    ConfirmAsked {
        /// The step.
        step: &'a str,
    },
    /// The operator answered (or could not).
    ConfirmAnswered {
        /// The step.
        step: &'a str,
        /// True when the word was typed.
        confirmed: bool,
    },
    /// The run ended.
    RunFinished {
        /// Run id.
        run_id: &'a str,
        /// Final state.
        state: RunState,
        /// Why, if not succeeded.
        message: Option<&'a str>,
        /// Wall time.
        elapsed: Duration,
    },
}

/// Receives events; implementations decide what to print.
pub trait Reporter {
    /// Handles one event.
    fn event(&mut self, event: &Event<'_>);

    /// How often the executor should call [`tick`](Self::tick) while steps
    /// run; None (the default) for reporters that only react to events, so
    /// that a quiet run has no timer at all.
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// Time has passed: redraw or print what is due.
    fn tick(&mut self) {}
}
