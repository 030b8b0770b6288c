//! Native, parallel tree operations: hard-link copies and deletion.
//!
//! Each worker takes a folder, reads it, handles everything in it at once
//! and keeps its sub-folders on its own stack, handing half of them to a
//! worker that waits. Two cores link or delete a tree of 100,000 files
//! faster than one `cp -al` or `rm -rf`.
//!
//! Everything works relative to open folder descriptors: a folder is
//! opened from its parent's descriptor (`openat`), and its entries are
//! linked, read and removed with the `*at` calls. No path is ever longer
//! than one name, so a tree of any depth works, also one deeper than
//! PATH_MAX (4096 bytes) that rsync copies happily; and no recursion: the
//! pending folders are on explicit stacks. A folder's descriptor stays
//! open while any of its sub-folders waits, which is about one per level
//! of the path being worked on.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::FsError;
use super::unique::{Here, Names, add_names, whole};

/// What a tree entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A folder.
    Dir,
    /// A symbolic link and its target (bytes).
    Symlink(Vec<u8>),
    /// A FIFO, socket or device (linked, never opened).
    Special,
}

/// One entry of a tree, with the metadata a manifest keeps.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Path relative to the tree's root (bytes; may not be UTF-8).
    pub rel: Vec<u8>,
    /// What it is.
    pub kind: Kind,
    /// Size in bytes (files).
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: i64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Inode number (to count hard links once).
    pub ino: u64,
    /// Device of the file system that holds it.
    pub dev: u64,
    /// Change time, seconds. For a regular file that was linked, the one
    /// read right after the link (which sets it), see [`Entry::seen`].
    pub ctime: i64,
    /// Change time, nanoseconds.
    pub ctime_nsec: i64,
    /// The content is the base snapshot's (an incremental snapshot did not link it).
    pub in_base: bool,
    /// Regular files: the source file as read just before it was linked,
    /// before the link moved its change time. A previous manifest's hash
    /// is reused only if that manifest recorded exactly this identity.
    pub seen: Option<Identity>,
}

/// What a regular file's content is recognised by without reading it:
/// the inode (`dev`, `ino`), `size`, `mtime` and the change time. Writing
/// to a file sets its change time to the clock, and so does setting its
/// mtime back (`touch -d`); no user can set a change time back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Device.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Change time, nanoseconds since the epoch.
    pub ctime_ns: i64,
}

impl Identity {
    /// The identity in `st`.
    pub fn of(st: &rustix::fs::Stat) -> Identity {
        Identity {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime_ns: nanos(st.st_mtime, st.st_mtime_nsec as i64),
            ctime_ns: nanos(st.st_ctime, st.st_ctime_nsec as i64),
        }
    }
}

/// Seconds and nanoseconds as nanoseconds since the epoch (saturating:
/// years far beyond 2262 read as that year).
pub fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

impl Entry {
    /// The identity of the file as this copy left it (after its link).
    pub fn identity(&self) -> Identity {
        Identity {
            dev: self.dev,
            ino: self.ino,
            size: self.size,
            mtime_ns: nanos(self.mtime, self.mtime_nsec),
            ctime_ns: nanos(self.ctime, self.ctime_nsec),
        }
    }
}

/// Folders waiting for a worker. Each worker keeps its own stack of
/// folders (depth first) and hands half of it over only when another worker
/// is waiting, so that the shared lock is taken rarely, not once per folder.
struct Queue<T> {
    state: Mutex<Shared<T>>,
    wake: Condvar,
    /// Workers waiting for folders (read without the lock, as a hint).
    waiting: AtomicUsize,
}

struct Shared<T> {
    dirs: Vec<T>,
    /// Workers that hold or may produce folders.
    busy: usize,
}

impl<T> Queue<T> {
    fn new(first: T, workers: usize) -> Queue<T> {
        Queue {
            state: Mutex::new(Shared {
                dirs: vec![first],
                busy: workers,
            }),
            wake: Condvar::new(),
            waiting: AtomicUsize::new(0),
        }
    }

    /// The next shared folder for a worker whose own stack is empty, or
    /// None when no worker has anything left.
    fn next(&self) -> Option<T> {
        let mut guard = relock(&self.state);
        if let Some(dir) = guard.dirs.pop() {
            return Some(dir);
        }
        guard.busy -= 1;
        loop {
            if let Some(dir) = guard.dirs.pop() {
                guard.busy += 1;
                return Some(dir);
            }
            if guard.busy == 0 {
                self.wake.notify_all();
                return None;
            }
            self.waiting.fetch_add(1, Ordering::Relaxed);
            guard = self
                .wake
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Hands half of a worker's stack to waiting workers, if any wait.
    fn share(&self, local: &mut Vec<T>) {
        if local.len() < 2 || self.waiting.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut guard = relock(&self.state);
        let half = local.len() / 2;
        guard.dirs.extend(local.drain(..half));
        self.wake.notify_all();
    }

    /// Drops every shared folder (after an error).
    fn clear(&self) {
        relock(&self.state).dirs.clear();
    }
}

/// Locks the queue or the first error of a walk even if a worker panicked
/// while holding it. Neither can be left half-changed (a pop, a push, a
/// counter, an `Option` set once), and a worker's panic reaches the caller
/// anyway when the thread scope ends; what must not happen is that the
/// panic makes the other workers stop early or drop an error, so that the
/// walk looks complete. Collected results are different: a poisoned list
/// is an error ([`poisoned`]).
fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The error for a list of results whose lock a panicking thread held: it
/// may be incomplete, so it is never used as if it were whole.
pub(super) fn poisoned(what: &str) -> FsError {
    FsError::new(format!(
        "{what}: a worker thread panicked while adding to it, so it may be incomplete; \
         nothing was concluded from it (this is a bug in ward)"
    ))
}

/// `root/rel` (`root` itself for the empty `rel`), for messages.
pub(super) fn join(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(std::ffi::OsStr::from_bytes(rel))
    }
}

/// `parent/name` as relative path bytes.
pub(super) fn child_rel(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut rel = Vec::with_capacity(parent.len() + 1 + name.len());
    rel.extend_from_slice(parent);
    if !rel.is_empty() {
        rel.push(b'/');
    }
    rel.extend_from_slice(name);
    rel
}

/// The last name of a relative path.
fn last_name(rel: &[u8]) -> &[u8] {
    rel.rsplit(|&b| b == b'/').next().unwrap_or(rel)
}

/// A folder waiting to be visited: its path from the root and its
/// parent's open descriptors (None for the root).
type Pending<P> = (Vec<u8>, Option<Arc<P>>);

/// Runs `work` on every folder of a tree (starting at the root, `""`) with
/// `threads` workers. `work` gets the folder's relative path and its
/// parent's value (None for the root), opens the folder, and returns its
/// own value (typically its open descriptors) and the sub-folders to
/// visit next; the value is shared with those sub-folders and dropped when
/// the last of them is done. Errors stop all workers.
pub(super) fn walk<P, F>(threads: usize, cancelled: &AtomicBool, work: F) -> Result<(), FsError>
where
    P: Send + Sync,
    F: Fn(&[u8], Option<&Arc<P>>) -> Result<(P, Vec<Vec<u8>>), FsError> + Sync,
{
    allow_deep_trees();
    let threads = threads.max(1);
    let queue: Queue<Pending<P>> = Queue::new((Vec::new(), None), threads);
    let failed: Mutex<Option<FsError>> = Mutex::new(None);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut local: Vec<Pending<P>> = Vec::new();
                while let Some((rel, parent)) = local.pop().or_else(|| queue.next()) {
                    if stop.load(Ordering::Relaxed) || cancelled.load(Ordering::Relaxed) {
                        local.clear();
                        queue.clear();
                        continue;
                    }
                    match work(&rel, parent.as_ref()) {
                        Ok((this, subdirs)) => {
                            drop(parent);
                            if !subdirs.is_empty() {
                                let this = Arc::new(this);
                                local.extend(
                                    subdirs.into_iter().map(|r| (r, Some(Arc::clone(&this)))),
                                );
                            }
                            queue.share(&mut local);
                        }
                        Err(e) => {
                            stop.store(true, Ordering::Relaxed);
                            relock(&failed).get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(PoisonError::into_inner) {
        return Err(e);
    }
    if cancelled.load(Ordering::Relaxed) {
        return Err(FsError::Stopped);
    }
    Ok(())
}

/// Raises the soft limit of open files to the hard limit, once. A
/// removal keeps one descriptor open per level of a chain of folders until
/// its deepest folder is gone, and the usual soft limit (1024) would cap
/// the depth there; the hard limit is usually far higher (Go's runtime
/// raises it the same way). Child processes inherit the raised limit.
fn allow_deep_trees() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let limit = getrlimit(Resource::Nofile);
        let raise = match (limit.current, limit.maximum) {
            (Some(soft), Some(hard)) => soft < hard,
            (Some(_), None) => true,
            _ => false,
        };
        if raise {
            // Not raising it only limits how deep a tree can be removed.
            let _ = setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: limit.maximum,
                    maximum: limit.maximum,
                },
            );
        }
    });
}

/// Splits `items` into up to `threads` consecutive chunks, runs `work` on
/// each chunk on its own thread, and returns the results in chunk order.
pub(super) fn map_chunks<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    work: impl Fn(&[T]) -> R + Sync,
) -> Vec<R> {
    let chunk = items.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || work(part)))
            .collect();
        // A panicking worker panics here too, as it would have on one thread.
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

fn io_err(what: &str, path: &Path, e: impl std::fmt::Display) -> FsError {
    FsError::new(format!("cannot {what} {}: {e}", path.display()))
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW);

/// Opens the folder at `path` (a root given by the user or ward).
pub(super) fn open_dir(path: &Path) -> Result<OwnedFd, FsError> {
    rustix::fs::openat(rustix::fs::CWD, path, DIR_FLAGS, Mode::empty())
        .map_err(|e| io_err("open folder", path, e))
}

/// Opens the sub-folder `name` of an open folder, not following a symlink.
fn open_child(parent: impl AsFd, name: &[u8]) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(parent, name, DIR_FLAGS, Mode::empty())
}

/// Opens folder `rel` of the tree at `root` (a root given by path for
/// the empty `rel`, else from the parent's descriptor).
pub(super) fn open_level(
    root: &Path,
    rel: &[u8],
    parent: Option<BorrowedFd<'_>>,
) -> Result<OwnedFd, FsError> {
    open_level_errno(root, rel, parent).map_err(|e| io_err("open folder", &join(root, rel), e))
}

/// [`open_level`] with the bare error number, for callers that tell a
/// folder that is gone from one that cannot be read.
pub(super) fn open_level_errno(
    root: &Path,
    rel: &[u8],
    parent: Option<BorrowedFd<'_>>,
) -> rustix::io::Result<OwnedFd> {
    match parent {
        None => rustix::fs::openat(rustix::fs::CWD, root, DIR_FLAGS, Mode::empty()),
        Some(p) => open_child(p, last_name(rel)),
    }
}

/// The status of entry `name` (not followed if a link) of the open folder
/// `dir`, which is `rel` below `root`: None when it is gone since the
/// folder was read (every walk that lists, then looks, meets that on a
/// live tree); any other failure names the entry.
pub(super) fn stat_entry(
    dir: &OwnedFd,
    name: &CStr,
    root: &Path,
    rel: &[u8],
) -> Result<Option<rustix::fs::Stat>, FsError> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(io_err(
            "read",
            &join(root, &child_rel(rel, name.to_bytes())),
            e,
        )),
    }
}

/// The names in an open folder (without `.` and `..`) and their types as
/// the folder listing gives them.
///
/// The listing is read from `fd` itself, rewound first. (rustix's `Dir`
/// opens the folder a second time for a position of its own: an `fcntl`,
/// an `openat` and a `close` more per folder, a fifth of the system calls
/// of a walk over FOSSology's folders of one or two files.) Every caller
/// lists a folder it has just opened and does not read from that
/// descriptor elsewhere; the rewind keeps a listing whole even if one did.
pub(super) fn read_names(fd: &OwnedFd, path: &Path) -> Result<Vec<(CString, FileType)>, FsError> {
    let failed = |e| io_err("read folder", path, e);
    rustix::fs::seek(fd, rustix::fs::SeekFrom::Start(0)).map_err(failed)?;
    // One getdents64 fills this with about 300 typical names.
    let mut buf: Vec<u8> = Vec::with_capacity(32 * 1024);
    let mut listing = rustix::fs::RawDir::new(fd, buf.spare_capacity_mut());
    let mut names = Vec::new();
    while let Some(item) = listing.next() {
        let item = item.map_err(failed)?;
        let bytes = item.file_name().to_bytes();
        if bytes != b"." && bytes != b".." {
            names.push((item.file_name().to_owned(), item.file_type()));
        }
    }
    Ok(names)
}

/// Relative paths up to this long are passed to the `*at` calls whole;
/// longer ones are walked in steps of at most this many bytes.
const STEP: usize = 2048;

/// An entry `rel` of a tree opened as `root`, however deep: the folder
/// that holds it (reached from `root` in steps shorter than PATH_MAX when
/// the path is long) and the rest of the path from there.
pub(super) struct At<'a> {
    root: BorrowedFd<'a>,
    hop: Option<OwnedFd>,
    name: CString,
}

impl At<'_> {
    /// The folder to pass to an `*at` call.
    pub(super) fn dir(&self) -> BorrowedFd<'_> {
        self.hop.as_ref().map_or(self.root, |h| h.as_fd())
    }

    /// The path to pass with it.
    pub(super) fn name(&self) -> &CStr {
        &self.name
    }
}

/// Reaches `rel` below `root` (see [`At`]).
pub(super) fn at<'a>(root: BorrowedFd<'a>, rel: &[u8]) -> rustix::io::Result<At<'a>> {
    let cstring = |b: &[u8]| CString::new(b).map_err(|_| rustix::io::Errno::INVAL);
    if rel.len() <= STEP {
        return Ok(At {
            root,
            hop: None,
            name: cstring(rel)?,
        });
    }
    let split = rel.iter().rposition(|&b| b == b'/').unwrap_or(0);
    let (folders, name) = (&rel[..split], &rel[split + 1..]);
    let mut hop: Option<OwnedFd> = None;
    let mut chunk: Vec<u8> = Vec::new();
    let go = |hop: &mut Option<OwnedFd>, chunk: &mut Vec<u8>| -> rustix::io::Result<()> {
        let from = hop.as_ref().map_or(root, |h| h.as_fd());
        let next = rustix::fs::openat(
            from,
            chunk.as_slice(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        *hop = Some(next);
        chunk.clear();
        Ok(())
    };
    for part in folders.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
        if !chunk.is_empty() && chunk.len() + 1 + part.len() > STEP {
            go(&mut hop, &mut chunk)?;
        }
        if !chunk.is_empty() {
            chunk.push(b'/');
        }
        chunk.extend_from_slice(part);
    }
    if !chunk.is_empty() {
        go(&mut hop, &mut chunk)?;
    }
    Ok(At {
        root,
        hop,
        name: cstring(name)?,
    })
}

/// Opens the file `rel` below `root` for reading (not following a final symlink).
pub(super) fn open_file_below(
    root: BorrowedFd<'_>,
    rel: &[u8],
) -> rustix::io::Result<std::fs::File> {
    let place = at(root, rel)?;
    let fd = rustix::fs::openat(
        place.dir(),
        place.name(),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )?;
    Ok(std::fs::File::from(fd))
}

fn entry_from_stat(rel: Vec<u8>, st: &rustix::fs::Stat, kind: Kind) -> Entry {
    Entry {
        rel,
        kind,
        size: st.st_size as u64,
        mode: st.st_mode & 0o7777,
        mtime: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec as i64,
        uid: st.st_uid,
        gid: st.st_gid,
        ino: st.st_ino,
        dev: st.st_dev,
        ctime: st.st_ctime,
        ctime_nsec: st.st_ctime_nsec as i64,
        in_base: false,
        seen: None,
    }
}

/// Copies the tree `src` to `dest` (which must not exist) as hard links:
/// folders are created (mode, owner when root; times set afterwards),
/// everything else is hard-linked, symlinks included (linkat does not
/// follow them), FIFOs and devices included (never opened). Returns every
/// entry with its metadata, sorted by path.
pub fn link_tree(
    src: &Path,
    dest: &Path,
    threads: usize,
    cancelled: &AtomicBool,
) -> Result<Vec<Entry>, FsError> {
    let uncounted = crate::progress::Progress::default();
    link_tree_since(src, None, dest, threads, cancelled, &uncounted)
}

/// The open folders of one level of a hard-link copy.
struct LinkLevel {
    from: OwnedFd,
    to: OwnedFd,
    /// The same folder in the base snapshot, if it has it.
    base: Option<OwnedFd>,
}

/// As [`link_tree`], but with a `base` snapshot: entries whose inode is the
/// one at the same path in `base` (unchanged since the base was taken, as
/// rsync writes changed files as new inodes) are not linked and come back
/// with `in_base` set. Folders are always created. Each folder's entries
/// are added to `progress`'s files when it is done.
pub fn link_tree_since(
    src: &Path,
    base: Option<&Path>,
    dest: &Path,
    threads: usize,
    cancelled: &AtomicBool,
    progress: &crate::progress::Progress,
) -> Result<Vec<Entry>, FsError> {
    use rustix::fs::{chmodat, chownat, fstat, linkat, mkdirat, readlinkat, statat};
    let root_meta = std::fs::symlink_metadata(src).map_err(|e| io_err("read", src, e))?;
    if !root_meta.is_dir() {
        return Err(FsError::new(format!("{} is not a folder", src.display())));
    }
    std::fs::DirBuilder::new()
        .mode(root_meta.permissions().mode() & 0o7777)
        .create(dest)
        .map_err(|e| io_err("create", dest, e))?;
    let creator = Creator::current();
    let entries: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
    walk(
        threads,
        cancelled,
        |rel, parent: Option<&Arc<LinkLevel>>| {
            let from_dir = join(src, rel);
            let to_dir = join(dest, rel);
            let level = match parent {
                None => LinkLevel {
                    from: open_dir(src)?,
                    to: open_dir(dest)?,
                    // A base that cannot be opened makes this a full copy
                    // (every file linked, none marked `in_base`): bigger, never wrong.
                    base: base.and_then(|b| open_dir(b).ok()),
                },
                Some(p) => {
                    let name = last_name(rel);
                    LinkLevel {
                        from: open_child(&p.from, name)
                            .map_err(|e| io_err("open folder", &from_dir, e))?,
                        to: open_child(&p.to, name)
                            .map_err(|e| io_err("open folder", &to_dir, e))?,
                        // A folder that is new since the base has no counterpart there.
                        base: p.base.as_ref().and_then(|b| open_child(b, name).ok()),
                    }
                }
            };
            let names = read_names(&level.from, &from_dir)?;
            let (from, to) = (&level.from, &level.to);
            // Mode and group of `to`, read once and only if a sub-folder needs them.
            let mut to_stat: Option<rustix::fs::Stat> = None;
            let mut subdirs = Vec::new();
            let mut local = Vec::new();
            for (name, _) in &names {
                let name = name.as_c_str();
                let rel_child = child_rel(rel, name.to_bytes());
                let at = || join(src, &rel_child);
                let st = statat(from, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| io_err("read", &at(), e))?;
                let ft = FileType::from_raw_mode(st.st_mode as _);
                if ft == FileType::Directory {
                    let bits = st.st_mode & 0o7777;
                    let mode = Mode::from_raw_mode(bits as _);
                    mkdirat(to, name, mode)
                        .map_err(|e| io_err("create", &join(dest, &rel_child), e))?;
                    let parent = match to_stat {
                        Some(p) => p,
                        None => {
                            let p = fstat(to).map_err(|e| io_err("read", &to_dir, e))?;
                            *to_stat.get_or_insert(p)
                        }
                    };
                    let (fix_mode, fix_owner) = creator.fixups(bits, st.st_uid, st.st_gid, &parent);
                    if fix_mode {
                        chmodat(to, name, mode, AtFlags::empty())
                            .map_err(|e| io_err("set the mode of", &join(dest, &rel_child), e))?;
                    }
                    if fix_owner {
                        let _ = chownat(
                            to,
                            name,
                            Some(rustix::fs::Uid::from_raw(st.st_uid)),
                            Some(rustix::fs::Gid::from_raw(st.st_gid)),
                            AtFlags::SYMLINK_NOFOLLOW,
                        );
                    }
                    local.push(entry_from_stat(rel_child.clone(), &st, Kind::Dir));
                    subdirs.push(rel_child);
                    continue;
                }
                let kind = match ft {
                    FileType::RegularFile => Kind::File,
                    // The manifest records the target: an unreadable one is
                    // an error, never an empty target.
                    FileType::Symlink => Kind::Symlink(
                        readlinkat(from, name, Vec::new())
                            .map(|t| t.into_bytes())
                            .map_err(|e| io_err("read the symbolic link", &at(), e))?,
                    ),
                    _ => Kind::Special,
                };
                let unchanged = level.base.as_ref().is_some_and(|b| {
                    statat(b, name, AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|bst| bst.st_ino == st.st_ino && bst.st_dev == st.st_dev)
                });
                if !unchanged {
                    linkat(from, name, to, name, AtFlags::empty()).map_err(|e| {
                        FsError::new(format!(
                            "cannot link {} into {}: {e}",
                            at().display(),
                            to_dir.display()
                        ))
                    })?;
                }
                // A regular file is read again right after its link: the
                // link set its change time, and the entry describes the
                // inode now in the copy (the one `linkat` found by name,
                // which is `st`'s unless the name was replaced between).
                // `seen` keeps what was there before the link, for the
                // comparison with the previous manifest (manifest::build).
                let linked = if kind == Kind::File && !unchanged {
                    let now = statat(to, name, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| io_err("read", &join(dest, &rel_child), e))?;
                    if FileType::from_raw_mode(now.st_mode as _) != FileType::RegularFile {
                        return Err(FsError::new(format!(
                            "{} was replaced by something else than a file while it was linked; \
                             run the snapshot again",
                            at().display()
                        )));
                    }
                    now
                } else {
                    st
                };
                let mut entry = entry_from_stat(rel_child, &linked, kind);
                entry.in_base = unchanged;
                if entry.kind == Kind::File {
                    entry.seen = Some(Identity::of(&st));
                }
                local.push(entry);
            }
            // Every entry of this folder exists now, and what happens inside
            // its sub-folders does not change its times: set them now.
            let own = fstat(from).map_err(|e| io_err("read", &from_dir, e))?;
            set_times(to, own.st_mtime, own.st_mtime_nsec as i64);
            progress.add_files(local.len() as u64);
            entries
                .lock()
                .map_err(|_| poisoned(&format!("the entries copied to {}", dest.display())))?
                .extend(local);
            Ok((level, subdirs))
        },
    )?;
    let mut entries = entries
        .into_inner()
        .map_err(|_| poisoned(&format!("the entries copied to {}", dest.display())))?;
    entries.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(entries)
}

/// Who creates folders here, to tell when `mkdir` alone already gives a
/// new folder the source's mode and owner (the common case), so that the
/// extra chmod and chown per folder are skipped.
struct Creator {
    root: bool,
    uid: u32,
    gid: u32,
    /// The process umask; None if unknown (then every mode is set).
    umask: Option<u32>,
}

impl Creator {
    fn current() -> Creator {
        let umask = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            });
        Creator {
            root: rustix::process::geteuid().is_root(),
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            umask,
        }
    }

    /// Whether a folder just made by `mkdir(mode)` inside `parent` needs a
    /// chmod to get exactly `mode`, and (as root) a chown to `uid:gid`.
    fn fixups(&self, mode: u32, uid: u32, gid: u32, parent: &rustix::fs::Stat) -> (bool, bool) {
        let setgid_parent = parent.st_mode & 0o2000 != 0;
        // mkdir keeps only the permission and sticky bits, minus the umask;
        // below a setgid folder it adds the setgid bit.
        let fix_mode =
            self.umask.is_none_or(|u| mode & u != 0) || mode & 0o6000 != 0 || setgid_parent;
        let new_gid = if setgid_parent {
            parent.st_gid
        } else {
            self.gid
        };
        let fix_owner = self.root && (uid != self.uid || gid != new_gid);
        (fix_mode, fix_owner)
    }
}

fn set_times(fd: &OwnedFd, secs: i64, nsec: i64) {
    use rustix::fs::{Timespec, Timestamps, futimens};
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: nsec as _,
    };
    // Times are a nicety of the copy, never a reason to fail it.
    let _ = futimens(
        fd,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
    );
}

/// Threads that close the descriptors of removed folders. Closing the
/// last descriptor of a removed folder frees its blocks, and on a file
/// system mounted with `discard` (without a journal to batch it) that
/// waits for the disk to trim them: about 3 ms per folder, measured, more
/// than the CPU time of unlinking its 250 files. Workers hand those
/// descriptors over instead of waiting, and these threads (mostly
/// waiting, not computing) keep several trims in flight at once.
const CLOSERS: usize = 4;

/// What the folders of one removal share.
struct Removal<'a> {
    root: &'a Path,
    /// A worker failed or the step was stopped: folders stay.
    abandoned: AtomicBool,
    cancelled: &'a AtomicBool,
    failed: Mutex<Option<FsError>>,
    /// Descriptors of removed folders, for the closers.
    closer: mpsc::Sender<OwnedFd>,
}

impl Removal<'_> {
    fn fail(&self, e: FsError) {
        self.abandoned.store(true, Ordering::Relaxed);
        relock(&self.failed).get_or_insert(e);
    }

    fn going_on(&self) -> bool {
        !self.abandoned.load(Ordering::Relaxed) && !self.cancelled.load(Ordering::Relaxed)
    }

    /// Closes the descriptor of a removed folder on a closer thread (here
    /// if none runs any more).
    fn close_later(&self, fd: OwnedFd) {
        // A failed send hands the descriptor back inside the error, which closes it.
        let _ = self.closer.send(fd);
    }
}

/// An open folder being emptied. When the last reference goes (its files
/// are unlinked and every sub-folder is gone), it removes itself from its
/// parent, and so on upwards: a folder is removed when its last
/// sub-folder is, deepest first, without a list of all folders.
struct RmLevel<'a> {
    /// Taken only when the level goes, to be closed after the folder is removed.
    fd: Option<OwnedFd>,
    rel: Vec<u8>,
    parent: Option<Arc<RmLevel<'a>>>,
    removal: &'a Removal<'a>,
}

impl Drop for RmLevel<'_> {
    fn drop(&mut self) {
        // Iterative, not recursive: a chain of 100,000 folders unwinds in a loop.
        let mut parent = self.parent.take();
        let mut rel = std::mem::take(&mut self.rel);
        // A folder's own descriptor stays open until it is removed, so
        // that the removal (not this thread) is what frees its blocks, on
        // a closer thread.
        let mut fd = self.fd.take();
        while let Some(p) = parent {
            if !self.removal.going_on() {
                return;
            }
            let Some(parent_fd) = p.fd.as_ref() else {
                return;
            };
            if let Err(e) = rustix::fs::unlinkat(parent_fd, last_name(&rel), AtFlags::REMOVEDIR) {
                self.removal
                    .fail(io_err("delete folder", &join(self.removal.root, &rel), e));
                return;
            }
            if let Some(gone) = fd.take() {
                self.removal.close_later(gone);
            }
            match Arc::into_inner(p) {
                Some(mut level) => {
                    parent = level.parent.take();
                    rel = std::mem::take(&mut level.rel);
                    fd = level.fd.take();
                }
                None => return,
            }
        }
    }
}

/// Deletes a tree with `threads` workers: the files of each folder as it
/// is read, each folder as soon as its last sub-folder is gone, the root
/// last. A missing tree is not an error.
pub fn remove_tree(path: &Path, threads: usize, cancelled: &AtomicBool) -> Result<(), FsError> {
    remove_tree_with(path, threads, cancelled, None, None)
}

/// What a [`remove_tree_counted`] freed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Freed {
    /// Bytes of the regular files whose last name the removal took
    /// (apparent sizes, as in [`super::unique`]); None when the tree held
    /// more entries than the budget, so that the count was given up (the
    /// tree was removed all the same).
    pub bytes: Option<u64>,
}

/// [`remove_tree`] that also counts what the removal frees, in the same
/// walk: one `statx` of each file just before its unlink. With `budget`,
/// the count is given up (its memory dropped) once more entries than that
/// were seen. The count never makes the removal fail: a file whose stat
/// fails (it vanished) is not counted, and errors are those of
/// [`remove_tree`].
///
/// A file with one name frees its size. For a file with more than one
/// name, the walk keeps by (device, inode) the highest link count its
/// names showed and how many of them it unlinked; it frees its size iff
/// those unlinked names are at least that link count. That holds even
/// with two workers unlinking two names of one file at once: each worker
/// stats a name before it unlinks it, so the first stat of a file comes
/// before any unlink of it by this removal and sees all its names (those
/// inside the tree and any outside); the highest count keeps that figure.
/// A file all of whose names are inside is then unlinked as many times as
/// that count; one with a name outside, fewer times. A name whose stat
/// showed a link count of 1 was the file's last name: it is counted
/// alone, and the names unlinked before it were stated with a higher
/// count, so the file is not counted a second time among the shared ones.
/// A name that was unlinked but whose stat failed is missing from its
/// file's names: the figure can only come out lower, never higher.
pub fn remove_tree_counted(
    path: &Path,
    threads: usize,
    cancelled: &AtomicBool,
    budget: Option<u64>,
) -> Result<Freed, FsError> {
    remove_counting(path, threads, cancelled, Some(budget), None)
}

/// What a removal shows of each regular file it unlinks: the file's
/// `stat` from just before its unlink, after the unlink succeeded. Called
/// from the removal's workers, several at once.
pub type Observer<'a> = &'a (dyn Fn(&rustix::fs::Stat) + Sync);

/// [`remove_tree`] (with `count: None`) or [`remove_tree_counted`] (with
/// `count: Some(budget)`) that also shows `observe` each regular file it
/// unlinks, with the `stat` read just before the unlink (the one the count
/// reads; read for `observe` alone when nothing is counted). A file whose
/// stat fails (it vanished) is not shown. The budget gives up the count
/// only: every file is still shown.
pub fn remove_tree_observed(
    path: &Path,
    threads: usize,
    cancelled: &AtomicBool,
    count: Option<Option<u64>>,
    observe: Observer<'_>,
) -> Result<Freed, FsError> {
    remove_counting(path, threads, cancelled, count, Some(observe))
}

/// The removal behind [`remove_tree_counted`] and [`remove_tree_observed`].
fn remove_counting(
    path: &Path,
    threads: usize,
    cancelled: &AtomicBool,
    count: Option<Option<u64>>,
    observe: Option<Observer<'_>>,
) -> Result<Freed, FsError> {
    let Some(budget) = count else {
        remove_tree_with(path, threads, cancelled, None, observe)?;
        return Ok(Freed { bytes: None });
    };
    let count = Counting {
        budget,
        entries: AtomicU64::new(0),
        alone: AtomicU64::new(0),
        given_up: AtomicBool::new(false),
        shared: Mutex::new(HashMap::new()),
    };
    remove_tree_with(path, threads, cancelled, Some(&count), observe)?;
    if count.given_up.load(Ordering::Relaxed) {
        return Ok(Freed { bytes: None });
    }
    let Ok(shared) = count.shared.into_inner() else {
        // A worker panicked while adding to it (and the walk with it).
        return Ok(Freed { bytes: None });
    };
    Ok(Freed {
        bytes: Some(count.alone.into_inner() + whole(&shared)),
    })
}

/// The count of a [`remove_tree_counted`], shared by its workers.
struct Counting {
    budget: Option<u64>,
    /// Entries listed so far.
    entries: AtomicU64,
    /// Bytes of the files unlinked while they had one name.
    alone: AtomicU64,
    /// The budget was spent: no more stats, and `shared` was emptied.
    /// Set with the lock of `shared` held, so that no folder adds to the
    /// map after it was emptied.
    given_up: AtomicBool,
    /// Files with more than one name, merged once per folder.
    shared: Mutex<Names>,
}

impl Counting {
    /// Whether to go on counting (and so to stat files).
    fn counting(&self) -> bool {
        !self.given_up.load(Ordering::Relaxed)
    }

    /// Counts a folder of `listed` entries against the budget; gives the
    /// count up once it is spent.
    fn listed(&self, listed: usize) {
        let seen = self.entries.fetch_add(listed as u64, Ordering::Relaxed) + listed as u64;
        if self.budget.is_some_and(|b| seen > b) {
            let mut map = relock(&self.shared);
            self.given_up.store(true, Ordering::Relaxed);
            *map = HashMap::new();
        }
    }

    /// Adds what one folder's unlinks freed.
    fn add(&self, alone: u64, here: Here) {
        self.alone.fetch_add(alone, Ordering::Relaxed);
        if here.is_empty() {
            return;
        }
        match self.shared.lock() {
            Ok(mut map) if !self.given_up.load(Ordering::Relaxed) => add_names(&mut map, here),
            Ok(_) => {}
            // A poisoned map may miss names: the figure would be too high.
            Err(_) => self.given_up.store(true, Ordering::Relaxed),
        }
    }
}

/// [`remove_tree`], counting what it frees into `count` and showing each
/// file to `observe`, if given.
fn remove_tree_with(
    path: &Path,
    threads: usize,
    cancelled: &AtomicBool,
    count: Option<&Counting>,
    observe: Option<Observer<'_>>,
) -> Result<(), FsError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(FsError::new(format!("cannot read {}: {e}", path.display())));
        }
        Ok(m) if !m.is_dir() => {
            let st = observe
                .and_then(|_| rustix::fs::lstat(path).ok())
                .filter(|st| FileType::from_raw_mode(st.st_mode as _) == FileType::RegularFile);
            std::fs::remove_file(path)
                .map_err(|e| FsError::new(format!("cannot delete {}: {e}", path.display())))?;
            if let (Some(observe), Some(st)) = (observe, st) {
                observe(&st);
            }
            if let Some(c) = count
                && m.is_file()
            {
                // Its one name is gone: freed if it had no other.
                c.add(if m.nlink() <= 1 { m.len() } else { 0 }, Here::new());
            }
            return Ok(());
        }
        Ok(_) => {}
    }
    let (closer, closing) = mpsc::channel::<OwnedFd>();
    let closing = Mutex::new(closing);
    let (walked, failed) = std::thread::scope(|scope| {
        for _ in 0..CLOSERS {
            // Each ends when every sender is gone (the removal below).
            scope.spawn(|| {
                loop {
                    let next = match closing.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match next {
                        Ok(fd) => drop(fd),
                        Err(_) => return,
                    }
                }
            });
        }
        let removal = Removal {
            root: path,
            abandoned: AtomicBool::new(false),
            cancelled,
            failed: Mutex::new(None),
            closer,
        };
        let walked = remove_walk(path, threads, cancelled, &removal, count, observe);
        // Consuming the removal drops the sender: the closers finish what
        // is queued and end before the scope does.
        (
            walked,
            removal
                .failed
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
        )
    });
    if let Some(e) = failed {
        return Err(e);
    }
    walked?;
    std::fs::remove_dir(path)
        .map_err(|e| FsError::new(format!("cannot delete folder {}: {e}", path.display())))
}

/// A regular file `st` whose name was just unlinked: its size if that
/// was its only name (returned), else a name of it added to `here`.
// `nlink_t` is narrower than u64 on some targets: the cast is for them.
#[allow(clippy::unnecessary_cast)]
fn tally(st: &rustix::fs::Stat, here: &mut Here) -> u64 {
    let size = st.st_size.max(0) as u64;
    if st.st_nlink <= 1 {
        size
    } else {
        here.push(((st.st_dev, st.st_ino), st.st_nlink as u64, size));
        0
    }
}

/// The walk of [`remove_tree`]: unlinks the files of each folder and
/// leaves the folders to [`RmLevel`]. With `count` or `observe`, stats
/// each regular file just before unlinking it (see [`remove_tree_counted`]
/// and [`remove_tree_observed`]).
fn remove_walk(
    path: &Path,
    threads: usize,
    cancelled: &AtomicBool,
    removal: &Removal<'_>,
    count: Option<&Counting>,
    observe: Option<Observer<'_>>,
) -> Result<(), FsError> {
    walk(
        threads,
        cancelled,
        |rel, parent: Option<&Arc<RmLevel<'_>>>| {
            use rustix::fs::{statat, unlinkat};
            let here = join(path, rel);
            let parent_fd = match parent {
                None => None,
                Some(p) => match p.fd.as_ref() {
                    Some(fd) => Some(fd.as_fd()),
                    // Not reached: a level gives up its descriptor only when it goes.
                    None => {
                        removal.abandoned.store(true, Ordering::Relaxed);
                        return Err(io_err("open folder", &here, "its parent is closed"));
                    }
                },
            };
            let fd = open_level(path, rel, parent_fd)
                .inspect_err(|_| removal.abandoned.store(true, Ordering::Relaxed))?;
            let names = read_names(&fd, &here).inspect_err(|_| {
                removal.abandoned.store(true, Ordering::Relaxed);
            })?;
            let level = RmLevel {
                fd: Some(fd),
                rel: rel.to_vec(),
                parent: parent.cloned(),
                removal,
            };
            let Some(dir) = level.fd.as_ref() else {
                return Ok((level, Vec::new()));
            };
            if let Some(c) = count {
                c.listed(names.len());
            }
            let count = count.filter(|c| c.counting());
            let mut subdirs = Vec::new();
            let mut here_alone = 0u64;
            let mut here_shared = Here::new();
            for (name, mut ft) in names {
                let bytes = name.to_bytes();
                let mut st = None;
                if ft == FileType::Unknown {
                    let got = statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| {
                        removal.abandoned.store(true, Ordering::Relaxed);
                        io_err("read", &here.join(OsStr::from_bytes(bytes)), e)
                    })?;
                    ft = FileType::from_raw_mode(got.st_mode as _);
                    st = Some(got);
                }
                if ft == FileType::Directory {
                    subdirs.push(child_rel(rel, bytes));
                    continue;
                }
                if (count.is_some() || observe.is_some())
                    && ft == FileType::RegularFile
                    && st.is_none()
                {
                    // Read before the unlink (see remove_tree_counted);
                    // one that cannot be read (gone) is not counted.
                    st = statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW).ok();
                }
                unlinkat(dir, &name, AtFlags::empty()).map_err(|e| {
                    removal.abandoned.store(true, Ordering::Relaxed);
                    io_err("delete", &here.join(OsStr::from_bytes(bytes)), e)
                })?;
                if let Some(st) = st
                    && FileType::from_raw_mode(st.st_mode as _) == FileType::RegularFile
                {
                    if count.is_some() {
                        here_alone += tally(&st, &mut here_shared);
                    }
                    if let Some(observe) = observe {
                        observe(&st);
                    }
                }
            }
            if let Some(c) = count {
                c.add(here_alone, here_shared);
            }
            Ok((level, subdirs))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, symlink};

    #[test]
    fn links_files_keeps_symlinks_fifos_modes_and_times() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("a/b")).expect("mkdir");
        std::fs::write(src.join("a/b/file"), b"data").expect("write");
        std::fs::write(src.join("odd name \u{e9}\n"), b"x").expect("write");
        symlink("a/b/file", src.join("link")).expect("symlink");
        symlink("/nonexistent", src.join("dangling")).expect("symlink");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            src.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("fifo");
        std::fs::set_permissions(src.join("a"), std::fs::Permissions::from_mode(0o750))
            .expect("chmod");
        std::fs::File::open(src.join("a"))
            .and_then(|d| {
                d.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
            })
            .expect("mtime");
        let dest = dir.path().join("snap");
        let entries = link_tree(&src, &dest, 2, &AtomicBool::new(false)).expect("link");
        assert_eq!(entries.len(), 7);
        let a = std::fs::metadata(src.join("a/b/file")).expect("meta");
        let b = std::fs::metadata(dest.join("a/b/file")).expect("meta");
        assert_eq!(a.ino(), b.ino(), "hard link");
        assert_eq!(
            std::fs::read_link(dest.join("link")).expect("link"),
            PathBuf::from("a/b/file")
        );
        assert!(
            std::fs::symlink_metadata(dest.join("dangling"))
                .expect("dangling")
                .file_type()
                .is_symlink()
        );
        assert!(std::fs::symlink_metadata(dest.join("fifo")).is_ok());
        let da = std::fs::metadata(dest.join("a")).expect("meta");
        assert_eq!(da.permissions().mode() & 0o777, 0o750);
        assert_eq!(da.mtime(), 1_000_000);
        remove_tree(&dest, 2, &AtomicBool::new(false)).expect("remove");
        assert!(!dest.exists());
        assert!(
            src.join("a/b/file").exists(),
            "removing the copy keeps the source"
        );
    }

    #[test]
    fn counted_removal_frees_files_all_of_whose_names_were_inside() {
        for threads in [2, 1] {
            let dir = tempfile::tempdir().expect("tempdir");
            let root = dir.path().join("doomed");
            let outside = dir.path().join("outside");
            for d in 0..8 {
                std::fs::create_dir_all(root.join(format!("d{d}/sub"))).expect("mkdir");
            }
            // A: one name.
            std::fs::write(root.join("d0/alone"), vec![1u8; 1000]).expect("write");
            // B: two names, both inside, in folders two workers may take at once.
            std::fs::write(root.join("d1/twice"), vec![2u8; 300]).expect("write");
            std::fs::hard_link(root.join("d1/twice"), root.join("d6/sub/twice-again"))
                .expect("link");
            // C: one name inside, one outside: not freed.
            std::fs::write(&outside, b"kept content").expect("write");
            std::fs::hard_link(&outside, root.join("d3/sub/shared")).expect("link");
            // Neither adds bytes.
            symlink("../d0/alone", root.join("d2/link")).expect("symlink");
            std::fs::create_dir_all(root.join("d4/empty/folder")).expect("mkdir");
            let freed =
                remove_tree_counted(&root, threads, &AtomicBool::new(false), None).expect("remove");
            assert_eq!(freed.bytes, Some(1300), "{threads} thread(s)");
            assert!(!root.exists(), "{threads} thread(s)");
            assert_eq!(std::fs::read(&outside).expect("outside"), b"kept content");
            assert_eq!(std::fs::metadata(&outside).expect("meta").nlink(), 1);
        }
    }

    #[test]
    // `nlink_t` is narrower than u64 on some targets: the cast is for them.
    #[allow(clippy::unnecessary_cast)]
    fn an_observed_removal_shows_each_file_name_as_it_was_just_before_its_unlink() {
        for (threads, count) in [(2, None), (1, None), (2, Some(None)), (2, Some(Some(1)))] {
            let dir = tempfile::tempdir().expect("tempdir");
            let root = dir.path().join("doomed");
            let outside = dir.path().join("outside");
            std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
            std::fs::write(root.join("a/one"), b"one").expect("write");
            std::fs::write(&outside, b"shared").expect("write");
            std::fs::hard_link(&outside, root.join("a/shared")).expect("link");
            std::fs::hard_link(&outside, root.join("a/b/shared-again")).expect("link");
            symlink("one", root.join("a/link")).expect("symlink");
            let before = std::fs::metadata(&outside).expect("meta");
            let seen = Mutex::new(Vec::new());
            let freed = remove_tree_observed(
                &root,
                threads,
                &AtomicBool::new(false),
                count,
                &|st: &rustix::fs::Stat| {
                    relock(&seen).push((st.st_ino, st.st_nlink as u64, st.st_size))
                },
            )
            .expect("remove");
            assert!(!root.exists());
            let mut seen = seen.into_inner().expect("seen");
            seen.sort_unstable();
            // Regular files only, once per name; the shared file's names
            // were stated before their unlinks: three names, then two.
            let shared: Vec<u64> = seen
                .iter()
                .filter(|s| s.0 == before.ino())
                .map(|s| s.1)
                .collect();
            assert_eq!(seen.len(), 3, "{seen:?}");
            assert_eq!(shared, vec![2, 3], "{seen:?}");
            assert!(seen.iter().any(|s| s.1 == 1 && s.2 == 3), "{seen:?}");
            // The count is as without an observer (given up past its budget).
            let expected = match count {
                None | Some(Some(1)) => None,
                _ => Some(3),
            };
            assert_eq!(freed.bytes, expected, "{threads} {count:?}");
        }
    }

    #[test]
    fn counted_removal_counts_each_file_once_whichever_worker_unlinks_its_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for d in 0..8 {
            std::fs::create_dir_all(a.join(format!("x{d}"))).expect("mkdir");
            std::fs::create_dir_all(a.join(format!("y{d}"))).expect("mkdir");
        }
        std::fs::create_dir_all(&b).expect("mkdir");
        let mut inside = 0u64;
        for i in 0..400u64 {
            let first = a.join(format!("x{}/f{i}", i % 8));
            std::fs::write(&first, vec![0u8; i as usize]).expect("write");
            // Names in two or three folders, unlinked by whichever worker
            // gets there: each file is freed once, never twice.
            std::fs::hard_link(&first, a.join(format!("y{}/f{i}", (i + 3) % 8))).expect("link");
            if i % 3 == 0 {
                std::fs::hard_link(&first, a.join(format!("x{}/g{i}", (i + 5) % 8))).expect("link");
            }
            // Every fourth also has a name in b: freed with b, not with a.
            if i % 4 == 0 {
                std::fs::hard_link(&first, b.join(format!("f{i}"))).expect("link");
            } else {
                inside += i;
            }
        }
        let stop = AtomicBool::new(false);
        let freed_a = remove_tree_counted(&a, 2, &stop, None).expect("remove a");
        assert_eq!(freed_a.bytes, Some(inside));
        let in_b: u64 = (0..400u64).filter(|i| i % 4 == 0).sum();
        let freed_b = remove_tree_counted(&b, 2, &stop, None).expect("remove b");
        assert_eq!(freed_b.bytes, Some(in_b));
    }

    #[test]
    fn counted_removal_gives_the_count_up_past_its_budget_and_removes_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("doomed");
        std::fs::create_dir_all(root.join("a")).expect("mkdir");
        for f in 0..5 {
            std::fs::write(root.join(format!("a/f{f}")), b"x").expect("write");
        }
        let stop = AtomicBool::new(false);
        let freed = remove_tree_counted(&root, 2, &stop, Some(3)).expect("remove");
        assert_eq!(freed.bytes, None);
        assert!(!root.exists());
        // A missing tree frees nothing; a single file frees its size.
        assert_eq!(
            remove_tree_counted(&root, 2, &stop, None).expect("missing"),
            Freed { bytes: Some(0) }
        );
        let file = dir.path().join("file");
        std::fs::write(&file, b"12345").expect("write");
        assert_eq!(
            remove_tree_counted(&file, 2, &stop, None).expect("file"),
            Freed { bytes: Some(5) }
        );
        assert!(!file.exists());
    }

    fn open_descriptors() -> usize {
        std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
    }

    #[test]
    fn removal_of_a_wide_and_deep_tree_leaves_nothing_and_closes_every_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("doomed");
        for d in 0..60 {
            let folder = root.join(format!("{:02}/{:02}/deep/er", d / 6, d % 6));
            std::fs::create_dir_all(&folder).expect("mkdir");
            for f in 0..5 {
                std::fs::write(folder.join(format!("f{f}")), b"x").expect("write");
            }
            symlink("f0", folder.join("link")).expect("symlink");
        }
        let before = open_descriptors();
        remove_tree(&root, 2, &AtomicBool::new(false)).expect("remove");
        assert!(!root.exists());
        // The closer threads have closed every removed folder's descriptor
        // by the time remove_tree returns (other tests may open files
        // meanwhile, so only a leak of one per folder is looked for).
        assert!(
            open_descriptors() < before + 60,
            "folder descriptors leaked"
        );
    }
}
