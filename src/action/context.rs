//! What a running action gets from the executor: its log, cancellation,
//! the step's environment and folder, the run's facts, and a way to run
//! programs in their own process group (through [`crate::process`]).
//!
//! Actions are synchronous code run on a blocking thread: most of their
//! work is file-system calls and child processes. Cancellation (a timeout
//! or a signal to ward) raises a level that actions check between units of
//! work and that stops their child processes' groups the way
//! [`crate::process`] documents.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use crate::process::{Attempt, Cancel, CancelCell, Finished, Running};
use crate::progress::Progress;
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

impl From<crate::pg::ConnError> for ActionError {
    fn from(e: crate::pg::ConnError) -> ActionError {
        ActionError(e.to_string())
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

/// Reads a program's stdout chunk by chunk (see
/// [`ActionCtx::run_program_filtered`]); an empty chunk means the end.
pub type StdoutFilter = Box<dyn FnMut(&[u8], &mut Vec<u8>) + Send>;

/// The result of one action attempt.
pub type ActionResult = Result<ActionOutput, ActionError>;

/// Everything an action may use while it runs.
pub struct ActionCtx {
    /// The attempt (step, run, environment, folder, log, kill grace).
    pub attempt: Attempt,
    /// The run's `ward.*` facts (date, host).
    pub facts: RunFacts,
    /// sha256 of the playbook file.
    pub playbook_hash: String,
    /// Threads an action may use (the machine's CPUs unless told otherwise).
    pub threads: usize,
    /// Where `rsync` keeps, across runs, the stamp of each destination's
    /// last successful copy: `copies/` in ward's state folder (private to
    /// ward's user). None where there is no state folder: then no stamp is
    /// read or written.
    pub copies_dir: Option<PathBuf>,
    log: Mutex<Option<File>>,
    cancel: Arc<CancelCell>,
    param_vars: Vec<(String, String)>,
    progress: Arc<Progress>,
}

impl ActionCtx {
    /// A context for `attempt`; `param_vars` are the parameters given as
    /// one playbook variable, `(parameter, variable)`. The log file is
    /// created on first use. The returned cell stops the action when raised.
    pub fn new(
        attempt: Attempt,
        facts: RunFacts,
        playbook_hash: String,
        param_vars: Vec<(String, String)>,
    ) -> (ActionCtx, Arc<CancelCell>) {
        let cancel = Arc::new(CancelCell::default());
        let ctx = ActionCtx {
            attempt,
            facts,
            playbook_hash,
            threads: crate::fs::default_threads(),
            copies_dir: None,
            log: Mutex::new(None),
            cancel: cancel.clone(),
            param_vars,
            progress: Arc::default(),
        };
        (ctx, cancel)
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
            *guard = crate::state::private::open_log(&self.attempt.log_path).ok();
        }
        guard.as_ref().and_then(|f| f.try_clone().ok())
    }

    /// Writes a line to the attempt's log (and to the terminal when echoing).
    pub fn log(&self, line: impl AsRef<str>) {
        let masked;
        let line = match &self.attempt.mask {
            Some(mask) => {
                masked =
                    String::from_utf8_lossy(&mask.apply(line.as_ref().as_bytes())).into_owned();
                masked.as_str()
            }
            None => line.as_ref(),
        };
        if let Some(mut f) = self.log_file() {
            let _ = writeln!(f, "{line}");
        }
        if let Some(tx) = &self.attempt.echo {
            let _ = tx.send((self.attempt.index, line.to_owned()));
        }
    }

    /// The attempt's progress counters: an action adds the files and bytes
    /// it has done (per folder or buffer, never per byte) and sets totals
    /// when it knows them; a reporter samples them on a timer.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// A shared handle on [`progress`](Self::progress), for the executor
    /// to give the reporter, and for an action's worker threads.
    pub fn progress_handle(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// True once the attempt must stop (timeout or a signal to ward).
    pub fn cancelled(&self) -> bool {
        self.cancel.level() != Cancel::No
    }

    /// The attempt's cancel level, for library code that stops programs.
    pub fn cancel_cell(&self) -> &CancelCell {
        &self.cancel
    }

    /// The cancellation flag itself, for loops on worker threads.
    pub fn cancel_flag(&self) -> &AtomicBool {
        self.cancel.stop_flag()
    }

    /// Err if the attempt must stop; call between units of work.
    pub fn check(&self) -> Result<(), ActionError> {
        if self.cancelled() {
            Err(ActionError::stopped())
        } else {
            Ok(())
        }
    }

    /// `extra` with the fields that say where an action's output came from
    /// (the host and the run), e.g. for a dump's side file.
    pub fn origin(
        &self,
        mut extra: serde_json::Map<String, serde_json::Value>,
    ) -> serde_json::Map<String, serde_json::Value> {
        extra.insert("host".into(), self.facts.host.clone().into());
        extra.insert("run_id".into(), self.attempt.run_id.clone().into());
        extra
    }

    /// Resolves a path parameter against the playbook's folder.
    pub fn path(&self, p: &str) -> PathBuf {
        self.attempt.cwd.join(p)
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
            ActionError::new(format!(
                "cannot open log {}",
                self.attempt.log_path.display()
            ))
        })?;
        // Always started by fork: a `when: always` action may be started in
        // answer to GNU `timeout`'s first SIGTERM, and the second (to ward's
        // group) must not kill its programs (see `process::command`).
        let mut cmd = crate::process::command(
            program,
            args,
            self.attempt.env.iter().chain(extra_env),
            &self.attempt.cwd,
            true,
        );
        if stdin_piped {
            cmd.stdin(Stdio::piped());
        }
        if stdout_piped {
            cmd.stdout(Stdio::piped());
        } else {
            cmd.stdout(Stdio::from(log.try_clone()?));
        }
        cmd.stderr(Stdio::from(log));
        Running::start(&mut cmd, program)
            .map_err(|e| ActionError::new(format!("cannot start `{program}`: {e}")))
    }

    /// Waits for a program this action started; a cancellation meanwhile
    /// stops its group (see [`crate::process`]).
    pub fn wait(&self, running: &mut Running) -> Result<ExitStatus, ActionError> {
        running
            .wait(&self.cancel, self.attempt.kill_grace)
            .map_err(|e| ActionError::new(format!("cannot wait for `{}`: {e}", running.program())))
    }

    /// Runs a program to its end; stdout is returned when `capture` (and
    /// also written to the log), else only logged.
    pub fn run_program(
        &self,
        argv: &[String],
        extra_env: &[(String, String)],
        capture: bool,
    ) -> Result<Finished, ActionError> {
        self.run_program_with(argv, extra_env, None, capture, None)
    }

    /// Runs a program to its end with `input` on its stdin (written on a
    /// thread of its own while the program reads it); stdout is captured
    /// and logged as [`run_program`](Self::run_program) does.
    pub fn run_program_fed(
        &self,
        argv: &[String],
        input: Vec<u8>,
    ) -> Result<Finished, ActionError> {
        self.run_program_with(argv, &[], Some(input), true, None)
    }

    /// Runs a program to its end (with `input` on its stdin, if any),
    /// passing its stdout through `filter` as it comes: the filter gets each
    /// chunk read and appends what is kept (captured and logged) to its
    /// second argument. For programs that report progress on stdout
    /// (`rsync --info=progress2`): the filter counts it into
    /// [`progress`](Self::progress) and keeps it out of the log.
    pub fn run_program_filtered(
        &self,
        argv: &[String],
        input: Option<Vec<u8>>,
        filter: StdoutFilter,
    ) -> Result<Finished, ActionError> {
        self.run_program_with(argv, &[], input, true, Some(filter))
    }

    fn run_program_with(
        &self,
        argv: &[String],
        extra_env: &[(String, String)],
        input: Option<Vec<u8>>,
        capture: bool,
        filter: Option<StdoutFilter>,
    ) -> Result<Finished, ActionError> {
        let mut running = self.spawn_with(argv, extra_env, input.is_some(), capture)?;
        // A write error means the program ended early; its exit status says why.
        let writer = running
            .child
            .stdin
            .take()
            .zip(input)
            .map(|(mut stdin, input)| {
                std::thread::spawn(move || {
                    let _ = stdin.write_all(&input);
                })
            });
        let reader = running.child.stdout.take().map(|mut out| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                match filter {
                    None => {
                        let _ = std::io::Read::read_to_end(&mut out, &mut buf);
                    }
                    Some(mut filter) => {
                        let mut chunk = vec![0u8; 64 * 1024];
                        loop {
                            match std::io::Read::read(&mut out, &mut chunk) {
                                Ok(0) => break,
                                Ok(n) => filter(&chunk[..n], &mut buf),
                                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                                Err(_) => break,
                            }
                        }
                        // End of output: whatever the filter held back.
                        filter(&[], &mut buf);
                    }
                }
                buf
            })
        });
        // Once the program has ended, neither pipe can block its thread.
        let status = self.wait(&mut running)?;
        if let Some(w) = writer {
            let _ = w.join();
        }
        let stdout = reader.and_then(|r| r.join().ok()).unwrap_or_default();
        if !stdout.is_empty()
            && let Some(mut f) = self.log_file()
        {
            let _ = f.write_all(&stdout);
        }
        Ok(Finished { status, stdout })
    }
}
