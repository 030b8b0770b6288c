//! A program started by an action on its blocking thread, waited for there
//! and stopped as the module docs say when the attempt's [`CancelCell`]
//! is raised.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use super::{Cancel, CancelCell, signal_group};

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

    /// Waits for the program, stopping its group when `cancel` is raised
    /// meanwhile (SIGTERM, SIGKILL after `grace` or at once for
    /// [`Cancel::Kill`], SIGKILL once it ended after a stop began).
    pub fn wait(&mut self, cancel: &CancelCell, grace: Duration) -> std::io::Result<ExitStatus> {
        let mut term_sent: Option<Instant> = None;
        let mut stopping = false;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if stopping {
                    // The leader is gone; make sure nothing it started lingers.
                    self.signal(Signal::KILL);
                }
                return Ok(status);
            }
            match (cancel.level(), term_sent) {
                (Cancel::No, _) => {}
                (Cancel::Kill, _) => {
                    stopping = true;
                    self.signal(Signal::KILL);
                }
                (Cancel::Terminate, None) => {
                    stopping = true;
                    self.signal(Signal::TERM);
                    term_sent = Some(Instant::now());
                }
                (Cancel::Terminate, Some(at)) if at.elapsed() >= grace => {
                    self.signal(Signal::KILL);
                }
                (Cancel::Terminate, Some(_)) => {}
            }
            std::thread::sleep(POLL);
        }
    }
}
