//! One run per lock name at a time, across processes.
//!
//! An OS file lock (flock) on `<state>/locks/<name>.lock` decides; the file
//! also holds who took it (pid, host, run id, since) so the loser can say
//! who holds it. The kernel drops the lock when its process dies, so a lock
//! left by a `kill -9` is free again: the next run finds the dead run still
//! marked `running` and records it as `crashed` (see `recovery.rs`).

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::private;

/// Who holds a lock, as written in the lock file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LockHolder {
    /// The run.
    pub run_id: String,
    /// Its process.
    pub pid: u32,
    /// Its host.
    pub host: String,
    /// When it took the lock (local time, text).
    pub since: String,
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else holds it.
    #[error("another run holds the lock `{name}`: {}", describe(.holder))]
    Held {
        /// Lock name.
        name: String,
        /// Who, if the file says.
        holder: Option<LockHolder>,
    },
    /// The lock file could not be taken or written (not because another
    /// run holds it).
    #[error("cannot use lock file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The lock file or `locks/` is unsafe or could not be made: a
    /// symlink, not a regular file, another user's, writable by others.
    #[error("{0}")]
    State(#[from] super::StateError),
}

fn describe(holder: &Option<LockHolder>) -> String {
    match holder {
        Some(h) => format!(
            "run {} (pid {} on {}) since {}",
            h.run_id, h.pid, h.host, h.since
        ),
        None => "a process that did not record itself".to_owned(),
    }
}

/// A held run lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock without waiting, or says who holds it.
    pub fn acquire(dir: &Path, name: &str, holder: &LockHolder) -> Result<RunLock, LockError> {
        let path = dir.join(format!("{name}.lock"));
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        // A planted `locks/<name>.lock -> /etc/shadow` must not make root
        // truncate its target: no symlinks followed, new files O_EXCL.
        private::ensure_dir(dir, "locks folder")?;
        let mut file = private::open_file(&path, private::FileUse::ReadWrite, "lock file")?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held {
                    name: name.to_owned(),
                    holder: parse_holder(&text),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let text = format!(
            "run_id={}\npid={}\nhost={}\nsince={}\n",
            holder.run_id, holder.pid, holder.host, holder.since
        );
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(RunLock { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Leave the file (removing it would race with a new locker); just unlock.
        let _ = self.file.unlock();
    }
}

fn parse_holder(text: &str) -> Option<LockHolder> {
    let mut h = LockHolder::default();
    for line in text.lines() {
        match line.split_once('=')? {
            ("run_id", v) => h.run_id = v.to_owned(),
            ("pid", v) => h.pid = v.parse().ok()?,
            ("host", v) => h.host = v.to_owned(),
            ("since", v) => h.since = v.to_owned(),
            _ => {}
        }
    }
    (!h.run_id.is_empty()).then_some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(run: &str) -> LockHolder {
        LockHolder {
            run_id: run.into(),
            pid: 42,
            host: "h".into(),
            since: "2026-11-23 02:00:00".into(),
        }
    }

    #[test]
    fn second_taker_learns_who_holds_it_and_drop_releases() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = RunLock::acquire(dir.path(), "x", &holder("r1")).expect("first");
        match RunLock::acquire(dir.path(), "x", &holder("r2")) {
            Err(LockError::Held {
                holder: Some(h), ..
            }) => assert_eq!(h.run_id, "r1"),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        RunLock::acquire(dir.path(), "x", &holder("r3")).expect("free again");
    }

    #[test]
    fn a_lock_file_that_is_a_folder_is_an_error_not_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("x.lock")).expect("mkdir");
        match RunLock::acquire(dir.path(), "x", &holder("r1")) {
            Err(LockError::State(_)) => {}
            other => panic!("expected a state error, got {other:?}"),
        }
    }
}
