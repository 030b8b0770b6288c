//! Runs a [`Plan`](crate::plan::Plan): the DAG scheduler, child processes with
//! timeouts and process groups, retries, signals, and a durable checkpoint
//! for every change (through `state::Store`).
//!
//! The executor never prints: it sends [`Event`]s to a [`Reporter`]
//! (`report::progress` has the terminal and cron ones).

mod action_run;
pub mod confirm;
mod events;
mod item;
pub mod orphans;
mod process;
mod scheduler;
mod signals;
pub mod worker;

use std::path::PathBuf;
use std::time::Duration;

pub use events::{Event, ItemEnded, ItemNotifier, Reporter, StepEnd};
pub use scheduler::{Execution, Outcome, Start, execute, keeps_children};
pub use signals::{Received as StopSignal, Signals};

/// How a run ended, for the CLI to map onto its exit codes
/// (`crate::error::exit`); the engine chooses no exit code itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Every step that was due succeeded.
    Succeeded,
    /// A step failed (after its retries).
    Failed,
    /// Items of `for_each` steps failed, and nothing else did (the other
    /// items and steps ran as usual).
    ItemsFailed,
    /// A checkpoint could not be written: the run went on from memory for
    /// its finalizers, and what is recorded is an earlier picture.
    StateLost,
    /// The first stop signal: running steps were stopped, finalizers ran.
    Interrupted(StopSignal),
    /// SIGQUIT or a third stop signal: finalizers were abandoned too. The
    /// signal is the one that made ward abandon them.
    Abandoned(StopSignal),
    /// A precondition failed: the run was recorded `skipped` and no step
    /// ran (decided before the executor, in `session::start`).
    Skipped,
    /// A `confirm:` step was not confirmed (a wrong word, a closed
    /// terminal): it failed and nothing after it ran.
    NotConfirmed,
}

/// How a run is carried out.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// Folder for this run's logs.
    pub log_dir: PathBuf,
    /// Working folder of the steps (the playbook's folder).
    pub work_dir: PathBuf,
    /// Copy step output to the reporter line by line (at a terminal).
    pub echo_output: bool,
    /// Wait after SIGTERM before SIGKILL.
    pub kill_grace: Duration,
    /// ` --state PATH` when the run was given one (`report::state_flag`),
    /// for the `ward resume` hints in recorded messages.
    pub state_flag: String,
    /// How `confirm:` steps are confirmed.
    pub confirm: confirm::ConfirmSetup,
    /// The folder of ward's state where `rsync` steps keep the stamps of
    /// their copies across runs (`ActionCtx::copies_dir`); None: not kept.
    pub copies_dir: Option<PathBuf>,
    /// Told when an item of a `for_each` step ends (`on_item:`); None: nobody.
    pub item_notifier: Option<std::sync::Arc<dyn ItemNotifier>>,
}

/// Default wait between SIGTERM and SIGKILL; `WARD_KILL_GRACE` overrides it.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);
