//! A program started by an action on its blocking thread, waited for there
//! and stopped as the module docs say when the attempt's [`CancelCell`]
//! is raised.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use super::{CancelCell, Stop, signal_group};

/// A running program (its own process group).
pub struct Running {
    /// The child (its stdin and stdout are `Some` if they were piped).
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

/// How often a blocking wait looks at the program and the cancel level.
const POLL: Duration = Duration::from_millis(5);

impl Running {
    /// Starts `cmd` (made by [`super::command`], so in its own group).
    pub fn start(cmd: &mut std::process::Command, program: &str) -> std::io::Result<Running> {
        let child = cmd.spawn()?;
        Ok(Running {
            group: Pid::from_raw(child.id() as i32),
            child,
            program: program.to_owned(),
        })
    }

    /// The program's name, for messages.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// Sends a signal to the program's whole process group.
    pub fn signal(&self, signal: Signal) {
        signal_group(self.group, signal);
    }

    /// Waits for the program, stopping its group as the module docs say
    /// when `cancel` is raised meanwhile (`grace`: the kill grace).
    pub fn wait(&mut self, cancel: &CancelCell, grace: Duration) -> std::io::Result<ExitStatus> {
        let mut stop = Stop::default();
        loop {
            if let Some(status) = self.child.try_wait()? {
                if let Some(signal) = stop.after_exit() {
                    self.signal(signal);
                }
                return Ok(status);
            }
            if let Some(signal) = stop.due(cancel.level(), grace, Instant::now()) {
                self.signal(signal);
            }
            std::thread::sleep(POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;

    use super::*;
    use crate::process::{Cancel, command};

    fn start(script: &str) -> Running {
        let argv = ["-c".to_owned(), script.to_owned()];
        let mut cmd = command("sh", &argv, &[], std::path::Path::new("/"), false);
        cmd.stdout(Stdio::null());
        Running::start(&mut cmd, "sh").expect("start sh")
    }

    /// Waits until `path` holds a number (written by the script when it is ready).
    fn read_pid(path: &std::path::Path) -> i32 {
        loop {
            if let Ok(text) = std::fs::read_to_string(path)
                && let Ok(pid) = text.trim().parse::<i32>()
            {
                return pid;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_program_that_ignores_sigterm_is_killed_after_the_grace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ready = dir.path().join("ready");
        let mut running = start(&format!(
            "trap '' TERM; echo $$ > {}; sleep 30",
            ready.display()
        ));
        read_pid(&ready);
        let cancel = CancelCell::default();
        cancel.raise(Cancel::Terminate);
        let begun = Instant::now();
        let status = running
            .wait(&cancel, Duration::from_millis(200))
            .expect("wait");
        assert_eq!(status.signal(), Some(9), "{status:?}");
        assert!(begun.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn kill_does_not_wait_for_the_grace() {
        let mut running = start("trap '' TERM; sleep 30");
        let cancel = CancelCell::default();
        cancel.raise(Cancel::Kill);
        assert_eq!(cancel.level(), Cancel::Kill);
        let begun = Instant::now();
        let status = running
            .wait(&cancel, Duration::from_secs(60))
            .expect("wait");
        assert_eq!(status.signal(), Some(9), "{status:?}");
        assert!(begun.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn what_the_program_started_goes_with_it_once_it_stopped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        // The background shell ignores SIGTERM; the leader ends on it.
        let mut running = start(&format!(
            "sh -c 'trap \"\" TERM; echo $$ > {}; while :; do sleep 0.05; done' & sleep 30",
            pid_file.display()
        ));
        let pid = read_pid(&pid_file);
        let cancel = CancelCell::default();
        cancel.raise(Cancel::Terminate);
        running
            .wait(&cancel, Duration::from_secs(60))
            .expect("wait");
        let gone = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            !crate::procs::running(pid)
        });
        if !gone {
            // Do not leave it looping (it holds the test's stderr open).
            if let Some(leftover) = Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(leftover, Signal::KILL);
            }
        }
        assert!(gone, "process {pid} outlived its stopped group");
    }
}
