//! What changed in a tree since a moment: the entries whose change time
//! (ctime) or mtime is at or after it, for a copy that moves only those
//! (`rsync` with `changed_since`, see `action/rsync_since.rs` for when the
//! moment can be trusted).
//!
//! The rule rests on the change time, which every change to an entry sets
//! to the kernel's clock and which no user can set back: a write, a chmod
//! or chown, a rename of the entry, a new or removed hard link to it, a new
//! or removed name in a folder (the folder's). Wherever it could be wrong,
//! the answer is coarser, never smaller:
//!
//! - a folder whose own change time is new is listed whole (the copy takes
//!   it recursively and removes what is gone from it): a folder moved in
//!   from elsewhere keeps its entries' old times;
//! - a folder on another file system than the tree's root is listed whole
//!   (its clock may not be ours);
//! - the root's own change time new: everything (`.`);
//! - asked to (`links_in`, the destination), the names of an unchanged
//!   file with more than one name are listed when their copies in the
//!   destination are not one file, so that a copy with `-H` links what an
//!   earlier copy without it wrote apart;
//! - a tree on a file system whose times this machine's clock does not set
//!   (network, FUSE and cluster file systems: the server's clock sets
//!   them) is refused, so the caller copies everything.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, statat};

use super::FsError;
use super::tree::{child_rel, join, open_dir, open_level, poisoned, read_names, stat_entry, walk};

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

/// Names (relative paths) of files with more than one, by (device, inode),
/// with the file's link count.
type NamesByFile = HashMap<(u64, u64), (u64, Vec<Vec<u8>>)>;

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
    /// How many of them are names of unchanged files listed because their
    /// copies in the destination are not linked as they are (`links_in`).
    pub linked: u64,
    /// Folders read to find them.
    pub folders_read: u64,
}

/// Lists what changed in the tree `src` at or after `from` (seconds,
/// nanoseconds). `only_top` restricts the walk to those top-level folders
/// (the rest is filtered out of the copy anyway); the folders in
/// `mount_points` (relative paths) are listed whole. With `links_in` (the
/// destination), the names of every unchanged file with more than one
/// name in the tree are listed too unless their copies there are already
/// one file. Errors say why the changes could not be listed; the caller
/// then copies everything.
pub fn list(
    src: &Path,
    from: (i64, i64),
    only_top: Option<&[&str]>,
    mount_points: &HashSet<Vec<u8>>,
    links_in: Option<&Path>,
    threads: usize,
    cancelled: &AtomicBool,
) -> Result<Changes, FsError> {
    let root = open_dir(src)?;
    let fs = rustix::fs::fstatfs(&root).map_err(|e| {
        FsError::new(format!(
            "cannot read the file system of {}: {e}",
            src.display()
        ))
    })?;
    let fs_type = fs.f_type as u64;
    if !LOCAL_FILE_SYSTEMS
        .iter()
        .any(|(magic, _)| *magic == fs_type)
    {
        return Err(FsError::new(format!(
            "{} is on a file system (type {fs_type:#x}) whose change times another machine's \
             clock may set",
            src.display()
        )));
    }
    let root_st = rustix::fs::fstat(&root)
        .map_err(|e| FsError::new(format!("cannot read {}: {e}", src.display())))?;
    let changed = |st: &rustix::fs::Stat| {
        (st.st_ctime, st.st_ctime_nsec as i64) >= from
            || (st.st_mtime, st.st_mtime_nsec as i64) >= from
    };
    // A name added to or removed from the root: only a pass over
    // everything (with the filters) sees a top-level folder that is gone.
    if changed(&root_st) {
        return Ok(Changes {
            list: b".\0".to_vec(),
            listed: 1,
            whole_folders: 1,
            linked: 0,
            folders_read: 0,
        });
    }
    let root_dev = root_st.st_dev;
    let found: Mutex<Changes> = Mutex::new(Changes::default());
    // Unchanged files with more than one name: their names, by inode.
    let linked: Mutex<NamesByFile> = Mutex::new(HashMap::new());
    // Counted apart, so that a folder with nothing listed takes no lock.
    let folders_read = AtomicU64::new(0);
    drop(root);
    walk(threads, cancelled, |rel, parent: Option<&Arc<OwnedFd>>| {
        let dir = open_level(src, rel, parent.map(|p| p.as_fd()))?;
        let names = read_names(&dir, &join(src, rel))?;
        let mut subdirs = Vec::new();
        let mut here: Vec<Vec<u8>> = Vec::new();
        let mut whole = 0;
        let mut names_of_linked: Vec<((u64, u64), u64, Vec<u8>)> = Vec::new();
        for (name, _) in &names {
            let bytes = name.to_bytes();
            if rel.is_empty()
                && let Some(top) = only_top
                && !top.iter().any(|t| t.as_bytes() == bytes)
            {
                continue;
            }
            // Gone since the folder was read: nothing to copy; its folder
            // changed, so the next pass looks again.
            let Some(st) = stat_entry(&dir, name.as_c_str(), src, rel)? else {
                continue;
            };
            let is_dir = FileType::from_raw_mode(st.st_mode as _) == FileType::Directory;
            let child = child_rel(rel, bytes);
            // Another file system, or a mount of the same one (a bind
            // mount has the root's device): its times are not this tree's
            // story, so it is copied whole (a mounted file too).
            let mounted = st.st_dev != root_dev || mount_points.contains(&child);
            let new = changed(&st);
            if is_dir && !new && !mounted {
                subdirs.push(child);
            } else if is_dir || mounted || new {
                whole += u64::from(is_dir);
                here.push(child);
            } else if links_in.is_some() && st.st_nlink > 1 {
                names_of_linked.push(((st.st_dev, st.st_ino), st.st_nlink, child));
            }
        }
        if !here.is_empty() {
            // A poisoned list would be incomplete: the pass copies everything.
            let mut found = found.lock().map_err(|_| poisoned("the list of changes"))?;
            found.listed += here.len() as u64;
            found.whole_folders += whole;
            for path in here {
                found.list.extend_from_slice(&path);
                found.list.push(0);
            }
        }
        if !names_of_linked.is_empty() {
            let mut linked = linked.lock().map_err(|_| poisoned("the linked files"))?;
            for (id, nlink, child) in names_of_linked {
                let (links, names) = linked.entry(id).or_default();
                *links = (*links).max(nlink);
                names.push(child);
            }
        }
        folders_read.fetch_add(1, Ordering::Relaxed);
        Ok((dir, subdirs))
    })?;
    let mut found = found
        .into_inner()
        .map_err(|_| poisoned("the list of changes"))?;
    found.folders_read = folders_read.into_inner();
    if let Some(dest) = links_in {
        let linked = linked
            .into_inner()
            .map_err(|_| poisoned("the linked files"))?;
        list_unlinked(dest, linked, &mut found)?;
    }
    Ok(found)
}

/// Lists every name of each group (the names one file has in the
/// unchanged folders) whose copies in `dest` may not be one file:
///
/// - the file has names that the walk did not see (in a changed folder
///   listed whole, outside the tree, or left out of a gold-only copy):
///   its names are listed whatever `dest` holds, so that rsync sees them
///   beside those of the listed folders and links them (outside the tree
///   nothing is copied; the cost is a few looks per night);
/// - all its names are here: listed when their copies in `dest` are
///   missing or not one file (written apart by a copy without `-H`).
fn list_unlinked(dest: &Path, groups: NamesByFile, found: &mut Changes) -> Result<(), FsError> {
    let root = open_dir(dest)?;
    for (links, names) in groups.into_values() {
        if (names.len() as u64) < links {
            list_names(names, found);
            continue;
        }
        let mut copies = names.iter().map(|rel| {
            match statat(&root, rel.as_slice(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode as _) == FileType::RegularFile => {
                    Ok(Some((st.st_dev, st.st_ino)))
                }
                Ok(_) | Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => Ok(None),
                Err(e) => Err(FsError::new(format!(
                    "cannot read {}: {e}",
                    join(dest, rel).display()
                ))),
            }
        });
        let first = copies.next().transpose()?.flatten();
        let mut one_file = first.is_some();
        for copy in copies {
            one_file &= copy? == first;
        }
        if !one_file {
            list_names(names, found);
        }
    }
    Ok(())
}

fn list_names(names: Vec<Vec<u8>>, found: &mut Changes) {
    found.listed += names.len() as u64;
    found.linked += names.len() as u64;
    for rel in names {
        found.list.extend_from_slice(&rel);
        found.list.push(0);
    }
}
