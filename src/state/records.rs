//! Rows of the state store and the changes that move them.

use std::collections::BTreeMap;

use serde::Serialize;

/// The state of a whole run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// Some ward process is (or was, if it crashed) running it.
    Running,
    /// Every step succeeded or was skipped by design.
    Succeeded,
    /// A step failed.
    Failed,
    /// Stopped by SIGINT/SIGTERM.
    Interrupted,
    /// Its process died without recording an end (found by the next run).
    Crashed,
    /// No step ran: a precondition failed, or (a scheduled run) the
    /// previous run still held the lock under `overlap: skip` or was
    /// superseded under `overlap: latest`; the message says which.
    Skipped,
    /// A slot of the playbook's schedule passed without a run (the machine
    /// was off, suspended, or its clock jumped); recorded, with no steps,
    /// by the next run, at the slot's time (`slot_at`).
    Missed,
}

/// The state of one step in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    /// Not started (yet).
    Pending,
    /// Started; a step found `running` by a later process was interrupted.
    Running,
    /// Done; never run again by `resume`.
    Succeeded,
    /// Failed after its last attempt.
    Failed,
    /// Not run, with a reason (needs failed, `if` false, run failed, ...).
    Skipped,
    /// Stopped by a signal to ward.
    Interrupted,
    /// Succeeded, then undone by its compensation step.
    Compensated,
}

macro_rules! text_enum {
    ($t:ty { $($v:ident = $s:literal),* $(,)? }) => {
        impl $t {
            /// The name stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$v => $s),* }
            }
            /// Reads a stored name.
            pub fn parse(s: &str) -> Option<$t> {
                match s { $($s => Some(<$t>::$v),)* _ => None }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(RunState {
    Running = "running",
    Succeeded = "succeeded",
    Failed = "failed",
    Interrupted = "interrupted",
    Crashed = "crashed",
    Skipped = "skipped",
    Missed = "missed",
});

text_enum!(StepState {
    Pending = "pending",
    Running = "running",
    Succeeded = "succeeded",
    Failed = "failed",
    Skipped = "skipped",
    Interrupted = "interrupted",
    Compensated = "compensated",
});

/// The state of one item of a `for_each` step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemState {
    /// Not started in this run yet (or stopped, to run again).
    Pending,
    /// Started; one found `running` by a later process runs again.
    Running,
    /// Done; never run again by `resume`.
    Succeeded,
    /// Its attempt failed; `resume` runs it again.
    Failed,
    /// Not started because the run failed elsewhere; `resume` runs it.
    Skipped,
    /// Held back by `ward pause`: no ward starts it until `ward unpause`.
    Paused,
}

text_enum!(ItemState {
    Pending = "pending",
    Running = "running",
    Succeeded = "succeeded",
    Failed = "failed",
    Skipped = "skipped",
    Paused = "paused",
});

/// A change an operator makes to one item from outside the run's ward
/// (`ward pause|unpause|retry`), while the run goes on or before a resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemControl {
    /// `pending` -> `paused`.
    Pause,
    /// `paused` -> `pending`.
    Unpause,
    /// `failed` -> `pending` (its attempts are kept).
    Retry,
}

impl ItemControl {
    /// The state the item must be in for the change to apply.
    pub fn from(self) -> ItemState {
        match self {
            ItemControl::Pause => ItemState::Pending,
            ItemControl::Unpause => ItemState::Paused,
            ItemControl::Retry => ItemState::Failed,
        }
    }

    /// The state it takes.
    pub fn to(self) -> ItemState {
        match self {
            ItemControl::Pause => ItemState::Paused,
            ItemControl::Unpause | ItemControl::Retry => ItemState::Pending,
        }
    }

    /// The kind of the event that records it (its message is the key).
    pub fn event_kind(self) -> &'static str {
        match self {
            ItemControl::Pause => "item-paused",
            ItemControl::Unpause => "item-unpaused",
            ItemControl::Retry => "item-retried",
        }
    }

    /// Reads an event kind back.
    pub fn from_event_kind(kind: &str) -> Option<ItemControl> {
        [ItemControl::Pause, ItemControl::Unpause, ItemControl::Retry]
            .into_iter()
            .find(|c| c.event_kind() == kind)
    }
}

/// An [`ItemControl`] as the run's ward reads it back, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemControlled {
    /// Its event's sequence number.
    pub seq: i64,
    /// Step id.
    pub step: String,
    /// The item's key.
    pub key: String,
    /// What was done.
    pub control: ItemControl,
}

/// How one attempt ended, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttemptOutcome {
    /// It did what the step asks (an ok exit code, an action that returned).
    Succeeded,
    /// It failed (a bad exit code, a signal, an error, an unflushed `creates`).
    Failed,
    /// A signal to ward stopped it.
    Interrupted,
    /// Its time limit stopped it.
    TimedOut,
}

text_enum!(AttemptOutcome {
    Succeeded = "succeeded",
    Failed = "failed",
    Interrupted = "interrupted",
    TimedOut = "timed-out",
});

impl StepState {
    /// True once the step will not change again in this process.
    pub fn is_terminal(self) -> bool {
        !matches!(self, StepState::Pending | StepState::Running)
    }
}

/// A value the store keeps as text and decodes when it reads a run. One
/// that cannot be decoded is kept as why, so that only what needs it fails
/// (a resume), not every listing of runs.
pub type Recorded<T> = Result<T, Unreadable>;

/// Why a recorded value cannot be read back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreadable(pub String);

/// The `ward.*` facts of a run as the state keeps them: the state's own
/// type, so the recorded form is the state's (the same fields, in the same
/// order, as `template::RunFacts`, which converts to and from it where
/// a run is started and resumed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
// The name a damaged record's error message says, as before this type.
#[serde(expecting = "struct RunFacts")]
pub struct RecordedFacts {
    /// `ward.date`.
    pub date: String,
    /// `ward.time`.
    pub time: String,
    /// `ward.timestamp`.
    pub timestamp: String,
    /// `ward.weekday`.
    pub weekday: String,
    /// `ward.host`.
    pub host: String,
    /// `ward.run_id`.
    pub run_id: String,
    /// `ward.playbook_dir`.
    pub playbook_dir: String,
}

/// A run as first recorded.
#[derive(Clone, Debug)]
pub struct NewRun {
    /// Unique, sortable id.
    pub id: String,
    /// The playbook's `name:`.
    pub playbook_name: String,
    /// Absolute path of the playbook file.
    pub playbook_path: String,
    /// sha256 of the playbook file.
    pub playbook_hash: String,
    /// The playbook's text when the run started.
    pub playbook_text: String,
    /// The run lock's name.
    pub lock_name: String,
    /// Resolved variables, secrets masked.
    pub vars: BTreeMap<String, serde_json::Value>,
    /// `--var` overrides, secrets masked.
    pub overrides: BTreeMap<String, serde_json::Value>,
    /// The `ward.*` facts, reused by resume.
    pub facts: RecordedFacts,
    /// Host name.
    pub host: String,
    /// ward's pid.
    pub pid: u32,
    /// ward's version.
    pub ward_version: String,
    /// Unix milliseconds.
    pub started_at: i64,
    /// The playbook's `max_age:` in milliseconds (for `ward check`).
    pub max_age_ms: Option<i64>,
    /// What the preconditions found; a failed one makes the run `skipped`
    /// as it is recorded, its steps `skipped`, nothing run.
    pub preconditions: Option<super::PreconditionsRecord>,
}

/// A step as first recorded.
#[derive(Clone, Debug)]
pub struct NewStep {
    /// Step id.
    pub id: String,
    /// Position in the playbook.
    pub position: usize,
    /// The step's resume fingerprint (`plan::fingerprint`), compared by
    /// resume byte for byte; opaque to the store.
    pub definition: String,
    /// True for compensation-only steps.
    pub compensation: bool,
}

/// A recorded run.
#[derive(Clone, Debug, Serialize)]
pub struct RunRecord {
    /// Run id.
    pub id: String,
    /// Playbook name.
    pub playbook_name: String,
    /// Playbook path.
    pub playbook_path: String,
    /// Playbook hash.
    pub playbook_hash: String,
    /// Playbook text at start.
    #[serde(skip)]
    pub playbook_text: String,
    /// Lock name.
    pub lock_name: String,
    /// Vars, secrets masked.
    #[serde(skip)]
    pub vars: Recorded<BTreeMap<String, serde_json::Value>>,
    /// `--var` overrides, secrets masked.
    #[serde(skip)]
    pub overrides: Recorded<BTreeMap<String, serde_json::Value>>,
    /// The `ward.*` facts.
    #[serde(skip)]
    pub facts: Recorded<RecordedFacts>,
    /// State.
    pub state: RunState,
    /// Host of the process that last ran it.
    pub host: String,
    /// Pid of the process that last ran it.
    pub pid: u32,
    /// ward version.
    pub ward_version: String,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms.
    pub finished_at: Option<i64>,
    /// How often it was resumed.
    pub resumes: u32,
    /// Why it ended as it did.
    pub message: Option<String>,
    /// The playbook's `max_age:` in milliseconds, as the run recorded it
    /// (left out of JSON when not set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_ms: Option<i64>,
    /// What the preconditions found (`None`: the playbook had none, or
    /// the run was recorded by a ward without them; left out of JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preconditions: Option<super::PreconditionsRecord>,
    /// A `missed` run: the schedule's fire time it stands for, Unix ms
    /// (left out of JSON otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot_at: Option<i64>,
}

/// A run recorded as already ended with no step run: a `missed` slot, or a
/// scheduled run `skipped` because the previous one still held the lock.
#[derive(Clone, Debug)]
pub struct UnrunRun {
    /// Unique, sortable id.
    pub id: String,
    /// `Missed` or `Skipped`.
    pub state: RunState,
    /// The playbook's `name:`.
    pub playbook_name: String,
    /// Absolute path of the playbook file.
    pub playbook_path: String,
    /// sha256 of the playbook file.
    pub playbook_hash: String,
    /// The playbook's text.
    pub playbook_text: String,
    /// The run lock's name.
    pub lock_name: String,
    /// Host name.
    pub host: String,
    /// The recording ward's pid.
    pub pid: u32,
    /// ward's version.
    pub ward_version: String,
    /// Unix ms: the slot for a missed run, now for a skipped one; it is
    /// both the start and the end.
    pub at: i64,
    /// Why, in words.
    pub message: String,
    /// A missed run's slot (Unix ms): the store records each (playbook
    /// name, slot) at most once.
    pub slot_at: Option<i64>,
    /// The playbook's `max_age:` in milliseconds.
    pub max_age_ms: Option<i64>,
}

/// A recorded step.
#[derive(Clone, Debug, Serialize)]
pub struct StepRecord {
    /// Step id.
    pub id: String,
    /// Position in the playbook.
    pub position: usize,
    /// The step's resume fingerprint, as recorded (see [`NewStep::definition`]).
    #[serde(skip)]
    pub definition: String,
    /// State.
    pub state: StepState,
    /// Why it is skipped/failed.
    pub reason: Option<String>,
    /// Attempts so far (across resumes).
    pub attempts: u32,
    /// Exit code of the last attempt.
    pub exit_code: Option<i32>,
    /// Unix ms of the first start.
    pub started_at: Option<i64>,
    /// Unix ms of the end.
    pub finished_at: Option<i64>,
    /// Log of the last attempt.
    pub log_path: Option<String>,
    /// True for compensation-only steps.
    pub compensation: bool,
    /// Succeeded, but its output was not yet known to be on disk (see
    /// `state/recovery.rs`, rule 6).
    pub unflushed: Option<Unflushed>,
}

/// Output of a succeeded step that was written but not yet flushed to disk
/// when it was recorded, and the boot it was written in: after a reboot it
/// may be lost, within the same boot the page cache still holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Unflushed {
    /// `/proc/sys/kernel/random/boot_id` when it was written (empty if unknown).
    pub boot_id: String,
    /// Paths whose file systems must be flushed (`syncfs`).
    pub paths: Vec<String>,
}

/// A recorded attempt.
#[derive(Clone, Debug, Serialize)]
pub struct AttemptRecord {
    /// Step id.
    pub step_id: String,
    /// 1-based, counted across resumes.
    pub attempt: u32,
    /// Unix ms.
    pub started_at: i64,
    /// Unix ms.
    pub finished_at: Option<i64>,
    /// Exit code, if it exited.
    pub exit_code: Option<i32>,
    /// Signal, if it was killed.
    pub signal: Option<i32>,
    /// How it ended; `None` while running (or if its end was never recorded).
    pub outcome: Option<AttemptOutcome>,
    /// What happened, in words.
    pub message: Option<String>,
    /// The attempt's output.
    pub log_path: String,
    /// What an action reported (sizes, hashes, transfer statistics).
    pub details: Option<serde_json::Value>,
}

/// An item of a `for_each` step as first recorded (`pending`).
#[derive(Clone, Debug)]
pub struct NewItem {
    /// Its stable id within the step (`key:`, or the item's text).
    pub key: String,
    /// Its place in the step's list, from 0.
    pub position: usize,
    /// The item itself (the `{{ item }}` its templates see).
    pub value: serde_json::Value,
    /// Its `priority:` (0 without one): workers claim the highest first.
    pub priority: f64,
}

/// A recorded item of a `for_each` step.
#[derive(Clone, Debug, Serialize)]
pub struct ItemRecord {
    /// Its step's id.
    pub step_id: String,
    /// Its stable id within the step.
    pub key: String,
    /// Its place in the step's list, from 0.
    pub position: usize,
    /// The item itself.
    pub item: serde_json::Value,
    /// State.
    pub state: ItemState,
    /// Attempts so far (across resumes).
    pub attempts: u32,
    /// Exit code of the last attempt.
    pub exit_code: Option<i32>,
    /// Why it failed, was skipped or stopped.
    pub message: Option<String>,
    /// Unix ms of the last attempt's start.
    pub started_at: Option<i64>,
    /// Unix ms of its end.
    pub finished_at: Option<i64>,
    /// Log of the last attempt.
    pub log_path: Option<String>,
    /// The `ward worker` that claimed it last (`host:pid:tag`), for an item
    /// handed to workers; its log is on that host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
}

/// What a [`Change::Note`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteKind {
    /// A resume stopped processes a dead ward left running.
    OrphansStopped,
    /// ward stopped processes an attempt left running after it ended.
    ChildrenStopped,
    /// A crash lost a succeeded step's unflushed output: it runs again.
    PointLost,
    /// A notification about the run could not be sent (`notify/`).
    NotifyFailed,
    /// A `confirm:` step was confirmed: by whom, how, which step.
    Confirmed,
    /// A `confirm:` step was not confirmed.
    NotConfirmed,
    /// A restore's snapshot was chosen (`restore:`, `--snapshot`).
    SnapshotChosen,
    /// A restore guard was overridden (`--override NAME`).
    GuardOverridden,
    /// The run is a rehearsal (`ward rehearse`): its sandbox and the steps
    /// it fenced.
    Rehearsal,
    /// One of a rehearsal's checks after its run, with its verdict.
    RehearsalCheck,
}

/// One change to a run, committed with others in one transaction.
#[derive(Clone, Debug)]
pub enum Change {
    /// The run changes state (and ends, unless `Running`).
    Run {
        /// New state.
        state: RunState,
        /// Why.
        message: Option<String>,
        /// Unix ms.
        at: i64,
    },
    /// A new process took the run over (resume).
    Resumed {
        /// Its pid.
        pid: u32,
        /// Its host.
        host: String,
        /// Unix ms.
        at: i64,
    },
    /// An attempt starts.
    AttemptStarted {
        /// Step id.
        step: String,
        /// Attempt number.
        attempt: u32,
        /// Its log file.
        log_path: String,
        /// Unix ms.
        at: i64,
    },
    /// An attempt ended; the step takes `state` (`Pending` while retries remain).
    AttemptFinished {
        /// Step id.
        step: String,
        /// Attempt number.
        attempt: u32,
        /// The step's new state.
        state: StepState,
        /// How the attempt ended.
        outcome: AttemptOutcome,
        /// Exit code.
        exit_code: Option<i32>,
        /// Signal.
        signal: Option<i32>,
        /// Words.
        message: Option<String>,
        /// What an action reported.
        details: Option<serde_json::Value>,
        /// Unix ms.
        at: i64,
    },
    /// Something worth keeping in the run's event log.
    Note {
        /// What kind of thing happened.
        kind: NoteKind,
        /// What happened.
        message: String,
        /// Unix ms.
        at: i64,
    },
    /// A succeeded step's output is waiting for its flush (`Some`) or is
    /// now on disk (`None`).
    Durability {
        /// Step id.
        step: String,
        /// What is not yet on disk.
        unflushed: Option<Unflushed>,
    },
    /// A `for_each` step's items, recorded `pending` when it starts; items
    /// already recorded for the step (a resume) are left as they are.
    ItemsListed {
        /// Step id.
        step: String,
        /// The items.
        items: Vec<NewItem>,
    },
    /// An item's attempt starts.
    ItemStarted {
        /// Step id.
        step: String,
        /// The item's key.
        key: String,
        /// Its attempt number (across resumes).
        attempt: u32,
        /// Its log file.
        log_path: String,
        /// Unix ms.
        at: i64,
    },
    /// An item changes state: its attempt ended (`exit_code`), or it was
    /// skipped or put back to pending.
    ItemFinished {
        /// Step id.
        step: String,
        /// The item's key.
        key: String,
        /// Its new state.
        state: ItemState,
        /// Exit code of the attempt, if it exited.
        exit_code: Option<i32>,
        /// Why, in words.
        message: Option<String>,
        /// Unix ms.
        at: i64,
    },
    /// An operator changes an item from another process (`ward pause`,
    /// `unpause`, `retry`): it takes `control.to()` only if it is in
    /// `control.from()` when committed (else nothing happens; the caller
    /// reads the item back to tell), and an event records it (kind
    /// `control.event_kind()`, message: the key) for the run's ward to
    /// notice ([`super::Store::item_controls`]).
    ItemControl {
        /// Step id.
        step: String,
        /// The item's key.
        key: String,
        /// What to do.
        control: ItemControl,
        /// Unix ms.
        at: i64,
    },
    /// A `for_each` step's items may be claimed by `ward worker`s
    /// (`workers:`; a shared store): its offer opens (again, on a resume).
    Offered {
        /// Step id.
        step: String,
        /// Tags a worker must all carry to claim them.
        tags: Vec<String>,
        /// How many of them one worker runs at once.
        max_parallel: usize,
        /// Unix ms.
        at: i64,
    },
    /// No worker claims the step's items any more: they all ended, or the
    /// run stops or failed. With `stop`, workers also stop those they run
    /// (each goes back to pending); `skip` marks the pending ones skipped
    /// with that reason (only those still pending when it commits).
    OfferClosed {
        /// Step id.
        step: String,
        /// Workers stop the items they run.
        stop: bool,
        /// Why pending items are skipped, if they are.
        skip: Option<String>,
        /// Unix ms.
        at: i64,
    },
    /// A step changes state without an attempt (skipped, reset, compensated).
    Step {
        /// Step id.
        step: String,
        /// New state.
        state: StepState,
        /// Why.
        reason: Option<String>,
        /// Unix ms.
        at: i64,
    },
}
