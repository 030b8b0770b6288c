//! SIGINT and SIGTERM as a stream the scheduler can select on.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// ward's signal listeners.
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

/// Which signal arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// SIGINT (Ctrl-C): exit 130.
    Interrupt,
    /// SIGTERM: exit 143.
    Terminate,
}

impl Received {
    /// The signal's name.
    pub fn name(self) -> &'static str {
        match self {
            Received::Interrupt => "SIGINT",
            Received::Terminate => "SIGTERM",
        }
    }

    /// The conventional exit code (128 + signal number).
    pub fn exit_code(self) -> i32 {
        match self {
            Received::Interrupt => 130,
            Received::Terminate => 143,
        }
    }
}

impl Signals {
    /// Installs the listeners (from then on these signals no longer kill ward).
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next signal.
    pub async fn recv(&mut self) -> Received {
        tokio::select! {
            _ = self.interrupt.recv() => Received::Interrupt,
            _ = self.terminate.recv() => Received::Terminate,
        }
    }
}
