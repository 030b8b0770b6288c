//! What a running action gets from the executor: its log, cancellation,
//! the step's environment and folder, the run's facts, and a way to run
//! programs in their own process group.
//!
//! Actions are synchronous code run on a blocking thread: most of their
//! work is file-system calls and child processes. Cancellation (a timeout
//! or a signal to ward) sets a flag that actions check between units of
//! work and that stops their child processes' groups.

use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::sync::mpsc;

use crate::template::RunFacts;

/// Why an action failed, in words for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionError(pub String);

impl ActionError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> ActionError {
        ActionError(message.into())
    }

    /// The attempt was told to stop (timeout or signal).
    pub fn stopped() -> ActionError {
        ActionError::new("stopped: the step timed out or ward was interrupted")
    }
}

impl std::fmt::Display for ActionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<crate::fs::FsError> for ActionError {
    fn from(e: crate::fs::FsError) -> ActionError {
        match e {
            crate::fs::FsError::Stopped => ActionError::stopped(),
            crate::fs::FsError::Failed(m) => ActionError(m),
        }
    }
}

impl From<std::io::Error> for ActionError {
    fn from(e: std::io::Error) -> ActionError {
        ActionError(e.to_string())
    }
}

/// What a successful action reports.
#[derive(Clone, Debug, Default)]
pub struct ActionOutput {
    /// One line for progress and status.
    pub summary: Option<String>,
    /// Figures worth keeping (sizes, hashes, transfer statistics), as JSON.
    pub details: serde_json::Value,
    /// Something the operator should know although the step succeeded.
    pub warning: Option<String>,
    /// Paths the action wrote without flushing them to disk. The executor
    /// flushes their file systems in the background (`syncfs`) while the
    /// run goes on, and the run ends only after that; until it is recorded,
    /// a resume after a restart of the machine runs the step again
    /// (state/recovery.rs, rule 6). Only for output that a rerun recreates.
    pub unflushed: Vec<PathBuf>,
}

/// The result of one action attempt.
pub type ActionResult = Result<ActionOutput, ActionError>;

/// Everything an action may use while it runs.
pub struct ActionCtx {
    /// The step's id.
    pub step: String,
    /// The run's id.
    pub run_id: String,
    /// The playbook's folder; relative paths are resolved against it.
    pub work_dir: PathBuf,
    /// Environment added to ward's for child processes (WARD_* and the step's `env`).
    pub env: Vec<(String, String)>,
    /// The run's `ward.*` facts (date, host).
    pub facts: RunFacts,
    /// sha256 of the playbook file.
    pub playbook_hash: String,
    /// Wait between SIGTERM and SIGKILL for child processes.
    pub kill_grace: Duration,
    /// Threads an action may use (the machine's CPUs unless told otherwise).
    pub threads: usize,
    log: Mutex<Option<File>>,
    log_path: PathBuf,
    cancelled: Arc<AtomicBool>,
    echo: Option<(usize, mpsc::UnboundedSender<(usize, String)>)>,
    param_vars: Vec<(String, String)>,
}

/// The parts of an [`ActionCtx`] the executor fills in.
pub struct CtxParts {
    /// Step id.
    pub step: String,
    /// Step index (for echoed output).
    pub index: usize,
    /// Run id.
    pub run_id: String,
    /// Working folder.
    pub work_dir: PathBuf,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Run facts.
    pub facts: RunFacts,
    /// Playbook hash.
    pub playbook_hash: String,
    /// Kill grace.
    pub kill_grace: Duration,
    /// The attempt's log file.
    pub log_path: PathBuf,
    /// Set when the attempt must stop.
    pub cancelled: Arc<AtomicBool>,
    /// Where to echo log lines, if anywhere.
    pub echo: Option<mpsc::UnboundedSender<(usize, String)>>,
    /// Parameters given as one playbook variable: `(parameter, variable)`.
    pub param_vars: Vec<(String, String)>,
}

impl ActionCtx {
    /// Builds a context; the log file is created on first use.
    pub fn new(p: CtxParts) -> ActionCtx {
        ActionCtx {
            step: p.step,
            run_id: p.run_id,
            work_dir: p.work_dir,
            env: p.env,
            facts: p.facts,
            playbook_hash: p.playbook_hash,
            kill_grace: p.kill_grace,
            threads: crate::fs::default_threads(),
            log: Mutex::new(None),
            log_path: p.log_path,
            cancelled: p.cancelled,
            echo: p.echo.map(|tx| (p.index, tx)),
            param_vars: p.param_vars,
        }
    }

    /// How the operator sets parameter `key` to `value`, for messages: the
    /// `--var` when the playbook takes the parameter from a variable (what
    /// an operator running a shipped playbook can change), else the key.
    pub fn how_to_set(&self, key: &str, value: &str) -> String {
        match self.param_vars.iter().find(|(k, _)| k == key) {
            Some((_, var)) => format!("`--var {var}={value}`"),
            None => format!("`{key}: {value}` in the step's `with:`"),
        }
    }

    fn log_file(&self) -> Option<File> {
        let mut guard = self.log.lock().ok()?;
        if guard.is_none() {
            *guard = crate::state::private::open_log(&self.log_path).ok();
        }
        guard.as_ref().and_then(|f| f.try_clone().ok())
    }

    /// Writes a line to the attempt's log (and to the terminal when echoing).
    pub fn log(&self, line: impl AsRef<str>) {
        let line = line.as_ref();
        if let Some(mut f) = self.log_file() {
            let _ = writeln!(f, "{line}");
        }
        if let Some((step, tx)) = &self.echo {
            let _ = tx.send((*step, line.to_owned()));
        }
    }

    /// True once the attempt must stop (timeout or a signal to ward).
    pub fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// The cancellation flag itself, for loops on worker threads.
    pub fn cancel_flag(&self) -> &AtomicBool {
        &self.cancelled
    }

    /// Err if the attempt must stop; call between units of work.
    pub fn check(&self) -> Result<(), ActionError> {
        if self.cancelled() {
            Err(ActionError::stopped())
        } else {
            Ok(())
        }
    }

    /// Resolves a path parameter against the playbook's folder.
    pub fn path(&self, p: &str) -> PathBuf {
        self.work_dir.join(p)
    }

    /// Starts a program in its own process group, stdin from /dev/null,
    /// stderr (and stdout unless `stdout_piped`) appended to the log.
    pub fn spawn(
        &self,
        argv: &[String],
        extra_env: &[(String, String)],
        stdout_piped: bool,
    ) -> Result<Running, ActionError> {
        self.spawn_with(argv, extra_env, false, stdout_piped)
    }

    /// As [`spawn`](Self::spawn), optionally with stdin piped too.
    pub fn spawn_with(
        &self,
        argv: &[String],
        extra_env: &[(String, String)],
        stdin_piped: bool,
        stdout_piped: bool,
    ) -> Result<Running, ActionError> {
        let Some((program, args)) = argv.split_first() else {
            return Err(ActionError::new("empty command"));
        };
        let log = self.log_file().ok_or_else(|| {
            ActionError::new(format!("cannot open log {}", self.log_path.display()))
        })?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(extra_env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.work_dir)
            .stdin(if stdin_piped {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .process_group(0);
        // Fork rather than posix_spawn, so that a signal sent to ward's
        // process group while the child is still in it (GNU `timeout` sends
        // SIGTERM to ward, then to its group) cannot kill a `when: always`
        // action started in answer to the first; see execute/process.rs.
        ward_fork::start_by_fork(&mut cmd);
        if stdout_piped {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(Stdio::from(log.try_clone()?));
        }
        cmd.stderr(Stdio::from(log));
        let child = cmd
            .spawn()
            .map_err(|e| ActionError::new(format!("cannot start `{program}`: {e}")))?;
        Ok(Running {
            group: Pid::from_raw(child.id() as i32),
            child,
            program: program.clone(),
        })
    }

    /// Runs a program to its end; stdout is returned when `capture` (and
    /// also written to the log), else only logged.
    pub fn run(
        &self,
        argv: &[String],
        extra_env: &[(String, String)],
        capture: bool,
    ) -> Result<Finished, ActionError> {
        let mut running = self.spawn(argv, extra_env, capture)?;
        let reader = running.child.stdout.take().map(|mut out| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = std::io::Read::read_to_end(&mut out, &mut buf);
                buf
            })
        });
        let status = running.wait(self)?;
        let stdout = reader.and_then(|r| r.join().ok()).unwrap_or_default();
        if !stdout.is_empty()
            && let Some(mut f) = self.log_file()
        {
            let _ = f.write_all(&stdout);
        }
        Ok(Finished { status, stdout })
    }
}

/// A program started by an action.
pub struct Running {
    /// The child (its stdout is `Some` if it was piped).
    pub child: Child,
    group: Option<Pid>,
    program: String,
}

/// A program that ended.
pub struct Finished {
    /// How it ended.
    pub status: ExitStatus,
    /// Its stdout, if captured.
    pub stdout: Vec<u8>,
}

impl Running {
    /// The program's name, for messages.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Waits for the program, stopping its group (SIGTERM, then SIGKILL
    /// after the grace) if the attempt is cancelled meanwhile.
    pub fn wait(&mut self, ctx: &ActionCtx) -> Result<ExitStatus, ActionError> {
        let mut stop_sent: Option<Instant> = None;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(|e| ActionError::new(format!("cannot wait for `{}`: {e}", self.program)))?
            {
                return Ok(status);
            }
            if ctx.cancelled() {
                match stop_sent {
                    None => {
                        self.signal(Signal::TERM);
                        stop_sent = Some(Instant::now());
                    }
                    Some(at) if at.elapsed() >= ctx.kill_grace => self.signal(Signal::KILL),
                    Some(_) => {}
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends a signal to the program's whole process group.
    pub fn signal(&self, signal: Signal) {
        if let Some(g) = self.group {
            let _ = kill_process_group(g, signal);
        }
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
