//! History that cannot change: before rsync sets a file's attributes in
//! place in a local `dest`, a file whose inode other names share (the
//! hard-linked snapshots of `snapshot.hardlink`) gets an inode of its own
//! there, so that the mode, owner, group or times rsync then sets reach
//! `dest` only, never an older snapshot (rsnapshot's pitfall).
//!
//! Which entries: the ones rsync's own dry run (same arguments, filters
//! and file list) itemizes as unchanged in content but with attributes to
//! set (`.f...p.....`, `.L..t......`, `hf..t......`, ...). A content change
//! needs nothing: rsync writes a temp file and renames it over, a new
//! inode (`--inplace` and `--append`, which would not, are refused).
//!
//! How: the new inode is made under a temp name in the entry's folder (a
//! file's data cloned with FICLONE where the file system shares blocks,
//! else `copy_file_range`, else read and write), given the old owner,
//! mode, times and extended attributes, fsynced, and renamed over the
//! name; the other names the old inode had among the listed entries are
//! linked to the new one, so a hard-link group in `dest` stays one group.
//! Each folder touched is fsynced at the end. Every step is on descriptors
//! of folders opened from `dest` without following symlinks below it.
//!
//! The old inode is never written: a crash anywhere leaves each name on
//! the old inode (unchanged) or on a complete new one (fsynced before the
//! rename), and a leftover temp name is removed by the next copy's
//! `--delete`.

use std::collections::{BTreeSet, HashMap};
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timestamps};
use rustix::io::Errno;

use crate::fs::FsError;

/// The kind of entry an itemized line names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// `f`: a regular file.
    File,
    /// `L`: a symlink (rsync sets its owner with `lchown`, its times with
    /// `lutimes`).
    Symlink,
    /// `D` or `S`: a device, FIFO or socket.
    Special,
}

/// An entry of `dest` whose attributes rsync would set in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct InPlace {
    pub kind: Kind,
    /// Path relative to `dest`, as rsync names it (unescaped).
    pub rel: Vec<u8>,
}

/// Reads one itemized change (`%i`, 11 characters, then the name): Some
/// if rsync would keep the entry's inode (`.` nothing transferred, or `h`
/// a hard link to an entry transferred or not) and set an attribute on it
/// (any letter after the type: `t`/`T` times, `p` permissions, `o` owner,
/// `g` group, `u`/`n`/`b` access, change or creation time, `a` ACL, `x`
/// extended attributes).
pub(super) fn in_place(item: &str, name: &[u8]) -> Option<InPlace> {
    let b = item.as_bytes();
    if b.len() != 11 || !matches!(b[0], b'.' | b'h') {
        return None;
    }
    let kind = match b[1] {
        b'f' => Kind::File,
        b'L' => Kind::Symlink,
        b'D' | b'S' => Kind::Special,
        // Folders are never hard-linked (`d`), and nothing else exists.
        _ => return None,
    };
    if !b[2..].iter().any(u8::is_ascii_alphabetic) {
        return None;
    }
    let rel = super::unescape_bytes(name);
    (!rel.is_empty()).then_some(InPlace { kind, rel })
}

/// What [`unshare`] did.
#[derive(Debug, Default)]
pub(super) struct Unshared {
    /// Listed entries that shared their inode (link count above one).
    pub shared: u64,
    /// New inodes made (one per old inode, whatever its names).
    pub inodes: u64,
    /// Names moved to a new inode (beyond the first of each).
    pub relinked: u64,
    /// Bytes of file data copied (0 where cloned blocks are shared).
    pub bytes: u64,
    /// Files whose data was cloned (FICLONE) rather than copied.
    pub cloned: u64,
}

/// A listed name, its folder open, its stat before anything changed.
struct Name {
    rel: Vec<u8>,
    dir: Arc<OwnedFd>,
    /// The folder's path relative to `dest`, to fsync it once at the end.
    dir_rel: Vec<u8>,
    leaf: CString,
}

/// One old inode and the names of it that rsync would touch.
struct Group {
    kind: Kind,
    st: rustix::fs::Stat,
    names: Vec<Name>,
}

/// Gives each listed entry of `dest` whose inode has more than one link an
/// inode of its own, with the same data and attributes (see the module
/// text). Entries that are gone, are no longer of the listed kind, or have
/// one link are left alone: rsync's change of them touches nothing else.
pub(super) fn unshare(
    dest: &std::path::Path,
    items: &[InPlace],
    threads: usize,
    cancelled: &AtomicBool,
) -> Result<Unshared, FsError> {
    // `dest` itself is followed if it is a symlink, as rsync follows it;
    // nothing below it is.
    let root = rustix::fs::openat(
        rustix::fs::CWD,
        dest,
        dir_flags() - OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .map_err(|e| FsError::new(format!("cannot open folder {}: {e}", dest.display())))?;
    let show =
        |rel: &[u8]| dest.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(rel));
    let mut folders: HashMap<Vec<u8>, Arc<OwnedFd>> = HashMap::new();
    let mut groups: HashMap<(u64, u64), Group> = HashMap::new();
    for item in items {
        let (dir_rel, leaf) = match item.rel.iter().rposition(|&b| b == b'/') {
            Some(at) => (item.rel[..at].to_vec(), &item.rel[at + 1..]),
            None => (Vec::new(), item.rel.as_slice()),
        };
        let dir = match folders.get(&dir_rel) {
            Some(d) => d.clone(),
            None => {
                let d = Arc::new(open_below(&root, &dir_rel).map_err(|e| {
                    FsError::new(format!(
                        "cannot open folder {} without following a symlink: {e}",
                        show(&dir_rel).display()
                    ))
                })?);
                folders.insert(dir_rel.clone(), d.clone());
                d
            }
        };
        let leaf = CString::new(leaf)
            .map_err(|_| FsError::new(format!("{} has a NUL byte", show(&item.rel).display())))?;
        let st = match rustix::fs::statat(&*dir, &leaf, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Gone: rsync will create it anew, touching no old inode.
            Err(Errno::NOENT) => continue,
            Err(e) => {
                return Err(FsError::new(format!(
                    "cannot read {}: {e}",
                    show(&item.rel).display()
                )));
            }
        };
        let ft = FileType::from_raw_mode(st.st_mode);
        let same_kind = match item.kind {
            Kind::File => ft == FileType::RegularFile,
            Kind::Symlink => ft == FileType::Symlink,
            Kind::Special => matches!(
                ft,
                FileType::Fifo
                    | FileType::Socket
                    | FileType::CharacterDevice
                    | FileType::BlockDevice
            ),
        };
        if !same_kind || st.st_nlink <= 1 {
            continue;
        }
        let group = groups.entry((st.st_dev, st.st_ino)).or_insert(Group {
            kind: item.kind,
            st,
            names: Vec::new(),
        });
        // rsync names an entry once; a name listed twice is not linked twice.
        if group.names.iter().all(|n| n.rel != item.rel) {
            group.names.push(Name {
                rel: item.rel.clone(),
                dir,
                dir_rel,
                leaf,
            });
        }
    }
    let shared = groups.values().map(|g| g.names.len() as u64).sum();
    let groups: Vec<Group> = groups.into_values().collect();
    let done = Totals::default();
    let touched: Mutex<BTreeSet<Vec<u8>>> = Mutex::new(BTreeSet::new());
    let next = AtomicU64::new(0);
    let failure: Mutex<Option<FsError>> = Mutex::new(None);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, groups.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(group) = groups.get(i) else { break };
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let result = if cancelled.load(Ordering::Relaxed) {
                        Err(FsError::Stopped)
                    } else {
                        renew(group, &done, &show)
                    };
                    match result {
                        Ok(()) => {
                            if let Ok(mut t) = touched.lock() {
                                t.extend(group.names.iter().map(|n| n.dir_rel.clone()));
                            }
                        }
                        Err(e) => {
                            stop.store(true, Ordering::Relaxed);
                            if let Ok(mut f) = failure.lock() {
                                f.get_or_insert(e);
                            }
                            break;
                        }
                    }
                }
            });
        }
    });
    // The renames done so far are made durable whether or not all went
    // well: each is complete on its own.
    let touched = touched.into_inner().unwrap_or_default();
    for rel in &touched {
        if let Some(dir) = folders.get(rel) {
            rustix::fs::fsync(&**dir).map_err(|e| {
                FsError::new(format!("cannot fsync folder {}: {e}", show(rel).display()))
            })?;
        }
    }
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    Ok(Unshared {
        shared,
        inodes: done.inodes.into_inner(),
        relinked: done.relinked.into_inner(),
        bytes: done.bytes.into_inner(),
        cloned: done.cloned.into_inner(),
    })
}

#[derive(Default)]
struct Totals {
    inodes: AtomicU64,
    relinked: AtomicU64,
    bytes: AtomicU64,
    cloned: AtomicU64,
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW
}

/// Opens folder `rel` below `root` one name at a time, following no
/// symlink (a `dest` that another user can write could otherwise point a
/// name elsewhere).
fn open_below(root: &OwnedFd, rel: &[u8]) -> rustix::io::Result<OwnedFd> {
    let mut dir = rustix::fs::openat(root, c".", dir_flags(), Mode::empty())?;
    for part in rel.split(|&b| b == b'/').filter(|p| !p.is_empty()) {
        if part == b".." {
            return Err(Errno::PERM);
        }
        dir = rustix::fs::openat(&dir, part, dir_flags(), Mode::empty())?;
    }
    Ok(dir)
}

/// A temp name in a folder, removed on drop unless renamed.
struct Temp<'a> {
    dir: BorrowedFd<'a>,
    name: Option<CString>,
}

impl<'a> Temp<'a> {
    fn new(dir: BorrowedFd<'a>) -> Temp<'a> {
        // Short, whatever the name's length (a temp beside a 255-byte name
        // must still fit); rsync's `--delete` removes one left by a crash.
        let name = CString::new(format!(".ward-unshare-{:016x}", fastrand::u64(..)))
            .expect("no NUL in a formatted name");
        Temp {
            dir,
            name: Some(name),
        }
    }

    fn name(&self) -> &CString {
        self.name.as_ref().expect("named until renamed")
    }

    /// Renames the temp over `to` in folder `to_dir`.
    fn rename_over(mut self, to_dir: BorrowedFd<'_>, to: &CString) -> rustix::io::Result<()> {
        rustix::fs::renameat(self.dir, self.name(), to_dir, to)?;
        self.name = None;
        Ok(())
    }
}

impl Drop for Temp<'_> {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            let _ = rustix::fs::unlinkat(self.dir, name, AtFlags::empty());
        }
    }
}

/// Makes the new inode of one group and moves its names onto it.
fn renew(
    group: &Group,
    done: &Totals,
    show: &dyn Fn(&[u8]) -> std::path::PathBuf,
) -> Result<(), FsError> {
    let Some(first) = group.names.first() else {
        return Ok(());
    };
    let failed = |what: &str, e: Errno| {
        FsError::new(format!(
            "cannot give {} an inode of its own ({what}: {e}); rsync was not run, so no \
             older snapshot changed",
            show(&first.rel).display()
        ))
    };
    let dir = first.dir.as_fd();
    let st = &group.st;
    let temp = Temp::new(dir);
    match group.kind {
        Kind::File => {
            let (copied, cloned) = copy_file(dir, &first.leaf, temp.name(), st)
                .map_err(|(what, e)| failed(what, e))?;
            done.bytes.fetch_add(copied, Ordering::Relaxed);
            done.cloned.fetch_add(u64::from(cloned), Ordering::Relaxed);
        }
        Kind::Symlink => {
            let target = rustix::fs::readlinkat(dir, &first.leaf, Vec::new())
                .map_err(|e| failed("read the link", e))?;
            rustix::fs::symlinkat(&target, dir, temp.name())
                .map_err(|e| failed("make the link", e))?;
            set_attrs_at(dir, temp.name(), st, true).map_err(|(w, e)| failed(w, e))?;
        }
        Kind::Special => {
            let ft = FileType::from_raw_mode(st.st_mode);
            rustix::fs::mknodat(
                dir,
                temp.name(),
                ft,
                Mode::from_raw_mode(st.st_mode & 0o777),
                st.st_rdev,
            )
            .map_err(|e| failed("make the node", e))?;
            set_attrs_at(dir, temp.name(), st, false).map_err(|(w, e)| failed(w, e))?;
        }
    }
    // The other names first, each linked under a temp name of its own
    // folder and renamed over: the new inode stays reachable from the
    // first temp name until the last rename.
    for other in &group.names[1..] {
        let link = Temp::new(other.dir.as_fd());
        rustix::fs::linkat(
            dir,
            temp.name(),
            other.dir.as_fd(),
            link.name(),
            AtFlags::empty(),
        )
        .map_err(|e| failed("link another name", e))?;
        link.rename_over(other.dir.as_fd(), &other.leaf)
            .map_err(|e| failed("rename another name", e))?;
        done.relinked.fetch_add(1, Ordering::Relaxed);
    }
    temp.rename_over(dir, &first.leaf)
        .map_err(|e| failed("rename", e))?;
    done.inodes.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

type Why = (&'static str, Errno);

/// Copies the regular file `leaf` (of stat `st`) to the new `temp` in the
/// same folder, with its attributes, fsynced. Returns the bytes copied and
/// whether the data was cloned.
fn copy_file(
    dir: BorrowedFd<'_>,
    leaf: &CString,
    temp: &CString,
    st: &rustix::fs::Stat,
) -> Result<(u64, bool), Why> {
    // NONBLOCK: a name swapped for a FIFO since it was looked at must not
    // hang the copy in `open` (the check of the inode below refuses it).
    let from = rustix::fs::openat(
        dir,
        leaf,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| ("open", e))?;
    // The file read is the one looked at (nothing else writes `dest`, but
    // a swapped name would copy another file's data under this one).
    let now = rustix::fs::fstat(&from).map_err(|e| ("read", e))?;
    // Not the inode number alone: a name removed and made anew (a FIFO put
    // in the file's place) may get the freed number back at once.
    let id = |s: &rustix::fs::Stat| {
        (
            s.st_dev,
            s.st_ino,
            s.st_mode,
            s.st_size,
            s.st_mtime,
            s.st_mtime_nsec,
            s.st_ctime,
            s.st_ctime_nsec,
        )
    };
    if FileType::from_raw_mode(now.st_mode) != FileType::RegularFile || id(&now) != id(st) {
        return Err(("the name changed meanwhile", Errno::STALE));
    }
    let to = rustix::fs::openat(
        dir,
        temp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| ("create the temp file", e))?;
    let (copied, cloned) = match rustix::fs::ioctl_ficlone(&to, &from) {
        Ok(()) => (0, true),
        Err(_) => (copy_data(&from, &to).map_err(|e| ("copy", e))?, false),
    };
    // The owner before the extended attributes (a change of owner drops
    // `security.capability`), the mode after them (an ACL sets the mode
    // bits too).
    set_owner(&to, st)?;
    copy_xattrs(&from, &to)?;
    set_mode_and_times(&to, st)?;
    rustix::fs::fsync(&to).map_err(|e| ("fsync", e))?;
    Ok((copied, cloned))
}

/// Copies all of `from` to `to` (both at offset 0): `copy_file_range`,
/// or read and write where the kernel or file system has none.
fn copy_data(from: &OwnedFd, to: &OwnedFd) -> rustix::io::Result<u64> {
    let mut total = 0u64;
    loop {
        match rustix::fs::copy_file_range(from, None, to, None, 1 << 30) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(Errno::INTR) => {}
            Err(Errno::XDEV | Errno::NOSYS | Errno::OPNOTSUPP | Errno::INVAL) if total == 0 => {
                break;
            }
            Err(e) => return Err(e),
        }
    }
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match rustix::io::read(from, &mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        };
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            match rustix::io::write(to, chunk) {
                Ok(w) => chunk = &chunk[w..],
                Err(Errno::INTR) => {}
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
    }
}

/// Copies every extended attribute (ACLs are some) of `from` to `to`.
fn copy_xattrs(from: &OwnedFd, to: &OwnedFd) -> Result<(), Why> {
    let size = match rustix::fs::flistxattr_query(from) {
        Ok(n) => n,
        // A file system without them: nothing to keep.
        Err(Errno::OPNOTSUPP) => return Ok(()),
        Err(e) => return Err(("list extended attributes", e)),
    };
    if size == 0 {
        return Ok(());
    }
    let mut names = vec![0u8; size];
    let n = rustix::fs::flistxattr(from, &mut names[..])
        .map_err(|e| ("list extended attributes", e))?;
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let len = rustix::fs::fgetxattr_query(from, name)
            .map_err(|e| ("read an extended attribute", e))?;
        let mut value = vec![0u8; len];
        let got = rustix::fs::fgetxattr(from, name, &mut value[..])
            .map_err(|e| ("read an extended attribute", e))?;
        rustix::fs::fsetxattr(to, name, &value[..got], rustix::fs::XattrFlags::empty())
            .map_err(|e| ("set an extended attribute", e))?;
    }
    Ok(())
}

/// The old owner and group, if the new file has others.
fn set_owner(fd: &OwnedFd, st: &rustix::fs::Stat) -> Result<(), Why> {
    let now = rustix::fs::fstat(fd).map_err(|e| ("read the temp file", e))?;
    if (now.st_uid, now.st_gid) != (st.st_uid, st.st_gid) {
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(st.st_uid)),
            Some(rustix::fs::Gid::from_raw(st.st_gid)),
        )
        .map_err(|e| ("set the owner", e))?;
    }
    Ok(())
}

/// The old mode (after the owner: a change of owner clears set-id bits),
/// then the old times, last, after every write.
fn set_mode_and_times(fd: &OwnedFd, st: &rustix::fs::Stat) -> Result<(), Why> {
    rustix::fs::fchmod(fd, Mode::from_raw_mode(st.st_mode & 0o7777))
        .map_err(|e| ("set the mode", e))?;
    rustix::fs::futimens(fd, &times(st)).map_err(|e| ("set the times", e))
}

/// Owner, mode and times by name, for a symlink (no mode on Linux) or a
/// node (which must not be opened).
fn set_attrs_at(
    dir: BorrowedFd<'_>,
    name: &CString,
    st: &rustix::fs::Stat,
    symlink: bool,
) -> Result<(), Why> {
    let now = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| ("read the temp name", e))?;
    if (now.st_uid, now.st_gid) != (st.st_uid, st.st_gid) {
        rustix::fs::chownat(
            dir,
            name,
            Some(rustix::fs::Uid::from_raw(st.st_uid)),
            Some(rustix::fs::Gid::from_raw(st.st_gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| ("set the owner", e))?;
    }
    if !symlink {
        rustix::fs::chmodat(
            dir,
            name,
            Mode::from_raw_mode(st.st_mode & 0o7777),
            AtFlags::empty(),
        )
        .map_err(|e| ("set the mode", e))?;
    }
    rustix::fs::utimensat(dir, name, &times(st), AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| ("set the times", e))
}

fn times(st: &rustix::fs::Stat) -> Timestamps {
    Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn itemized_attribute_changes_are_read() {
        let f = |i: &str| in_place(i, b"a b").map(|x| x.kind);
        assert_eq!(f(".f...p....."), Some(Kind::File));
        assert_eq!(f(".f..t......"), Some(Kind::File));
        assert_eq!(f(".f....og..."), Some(Kind::File));
        assert_eq!(f("hf...p....."), Some(Kind::File));
        assert_eq!(f(".L..t......"), Some(Kind::Symlink));
        assert_eq!(f(".S...p....."), Some(Kind::Special));
        assert_eq!(f(".D.....g..."), Some(Kind::Special));
        // Transferred (a new inode), created, deleted, folders, nothing set.
        assert_eq!(f(">f..t......"), None);
        assert_eq!(f(">f+++++++++"), None);
        assert_eq!(f("cL+++++++++"), None);
        assert_eq!(f("*deleting  "), None);
        assert_eq!(f(".d..t......"), None);
        assert_eq!(f(".f         "), None);
        assert_eq!(
            in_place(".f...p.....", b"sub/x\\#012y\xff").map(|x| x.rel),
            Some(b"sub/x\ny\xff".to_vec())
        );
    }

    #[test]
    fn shared_files_get_an_inode_of_their_own_and_single_ones_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (dest, snap) = (dir.path().join("d"), dir.path().join("s"));
        std::fs::create_dir_all(dest.join("sub")).expect("dest");
        std::fs::create_dir(&snap).expect("snap");
        std::fs::write(dest.join("sub/a"), b"data").expect("a");
        std::fs::set_permissions(dest.join("sub/a"), std::fs::Permissions::from_mode(0o640))
            .expect("mode");
        std::fs::hard_link(dest.join("sub/a"), snap.join("a")).expect("snapshot link");
        std::fs::hard_link(dest.join("sub/a"), dest.join("a2")).expect("group link");
        std::fs::write(dest.join("alone"), b"x").expect("alone");
        std::os::unix::fs::symlink("sub/a", dest.join("l")).expect("symlink");
        std::fs::hard_link(dest.join("l"), snap.join("l")).expect("symlink link");
        let ino = |p: &std::path::Path| std::fs::symlink_metadata(p).expect("stat").ino();
        let (old, alone) = (ino(&snap.join("a")), ino(&dest.join("alone")));
        let items: Vec<InPlace> = [
            (".f...p.....", "sub/a"),
            ("hf...p.....", "a2"),
            (".f...p.....", "alone"),
            (".L..t......", "l"),
            (".f...p.....", "gone"),
        ]
        .iter()
        .filter_map(|(i, n)| in_place(i, n.as_bytes()))
        .collect();
        let done = unshare(&dest, &items, 2, &AtomicBool::new(false)).expect("unshare");
        assert_eq!((done.shared, done.inodes, done.relinked), (3, 2, 1));
        let new = ino(&dest.join("sub/a"));
        assert_ne!(new, old);
        assert_eq!(
            ino(&dest.join("a2")),
            new,
            "the group in dest stays one file"
        );
        assert_eq!(ino(&snap.join("a")), old);
        assert_eq!(std::fs::metadata(snap.join("a")).expect("a").nlink(), 1);
        assert_eq!(ino(&dest.join("alone")), alone, "nlink 1 is left alone");
        assert_ne!(ino(&dest.join("l")), ino(&snap.join("l")));
        assert_eq!(
            std::fs::read_link(dest.join("l")).expect("l"),
            std::path::Path::new("sub/a")
        );
        let (m_new, m_old) = (
            std::fs::metadata(dest.join("sub/a")).expect("new"),
            std::fs::metadata(snap.join("a")).expect("old"),
        );
        assert_eq!(std::fs::read(dest.join("sub/a")).expect("read"), b"data");
        assert_eq!(m_new.mode(), m_old.mode());
        assert_eq!(m_new.mtime_nsec(), m_old.mtime_nsec());
        assert_eq!(m_new.mtime(), m_old.mtime());
        assert_eq!((m_new.uid(), m_new.gid()), (m_old.uid(), m_old.gid()));
        let leftovers: Vec<_> = std::fs::read_dir(&dest)
            .expect("list")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("ward-unshare"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_name_swapped_for_a_fifo_is_refused_without_hanging() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().to_path_buf();
        std::fs::write(d.join("f"), b"data").expect("f");
        let st = rustix::fs::stat(d.join("f")).expect("stat");
        // Between the look and the copy, someone who can write `dest` puts
        // a FIFO in the file's place: the copy must not wait for a writer.
        std::fs::remove_file(d.join("f")).expect("rm");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.join("f").as_path(),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .expect("fifo");
        let (tx, rx) = std::sync::mpsc::channel();
        let at = d.clone();
        std::thread::spawn(move || {
            let fd = rustix::fs::open(&at, dir_flags(), Mode::empty()).expect("dir");
            let r = copy_file(
                fd.as_fd(),
                &CString::new("f").expect("name"),
                &CString::new("t").expect("temp"),
                &st,
            );
            let _ = tx.send(r.map_err(|(w, e)| format!("{w}: {e}")));
        });
        let result = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(r) => r,
            Err(_) => {
                // Unblock the stuck open before failing.
                let _ = std::fs::OpenOptions::new().write(true).open(d.join("f"));
                panic!("copy_file hangs on a FIFO");
            }
        };
        let err = result.expect_err("a FIFO is not the file looked at");
        assert!(err.contains("changed meanwhile"), "{err}");
        assert!(!d.join("t").exists());
    }

    #[test]
    fn a_dest_given_as_a_symlink_is_followed_as_rsync_follows_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real");
        std::fs::create_dir(&real).expect("real");
        std::fs::write(real.join("f"), b"x").expect("f");
        std::fs::hard_link(real.join("f"), dir.path().join("snap-f")).expect("link");
        std::os::unix::fs::symlink(&real, dir.path().join("dest")).expect("symlink");
        let items = vec![in_place(".f...p.....", b"f").expect("item")];
        let done =
            unshare(&dir.path().join("dest"), &items, 1, &AtomicBool::new(false)).expect("unshare");
        assert_eq!(done.inodes, 1);
        assert_eq!(std::fs::metadata(real.join("f")).expect("f").nlink(), 1);
    }

    #[test]
    fn a_folder_reached_through_a_symlink_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("d");
        std::fs::create_dir_all(dir.path().join("elsewhere")).expect("elsewhere");
        std::fs::create_dir(&dest).expect("dest");
        std::fs::write(dir.path().join("elsewhere/f"), b"x").expect("f");
        std::fs::hard_link(dir.path().join("elsewhere/f"), dir.path().join("f2")).expect("link");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), dest.join("sub")).expect("sym");
        let items = vec![in_place(".f...p.....", b"sub/f").expect("item")];
        let err = unshare(&dest, &items, 1, &AtomicBool::new(false)).expect_err("symlink");
        assert!(
            err.to_string().contains("without following a symlink"),
            "{err}"
        );
    }
}
