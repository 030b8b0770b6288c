//! SIGINT, SIGTERM and SIGQUIT as a stream the scheduler can select on.
//!
//! What each one means is decided by the scheduler (docs/cli.md, "Signals"):
//! the first SIGINT/SIGTERM stops the running steps and starts nothing but
//! the `when: always` steps; a second is only noted, because GNU `timeout`
//! sends SIGTERM twice (to ward, then to its process group); a third, or
//! SIGQUIT, abandons the `when: always` steps too.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// ward's signal listeners.
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
    quit: Signal,
}

/// Which signal arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// SIGINT (Ctrl-C): exit 130.
    Interrupt,
    /// SIGTERM: exit 143.
    Terminate,
    /// SIGQUIT (Ctrl-\): abandon at once, exit 131.
    Quit,
}

impl Received {
    /// The signal's name.
    pub fn name(self) -> &'static str {
        match self {
            Received::Interrupt => "SIGINT",
            Received::Terminate => "SIGTERM",
            Received::Quit => "SIGQUIT",
        }
    }

    /// The conventional exit code (128 + signal number).
    pub fn exit_code(self) -> i32 {
        match self {
            Received::Interrupt => 130,
            Received::Terminate => 143,
            Received::Quit => 131,
        }
    }
}

impl Signals {
    /// Installs the listeners (from then on these signals no longer kill ward).
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    /// Waits for the next signal.
    pub async fn recv(&mut self) -> Received {
        tokio::select! {
            _ = self.interrupt.recv() => Received::Interrupt,
            _ = self.terminate.recv() => Received::Terminate,
            _ = self.quit.recv() => Received::Quit,
        }
    }
}
