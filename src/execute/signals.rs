//! SIGINT, SIGTERM, SIGHUP and SIGQUIT as a stream the scheduler can select on.
//!
//! What each one means is decided by the scheduler (docs/cli.md, "Signals"):
//! SIGHUP (an ssh session or terminal that went away) is a request to stop
//! like SIGTERM, never a reason to die at once with the service stopped.
//! The first SIGINT/SIGTERM/SIGHUP stops the running steps and starts nothing but
//! the `when: always` steps; a second is only noted, because GNU `timeout`
//! sends SIGTERM twice (to ward, then to its process group); a third, or
//! SIGQUIT, abandons the `when: always` steps too.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// ward's signal listeners.
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
    /// None when ward was started with SIGHUP ignored (`nohup`): that
    /// choice is kept, so the run goes on after the session ends.
    hangup: Option<Signal>,
    quit: Signal,
}

/// Which signal arrived (exported as `execute::StopSignal`; the CLI maps
/// it onto an exit code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM.
    Terminate,
    /// SIGHUP (the terminal or ssh session went away).
    Hangup,
    /// SIGQUIT (Ctrl-\): abandon at once.
    Quit,
}

/// Said by its name (`SIGINT`), as ward's messages print it.
impl std::fmt::Display for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Received {
    /// The signal's name.
    pub fn name(self) -> &'static str {
        match self {
            Received::Interrupt => "SIGINT",
            Received::Terminate => "SIGTERM",
            Received::Hangup => "SIGHUP",
            Received::Quit => "SIGQUIT",
        }
    }
}

impl Signals {
    /// Installs the listeners (from then on these signals no longer kill ward).
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: if hangup_ignored() {
                None
            } else {
                Some(signal(SignalKind::hangup())?)
            },
            quit: signal(SignalKind::quit())?,
        })
    }

    /// Waits for the next signal.
    pub async fn recv(&mut self) -> Received {
        tokio::select! {
            _ = self.interrupt.recv() => Received::Interrupt,
            _ = self.terminate.recv() => Received::Terminate,
            _ = recv_if_listening(&mut self.hangup) => Received::Hangup,
            _ = self.quit.recv() => Received::Quit,
        }
    }
}

async fn recv_if_listening(signal: &mut Option<Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// True when ward inherited SIGHUP ignored (`nohup ward run ...`).
/// Installing a listener would replace that and stop the run the operator
/// asked to survive the session; the kernel's view is in /proc (no libc
/// call needed). If it cannot be read, ward listens (the safe default:
/// finalizers run rather than ward dying at once).
fn hangup_ignored() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        // Bit n-1 is signal n; SIGHUP is 1.
        .is_some_and(|mask| mask & 1 != 0)
}
