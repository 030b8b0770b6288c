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
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};
use std::os::fd::OwnedFd;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};

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
    /// Start the child so that a signal sent to ward's process group while
    /// it is being started cannot kill it (see `spawn_attempt`): for
    /// finalizers, which must survive the second SIGTERM of GNU `timeout`.
    pub shield_from_group_signals: bool,
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

impl AttemptResult {
    fn spawn_failed(message: String, started: Instant) -> AttemptResult {
        AttemptResult {
            exit_code: None,
            signal: None,
            timed_out: false,
            interrupted: false,
            error: Some(message),
            details: None,
            note: None,
            unflushed: Vec::new(),
            elapsed: started.elapsed(),
            left_behind: Vec::new(),
        }
    }
}

/// A started attempt (or the reason it could not start).
pub struct Started {
    child: Option<Child>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    program: String,
    started: Instant,
    spawn_error: Option<String>,
}

/// Starts one attempt's process now. Synchronous on purpose: the scheduler
/// starts children first and then writes its checkpoint, so the fsync
/// overlaps with the child's own start-up.
///
/// stdout and stderr share one pipe (so their order is kept) that a task
/// copies into the log file, which is created only when output arrives:
/// a silent step costs no inode (creating thousands of empty files is
/// slow on a busy ext4).
pub fn spawn_attempt(
    spec: &AttemptSpec,
    echo: Option<(usize, mpsc::UnboundedSender<(usize, String)>)>,
) -> Started {
    let started = Instant::now();
    let failed = |program: &str, message: String| Started {
        child: None,
        readers: Vec::new(),
        program: program.to_owned(),
        started,
        spawn_error: Some(message),
    };
    let Some((program, args)) = spec.argv.split_first() else {
        return failed("", "empty command".into());
    };
    let (reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return failed(program, format!("cannot create an output pipe: {e}")),
    };
    let writer_copy = match writer.try_clone() {
        Ok(w) => w,
        Err(e) => return failed(program, format!("cannot create an output pipe: {e}")),
    };
    let receiver = match tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader)) {
        Ok(r) => r,
        Err(e) => return failed(program, format!("cannot watch the output pipe: {e}")),
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(OwnedFd::from(writer)))
        .stderr(Stdio::from(OwnedFd::from(writer_copy)))
        .process_group(0)
        .kill_on_drop(false);
    // GNU `timeout` sends SIGTERM to ward and then to ward's process group.
    // A child being started at that moment is still in that group until it
    // moves to its own, and with posix_spawn (std's choice when it can) a
    // signal caught then is delivered with the default action once the new
    // program starts: the `when: always` step started in answer to the
    // first SIGTERM died of the second. Started by fork, the child keeps
    // ward's handlers until exec, so a group signal caught before it left
    // the group is harmless (the `ward-fork` crate says why this is the
    // way to get a fork, and holds its one `unsafe` line). A fork costs
    // about three times a posix_spawn, so only the steps that must survive
    // signals pay it; a normal step is being stopped by then anyway.
    if spec.shield_from_group_signals {
        ward_fork::start_by_fork(cmd.as_std_mut());
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(program, format!("cannot start `{program}`: {e}")),
    };
    // Our copies of the pipe's write end go with `cmd`, so EOF comes when
    // the step (and whatever it left holding the pipe) is done.
    drop(cmd);
    let log = LazyLog {
        path: spec.log_path.clone(),
        file: None,
    };
    Started {
        child: Some(child),
        readers: vec![tokio::spawn(pump(receiver, log, echo))],
        program: program.clone(),
        started,
        spawn_error: None,
    }
}

/// A log file created on the first byte written to it.
struct LazyLog {
    path: PathBuf,
    file: Option<File>,
}

impl LazyLog {
    fn write(&mut self, bytes: &[u8]) {
        if self.file.is_none() {
            self.file = crate::state::private::open_log(&self.path).ok();
        }
        if let Some(f) = &mut self.file {
            // A full disk must not fail the step; the exit status decides.
            let _ = f.write_all(bytes);
        }
    }
}

/// Copies the step's output into its log and, if echoing, line by line to
/// the reporter (invalid UTF-8 is kept intact in the log).
async fn pump(
    mut pipe: tokio::net::unix::pipe::Receiver,
    mut log: LazyLog,
    echo: Option<(usize, mpsc::UnboundedSender<(usize, String)>)>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        log.write(&buf[..n]);
        if let Some((step, tx)) = &echo {
            partial.extend_from_slice(&buf[..n]);
            while let Some(pos) = partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = partial.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line);
                let _ = tx.send((*step, text.trim_end_matches(['\n', '\r']).to_owned()));
            }
        }
    }
    if let Some((step, tx)) = &echo
        && !partial.is_empty()
    {
        let _ = tx.send((*step, String::from_utf8_lossy(&partial).into_owned()));
    }
}

/// Waits for a started attempt to end (exit, timeout or cancellation).
pub async fn wait_attempt(
    started: Started,
    spec: AttemptSpec,
    mut cancel: watch::Receiver<Cancel>,
) -> AttemptResult {
    let Started {
        child,
        readers,
        program,
        started,
        spawn_error,
    } = started;
    let Some(mut child) = child else {
        return AttemptResult::spawn_failed(spawn_error.unwrap_or_default(), started);
    };
    let group = child.id().and_then(|id| Pid::from_raw(id as i32));
    let mut timed_out = false;
    let mut interrupted = false;
    let timeout = async {
        match spec.timeout {
            Some(t) => tokio::time::sleep(t.saturating_sub(started.elapsed())).await,
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
    let (exit_code, signal, error) = match status {
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
        error,
        details: None,
        note: None,
        unflushed: Vec::new(),
        elapsed: started.elapsed(),
        left_behind: Vec::new(),
    }
}

/// Starts and waits for one attempt (used where no checkpoint sits between).
pub async fn run_attempt(
    spec: AttemptSpec,
    cancel: watch::Receiver<Cancel>,
    echo: Option<(usize, mpsc::UnboundedSender<(usize, String)>)>,
) -> AttemptResult {
    let started = spawn_attempt(&spec, echo);
    wait_attempt(started, spec, cancel).await
}

pub(super) async fn wait_cancel(cancel: &mut watch::Receiver<Cancel>) -> Cancel {
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
