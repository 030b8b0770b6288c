//! Running programs: one attempt of a step ([`Attempt`]), a program started
//! in its own process group, its output kept in the attempt's log, and how
//! it is stopped.
//!
//! A library below both the executor and the actions (it imports neither).
//! Command steps are waited for on the scheduler's thread ([`spawn`],
//! [`wait`]); actions, which run on a blocking thread of their own, start
//! their programs with [`command`] and [`Running`]. Both start programs the
//! same way and stop them the same way.
//!
//! # Stopping
//!
//! Every program runs in its own process group, so that a stop reaches
//! everything it started. When an attempt must stop ([`Cancel`]):
//!
//! - [`Cancel::Terminate`] (a timeout, or the first signal to ward): SIGTERM
//!   to the group; SIGKILL to the group once the kill grace
//!   (`WARD_KILL_GRACE`) has passed and the program is still running.
//! - [`Cancel::Kill`] (ward abandons the run): SIGKILL to the group now,
//!   also in the middle of a grace period.
//! - Once the program has ended after a stop began, SIGKILL to the group,
//!   so that nothing it started lingers.
//!
//! What a program leaves running in the background after it ended on its
//! own is found by the executor through `WARD_RUN_ID`/the attempt marker in
//! its environment (`execute::orphans`), not here.

mod blocking;
mod mask;
mod watched;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::sync::mpsc;

pub use blocking::{Finished, Running};
pub use mask::{Mask, MaskStream};
pub use watched::{Ended, Outcome, StartError, Started, WaitError, spawn, wait, wait_cancel};

/// How hard the scheduler wants running attempts to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cancel {
    /// Keep running.
    No,
    /// SIGTERM the group, SIGKILL after the grace period.
    Terminate,
    /// SIGKILL the group now (ward abandons the run: a third signal, SIGQUIT).
    Kill,
}

/// A [`Cancel`] level shared with a blocking thread: set by the executor,
/// read by an action between units of work and by [`Running::wait`].
#[derive(Debug, Default)]
pub struct CancelCell {
    stop: AtomicBool,
    kill: AtomicBool,
}

impl CancelCell {
    /// Raises the level (it never goes down).
    pub fn raise(&self, level: Cancel) {
        if level >= Cancel::Terminate {
            self.stop.store(true, Ordering::Relaxed);
        }
        if level == Cancel::Kill {
            self.kill.store(true, Ordering::Relaxed);
        }
    }

    /// The level now.
    pub fn level(&self) -> Cancel {
        if self.kill.load(Ordering::Relaxed) {
            Cancel::Kill
        } else if self.stop.load(Ordering::Relaxed) {
            Cancel::Terminate
        } else {
            Cancel::No
        }
    }

    /// True once the work must stop, as a flag that worker threads (tree
    /// walks) can read.
    pub fn stop_flag(&self) -> &AtomicBool {
        &self.stop
    }
}

/// Where output lines are echoed (a terminal): the step's index and the
/// reporter's channel.
pub type Echo = mpsc::UnboundedSender<(usize, String)>;

/// One attempt of a step: what the executor starts, for a command step
/// (its program) and for an action (its context) alike.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// The step's id.
    pub step: String,
    /// The step's index (names it in echoed output).
    pub index: usize,
    /// The run's id.
    pub run_id: String,
    /// Program and arguments of a command step; empty for an action, which
    /// starts its own programs.
    pub argv: Vec<String>,
    /// Environment added to ward's for child processes (WARD_* and the
    /// step's `env`).
    pub env: Vec<(String, String)>,
    /// The playbook's folder: the working folder; relative paths are
    /// resolved against it.
    pub cwd: PathBuf,
    /// The attempt's log file.
    pub log_path: PathBuf,
    /// Time limit.
    pub timeout: Option<Duration>,
    /// Wait between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Start the child so that a signal sent to ward's process group while
    /// it is being started cannot kill it (see [`command`]): for
    /// finalizers, which must survive the second SIGTERM of GNU `timeout`.
    pub shield_from_group_signals: bool,
    /// Where to echo output lines, if anywhere.
    pub echo: Option<Echo>,
    /// The run's secret texts, masked in the output before it is logged
    /// or echoed (`None`: the run has no secrets).
    pub mask: Option<std::sync::Arc<Mask>>,
}

/// A program to start in its own process group, stdin from /dev/null, with
/// `env` added to ward's environment, in `cwd`.
///
/// With `shield`, the child is started by fork rather than posix_spawn.
/// GNU `timeout` sends SIGTERM to ward and then to ward's process group. A
/// child being started at that moment is still in that group until it
/// moves to its own, and with posix_spawn (std's choice when it can) a
/// signal caught then is delivered with the default action once the new
/// program starts: the `when: always` step started in answer to the first
/// SIGTERM died of the second. Started by fork, the child keeps ward's
/// handlers until exec, so a group signal caught before it left the group
/// is harmless (the `ward-fork` crate says why this is the way to get a
/// fork, and holds its one `unsafe` line). A fork costs about three times
/// a posix_spawn, so only the programs that must survive signals pay it.
pub fn command<'a>(
    program: &str,
    args: &[String],
    env: impl IntoIterator<Item = &'a (String, String)>,
    cwd: &Path,
    shield: bool,
) -> std::process::Command {
    let mut cmd = new_command(program);
    cmd.args(args)
        .envs(env.into_iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .process_group(0);
    if shield {
        ward_fork::start_by_fork(&mut cmd);
    }
    cmd
}

/// `Command::new` for every program ward starts on a playbook's behalf
/// (steps, actions' programs, preconditions, hooks, `for_each` commands):
/// without `$WARD_STATE` when that is a PostgreSQL address holding a
/// password, so that no step or hook inherits the state's password (a
/// step that runs `ward` itself then needs `--state`, or a passfile).
pub fn new_command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    static HOLDS_PASSWORD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let holds = *HOLDS_PASSWORD.get_or_init(|| {
        std::env::var_os("WARD_STATE").is_some_and(|v| {
            matches!(
                crate::state::parse_location(&v),
                Ok(crate::state::Location::Postgres(a)) if crate::state::address_has_password(&a)
            )
        })
    });
    let mut cmd = std::process::Command::new(program);
    if holds {
        cmd.env_remove("WARD_STATE");
    }
    cmd
}

/// Where the stop of one program stands: the stop policy of the module
/// docs, followed by both ways of waiting ([`wait`], [`Running::wait`]).
#[derive(Debug, Default)]
struct Stop {
    /// When SIGTERM was sent.
    term_at: Option<Instant>,
    /// SIGKILL was sent.
    killed: bool,
}

impl Stop {
    /// The signal due now for the attempt's `level` (None: nothing new).
    fn due(&mut self, level: Cancel, grace: Duration, now: Instant) -> Option<Signal> {
        if self.killed {
            return None;
        }
        let kill = match (level, self.term_at) {
            (Cancel::No, _) => false,
            (Cancel::Kill, _) => true,
            (Cancel::Terminate, None) => {
                self.term_at = Some(now);
                return Some(Signal::TERM);
            }
            (Cancel::Terminate, Some(at)) => now.saturating_duration_since(at) >= grace,
        };
        self.killed = kill;
        kill.then_some(Signal::KILL)
    }

    /// When a signal falls due next without a change of level.
    fn deadline(&self, grace: Duration) -> Option<Instant> {
        match (self.killed, self.term_at) {
            (false, Some(at)) => Some(at + grace),
            _ => None,
        }
    }

    /// The signal for the group once its leader ended: SIGKILL if a stop
    /// had begun, so that nothing it started lingers.
    fn after_exit(&self) -> Option<Signal> {
        (self.killed || self.term_at.is_some()).then_some(Signal::KILL)
    }
}

/// Sends a signal to a whole process group; ESRCH (the group is already
/// gone) is fine.
fn signal_group(group: Option<Pid>, signal: Signal) {
    if let Some(pgid) = group {
        let _ = kill_process_group(pgid, signal);
    }
}

/// Describes how a program ended, for messages: `exit code 3`, `killed by signal 9`.
pub fn describe_status(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "ended without a status".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_is_term_then_kill_after_the_grace() {
        let grace = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut stop = Stop::default();
        assert_eq!(stop.due(Cancel::No, grace, t0), None);
        assert_eq!(stop.after_exit(), None, "no stop, no signal after exit");
        assert_eq!(stop.due(Cancel::Terminate, grace, t0), Some(Signal::TERM));
        assert_eq!(stop.deadline(grace), Some(t0 + grace));
        assert_eq!(stop.due(Cancel::Terminate, grace, t0 + grace / 2), None);
        assert_eq!(
            stop.due(Cancel::Terminate, grace, t0 + grace),
            Some(Signal::KILL)
        );
        assert_eq!(stop.deadline(grace), None);
        assert_eq!(stop.due(Cancel::Terminate, grace, t0 + grace * 2), None);
        assert_eq!(stop.after_exit(), Some(Signal::KILL));
    }

    #[test]
    fn a_hurry_kills_at_once_even_during_the_grace() {
        let grace = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut stop = Stop::default();
        assert_eq!(stop.due(Cancel::Terminate, grace, t0), Some(Signal::TERM));
        assert_eq!(stop.due(Cancel::Kill, grace, t0), Some(Signal::KILL));
        let mut at_once = Stop::default();
        assert_eq!(at_once.due(Cancel::Kill, grace, t0), Some(Signal::KILL));
        assert_eq!(at_once.after_exit(), Some(Signal::KILL));
    }

    #[test]
    fn the_cancel_cell_only_goes_up() {
        let cell = CancelCell::default();
        assert_eq!(cell.level(), Cancel::No);
        cell.raise(Cancel::Kill);
        cell.raise(Cancel::Terminate);
        assert_eq!(cell.level(), Cancel::Kill);
        assert!(cell.stop_flag().load(Ordering::Relaxed));
    }
}
