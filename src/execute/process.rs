//! One attempt of a command step: its program started and waited for by
//! [`crate::process`], and what the executor records of it.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use std::os::unix::process::ExitStatusExt;

use tokio::sync::watch;

pub use crate::process::{Attempt, Cancel};
use crate::process::{Ended, Outcome, Started};

/// How a program's process ended by itself (for an action that returned,
/// exit code 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl Exit {
    /// The exit of a waited-for status; `None` for a status that says
    /// neither (a stopped or continued process, which `wait` never gives).
    pub fn of(status: ExitStatus) -> Option<Exit> {
        match (status.code(), status.signal()) {
            (Some(code), _) => Some(Exit::Code(code)),
            (None, Some(signal)) => Some(Exit::Signal(signal)),
            (None, None) => None,
        }
    }
}

/// How an attempt ended: which of these decides the step's state, its
/// recorded outcome and the words said about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptEnd {
    /// It ended by itself; whether it succeeded is up to the step's
    /// `ok_codes`.
    Exited(Exit),
    /// Its time limit stopped it (with how its process then ended, if known).
    TimedOut(Option<Exit>),
    /// A signal to ward stopped it (with how its process then ended, if
    /// known, and what an action or the clean-up after it said went wrong).
    Stopped {
        /// How its process ended.
        exit: Option<Exit>,
        /// What went wrong, said instead of the plain "stopped".
        error: Option<String>,
    },
    /// It could not be started or waited for, the action failed, or the
    /// clean-up after it failed: why (with how its process ended, if it ran).
    Failed {
        /// How its process ended.
        exit: Option<Exit>,
        /// Why it failed.
        error: String,
    },
}

impl AttemptEnd {
    /// How its process ended, if it is known.
    pub fn exit(&self) -> Option<Exit> {
        match self {
            AttemptEnd::Exited(exit) => Some(*exit),
            AttemptEnd::TimedOut(exit)
            | AttemptEnd::Stopped { exit, .. }
            | AttemptEnd::Failed { exit, .. } => *exit,
        }
    }

    /// Its exit code, if its process exited.
    pub fn exit_code(&self) -> Option<i32> {
        match self.exit() {
            Some(Exit::Code(code)) => Some(code),
            _ => None,
        }
    }

    /// The signal that killed its process, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self.exit() {
            Some(Exit::Signal(signal)) => Some(signal),
            _ => None,
        }
    }

    /// The ending once something after the attempt went wrong (`error`):
    /// an attempt that ended by itself fails, a stopped one says the error
    /// unless it already has one, a timed-out or failed one stays as it is.
    pub fn failed_after(self, error: String) -> AttemptEnd {
        match self {
            AttemptEnd::Exited(exit) => AttemptEnd::Failed {
                exit: Some(exit),
                error,
            },
            AttemptEnd::Stopped { exit, error: None } => AttemptEnd::Stopped {
                exit,
                error: Some(error),
            },
            other => other,
        }
    }
}

/// An ended attempt: how it ended and what it left.
#[derive(Clone, Debug)]
pub struct AttemptResult {
    /// How it ended.
    pub end: AttemptEnd,
    /// What an action reported (sizes, hashes, statistics).
    pub details: Option<serde_json::Value>,
    /// An action's one-line summary or warning, for successful attempts.
    pub note: Option<String>,
    /// Output an action wrote but did not flush: the executor flushes it.
    pub unflushed: Vec<PathBuf>,
    /// How long it ran.
    pub elapsed: Duration,
    /// Processes it left running that ward stopped after it ended.
    pub left_behind: Vec<super::orphans::LeftBehind>,
}

impl From<Ended> for AttemptResult {
    fn from(ended: Ended) -> AttemptResult {
        let ending = match ended.outcome {
            Outcome::NotStarted(e) => AttemptEnd::Failed {
                exit: None,
                error: e.to_string(),
            },
            Outcome::Unwaited(e) => AttemptEnd::Failed {
                exit: None,
                error: e.to_string(),
            },
            Outcome::Exited(status) => match Exit::of(status) {
                Some(exit) => AttemptEnd::Exited(exit),
                None => AttemptEnd::Failed {
                    exit: None,
                    error: "ended without a status".into(),
                },
            },
            Outcome::TimedOut(status) => AttemptEnd::TimedOut(status.ok().and_then(Exit::of)),
            Outcome::Stopped(Ok(status)) => AttemptEnd::Stopped {
                exit: Exit::of(status),
                error: None,
            },
            Outcome::Stopped(Err(e)) => AttemptEnd::Stopped {
                exit: None,
                error: Some(e.to_string()),
            },
        };
        AttemptResult {
            end: ending,
            details: None,
            note: None,
            unflushed: Vec::new(),
            elapsed: ended.elapsed,
            left_behind: Vec::new(),
        }
    }
}

/// Starts one attempt's program now (see [`crate::process::spawn`]).
pub fn spawn_attempt(attempt: &Attempt) -> Started {
    crate::process::spawn(attempt)
}

/// Waits for a started attempt to end (exit, timeout or cancellation).
pub async fn wait_attempt(
    started: Started,
    attempt: Attempt,
    cancel: watch::Receiver<Cancel>,
) -> AttemptResult {
    crate::process::wait(started, attempt.timeout, attempt.kill_grace, cancel)
        .await
        .into()
}

/// Starts and waits for one attempt (used where no checkpoint sits between).
pub async fn run_attempt(attempt: Attempt, cancel: watch::Receiver<Cancel>) -> AttemptResult {
    let started = spawn_attempt(&attempt);
    wait_attempt(started, attempt, cancel).await
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::process::{StartError, WaitError};

    fn ended(outcome: Outcome) -> AttemptEnd {
        AttemptResult::from(Ended {
            outcome,
            elapsed: Duration::ZERO,
        })
        .end
    }

    /// Raw wait statuses: exit code `c` is `c << 8`, a signal is itself.
    fn exited(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    fn cannot_wait() -> WaitError {
        WaitError {
            program: "sleep".into(),
            source: std::io::Error::from_raw_os_error(10),
        }
    }

    #[test]
    fn a_program_that_ended_by_itself_exited_or_was_killed() {
        assert_eq!(
            ended(Outcome::Exited(exited(3))),
            AttemptEnd::Exited(Exit::Code(3))
        );
        assert_eq!(
            ended(Outcome::Exited(ExitStatus::from_raw(9))),
            AttemptEnd::Exited(Exit::Signal(9))
        );
        let failed = ended(Outcome::NotStarted(StartError::EmptyCommand));
        assert_eq!(
            failed,
            AttemptEnd::Failed {
                exit: None,
                error: "empty command".into()
            }
        );
        assert_eq!((failed.exit_code(), failed.signal()), (None, None));
        assert_eq!(
            ended(Outcome::Unwaited(cannot_wait())),
            AttemptEnd::Failed {
                exit: None,
                error: "cannot wait for `sleep`: No child processes (os error 10)".into()
            }
        );
    }

    #[test]
    fn a_stop_names_the_ending_and_keeps_how_the_process_ended() {
        let timed_out = ended(Outcome::TimedOut(Ok(ExitStatus::from_raw(15))));
        assert_eq!(timed_out, AttemptEnd::TimedOut(Some(Exit::Signal(15))));
        assert_eq!(timed_out.signal(), Some(15));
        assert_eq!(
            ended(Outcome::TimedOut(Err(cannot_wait()))),
            AttemptEnd::TimedOut(None)
        );
        assert_eq!(
            ended(Outcome::Stopped(Ok(exited(1)))),
            AttemptEnd::Stopped {
                exit: Some(Exit::Code(1)),
                error: None
            }
        );
        assert_eq!(
            ended(Outcome::Stopped(Err(cannot_wait()))),
            AttemptEnd::Stopped {
                exit: None,
                error: Some("cannot wait for `sleep`: No child processes (os error 10)".into())
            }
        );
    }

    #[test]
    fn a_failure_after_the_attempt_fails_only_what_had_not_failed() {
        let why = || "cannot look".to_owned();
        assert_eq!(
            AttemptEnd::Exited(Exit::Code(0)).failed_after(why()),
            AttemptEnd::Failed {
                exit: Some(Exit::Code(0)),
                error: why()
            }
        );
        assert_eq!(
            AttemptEnd::TimedOut(None).failed_after(why()),
            AttemptEnd::TimedOut(None)
        );
        let stopped = AttemptEnd::Stopped {
            exit: None,
            error: Some("first".into()),
        };
        assert_eq!(stopped.clone().failed_after(why()), stopped);
    }
}
