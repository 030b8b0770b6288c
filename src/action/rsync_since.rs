//! What changed in a tree since an earlier copy of it started: the list an
//! `rsync` step with `changed_since:` hands to rsync (`--files-from`), so
//! that a copy inside a service's downtime moves what changed since a warm
//! pass without listing every entry on both sides.
//!
//! The rule rests on the change time (ctime), which every change to an
//! entry sets to the kernel's clock and which no user can set back: a
//! write, a chmod or chown, a rename of the entry, a new or removed hard
//! link to it, a new or removed name in a folder (the folder's). Wherever
//! it could be wrong, the copy is whole:
//!
//! - a folder whose own change time is new is listed whole (rsync copies
//!   it recursively and, with `--delete`, removes what is gone from it): a
//!   folder moved in from elsewhere keeps its entries' old times;
//! - a folder on another file system than the tree's root is listed whole
//!   (its clock may not be ours);
//! - the root's own change time new: everything (`.`);
//! - the tree on a file system whose times this machine's clock does not
//!   set (network, FUSE and cluster file systems: the server's clock sets
//!   them), the wall clock stepped back since the stamp, the source or
//!   destination folder replaced since, the earlier copy not run in this
//!   process or not with the same parameters: a full pass.
//!
//! Times are compared with a margin (two seconds before the earlier copy
//! started), which covers the coarse clock the kernel stamps files with.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, statat};

use super::ActionError;
use super::tree::{child_rel, join, open_level, read_names};

/// How long before the earlier copy's start a change still counts.
const MARGIN: Duration = Duration::from_secs(2);

/// The clock may step back by this much between the stamp and the pass
/// before the stamp is not trusted (less than [`MARGIN`]).
const CLOCK_SLACK: Duration = Duration::from_secs(1);

/// What an earlier copy was and when it started, kept in this process.
#[derive(Clone, Debug)]
pub struct Stamp {
    /// The copy's identity: source, destination, filter rules, `-H`,
    /// `--delete` (resolved), so a pass trusts only the same copy.
    pub copy: CopyKey,
    /// Source and destination folders' (device, inode) when it started.
    pub src_id: (u64, u64),
    pub dest_id: (u64, u64),
    /// Wall-clock start (what files' change times compare with).
    pub wall: SystemTime,
    /// Monotonic start (to notice the wall clock stepping back).
    pub mono: Instant,
}

/// What makes two rsync copies the same copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyKey {
    pub src: String,
    pub dest: String,
    pub filters: Vec<String>,
    pub hard_links: bool,
    pub delete: bool,
}

/// Stamps of copies that succeeded in this process, by (run id, step id).
static STAMPS: Mutex<BTreeMap<(String, String), Stamp>> = Mutex::new(BTreeMap::new());

/// Remembers that step `step` of run `run_id` copied `stamp.copy`
/// successfully, starting at the stamp.
pub fn record(run_id: &str, step: &str, stamp: Stamp) {
    // A poisoned registry only costs later passes their shortcut: they
    // find no stamp and copy everything.
    if let Ok(mut stamps) = STAMPS.lock() {
        stamps.insert((run_id.to_owned(), step.to_owned()), stamp);
    }
}

/// The (device, inode) of a folder (following a symlink to it, as rsync
/// does for `src/` and `dest`), if it can be read.
pub fn folder_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    meta.is_dir().then(|| (meta.dev(), meta.ino()))
}

/// Why a pass must copy everything instead of the changes.
pub type WhyFull = String;

/// The earliest change time that counts for a pass of `copy` after step
/// `since`, or why there is none.
pub fn threshold(
    run_id: &str,
    since: &str,
    copy: &CopyKey,
    src: &Path,
    dest: &Path,
) -> Result<(i64, i64), WhyFull> {
    let stamp = STAMPS
        .lock()
        .ok()
        .and_then(|s| s.get(&(run_id.to_owned(), since.to_owned())).cloned())
        .ok_or_else(|| {
            format!(
                "`{since}` did not complete a copy in this ward process (it failed, was \
                 skipped, or ran before a resume)"
            )
        })?;
    if stamp.copy != *copy {
        return Err(format!(
            "`{since}` copied {} -> {} with other settings",
            stamp.copy.src, stamp.copy.dest
        ));
    }
    if folder_id(src) != Some(stamp.src_id) || folder_id(dest) != Some(stamp.dest_id) {
        return Err(format!(
            "the source or destination folder was replaced since `{since}`"
        ));
    }
    // Elapsed by the wall clock (negative if it went back) and by the
    // monotonic one: a wall clock stepped back would let a change after
    // the stamp carry an earlier time.
    let wall = match SystemTime::now().duration_since(stamp.wall) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    };
    let mono = stamp.mono.elapsed().as_secs_f64();
    if wall + CLOCK_SLACK.as_secs_f64() < mono {
        return Err(format!(
            "the wall clock went back by {:.1} s since `{since}` started, so change times \
             cannot be compared with it",
            mono - wall
        ));
    }
    let from = stamp
        .wall
        .checked_sub(MARGIN)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .ok_or_else(|| "the clock reads before 1970".to_owned())?;
    Ok((from.as_secs() as i64, i64::from(from.subsec_nanos())))
}

/// File systems whose change times this machine's kernel clock sets.
/// Anything else (NFS, SMB, FUSE, Lustre, GPFS, Ceph, ...) has its times
/// set by a server whose clock may lag ours.
const LOCAL_FILE_SYSTEMS: &[(u64, &str)] = &[
    (0xEF53, "ext2/3/4"),
    (0x5846_5342, "xfs"),
    (0x9123_683E, "btrfs"),
    (0x0102_1994, "tmpfs"),
    (0x8584_58F6, "ramfs"),
    (0x2FC1_2FC1, "zfs"),
    (0xF2F5_2010, "f2fs"),
    (0xCA45_1A4E, "bcachefs"),
    (0x794C_7630, "overlayfs"),
    (0x5265_4973, "reiserfs"),
    (0x3153_464A, "jfs"),
    (0x3434, "nilfs2"),
];

/// What [`list`] found.
#[derive(Debug, Default)]
pub struct Changes {
    /// Relative paths (folders to be copied whole, or single entries),
    /// each followed by a NUL, for `rsync --from0 --files-from=-`.
    pub list: Vec<u8>,
    /// How many paths are in `list`.
    pub listed: u64,
    /// How many of them are folders copied whole.
    pub whole_folders: u64,
    /// Folders read to find them.
    pub folders_read: u64,
}

/// Lists what changed in the tree `src` at or after `from` (seconds,
/// nanoseconds). `only_top` restricts the walk to those top-level folders
/// (the rest is filtered out of the copy anyway). Errors say why the
/// changes could not be listed; the caller then copies everything.
pub fn list(
    src: &Path,
    from: (i64, i64),
    only_top: Option<&[&str]>,
    threads: usize,
    cancelled: &AtomicBool,
) -> Result<Changes, ActionError> {
    let root = super::tree::open_dir(src)?;
    let fs = rustix::fs::fstatfs(&root).map_err(|e| {
        ActionError::new(format!(
            "cannot read the file system of {}: {e}",
            src.display()
        ))
    })?;
    let fs_type = fs.f_type as u64;
    if !LOCAL_FILE_SYSTEMS
        .iter()
        .any(|(magic, _)| *magic == fs_type)
    {
        return Err(ActionError::new(format!(
            "{} is on a file system (type {fs_type:#x}) whose change times another machine's \
             clock may set",
            src.display()
        )));
    }
    let root_st = rustix::fs::fstat(&root)
        .map_err(|e| ActionError::new(format!("cannot read {}: {e}", src.display())))?;
    let changed = |st: &rustix::fs::Stat| {
        (st.st_ctime, st.st_ctime_nsec as i64) >= from
            || (st.st_mtime, st.st_mtime_nsec as i64) >= from
    };
    if changed(&root_st) && only_top.is_none() {
        return Ok(Changes {
            list: b".\0".to_vec(),
            listed: 1,
            whole_folders: 1,
            folders_read: 0,
        });
    }
    let root_dev = root_st.st_dev;
    let found: Mutex<Changes> = Mutex::new(Changes::default());
    drop(root);
    super::tree::walk(threads, cancelled, |rel, parent: Option<&Arc<OwnedFd>>| {
        let dir = open_level(src, rel, parent.map(|p| p.as_fd()))?;
        let names = read_names(&dir, &join(src, rel))?;
        let mut subdirs = Vec::new();
        let mut here: Vec<Vec<u8>> = Vec::new();
        let mut whole = 0;
        for (name, _) in &names {
            let bytes = name.to_bytes();
            if rel.is_empty()
                && let Some(top) = only_top
                && !top.iter().any(|t| t.as_bytes() == bytes)
            {
                continue;
            }
            let st = match statat(&dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Gone since the folder was read: nothing to copy; its
                // folder changed, so the next pass looks again.
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => {
                    return Err(ActionError::new(format!(
                        "cannot read {}: {e}",
                        join(src, &child_rel(rel, bytes)).display()
                    )));
                }
            };
            let is_dir = FileType::from_raw_mode(st.st_mode as _) == FileType::Directory;
            if is_dir && !changed(&st) && st.st_dev == root_dev {
                subdirs.push(child_rel(rel, bytes));
            } else if is_dir || changed(&st) {
                whole += u64::from(is_dir);
                here.push(child_rel(rel, bytes));
            }
        }
        if !here.is_empty() {
            // A poisoned list would be incomplete: the pass copies everything.
            let mut found = found
                .lock()
                .map_err(|_| super::tree::poisoned("the list of changes"))?;
            found.listed += here.len() as u64;
            found.whole_folders += whole;
            for path in here {
                found.list.extend_from_slice(&path);
                found.list.push(0);
            }
        }
        if let Ok(mut found) = found.lock() {
            found.folders_read += 1;
        }
        Ok((dir, subdirs))
    })?;
    found
        .into_inner()
        .map_err(|_| super::tree::poisoned("the list of changes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(src: &str) -> CopyKey {
        CopyKey {
            src: src.into(),
            dest: "/d".into(),
            filters: Vec::new(),
            hard_links: true,
            delete: true,
        }
    }

    #[test]
    fn a_pass_trusts_only_the_same_copy_of_the_same_folders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (src, dest) = (dir.path().join("s"), dir.path().join("d"));
        std::fs::create_dir(&src).expect("src");
        std::fs::create_dir(&dest).expect("dest");
        let stamp = Stamp {
            copy: key("/s"),
            src_id: folder_id(&src).expect("src id"),
            dest_id: folder_id(&dest).expect("dest id"),
            wall: SystemTime::now(),
            mono: Instant::now(),
        };
        record("run-a", "warm", stamp);
        assert!(threshold("run-a", "warm", &key("/s"), &src, &dest).is_ok());
        let why = threshold("run-a", "warm", &key("/other"), &src, &dest).expect_err("other");
        assert!(why.contains("other settings"), "{why}");
        let why = threshold("run-b", "warm", &key("/s"), &src, &dest).expect_err("run");
        assert!(why.contains("did not complete"), "{why}");
        let other = dir.path().join("other");
        std::fs::create_dir(&other).expect("other");
        let why = threshold("run-a", "warm", &key("/s"), &src, &other).expect_err("replaced");
        assert!(why.contains("replaced"), "{why}");
    }

    #[test]
    fn a_wall_clock_stepped_back_is_not_trusted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = folder_id(dir.path()).expect("id");
        let stamp = Stamp {
            copy: key("/s"),
            src_id: id,
            dest_id: id,
            // As if the clock read an hour later at the stamp than now.
            wall: SystemTime::now() + Duration::from_secs(3600),
            mono: Instant::now(),
        };
        record("run-c", "warm", stamp);
        let why = threshold("run-c", "warm", &key("/s"), dir.path(), dir.path())
            .expect_err("stepped back");
        assert!(why.contains("went back"), "{why}");
    }
}
