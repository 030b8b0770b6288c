//! Where an SQLite state lives: the database, and beside it (in the state
//! folder) the logs, the lock files and the fingerprint key.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::super::{Access, StateError, private};
use super::db::{self, Db};

/// The state database and the folders next to it.
#[derive(Clone, Debug)]
pub struct StatePaths {
    /// The SQLite file.
    pub db: PathBuf,
}

impl StatePaths {
    /// Refuses a state path that names a folder (`--state s2/`): moving
    /// the folder aside, the usual fix for a file that is in the way,
    /// would not help; the database file must be named.
    fn names_a_file(&self) -> Result<(), StateError> {
        let trailing_slash = self.db.as_os_str().as_encoded_bytes().ends_with(b"/");
        let is_dir = std::fs::symlink_metadata(&self.db).is_ok_and(|m| m.is_dir());
        if !trailing_slash && !is_dir {
            return Ok(());
        }
        let folder = self.db.display().to_string();
        let example = Path::new(folder.trim_end_matches('/')).join("ward.db");
        Err(StateError::Untrusted {
            path: self.db.clone(),
            problem: "the state path names a folder; it must name the database file".to_owned(),
            fix: format!(
                "name a file in it, e.g. `--state {}` (or the same in `$WARD_STATE`)",
                crate::shell::quote(&example.display().to_string())
            ),
        })
    }

    /// The folder holding the database.
    pub fn dir(&self) -> PathBuf {
        self.db
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
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
    ///
    /// Everything is checked, and modes tightened, before SQLite opens the
    /// file: closing any other descriptor of the database or its -shm in
    /// this process would drop SQLite's POSIX locks, and another ward could
    /// then reset the shared memory under this one (SIGBUS).
    pub fn open(&self, access: Access) -> Result<Db, StateError> {
        self.names_a_file()?;
        let dir = self.dir();
        private::trusted_folder(&self.db, &dir, access == Access::Create)?;
        let exists = private::check_file(&self.db, "state database", false)?.is_some();
        if exists {
            check_header(&self.db)?;
            // Before any mode, journal-mode or schema change.
            db::check_is_wards(&self.db)?;
        } else if access != Access::Create {
            return Err(StateError::Missing {
                db: self.db.display().to_string(),
                missing: None,
            });
        }
        let sides = ["-wal", "-shm", "-journal"].map(|suffix| {
            let mut side = self.db.clone().into_os_string();
            side.push(suffix);
            PathBuf::from(side)
        });
        for side in &sides {
            private::check_file(side, "state database file", false)?;
        }
        let folders = [(self.locks(), "locks folder"), (self.logs(), "logs folder")];
        for (path, what) in &folders {
            private::check_dir(path, what)?;
        }
        if access != Access::Read {
            // Older wards made the database 0644 and its folders 0755
            // (SQLite gives the -wal/-shm files the database's mode).
            private::check_file(&self.db, "state database", true)?;
            for side in &sides {
                private::check_file(side, "state database file", true)?;
            }
            for (path, what) in &folders {
                private::ensure_dir(path, what)?;
            }
        }
        if !exists {
            Db::create(&self.db)?;
        }
        Db::open(&self.db, access != Access::Read)
    }
}

/// The first 16 bytes of every SQLite database.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Refuses a file that cannot be a database before SQLite or a mode change
/// touches it. ward never leaves an empty database behind
/// (`Db::create` links a whole one into place), and SQLite would
/// take an empty file for a new database: the history would be lost
/// without a word.
fn check_header(db: &Path) -> Result<(), StateError> {
    let mut head = Vec::with_capacity(SQLITE_HEADER.len());
    std::fs::File::open(db)
        .and_then(|f| f.take(SQLITE_HEADER.len() as u64).read_to_end(&mut head))
        .map_err(|source| StateError::Io {
            op: "cannot read",
            path: db.to_path_buf(),
            source,
        })?;
    let problem = if head.is_empty() {
        "the file is empty (0 bytes)"
    } else if head != SQLITE_HEADER {
        "the file is not an SQLite database (it does not start with the SQLite header)"
    } else {
        return Ok(());
    };
    Err(db::damaged(db, problem.to_owned()))
}
