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

use super::{Attempt, Cancel, Echo, MaskStream, Stop, command, signal_group};

/// A started program (or the reason it could not start).
pub struct Started {
    started: Instant,
    run: Result<Run, StartError>,
}

/// A program that did start: its process and the task copying its output.
struct Run {
    child: Child,
    readers: Vec<tokio::task::JoinHandle<()>>,
    program: String,
}

/// Why a program could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The step's command has no program.
    #[error("empty command")]
    EmptyCommand,
    /// The pipe for its output could not be made.
    #[error("cannot create an output pipe: {0}")]
    Pipe(std::io::Error),
    /// The pipe for its output could not be watched.
    #[error("cannot watch the output pipe: {0}")]
    WatchPipe(std::io::Error),
    /// The program itself could not be started.
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A started program could not be waited for.
#[derive(Debug, thiserror::Error)]
#[error("cannot wait for `{program}`: {source}")]
pub struct WaitError {
    /// The program.
    pub program: String,
    /// Why.
    pub source: std::io::Error,
}

/// How a program ended, and how long it ran.
#[derive(Debug)]
pub struct Ended {
    /// How it ended.
    pub outcome: Outcome,
    /// How long it ran.
    pub elapsed: Duration,
}

/// How a program ended: by itself, or stopped by its time limit or a
/// signal to ward (the first stop names the ending), or not at all as far
/// as ward can tell.
#[derive(Debug)]
pub enum Outcome {
    /// It could not be started.
    NotStarted(StartError),
    /// It ended by itself with this status.
    Exited(ExitStatus),
    /// Nothing stopped it, but it could not be waited for.
    Unwaited(WaitError),
    /// Its time limit stopped it: how it then ended.
    TimedOut(Result<ExitStatus, WaitError>),
    /// A signal to ward stopped it: how it then ended.
    Stopped(Result<ExitStatus, WaitError>),
}

/// What began stopping a program (the first of them names its ending).
#[derive(Clone, Copy, PartialEq, Eq)]
enum StoppedBy {
    /// Its time limit.
    TimeLimit,
    /// A signal to ward (a [`Cancel`] from the scheduler).
    Ward,
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
    Started {
        started,
        run: start(attempt),
    }
}

fn start(attempt: &Attempt) -> Result<Run, StartError> {
    let (program, args) = attempt.argv.split_first().ok_or(StartError::EmptyCommand)?;
    let (reader, writer) = std::io::pipe().map_err(StartError::Pipe)?;
    let writer_copy = writer.try_clone().map_err(StartError::Pipe)?;
    let receiver = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader))
        .map_err(StartError::WatchPipe)?;
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
    let child = cmd.spawn().map_err(|source| StartError::Spawn {
        program: program.clone(),
        source,
    })?;
    // Our copies of the pipe's write end go with `cmd`, so EOF comes when
    // the step (and whatever it left holding the pipe) is done.
    drop(cmd);
    let log = LazyLog {
        path: attempt.log_path.clone(),
        file: None,
    };
    let echo = attempt.echo.clone().map(|tx| (attempt.index, tx));
    let mask = attempt.mask.clone().map(MaskStream::new);
    Ok(Run {
        child,
        readers: vec![tokio::spawn(pump(receiver, log, echo, mask))],
        program: program.clone(),
    })
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
/// the reporter (invalid UTF-8 is kept intact in the log), with the run's
/// secrets masked first.
async fn pump(
    mut pipe: tokio::net::unix::pipe::Receiver,
    mut log: LazyLog,
    echo: Option<(usize, Echo)>,
    mut mask: Option<MaskStream>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut partial: Vec<u8> = Vec::new();
    let take = |bytes: &[u8], log: &mut LazyLog, partial: &mut Vec<u8>| {
        if bytes.is_empty() {
            return;
        }
        log.write(bytes);
        if let Some((step, tx)) = &echo {
            partial.extend_from_slice(bytes);
            while let Some(pos) = partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = partial.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line);
                let _ = tx.send((*step, text.trim_end_matches(['\n', '\r']).to_owned()));
            }
        }
    };
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        match &mut mask {
            Some(m) => take(&m.push(&buf[..n]), &mut log, &mut partial),
            None => take(&buf[..n], &mut log, &mut partial),
        }
    }
    if let Some(m) = &mut mask {
        take(&m.finish(), &mut log, &mut partial);
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
    let Started { started, run } = started;
    let Run {
        mut child,
        readers,
        program,
    } = match run {
        Ok(run) => run,
        Err(e) => {
            return Ended {
                outcome: Outcome::NotStarted(e),
                elapsed: started.elapsed(),
            };
        }
    };
    let group = child.id().and_then(|id| Pid::from_raw(id as i32));
    let limit = timeout.map(|t| tokio::time::Instant::from_std(started + t));
    let mut stopped_by = None;
    let mut scheduler_alive = true;
    let mut stop = Stop::default();
    let status = loop {
        // The time limit counts as a stop; whichever came first names the
        // ending, and a later hurry from ward still applies.
        let asked = *cancel.borrow_and_update();
        if asked != Cancel::No && stopped_by.is_none() {
            stopped_by = Some(StoppedBy::Ward);
        }
        let level = if stopped_by == Some(StoppedBy::TimeLimit) {
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
            () = sleep_until(limit), if stopped_by.is_none() => {
                stopped_by = Some(StoppedBy::TimeLimit);
            }
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
    let status = status.map_err(|source| WaitError { program, source });
    let outcome = match (stopped_by, status) {
        (None, Ok(status)) => Outcome::Exited(status),
        (None, Err(e)) => Outcome::Unwaited(e),
        (Some(StoppedBy::TimeLimit), status) => Outcome::TimedOut(status),
        (Some(StoppedBy::Ward), status) => Outcome::Stopped(status),
    };
    Ended {
        outcome,
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
