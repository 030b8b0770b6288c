use std::sync::Arc;

use super::{Duration, Notify, Precondition, RetryPolicy, Spanned, Step};
use crate::source::{SourceFile, Span};
use crate::yaml::Node;

/// A parsed playbook (format version 1).
#[derive(Debug)]
pub struct Playbook {
    /// The file it was read from.
    pub source: Arc<SourceFile>,
    /// `name:`, matching `[a-z0-9][a-z0-9_-]*`.
    pub name: Spanned<String>,
    /// `description:`.
    pub description: Option<String>,
    /// `vars:` in the order written.
    pub vars: Vec<Var>,
    /// `defaults:` for every step.
    pub defaults: Defaults,
    /// `max_parallel:`, how many steps may run at once.
    pub max_parallel: usize,
    /// `lock:`, the name of the run lock (defaults to the playbook name).
    pub lock: Option<Spanned<String>>,
    /// `steps:` in the order written.
    pub steps: Vec<Step>,
    /// `schedule:`, a crontab time expression as written (checked by
    /// validate, which reads it with `schedule::CronExpr`).
    pub schedule: Option<Spanned<String>>,
    /// `jitter:`, the most a scheduled run waits at random before it starts.
    pub jitter: Option<Spanned<Duration>>,
    /// `overlap:`, what a scheduled run (`--if-due`) does while the previous
    /// run still holds the lock.
    pub overlap: Overlap,
    /// `timezone:`, the IANA zone `schedule:` is read in (default: the system's).
    pub timezone: Option<Spanned<String>>,
    /// `notify:` (model/notify.rs).
    pub notify: Notify,
    /// `metrics:`, a Prometheus text file written after each run.
    pub metrics: Option<Spanned<std::path::PathBuf>>,
    /// `preconditions:`, checked in order before any step runs.
    pub preconditions: Vec<Precondition>,
    /// `max_age:`, how old the last successful run may be (`ward check`).
    pub max_age: Option<Spanned<Duration>>,
    /// `history:`, how long runs and their logs are kept (`None`: the
    /// default policy, [`History::default`](super::History)).
    pub history: Option<Spanned<super::History>>,
    /// `rehearse:`, how `ward rehearse` runs the playbook in a sandbox.
    pub rehearse: Option<super::rehearse::Rehearse>,
    /// `restore:` (model/restore.rs).
    pub restore: Option<super::Restore>,
}

impl Playbook {
    /// The lock name: `lock:` if set, else the playbook name.
    pub fn lock_name(&self) -> &str {
        self.lock.as_ref().map_or(&self.name.value, |l| &l.value)
    }
}

/// `overlap:`: what a scheduled run (`ward run --if-due`) does when the
/// previous run still holds the lock (docs/playbook.md, "Overlap").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// Do not run: exit 3 and record the run `skipped` (the default).
    #[default]
    Skip,
    /// Wait for the lock (at most until the schedule's next fire time), then run.
    Queue,
    /// Wait like `queue`, but when several wait only the newest runs; the
    /// others are recorded `skipped`.
    Latest,
}

impl Overlap {
    /// The word `overlap:` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
            Overlap::Latest => "latest",
        }
    }
}

/// One entry of `vars:`.
#[derive(Clone, Debug)]
pub struct Var {
    /// The variable name.
    pub name: Spanned<String>,
    /// The value as written (strings may contain templates over earlier vars).
    pub value: Node,
}

/// `defaults:` that apply to every step that does not set its own.
#[derive(Clone, Debug, Default)]
pub struct Defaults {
    /// Default `timeout:`.
    pub timeout: Option<Spanned<Duration>>,
    /// Default `retry:`.
    pub retry: Option<Spanned<RetryPolicy>>,
}

/// Placeholder span for values that have no place in a file.
pub const NO_SPAN: Span = Span {
    start: crate::source::Pos { line: 0, col: 0 },
    end: crate::source::Pos { line: 0, col: 0 },
};
