//! Where state lives: the database, logs beside it, lock files beside it.

use std::path::{Path, PathBuf};

use super::private;
use super::{SqliteStore, StateError};

/// What a command may do to the state folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `ward run`: create the folder and database if missing.
    Create,
    /// `ward resume`: the database must exist; `locks/` and `logs/` are
    /// made if missing, modes tightened.
    Write,
    /// `status`, `runs`, `log`: the database must exist; nothing is created
    /// or changed (except a schema upgrade of an older database).
    Read,
}

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

    /// All logs: `<dir>/logs/`.
    pub fn logs(&self) -> PathBuf {
        self.dir().join("logs")
    }

    /// Checks that no other user can change the state (see `private.rs`),
    /// then opens the database, creating it only for [`Access::Create`].
    pub fn open(&self, access: Access) -> Result<SqliteStore, StateError> {
        let dir = self.dir();
        private::trusted_folder(&self.db, &dir, access == Access::Create)?;
        let write = access != Access::Read;
        let found = private::check_file(&self.db, "state database", write)?;
        // ward never leaves an empty database behind (`SqliteStore::create`
        // links a whole one into place); SQLite would read an empty file as
        // a new database and the history would be lost without a word.
        if found.as_ref().is_some_and(|st| st.st_size == 0) {
            return Err(StateError::Damaged {
                path: self.db.clone(),
                problem: "the file is empty (0 bytes)".to_owned(),
            });
        }
        let exists = found.is_some();
        if !exists && access != Access::Create {
            return Err(StateError::Missing {
                path: self.db.clone(),
                missing: None,
            });
        }
        // SQLite makes these beside the database with its mode; older
        // wards made the database 0644, so they may be readable by others.
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut side = self.db.clone().into_os_string();
            side.push(suffix);
            private::check_file(Path::new(&side), "state database file", write)?;
        }
        for (path, what) in [(self.locks(), "locks folder"), (self.logs(), "logs folder")] {
            if write {
                private::ensure_dir(&path, what)?;
            } else {
                private::check_dir(&path, what)?;
            }
        }
        if !exists {
            SqliteStore::create(&self.db)?;
        }
        SqliteStore::open(&self.db)
    }
}
