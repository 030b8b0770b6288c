//! What deleting a snapshot frees: the bytes of the regular files all of
//! whose names are inside it.
//!
//! Snapshots made by `snapshot.hardlink` share every unchanged file with
//! their neighbours through hard links, so a snapshot's size says little
//! about what deleting it gives back. A file's data is freed when its last
//! name goes: a file is *unique* to a tree when its link count
//! (`st_nlink`) equals the number of its names inside the tree.
//!
//! [`scan`] walks one tree (in parallel, with the walker of
//! [`super::tree`]) and keeps, for files with more than one name, their
//! names inside the tree by (device, inode); files with one name are
//! summed at once. [`Links::unique`] is then the answer for one tree; for
//! several trees deleted one after the other, the count of each just
//! before its deletion is what that deletion frees (a file whose names are
//! spread over two of them is unique to neither, and freed by the second).
//! `ward plan` and `ward probe` list unique bytes with [`scan`]; a
//! deletion that wants the figure does not walk the tree twice:
//! [`super::tree::remove_tree_counted`] counts the same way (with
//! [`add_names`] and [`whole`]) in its own walk, one `statx` per file
//! just before its unlink.
//!
//! Sizes are apparent sizes (`st_size`): a sparse file frees fewer disk
//! blocks than that, a file system with compression or deduplication may
//! free fewer too.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::FileType;

use super::FsError;
use super::tree::{child_rel, join, open_level, poisoned, read_names, stat_entry, walk};

/// A file with more than one name: its link count, its size, and how many
/// of its names the tree holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Shared {
    nlink: u64,
    size: u64,
    names: u64,
}

/// Files with more than one name, by (device, inode).
pub(super) type Names = HashMap<(u64, u64), Shared>;

/// One folder's files with more than one name, one item per name:
/// ((device, inode), link count, size).
pub(super) type Here = Vec<((u64, u64), u64, u64)>;

/// Adds one folder's names of files with more than one name to `map`:
/// each adds one to its file's names, and the file keeps the highest
/// link count any of its names showed.
pub(super) fn add_names(map: &mut Names, here: Here) {
    for (id, nlink, size) in here {
        let s = map.entry(id).or_default();
        s.nlink = s.nlink.max(nlink);
        s.size = size;
        s.names += 1;
    }
}

/// Bytes of the files of `map` with at least as many names counted as
/// their (highest) link count: all their names were counted.
pub(super) fn whole(map: &Names) -> u64 {
    map.values()
        .filter(|s| s.names >= s.nlink)
        .map(|s| s.size)
        .sum()
}

/// The regular files of one tree, as far as deleting it is concerned.
#[derive(Debug, Default)]
pub struct Links {
    /// Bytes of the files with a single name (in the tree, so unique).
    alone: u64,
    /// Files with more than one name, by (device, inode).
    shared: Names,
    /// Regular files seen (names, a file with two names counts twice).
    pub files: u64,
    /// Entries seen (files, folders, links, ...).
    pub entries: u64,
}

impl Links {
    /// Bytes of the regular files all of whose names are in this tree:
    /// what deleting it alone frees.
    pub fn unique(&self) -> u64 {
        self.alone + whole(&self.shared)
    }
}

/// Why [`scan`] stopped.
#[derive(Debug)]
pub enum ScanError {
    /// The tree has more entries than the budget given.
    TooMany(u64),
    /// It could not be read, or the walk was cancelled.
    Fs(FsError),
}

impl From<FsError> for ScanError {
    fn from(e: FsError) -> ScanError {
        ScanError::Fs(e)
    }
}

/// Walks the tree at `path` with `threads` workers and counts its regular
/// files' names by inode. With `budget`, gives up with
/// [`ScanError::TooMany`] once more entries than that were seen (a caller
/// that wants the answer only when it is cheap). Nothing is written.
pub fn scan(
    path: &Path,
    threads: usize,
    cancelled: &AtomicBool,
    budget: Option<u64>,
) -> Result<Links, ScanError> {
    let alone = AtomicU64::new(0);
    let files = AtomicU64::new(0);
    let entries = AtomicU64::new(0);
    let shared: Mutex<Names> = Mutex::new(HashMap::new());
    // The budget stops the walk through an error of its own kind, told
    // apart from a real failure by this flag.
    let over = AtomicBool::new(false);
    let result = walk(threads, cancelled, |rel, parent: Option<&Arc<OwnedFd>>| {
        let dir = open_level(path, rel, parent.map(|p| p.as_fd()))?;
        let names = read_names(&dir, &join(path, rel))?;
        let seen = entries.fetch_add(names.len() as u64, Ordering::Relaxed) + names.len() as u64;
        if budget.is_some_and(|b| seen > b) {
            over.store(true, Ordering::Relaxed);
            return Err(FsError::new("over the budget"));
        }
        let mut subdirs = Vec::new();
        let mut here_alone = 0u64;
        let mut here_files = 0u64;
        let mut here_shared: Here = Vec::new();
        for (name, ft) in &names {
            let bytes = name.to_bytes();
            // The listing's type spares a stat for folders and links;
            // file systems that do not give it (Unknown) are asked.
            if *ft == FileType::Directory {
                subdirs.push(child_rel(rel, bytes));
                continue;
            }
            if *ft != FileType::RegularFile && *ft != FileType::Unknown {
                continue;
            }
            // Gone since the folder was read: it frees nothing.
            let Some(st) = stat_entry(&dir, name.as_c_str(), path, rel)? else {
                continue;
            };
            match FileType::from_raw_mode(st.st_mode as _) {
                FileType::Directory => subdirs.push(child_rel(rel, bytes)),
                FileType::RegularFile => {
                    here_files += 1;
                    let size = st.st_size.max(0) as u64;
                    if st.st_nlink <= 1 {
                        here_alone += size;
                    } else {
                        here_shared.push(((st.st_dev, st.st_ino), st.st_nlink, size));
                    }
                }
                _ => {}
            }
        }
        alone.fetch_add(here_alone, Ordering::Relaxed);
        files.fetch_add(here_files, Ordering::Relaxed);
        if !here_shared.is_empty() {
            // A poisoned map may miss names: the answer would be too high.
            let mut map = shared.lock().map_err(|_| poisoned("the linked files"))?;
            add_names(&mut map, here_shared);
        }
        Ok((dir, subdirs))
    });
    match result {
        Ok(()) => {}
        Err(_) if over.load(Ordering::Relaxed) => {
            return Err(ScanError::TooMany(budget.unwrap_or(0)));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(Links {
        alone: alone.into_inner(),
        shared: shared
            .into_inner()
            .map_err(|_| poisoned("the linked files"))?,
        files: files.into_inner(),
        entries: entries.into_inner(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, bytes: usize) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, vec![1u8; bytes]).expect("write");
    }

    #[test]
    fn counts_files_whose_names_are_all_inside() {
        let d = tempfile::tempdir().expect("tempdir");
        let (a, b, c) = (d.path().join("a"), d.path().join("b"), d.path().join("c"));
        // In a only.
        write(&a.join("deep/only-a"), 1000);
        // Two names, both in a.
        write(&a.join("twice"), 300);
        std::fs::hard_link(a.join("twice"), a.join("deep/twice-again")).expect("link");
        // In a and b: unique to neither, freed with the second of them.
        write(&a.join("ab"), 50);
        std::fs::create_dir_all(&b).expect("b");
        std::fs::hard_link(a.join("ab"), b.join("ab")).expect("link");
        // In all three.
        write(&a.join("abc"), 7);
        std::fs::create_dir_all(&c).expect("c");
        std::fs::hard_link(a.join("abc"), b.join("abc")).expect("link");
        std::fs::hard_link(a.join("abc"), c.join("abc")).expect("link");
        // Not files: counted as entries only.
        std::os::unix::fs::symlink("only-a", a.join("deep/link")).expect("symlink");
        let stop = AtomicBool::new(false);
        let scan_all = |p: &Path| scan(p, 2, &stop, None).expect("scan");
        let (la, lb, lc) = (scan_all(&a), scan_all(&b), scan_all(&c));
        assert_eq!(la.unique(), 1300);
        assert_eq!(lb.unique(), 0);
        assert_eq!(lc.unique(), 0);
        assert_eq!(la.files, 5);
        assert_eq!(la.entries, 7);
        assert!(matches!(
            scan(&a, 2, &stop, Some(3)),
            Err(ScanError::TooMany(3))
        ));
        // Deleted one after the other, each frees what is unique to it then.
        std::fs::remove_dir_all(&a).expect("rm a");
        assert_eq!(scan_all(&b).unique(), 50);
        std::fs::remove_dir_all(&b).expect("rm b");
        assert_eq!(scan_all(&c).unique(), 7);
        assert!(matches!(
            scan(&d.path().join("missing"), 2, &stop, None),
            Err(ScanError::Fs(_))
        ));
    }
}
