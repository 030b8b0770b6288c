//! Where state lives: the database, logs beside it, lock files beside it.

use std::path::{Path, PathBuf};

/// The state database and the folders next to it.
#[derive(Clone, Debug)]
pub struct StatePaths {
    /// The SQLite file.
    pub db: PathBuf,
}

impl StatePaths {
    /// `--state`, else `$WARD_STATE`, else `/var/lib/ward/ward.db` for root,
    /// else `$XDG_STATE_HOME/ward/ward.db` (default `~/.local/state`).
    pub fn resolve(explicit: Option<&Path>) -> StatePaths {
        if let Some(p) = explicit {
            return StatePaths {
                db: p.to_path_buf(),
            };
        }
        if let Some(p) = std::env::var_os("WARD_STATE").filter(|v| !v.is_empty()) {
            return StatePaths {
                db: PathBuf::from(p),
            };
        }
        if rustix::process::geteuid().is_root() {
            return StatePaths {
                db: PathBuf::from("/var/lib/ward/ward.db"),
            };
        }
        let base = std::env::var_os("XDG_STATE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(|| PathBuf::from("."));
        StatePaths {
            db: base.join("ward").join("ward.db"),
        }
    }

    /// The folder holding the database.
    pub fn dir(&self) -> PathBuf {
        self.db
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }

    /// Logs of one run: `<dir>/logs/<run id>/`.
    pub fn run_logs(&self, run_id: &str) -> PathBuf {
        self.dir().join("logs").join(run_id)
    }

    /// Lock files: `<dir>/locks/`.
    pub fn locks(&self) -> PathBuf {
        self.dir().join("locks")
    }
}
