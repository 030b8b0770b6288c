//! What differs between a source tree and its copy, by rsync's own quick
//! check, found by reading both trees in parallel: the list a full `rsync`
//! pass hands rsync instead of letting it list both trees itself.
//!
//! A full pass of `rsync -a` over a large, mostly unchanged tree spends
//! nearly all its time listing: one process reads the source's entries
//! and sends them, another reads the destination's and compares, one entry
//! at a time. Ward reads both trees with several threads and lists only
//! what rsync would act on. The rule is rsync's (`-a`, no `--checksum`),
//! so nothing that a full rsync pass would copy is left out:
//!
//! - an entry missing in the copy, or of another type there: listed (a
//!   folder whole, the copy takes it recursively);
//! - a regular file whose size, modification time (to the second, as
//!   rsync compares it by default), permissions, group or (as root) owner
//!   differ: listed;
//! - a symbolic link whose target, time or owner differ; a device, fifo or
//!   socket whose device number, permissions, time or owner differ: listed;
//! - a folder whose copy holds names the source no longer has (with
//!   `delete`): listed whole, so that rsync's `--delete` removes them (the
//!   way rsync 3.2.7 would delete single names, `--delete-missing-args`,
//!   fails with "invalid file mode" on a list read from stdin);
//! - a folder whose own permissions, owner or time differ: rsync sets them
//!   as an implied folder of any path listed below it (`--relative`);
//!   when nothing below it is listed it goes to a second list
//!   ([`Compared::shallow`]) that a pass without recursion (`-d`) takes,
//!   as does the root, which no listed path implies;
//! - with `hard_links`, each file with more than one name: every name is
//!   listed when one of them is, when some of its names are outside what
//!   was compared, or when the copies of its names are not one file, so
//!   that `-H` sees them together.
//!
//! What the quick check cannot see, rsync's full pass does not see either:
//! a file rewritten with its size and time set back. Entries that change
//! while they are compared are as in rsync's own listing: the next pass
//! takes them (and a backup's pass inside its window, `changed_since`,
//! goes by change time, which no user can set back).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{FileType, Stat, readlinkat};

use super::FsError;
use super::tree::{
    child_rel, join, open_dir, open_level_errno, poisoned, read_names, stat_entry, walk,
};

/// What [`list`] found.
#[derive(Debug, Default)]
pub struct Compared {
    /// Paths (relative, each followed by a NUL) for a recursive pass:
    /// folders copied whole and single entries. `.` alone: the root itself
    /// must be copied whole (a name is gone from it).
    pub list: Vec<u8>,
    /// How many paths are in `list`.
    pub listed: u64,
    /// Of them, folders copied whole.
    pub whole_folders: u64,
    /// Of them, names of files with more than one name, listed so that
    /// `-H` links their copies.
    pub linked: u64,
    /// Folders (relative, NUL-terminated; `.` for the root) whose own
    /// attributes differ and below which nothing is listed, for a pass
    /// that does not recurse.
    pub shallow: Vec<u8>,
    /// How many folders are in `shallow`.
    pub shallow_listed: u64,
    /// Entries of the source compared.
    pub entries: u64,
    /// Folders of the source read.
    pub folders_read: u64,
}

impl Compared {
    /// True when the copy already matches the source.
    pub fn is_empty(&self) -> bool {
        self.listed == 0 && self.shallow_listed == 0
    }
}

/// How to compare.
#[derive(Clone, Copy, Debug)]
pub struct Rules<'a> {
    /// Only these top-level names are compared (a gold-only copy).
    pub only_top: Option<&'a [&'a str]>,
    /// Names in the copy that the source lacks are to be deleted.
    pub delete: bool,
    /// The copy keeps hard links (`-H`).
    pub hard_links: bool,
    /// Owners are copied (rsync does as root only).
    pub owners: bool,
}

/// One name of a file with more than one name.
struct Name {
    /// Relative path.
    rel: Vec<u8>,
    /// It differs from its copy (or has none).
    differs: bool,
    /// Which file its copy is (device, inode), if there is one.
    copy: Option<(u64, u64)>,
}

/// A file with more than one name: its link count, and the names seen.
type Group = (u64, Vec<Name>);

/// The two open folders being compared at one level.
struct Pair {
    src: OwnedFd,
    /// None when the copy's folder could not be opened (it was listed
    /// whole, and nothing below it is visited).
    dest: Option<OwnedFd>,
}

/// Compares the tree `src` with its copy `dest`. Errors say what could not
/// be read; the caller then lets rsync list everything.
pub fn list(
    src: &Path,
    dest: &Path,
    rules: Rules<'_>,
    threads: usize,
    cancelled: &AtomicBool,
) -> Result<Compared, FsError> {
    let found: Mutex<Compared> = Mutex::new(Compared::default());
    // Folders whose own attributes differ: settled at the end, once it is
    // known whether anything below them is listed.
    let folders_differ: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    let groups: Mutex<HashMap<(u64, u64), Group>> = Mutex::new(HashMap::new());
    let entries = AtomicU64::new(0);
    let folders_read = AtomicU64::new(0);
    walk(threads, cancelled, |rel, parent: Option<&Arc<Pair>>| {
        let src_dir = open_level_errno(src, rel, parent.map(|p| p.src.as_fd())).map_err(|e| {
            FsError::new(format!(
                "cannot open folder {}: {e}",
                join(src, rel).display()
            ))
        })?;
        let dest_dir = match parent {
            None => Some(open_dir(dest)?),
            Some(p) => p
                .dest
                .as_ref()
                .and_then(|d| open_level_errno(dest, rel, Some(d.as_fd())).ok()),
        };
        // Replaced since its parent was read (or not readable): copied whole.
        let Some(dest_dir) = dest_dir else {
            let mut found = found.lock().map_err(|_| poisoned("the differences"))?;
            push(&mut found.list, rel);
            found.listed += 1;
            found.whole_folders += 1;
            return Ok((
                Pair {
                    src: src_dir,
                    dest: None,
                },
                Vec::new(),
            ));
        };
        let src_names = read_names(&src_dir, &join(src, rel))?;
        let dest_names = read_names(&dest_dir, &join(dest, rel))?;
        let top = |name: &[u8]| {
            !rel.is_empty()
                || rules
                    .only_top
                    .is_none_or(|top| top.iter().any(|t| t.as_bytes() == name))
        };
        let src_set: HashSet<&[u8]> = src_names.iter().map(|(n, _)| n.to_bytes()).collect();
        let gone_here = rules.delete
            && dest_names
                .iter()
                .any(|(n, _)| top(n.to_bytes()) && !src_set.contains(n.to_bytes()));
        if gone_here {
            let mut found = found.lock().map_err(|_| poisoned("the differences"))?;
            push(&mut found.list, rel);
            found.listed += 1;
            found.whole_folders += 1;
            folders_read.fetch_add(1, Ordering::Relaxed);
            return Ok((
                Pair {
                    src: src_dir,
                    dest: None,
                },
                Vec::new(),
            ));
        }
        let dest_set: HashSet<&[u8]> = dest_names.iter().map(|(n, _)| n.to_bytes()).collect();
        let mut here: Vec<Vec<u8>> = Vec::new();
        let mut whole = 0;
        let mut subdirs = Vec::new();
        let mut differ_here = Vec::new();
        // (file, link count, name) of each file with more than one name.
        let mut linked_here: Vec<((u64, u64), u64, Name)> = Vec::new();
        let mut seen = 0;
        for (name, _) in &src_names {
            let bytes = name.to_bytes();
            if !top(bytes) {
                continue;
            }
            seen += 1;
            let child = child_rel(rel, bytes);
            // Gone since the folder was read: rsync would not see it
            // either; the next pass looks again.
            let Some(st) = stat_entry(&src_dir, name.as_c_str(), src, rel)? else {
                continue;
            };
            let copy = if dest_set.contains(bytes) {
                stat_entry(&dest_dir, name.as_c_str(), dest, rel)?
            } else {
                None
            };
            let kind = FileType::from_raw_mode(st.st_mode as _);
            let Some(d) = copy.filter(|d| FileType::from_raw_mode(d.st_mode as _) == kind) else {
                whole += u64::from(kind == FileType::Directory);
                if kind == FileType::RegularFile && rules.hard_links && st.st_nlink > 1 {
                    let name = Name {
                        rel: child,
                        differs: true,
                        copy: None,
                    };
                    linked_here.push(((st.st_dev, st.st_ino), st.st_nlink, name));
                } else {
                    here.push(child);
                }
                continue;
            };
            let differs = match kind {
                FileType::Directory => {
                    if attributes_differ(&st, &d, rules.owners) {
                        differ_here.push(child.clone());
                    }
                    subdirs.push(child);
                    continue;
                }
                FileType::RegularFile => {
                    st.st_size != d.st_size
                        || st.st_mtime != d.st_mtime
                        || attributes_differ(&st, &d, rules.owners)
                }
                FileType::Symlink => {
                    st.st_mtime != d.st_mtime
                        || owner_differs(&st, &d, rules.owners)
                        || target(&src_dir, name, src, &child)?
                            != target(&dest_dir, name, dest, &child)?
                }
                _ => st.st_rdev != d.st_rdev || attributes_differ(&st, &d, rules.owners),
            };
            if kind == FileType::RegularFile && rules.hard_links && st.st_nlink > 1 {
                let name = Name {
                    rel: child,
                    differs,
                    copy: Some((d.st_dev, d.st_ino)),
                };
                linked_here.push(((st.st_dev, st.st_ino), st.st_nlink, name));
            } else if differs {
                here.push(child);
            }
        }
        entries.fetch_add(seen, Ordering::Relaxed);
        folders_read.fetch_add(1, Ordering::Relaxed);
        if rel.is_empty() && attributes_differ_root(&src_dir, &dest_dir, rules.owners, src, dest)? {
            differ_here.push(Vec::new());
        }
        if !here.is_empty() {
            let mut found = found.lock().map_err(|_| poisoned("the differences"))?;
            found.listed += here.len() as u64;
            found.whole_folders += whole;
            for path in here {
                push(&mut found.list, &path);
            }
        }
        if !differ_here.is_empty() {
            folders_differ
                .lock()
                .map_err(|_| poisoned("the folders that differ"))?
                .extend(differ_here);
        }
        if !linked_here.is_empty() {
            let mut groups = groups.lock().map_err(|_| poisoned("the linked files"))?;
            for (id, nlink, name) in linked_here {
                let (links, names) = groups.entry(id).or_default();
                *links = (*links).max(nlink);
                names.push(name);
            }
        }
        Ok((
            Pair {
                src: src_dir,
                dest: Some(dest_dir),
            },
            subdirs,
        ))
    })?;
    let mut found = found
        .into_inner()
        .map_err(|_| poisoned("the differences"))?;
    let groups = groups
        .into_inner()
        .map_err(|_| poisoned("the linked files"))?;
    for (links, names) in groups.into_values() {
        let first = names.first().and_then(|n| n.copy);
        let apart = first.is_none() || names.iter().any(|n| n.copy != first);
        let any_listed = names.iter().any(|n| n.differs);
        if (names.len() as u64) < links || any_listed || apart {
            found.listed += names.len() as u64;
            found.linked += names.len() as u64;
            for name in names {
                push(&mut found.list, &name.rel);
            }
        }
    }
    let differ = folders_differ
        .into_inner()
        .map_err(|_| poisoned("the folders that differ"))?;
    settle_folders(&mut found, differ);
    found.entries = entries.into_inner();
    found.folders_read = folders_read.into_inner();
    Ok(found)
}

/// Puts each folder whose own attributes differ either nowhere (a path
/// below it is listed, and rsync sets it as an implied folder) or in the
/// shallow list. The root is never implied.
fn settle_folders(found: &mut Compared, differ: Vec<Vec<u8>>) {
    if differ.is_empty() {
        return;
    }
    let mut listed: Vec<&[u8]> = found
        .list
        .split(|&b| b == 0)
        .filter(|p| !p.is_empty())
        .collect();
    listed.sort_unstable();
    // `.` listed: the root is copied whole, its own attributes with it.
    let whole_root = listed.binary_search(&&b"."[..]).is_ok();
    let mut shallow = Vec::new();
    let mut count = 0;
    for folder in differ {
        let implied = whole_root
            || !folder.is_empty() && {
                let mut prefix = folder.clone();
                prefix.push(b'/');
                // The first listed path at or after `folder/` tells whether
                // any starts with it; a path equal to the folder (listed
                // whole) covers it too.
                let at = listed.partition_point(|p| *p < prefix.as_slice());
                listed.get(at).is_some_and(|p| p.starts_with(&prefix))
                    || listed.binary_search(&folder.as_slice()).is_ok()
            };
        if !implied {
            push(&mut shallow, if folder.is_empty() { b"." } else { &folder });
            count += 1;
        }
    }
    found.shallow = shallow;
    found.shallow_listed = count;
}

/// Appends a relative path and its NUL (`.` for the root).
fn push(list: &mut Vec<u8>, rel: &[u8]) {
    list.extend_from_slice(if rel.is_empty() { b"." } else { rel });
    list.push(0);
}

/// Permissions, group, owner (when copied) or time to the second differ.
fn attributes_differ(a: &Stat, b: &Stat, owners: bool) -> bool {
    (a.st_mode & 0o7777) != (b.st_mode & 0o7777)
        || a.st_mtime != b.st_mtime
        || owner_differs(a, b, owners)
}

fn owner_differs(a: &Stat, b: &Stat, owners: bool) -> bool {
    a.st_gid != b.st_gid || (owners && a.st_uid != b.st_uid)
}

/// The roots' own attributes differ (rsync copies them: `src/`).
fn attributes_differ_root(
    src_dir: &OwnedFd,
    dest_dir: &OwnedFd,
    owners: bool,
    src: &Path,
    dest: &Path,
) -> Result<bool, FsError> {
    let a = rustix::fs::fstat(src_dir)
        .map_err(|e| FsError::new(format!("cannot read {}: {e}", src.display())))?;
    let b = rustix::fs::fstat(dest_dir)
        .map_err(|e| FsError::new(format!("cannot read {}: {e}", dest.display())))?;
    Ok(attributes_differ(&a, &b, owners))
}

fn target(
    dir: &OwnedFd,
    name: &std::ffi::CStr,
    root: &Path,
    rel: &[u8],
) -> Result<Vec<u8>, FsError> {
    readlinkat(dir, name, Vec::new())
        .map(|t| t.into_bytes())
        .map_err(|e| {
            FsError::new(format!(
                "cannot read the symbolic link {}: {e}",
                join(root, rel).display()
            ))
        })
}
