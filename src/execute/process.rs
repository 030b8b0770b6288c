//! One attempt of a command step: its program started and waited for by
//! [`crate::process`], and what the executor records of it.

use std::path::PathBuf;
use std::time::Duration;

use std::os::unix::process::ExitStatusExt;

use tokio::sync::watch;

pub use crate::process::{Attempt, Cancel};
use crate::process::{Ended, Started};

/// How an attempt ended.
#[derive(Clone, Debug)]
pub struct AttemptResult {
    /// Exit code, if the process exited.
    pub exit_code: Option<i32>,
    /// Signal, if the process was killed.
    pub signal: Option<i32>,
    /// The time limit ended it.
    pub timed_out: bool,
    /// A signal to ward ended it.
    pub interrupted: bool,
    /// It could not be started, or (an action) it failed: why.
    pub error: Option<String>,
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
        let (exit_code, signal, error) = match ended.status {
            Ok(s) => (s.code(), s.signal(), None),
            Err(e) => (None, None, Some(e)),
        };
        AttemptResult {
            exit_code,
            signal,
            timed_out: ended.timed_out,
            interrupted: ended.interrupted,
            error,
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
