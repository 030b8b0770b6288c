//! One attempt of a built-in action: its `perform` on a blocking thread, with
//! the step's timeout and ward's signals raised on the action's
//! [`CancelCell`] (which also stops its programs, see [`crate::process`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::process::{AttemptEnd, AttemptResult, Cancel, Exit};
use crate::action::{ActionCtx, ActionParams, ActionResult};
use crate::process::{CancelCell, wait_cancel};

/// An action running on its blocking thread.
pub struct StartedAction {
    handle: tokio::task::JoinHandle<ActionResult>,
    cancel: Arc<CancelCell>,
    started: Instant,
}

/// Starts the action on a blocking thread now, not when a task is first
/// polled: the scheduler writes its checkpoint right after starting
/// attempts, and on a busy disk that fsync must not delay the action.
pub fn start_action(
    params: Arc<dyn ActionParams>,
    ctx: ActionCtx,
    cancel: Arc<CancelCell>,
) -> StartedAction {
    StartedAction {
        handle: tokio::task::spawn_blocking(move || params.perform(&ctx)),
        cancel,
        started: Instant::now(),
    }
}

/// Runs a started action to its end; a timeout or a signal raises the
/// level the action checks, and its child processes are stopped by their
/// own waits. A later [`Cancel::Kill`] is passed on too (SIGKILL now).
pub async fn wait_action(
    action: StartedAction,
    timeout: Option<Duration>,
    mut cancel: watch::Receiver<Cancel>,
) -> AttemptResult {
    let StartedAction {
        mut handle,
        cancel: cell,
        started,
    } = action;
    let mut timed_out = false;
    let mut interrupted = false;
    let limit = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let joined = tokio::select! {
        r = &mut handle => r,
        () = limit => {
            timed_out = true;
            cell.raise(Cancel::Terminate);
            finish(handle, &cell, &mut cancel).await
        }
        level = wait_cancel(&mut cancel) => {
            interrupted = true;
            cell.raise(level);
            finish(handle, &cell, &mut cancel).await
        }
    };
    let (exit, error, details, note, unflushed) = match joined {
        Ok(Ok(out)) => {
            let note = match (&out.summary, &out.warning) {
                (Some(s), Some(w)) => Some(format!("{s}; warning: {w}")),
                (None, Some(w)) => Some(format!("warning: {w}")),
                (Some(s), None) => Some(s.clone()),
                (None, None) => None,
            };
            (
                // An action that returned counts as a program that exited 0.
                Some(Exit::Code(0)),
                None,
                Some(out.details).filter(|d| !d.is_null()),
                note,
                out.unflushed,
            )
        }
        Ok(Err(e)) => (None, Some(e.0), None, None, Vec::new()),
        Err(e) => (
            None,
            Some(format!("the action stopped unexpectedly: {e}")),
            None,
            None,
            Vec::new(),
        ),
    };
    let ending = match (timed_out, interrupted, error) {
        (true, _, _) => AttemptEnd::TimedOut(exit),
        (false, true, error) => AttemptEnd::Stopped { exit, error },
        (false, false, Some(error)) => AttemptEnd::Failed { exit, error },
        // No error: the action returned.
        (false, false, None) => AttemptEnd::Exited(Exit::Code(0)),
    };
    AttemptResult {
        end: ending,
        details,
        note,
        unflushed,
        elapsed: started.elapsed(),
        left_behind: Vec::new(),
    }
}

/// Waits for a stopping action, raising its level to [`Cancel::Kill`] if
/// ward is told to hurry meanwhile.
async fn finish(
    mut handle: tokio::task::JoinHandle<ActionResult>,
    cell: &CancelCell,
    cancel: &mut watch::Receiver<Cancel>,
) -> Result<ActionResult, tokio::task::JoinError> {
    let hurry = async {
        loop {
            if *cancel.borrow_and_update() == Cancel::Kill {
                return;
            }
            if cancel.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        r = &mut handle => r,
        () = hurry => {
            cell.raise(Cancel::Kill);
            handle.await
        }
    }
}
