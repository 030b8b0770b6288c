//! The SQLite store's lease: an OS file lock (flock) on
//! `<state folder>/locks/<name>.lock`. The file also holds who took it
//! (pid, host, run id, since) so the loser can say who holds it. The kernel
//! drops the lock when its process dies, so a lock left by a `kill -9` is
//! free again.

use std::fs::{File, TryLockError};
use std::future::Future;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::pin::Pin;

use super::super::lease::{LeaseError, LeaseGuard, LeaseHolder};
use super::super::{StateError, private};

/// A held run lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct RunLock {
    file: File,
}

impl RunLock {
    /// Takes the lock without waiting, or says who holds it.
    pub fn acquire(dir: &Path, name: &str, holder: &LeaseHolder) -> Result<RunLock, LeaseError> {
        let path = dir.join(format!("{name}.lock"));
        let io = |source| {
            LeaseError::State(StateError::Io {
                op: "cannot use lock file",
                path: path.clone(),
                source,
            })
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
                return Err(LeaseError::Held {
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
        Ok(RunLock { file })
    }
}

impl LeaseGuard for RunLock {
    fn release(self: Box<Self>) -> Pin<Box<dyn Future<Output = Result<(), StateError>> + Send>> {
        // Unlocking a file does not wait for anything.
        drop(self);
        Box::pin(std::future::ready(Ok(())))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Leave the file (removing it would race with a new locker); just unlock.
        let _ = self.file.unlock();
    }
}

/// The run ids the lock files under `dir` name: each lock's current or
/// last holder (a released lock keeps naming its last one). Read without
/// taking any lock, so a ward starting now never finds its lock busy.
pub fn holders(dir: &Path) -> Result<Vec<String>, StateError> {
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| StateError::Io { op, path, source }
    };
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        other => other.map_err(io("cannot list", dir))?,
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(io("cannot list", dir))?.path();
        if path.extension().is_none_or(|e| e != "lock") {
            continue;
        }
        // Not followed if a link, never blocked on a FIFO.
        let text = match private::read_log(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io("cannot read", &path)(e)),
        };
        out.extend(parse_holder(&text).map(|h| h.run_id));
    }
    Ok(out)
}

fn parse_holder(text: &str) -> Option<LeaseHolder> {
    let mut h = LeaseHolder::default();
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
pub(super) mod tests {
    use super::*;

    /// A holder for tests of the lock and of the store's lease.
    pub(in crate::state::sqlite) fn holder(run: &str) -> LeaseHolder {
        LeaseHolder {
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
            Err(LeaseError::Held {
                holder: Some(h), ..
            }) => assert_eq!(h.run_id, "r1"),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        RunLock::acquire(dir.path(), "x", &holder("r3")).expect("free again");
    }

    #[test]
    fn holders_are_the_last_takers_held_or_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(
            holders(&dir.path().join("missing"))
                .expect("none")
                .is_empty()
        );
        let held = RunLock::acquire(dir.path(), "a", &holder("r1")).expect("a");
        drop(RunLock::acquire(dir.path(), "b", &holder("r2")).expect("b"));
        std::fs::write(dir.path().join("c.latest"), "run_id=r3\n").expect("ticket");
        let mut found = holders(dir.path()).expect("holders");
        found.sort();
        assert_eq!(found, ["r1", "r2"]);
        drop(held);
    }

    #[test]
    fn a_lock_file_that_is_a_folder_is_an_error_not_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("x.lock")).expect("mkdir");
        match RunLock::acquire(dir.path(), "x", &holder("r1")) {
            Err(LeaseError::State(_)) => {}
            other => panic!("expected a state error, got {other:?}"),
        }
    }
}
