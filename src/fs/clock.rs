//! The clock of a file system, as it stamps changes: the change time
//! (ctime) a new inode gets. `snapshot.hardlink` proves hashes against it
//! ([`super::manifest::build_counted`]) and `rotate` brackets its unlinks
//! with it (the `.NAME.unlinks.json` beside the latest snapshot).

use std::path::Path;

use rustix::fd::OwnedFd;

use super::tree::{nanos, open_dir};

/// The clock of the file system a folder is on. Read with an unnamed file
/// (`O_TMPFILE`) in the folder (never linked, so never in it); where the
/// file system has none (or the folder is read-only), a file created and
/// removed next to the folder.
pub(crate) struct FsClock {
    root: Option<OwnedFd>,
    parent: Option<OwnedFd>,
}

impl FsClock {
    /// The clock of the file system `folder` is on. Never fails: a clock
    /// that cannot be read says so when read ([`FsClock::now`] is None).
    pub(crate) fn open(folder: &Path) -> FsClock {
        FsClock {
            root: open_dir(folder).ok(),
            parent: folder.parent().and_then(|p| open_dir(p).ok()),
        }
    }

    /// The clock now, or None if it cannot be read.
    pub(crate) fn now(&self) -> Option<i64> {
        use rustix::fs::{Mode, OFlags, fstat, openat};
        let mode = Mode::from_raw_mode(0o600);
        let stamp = |fd: &OwnedFd| {
            fstat(fd)
                .ok()
                .map(|st| nanos(st.st_ctime, st.st_ctime_nsec as i64))
        };
        if let Some(root) = &self.root
            && let Ok(fd) = openat(
                root,
                ".",
                OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
                mode,
            )
        {
            return stamp(&fd);
        }
        let parent = self.parent.as_ref()?;
        let name = format!(
            ".ward-clock-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        );
        let fd = openat(
            parent,
            name.as_str(),
            OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            mode,
        )
        .ok()?;
        let now = stamp(&fd);
        let _ = rustix::fs::unlinkat(parent, name.as_str(), rustix::fs::AtFlags::empty());
        now
    }

    /// The clock once it reads later than `t` (it ticks every few
    /// milliseconds, every second or two on coarse file systems); None if
    /// it cannot be read or has not passed `t` within 3 seconds.
    pub(crate) fn after(&self, t: i64) -> Option<i64> {
        let start = std::time::Instant::now();
        loop {
            let now = self.now()?;
            if now > t {
                return Some(now);
            }
            if start.elapsed() > std::time::Duration::from_secs(3) {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}
