//! A command step's program, waited for on the scheduler's thread: its
//! output is copied into the attempt's log (and echoed), its time limit
//! and ward's signals stop it (the module docs' stop policy, [`Stop`]).

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::{Attempt, Cancel, Echo, Stop, command, signal_group};

/// A started program (or the reason it could not start).
pub struct Started {
    child: Option<Child>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    program: String,
    started: Instant,
    spawn_error: Option<String>,
}

/// How a program ended.
#[derive(Debug)]
pub struct Ended {
    /// Its status, or why it could not be started or waited for.
    pub status: Result<ExitStatus, String>,
    /// The time limit ended it.
    pub timed_out: bool,
    /// A signal to ward ended it.
    pub interrupted: bool,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Starts an attempt's program now. Synchronous on purpose: the scheduler
/// starts children first and then writes its checkpoint, so the fsync
/// overlaps with the child's own start-up.
///
/// stdout and stderr share one pipe (so their order is kept) that a task
/// copies into the log file, which is created only when output arrives:
/// a silent step costs no inode (creating thousands of empty files is
/// slow on a busy ext4).
pub fn spawn(attempt: &Attempt) -> Started {
    let started = Instant::now();
    let failed = |program: &str, message: String| Started {
        child: None,
        readers: Vec::new(),
        program: program.to_owned(),
        started,
        spawn_error: Some(message),
    };
    let Some((program, args)) = attempt.argv.split_first() else {
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
    let mut std_cmd = command(
        program,
        args,
        &attempt.env,
        &attempt.cwd,
        attempt.shield_from_group_signals,
    );
    std_cmd
        .stdout(Stdio::from(OwnedFd::from(writer)))
        .stderr(Stdio::from(OwnedFd::from(writer_copy)));
    let mut cmd = Command::from(std_cmd);
    cmd.kill_on_drop(false);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(program, format!("cannot start `{program}`: {e}")),
    };
    // Our copies of the pipe's write end go with `cmd`, so EOF comes when
    // the step (and whatever it left holding the pipe) is done.
    drop(cmd);
    let log = LazyLog {
        path: attempt.log_path.clone(),
        file: None,
    };
    let echo = attempt.echo.clone().map(|tx| (attempt.index, tx));
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
    echo: Option<(usize, Echo)>,
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

/// Waits for a started program to end (exit, time limit or cancellation).
pub async fn wait(
    started: Started,
    timeout: Option<Duration>,
    kill_grace: Duration,
    mut cancel: watch::Receiver<Cancel>,
) -> Ended {
    let Started {
        child,
        readers,
        program,
        started,
        spawn_error,
    } = started;
    let Some(mut child) = child else {
        return Ended {
            status: Err(spawn_error.unwrap_or_default()),
            timed_out: false,
            interrupted: false,
            elapsed: started.elapsed(),
        };
    };
    let group = child.id().and_then(|id| Pid::from_raw(id as i32));
    let limit = timeout.map(|t| tokio::time::Instant::from_std(started + t));
    let mut timed_out = false;
    let mut interrupted = false;
    let mut scheduler_alive = true;
    let mut stop = Stop::default();
    let status = loop {
        // The time limit counts as a stop; whichever came first names the
        // ending, and a later hurry from ward still applies.
        let asked = *cancel.borrow_and_update();
        if asked != Cancel::No && !timed_out {
            interrupted = true;
        }
        let level = if timed_out {
            asked.max(Cancel::Terminate)
        } else {
            asked
        };
        if let Some(signal) = stop.due(level, kill_grace, Instant::now()) {
            signal_group(group, signal);
        }
        let next_signal = stop
            .deadline(kill_grace)
            .map(tokio::time::Instant::from_std);
        tokio::select! {
            s = child.wait() => {
                if let Some(signal) = stop.after_exit() {
                    signal_group(group, signal);
                }
                break s;
            }
            () = sleep_until(limit), if !timed_out && !interrupted => timed_out = true,
            changed = cancel.changed(), if scheduler_alive => {
                // The scheduler is gone: nothing will ever cancel us.
                scheduler_alive = changed.is_ok();
            }
            () = sleep_until(next_signal), if next_signal.is_some() => {}
        }
    };
    // A background process may keep the pipes open; do not wait for it.
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_millis(200), r).await;
    }
    Ended {
        status: status.map_err(|e| format!("cannot wait for `{program}`: {e}")),
        timed_out,
        interrupted,
        elapsed: started.elapsed(),
    }
}

/// Resolves when the level is above [`Cancel::No`], with the level.
pub async fn wait_cancel(cancel: &mut watch::Receiver<Cancel>) -> Cancel {
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

/// Sleeps until `at`; never wakes for None.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
