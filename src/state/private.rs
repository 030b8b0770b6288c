//! The state folder is ward's memory: what it finds there decides which
//! playbook `ward resume` runs (as root, often) and which files it opens for
//! writing. So nothing there may be changeable by another user, in the
//! spirit of ssh's StrictModes and sudo's checks:
//!
//! - every folder on the way to the state folder belongs to root or to the
//!   invoking user, and a folder others can write has the sticky bit (as
//!   /tmp has), so nobody else can rename or replace what lies below it;
//! - the state folder itself, `locks/` and `logs/` belong to the user and
//!   no group or other user can write them;
//! - every file ward makes there is opened without following a symlink
//!   (`O_NOFOLLOW`), created with `O_EXCL` when new, and is set to 0600
//!   (folders 0700) whatever the umask and whatever mode it had before.
//!
//! Once the chain is trusted, paths below it cannot change under ward, so
//! opening by path afterwards (as SQLite does) is safe.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::StateError;
use crate::fs::trust::{Untrusted, sticky, writable_by_others};

/// Mode of every folder ward makes in the state folder.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file ward makes in the state folder.
pub const FILE_MODE: u32 = 0o600;

/// The effective user id ward runs as.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// "alice (uid 1000)" from /etc/passwd, or "uid 1000".
pub fn describe_uid(uid: u32) -> String {
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let mut f = line.split(':');
                let name = f.next()?;
                let id = f.nth(1)?;
                (id.parse::<u32>().ok()? == uid).then(|| name.to_owned())
            })
        });
    match name {
        Some(n) => format!("{n} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

fn refused(path: &Path, problem: String, fix: String) -> StateError {
    StateError::Untrusted {
        path: path.to_path_buf(),
        problem,
        fix,
    }
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> StateError {
    StateError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn errno(op: &'static str, path: &Path, e: Errno) -> StateError {
    io_err(op, path, io::Error::from(e))
}

/// Why the way to the state folder cannot be trusted, in the state
/// folder's words.
fn way_refused(db: &Path, why: Untrusted) -> StateError {
    match why {
        Untrusted::Owner { path, uid, link } => refused(
            &path,
            format!(
                "this {} on the way to the state folder belongs to {}, who could replace \
                 everything below it",
                if link { "symbolic link" } else { "folder" },
                describe_uid(uid)
            ),
            "pass a `--state` path whose folders all belong to root or to you, such as \
             a private folder in your home (root's default, /var/lib/ward/ward.db, is one)"
                .to_owned(),
        ),
        Untrusted::OpenToOthers { path, mode } => refused(
            &path,
            format!(
                "other users can write this folder on the way to the state folder (mode {mode:04o}, \
                 no sticky bit), so they could replace everything below it"
            ),
            format!(
                "`chmod go-w {}`, or keep the state elsewhere",
                path.display()
            ),
        ),
        Untrusted::NotFolder { path } => refused(
            &path,
            "this is not a folder".to_owned(),
            "pass a `--state` path inside a folder".to_owned(),
        ),
        Untrusted::Missing { path } => StateError::Missing {
            db: db.display().to_string(),
            missing: Some(path),
        },
        Untrusted::Create { path, source } => io_err("cannot create state folder", &path, source),
        Untrusted::Io { path, source } => io_err("cannot inspect", &path, source),
    }
}

/// What another user could do with `what` if ward trusted it.
fn risk(what: &str) -> &'static str {
    match what {
        "state database" | "state database file" => {
            "its recorded runs decide which playbook `ward resume --last` runs, and as whom"
        }
        "lock file" | "log file" => "ward would write to a file that another user controls",
        _ => "whoever can change it could plant the database, lock files or logs ward trusts",
    }
}

/// The state folder, `locks/`, `logs/` and ward's files there: the user's,
/// and nobody else may write them.
fn check_private(path: &Path, uid: u32, mode: u32, what: &str) -> Result<(), StateError> {
    let folder = what.ends_with("folder");
    if uid != euid() {
        let fix = if folder {
            format!(
                "keep the state in a folder of your own, e.g. `mkdir -m 700 /some/private/folder` \
                 and `--state /some/private/folder/ward.db` (root's default is {})",
                "/var/lib/ward/ward.db"
            )
        } else {
            format!(
                "check it, then move it aside (`mv {0} {0}.untrusted`); if it is really yours, \
                 `chown {1} {0}`",
                path.display(),
                euid()
            )
        };
        return Err(refused(
            path,
            format!(
                "the {what} belongs to {}, not to you, {}; {}",
                describe_uid(uid),
                describe_uid(euid()),
                risk(what)
            ),
            fix,
        ));
    }
    if writable_by_others(mode) {
        let fix = if folder && sticky(mode) {
            format!(
                "this is a shared folder: make a private one inside it (`mkdir -m 700 {}`) \
                 and pass `--state {}`",
                path.join("ward").display(),
                path.join("ward").join("ward.db").display()
            )
        } else {
            format!(
                "check what others may have changed, then `chmod go-w {}`",
                path.display()
            )
        };
        return Err(refused(
            path,
            format!(
                "other users can write the {what} (mode {mode:04o}); {}",
                risk(what)
            ),
            fix,
        ));
    }
    Ok(())
}

/// Checks the whole way to the state folder `dir` of database `db`, and
/// the folder itself. With `create`, missing folders are made (0700);
/// without it a missing one is [`StateError::Missing`]. The way is
/// checked by [`crate::fs::trust::resolve`] (links followed by hand).
pub fn trusted_folder(db: &Path, dir: &Path, create: bool) -> Result<(), StateError> {
    let real = crate::fs::trust::resolve(dir, create).map_err(|why| way_refused(db, why))?;
    let m = std::fs::symlink_metadata(&real).map_err(|e| io_err("cannot inspect", &real, e))?;
    check_private(&real, m.uid(), m.mode() & 0o7777, "state folder")
}

/// A new folder, exactly 0700 whatever the umask.
fn make_dir(path: &Path) -> io::Result<()> {
    rustix::fs::mkdir(path, Mode::from_raw_mode(DIR_MODE))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(DIR_MODE))
}

fn stat_checks(path: &Path, st: &Stat, what: &str, kind: FileType) -> Result<(), StateError> {
    let ft = FileType::from_raw_mode(st.st_mode);
    if ft != kind {
        return Err(not_kind(path, what, kind));
    }
    // Another name of the same file may lie anywhere on the file system
    // (`ln /etc/hostname locks/p.lock`): truncating or chmod'ing it here
    // would change that file. ward's own files always have one name.
    if kind == FileType::RegularFile && st.st_nlink > 1 {
        let fix = if what.starts_with("state database") {
            format!(
                "give it a name of its own: `cp -p {0} {0}.own && mv {0}.own {0}` \
                 (while no ward runs), or check where the other name is",
                path.display()
            )
        } else {
            format!(
                "remove this name (`rm {}`; ward makes a new file), after checking where the \
                 other name is",
                path.display()
            )
        };
        return Err(refused(
            path,
            format!(
                "the {what} has {} hard links; ward changes only files with one name \
                 (another name could be a file elsewhere that ward must not change)",
                st.st_nlink
            ),
            fix,
        ));
    }
    check_private(path, st.st_uid, st.st_mode & 0o7777, what)
}

fn not_kind(path: &Path, what: &str, kind: FileType) -> StateError {
    let wanted = if kind == FileType::Directory {
        "a folder"
    } else {
        "a regular file"
    };
    refused(
        path,
        format!("the {what} is not {wanted}"),
        format!("move it aside (`mv {0} {0}.broken`)", path.display()),
    )
}

/// Refuses a FIFO, socket or device where a file of ward's belongs before
/// opening it: opening a FIFO blocks until a writer comes (forever), and
/// opening a device can act on it. A symlink is left to `open_nofollow`
/// (which names it); a missing file to the caller.
fn refuse_special(path: &Path, what: &str) -> Result<(), StateError> {
    match rustix::fs::lstat(path) {
        Ok(st) => match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile | FileType::Symlink => Ok(()),
            _ => Err(not_kind(path, what, FileType::RegularFile)),
        },
        Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(errno("cannot inspect", path, e)),
    }
}

fn open_nofollow(path: &Path, flags: OFlags, what: &str) -> Result<OwnedFd, StateError> {
    // O_NONBLOCK: should a FIFO replace the checked file in between, the
    // open fails or returns at once instead of hanging (no effect on
    // regular files and folders).
    rustix::fs::open(
        path,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::from_raw_mode(0),
    )
    .map_err(|e| match e {
        // O_NOFOLLOW on a symlink: ELOOP (or ENOTDIR with O_DIRECTORY).
        Errno::LOOP => refused(
            path,
            format!(
                "the {what} is a symbolic link; ward never follows links in its state folder \
                 (another user could point it at a file ward would overwrite)"
            ),
            format!(
                "check where it points, then remove it (`rm {}`)",
                path.display()
            ),
        ),
        Errno::NOTDIR => refused(
            path,
            format!("the {what} is not a folder"),
            format!("move it aside (`mv {0} {0}.broken`)", path.display()),
        ),
        e => errno("cannot open", path, e),
    })
}

/// Makes sure `path` is a private folder of the user: creates it (0700) if
/// missing, refuses a symlink, another owner, or one that others can write;
/// tightens the mode of the user's own folder to 0700.
pub fn ensure_dir(path: &Path, what: &str) -> Result<(), StateError> {
    match make_dir(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err("cannot create", path, e)),
    }
    let fd = open_nofollow(path, OFlags::RDONLY | OFlags::DIRECTORY, what)?;
    let st = rustix::fs::fstat(&fd).map_err(|e| errno("cannot inspect", path, e))?;
    stat_checks(path, &st, what, FileType::Directory)?;
    tighten(&fd, path, &st, DIR_MODE)
}

/// Checks an existing folder (`locks/`, `logs/`) without changing it;
/// a missing one is fine (nothing in it to trust).
pub fn check_dir(path: &Path, what: &str) -> Result<(), StateError> {
    let fd = match open_nofollow(path, OFlags::RDONLY | OFlags::DIRECTORY, what) {
        Err(StateError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(());
        }
        other => other?,
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| errno("cannot inspect", path, e))?;
    stat_checks(path, &st, what, FileType::Directory)
}

fn tighten(fd: &OwnedFd, path: &Path, st: &Stat, mode: u32) -> Result<(), StateError> {
    if st.st_mode & 0o7777 != mode {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))
            .map_err(|e| errno("cannot set the mode of", path, e))?;
    }
    Ok(())
}

/// How a private file is opened.
#[derive(Clone, Copy, Debug)]
pub enum FileUse {
    /// Read and write in place (lock files).
    ReadWrite,
    /// Append only (step logs).
    Append,
}

/// Opens or creates a file of ward's in the state folder: new files with
/// `O_CREAT|O_EXCL`, existing ones without following a symlink; refuses
/// anything but a regular file of the user's; the mode ends up 0600.
pub fn open_file(path: &Path, how: FileUse, what: &str) -> Result<File, StateError> {
    let access = match how {
        FileUse::ReadWrite => OFlags::RDWR,
        FileUse::Append => OFlags::WRONLY | OFlags::APPEND,
    };
    match rustix::fs::open(
        path,
        access | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(FILE_MODE),
    ) {
        Ok(fd) => {
            // The umask may have taken bits the owner needs; set it exactly.
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(FILE_MODE))
                .map_err(|e| errno("cannot set the mode of", path, e))?;
            return Ok(File::from(fd));
        }
        Err(Errno::EXIST) => {}
        Err(e) => return Err(errno("cannot create", path, e)),
    }
    refuse_special(path, what)?;
    let fd = open_nofollow(path, access, what)?;
    let st = rustix::fs::fstat(&fd).map_err(|e| errno("cannot inspect", path, e))?;
    stat_checks(path, &st, what, FileType::RegularFile)?;
    tighten(&fd, path, &st, FILE_MODE)?;
    Ok(File::from(fd))
}

/// Checks an existing file of ward's (the database and its -wal/-shm
/// files): a regular file of the user's that nobody else can write. With
/// `tighten`, its mode is set to 0600. `None` when it does not exist.
pub fn check_file(path: &Path, what: &str, tighten_mode: bool) -> Result<Option<Stat>, StateError> {
    refuse_special(path, what)?;
    let fd = match open_nofollow(path, OFlags::RDONLY, what) {
        Err(StateError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(None);
        }
        other => other?,
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| errno("cannot inspect", path, e))?;
    stat_checks(path, &st, what, FileType::RegularFile)?;
    if tighten_mode {
        tighten(&fd, path, &st, FILE_MODE)?;
    }
    Ok(Some(st))
}

/// fsyncs a folder, so that a name just linked or removed in it survives a
/// crash. (`path` is the checked state folder; it may be reached through a
/// checked link, so this one follows it.)
pub fn sync_dir(path: &Path) -> Result<(), StateError> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0),
    )
    .map_err(|e| errno("cannot open", path, e))?;
    rustix::fs::fsync(&fd).map_err(|e| errno("cannot sync", path, e))
}

/// Creates (or reopens, on a repeated attempt number) a step's log file:
/// [`open_file`] for append, with the reason in the `io::Error`.
pub fn open_log(path: &Path) -> io::Result<File> {
    open_file(path, FileUse::Append, "log file").map_err(io::Error::other)
}

/// Why files cannot be made or written beside `db` (SQLite's -wal,
/// -shm and -journal files), if the folder or its file system says so.
pub fn why_unwritable(db: &Path) -> Option<String> {
    let dir = db
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let shown = dir.display();
    match rustix::fs::access(dir, rustix::fs::Access::WRITE_OK) {
        Err(Errno::ROFS) => {
            return Some(format!(
                "the state folder {shown} is on a read-only file system \
                 (SQLite needs to make files beside the database)"
            ));
        }
        Err(Errno::ACCESS) => {
            return Some(format!(
                "the state folder {shown} is not writable by this user \
                 (SQLite needs to make files beside the database)"
            ));
        }
        _ => {}
    }
    let fs = rustix::fs::statvfs(dir).ok()?;
    if fs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
        Some(format!(
            "the state folder {shown} is on a read-only file system"
        ))
    } else if fs.f_files > 0 && fs.f_favail == 0 {
        Some(format!(
            "the file system of {shown} has no free inodes (see `df -i`): \
             remove files there, then try again"
        ))
    } else if fs.f_bavail == 0 {
        Some(format!(
            "the file system of {shown} is full (see `df`): make room, then try again"
        ))
    } else {
        None
    }
}

/// Reads a step's log for `ward log`: without following a symlink and
/// without blocking on a FIFO planted in its place (`refuse_special`).
pub fn read_log(path: &Path) -> io::Result<Vec<u8>> {
    read_log_from(path, 0)
}

/// As [`read_log`], from byte `offset` on (`ward log --follow` reads what
/// a running step added since its last look).
pub fn read_log_from(path: &Path, offset: u64) -> io::Result<Vec<u8>> {
    refuse_special(path, "log file").map_err(io::Error::other)?;
    let fd = open_nofollow(path, OFlags::RDONLY, "log file").map_err(|e| match e {
        StateError::Io { source, .. } => source,
        e => io::Error::other(e),
    })?;
    let mut file = File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    io::Seek::seek(&mut file, io::SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut file, &mut bytes)?;
    Ok(bytes)
}

/// Creates a run's log folder (0700) under the checked `logs/` folder.
pub fn ensure_log_dir(path: &Path) -> io::Result<()> {
    ensure_dir(path, "log folder").map_err(io::Error::other)
}

/// Puts a finished file (written under the temporary name `tmp`) at `path`
/// unless something is there already (then `AlreadyExists`). A rename that
/// refuses to replace keeps the file at one name (a second name, even for
/// an instant, would make another ward opening it refuse it as
/// hard-linked); file systems without it get a hard link (the caller
/// removes the temporary name right after).
pub fn link_into_place(tmp: &Path, path: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, tmp, CWD, path, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e)
            if [
                rustix::io::Errno::INVAL,
                rustix::io::Errno::NOSYS,
                rustix::io::Errno::OPNOTSUPP,
            ]
            .contains(&e) =>
        {
            std::fs::hard_link(tmp, path)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_file_is_0600_and_a_planted_symlink_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("a.log");
        open_file(&f, FileUse::Append, "log file").expect("new file");
        let mode = std::fs::metadata(&f).expect("meta").mode() & 0o7777;
        assert_eq!(mode, 0o600);
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").expect("victim");
        let link = dir.path().join("b.log");
        std::os::unix::fs::symlink(&victim, &link).expect("symlink");
        let err = open_file(&link, FileUse::ReadWrite, "lock file").expect_err("refused");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep");
    }
}
