//! One attempt of a step as a child process.
//!
//! The child runs in its own process group so that a timeout or a signal to
//! ward reaches everything it started: SIGTERM to the group, then SIGKILL
//! after a grace period. Output goes to the attempt's log file, directly
//! (no copy) unless it is also echoed to a terminal.

use std::fs::File;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

/// How hard the scheduler wants running attempts to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cancel {
    /// Keep running.
    No,
    /// SIGTERM the group, SIGKILL after the grace period.
    Terminate,
    /// SIGKILL the group now (a second signal to ward).
    Kill,
}

/// What to run for one attempt.
#[derive(Clone, Debug)]
pub struct AttemptSpec {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra environment (on top of ward's own).
    pub env: Vec<(String, String)>,
    /// Working folder.
    pub cwd: PathBuf,
    /// Where output goes.
    pub log_path: PathBuf,
    /// Time limit.
    pub timeout: Option<Duration>,
    /// Wait between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
}

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
    /// It could not be started at all.
    pub spawn_error: Option<String>,
    /// How long it ran.
    pub elapsed: Duration,
}

impl AttemptResult {
    fn spawn_failed(message: String, started: Instant) -> AttemptResult {
        AttemptResult {
            exit_code: None,
            signal: None,
            timed_out: false,
            interrupted: false,
            spawn_error: Some(message),
            elapsed: started.elapsed(),
        }
    }
}

/// Runs one attempt to its end (exit, timeout or cancellation).
pub async fn run_attempt(
    spec: AttemptSpec,
    mut cancel: watch::Receiver<Cancel>,
    echo: Option<(usize, mpsc::UnboundedSender<(usize, String)>)>,
) -> AttemptResult {
    let started = Instant::now();
    let Some((program, args)) = spec.argv.split_first() else {
        return AttemptResult::spawn_failed("empty command".into(), started);
    };
    let log = match File::create(&spec.log_path) {
        Ok(f) => f,
        Err(e) => {
            return AttemptResult::spawn_failed(
                format!("cannot create log {}: {e}", spec.log_path.display()),
                started,
            );
        }
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(false);
    let shared_log = match &echo {
        Some(_) => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            Some(Arc::new(Mutex::new(log)))
        }
        None => {
            match log.try_clone() {
                Ok(copy) => cmd.stdout(Stdio::from(copy)),
                Err(e) => {
                    return AttemptResult::spawn_failed(
                        format!("cannot share log file: {e}"),
                        started,
                    );
                }
            };
            cmd.stderr(Stdio::from(log));
            None
        }
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return AttemptResult::spawn_failed(format!("cannot start `{program}`: {e}"), started);
        }
    };
    let mut readers = Vec::new();
    if let (Some((step, tx)), Some(log)) = (&echo, &shared_log) {
        if let Some(out) = child.stdout.take() {
            readers.push(tokio::spawn(copy_lines(
                out,
                log.clone(),
                *step,
                tx.clone(),
            )));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(tokio::spawn(copy_lines(
                err,
                log.clone(),
                *step,
                tx.clone(),
            )));
        }
    }
    let group = child.id().and_then(|id| Pid::from_raw(id as i32));

    let mut timed_out = false;
    let mut interrupted = false;
    let timeout = async {
        match spec.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timeout);
    let status = tokio::select! {
        s = child.wait() => s,
        () = &mut timeout => {
            timed_out = true;
            stop_group(&mut child, group, spec.kill_grace, &mut cancel).await
        }
        level = wait_cancel(&mut cancel) => {
            interrupted = true;
            if level == Cancel::Kill {
                signal_group(group, Signal::KILL);
                child.wait().await
            } else {
                stop_group(&mut child, group, spec.kill_grace, &mut cancel).await
            }
        }
    };
    // A background process may keep the pipes open; do not wait for it.
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_millis(200), r).await;
    }
    let (exit_code, signal, spawn_error) = match status {
        Ok(s) => (s.code(), s.signal(), None),
        Err(e) => (
            None,
            None,
            Some(format!("cannot wait for `{program}`: {e}")),
        ),
    };
    AttemptResult {
        exit_code,
        signal,
        timed_out,
        interrupted,
        spawn_error,
        elapsed: started.elapsed(),
    }
}

async fn wait_cancel(cancel: &mut watch::Receiver<Cancel>) -> Cancel {
    loop {
        let level = *cancel.borrow_and_update();
        if level != Cancel::No {
            return level;
        }
        if cancel.changed().await.is_err() {
            // The scheduler is gone; nothing will ever cancel us.
            return std::future::pending().await;
        }
    }
}

fn signal_group(group: Option<Pid>, signal: Signal) {
    if let Some(pgid) = group {
        // ESRCH (the group is already gone) is fine.
        let _ = kill_process_group(pgid, signal);
    }
}

/// SIGTERM to the whole group, SIGKILL after the grace period (or at once
/// if ward is told to hurry), then reap the child.
async fn stop_group(
    child: &mut Child,
    group: Option<Pid>,
    grace: Duration,
    cancel: &mut watch::Receiver<Cancel>,
) -> std::io::Result<std::process::ExitStatus> {
    signal_group(group, Signal::TERM);
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
        s = child.wait() => {
            // The leader is gone; make sure nothing it started lingers.
            signal_group(group, Signal::KILL);
            s
        }
        () = tokio::time::sleep(grace) => {
            signal_group(group, Signal::KILL);
            child.wait().await
        }
        () = hurry => {
            signal_group(group, Signal::KILL);
            child.wait().await
        }
    }
}

async fn copy_lines<R: AsyncRead + Unpin>(
    pipe: R,
    log: Arc<Mutex<File>>,
    step: usize,
    tx: mpsc::UnboundedSender<(usize, String)>,
) {
    // Bytes, not `lines()`: output that is not UTF-8 must still reach the log intact.
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if let Ok(mut f) = log.lock() {
                    let _ = f.write_all(&buf);
                }
                let text = String::from_utf8_lossy(&buf);
                let _ = tx.send((step, text.trim_end_matches(['\n', '\r']).to_owned()));
            }
        }
    }
}
