//! Is the way to a folder safe from other users? One walk for every folder
//! ward trusts: the state folder (`state::private`), a rehearsal's
//! `--sandbox` and a restore's marker folder.
//!
//! The rule, in the spirit of ssh's StrictModes: every folder passed
//! through on the way belongs to root or to the user ward runs as, and a
//! folder others can write has the sticky bit (as /tmp has), so nobody
//! else can rename or replace what lies below it. Symlinks are followed by
//! hand so that each folder actually passed through is checked, and so is
//! each link's owner (in a sticky folder a link's owner can still swap it).
//! The last folder itself is not judged here: each caller holds it to its
//! own, stricter rule and words the refusal for what it protects.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Symlinks followed on the way before giving up (the kernel's own limit).
const MAX_HOPS: usize = 40;

/// Mode of a folder the walk makes when asked to create missing ones.
const NEW_DIR_MODE: u32 = 0o700;

/// Why the way to a folder cannot be trusted, or could not be walked.
#[derive(Debug, thiserror::Error)]
pub enum Untrusted {
    /// A folder (or a link, `link`) on the way belongs to another user.
    #[error("{} belongs to uid {uid}", path.display())]
    Owner {
        /// The folder or link.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// It is a symbolic link, not a folder.
        link: bool,
    },
    /// Other users can write a folder on the way and it is not sticky.
    #[error("{} can be written by others (mode {mode:04o})", path.display())]
    OpenToOthers {
        /// The folder.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Something on the way is not a folder.
    #[error("{} is not a folder", path.display())]
    NotFolder {
        /// What is there.
        path: PathBuf,
    },
    /// A folder on the way does not exist (and was not to be made).
    #[error("{} does not exist", path.display())]
    Missing {
        /// The first missing folder.
        path: PathBuf,
    },
    /// A missing folder could not be made.
    #[error("cannot create {}: {source}", path.display())]
    Create {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Something on the way could not be read (or links loop).
    #[error("cannot inspect {}: {source}", path.display())]
    Io {
        /// What could not be read.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// The effective user id ward runs as.
fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Root's or the user's: nobody else can change it.
pub fn owned_by_us(uid: u32) -> bool {
    uid == 0 || uid == euid()
}

/// Group or others may write (the `go-w` bits).
pub fn writable_by_others(mode: u32) -> bool {
    mode & 0o022 != 0
}

/// The sticky bit: only an entry's owner may rename or remove it.
pub fn sticky(mode: u32) -> bool {
    mode & 0o1000 != 0
}

/// The folder `path` is in (`.` for a bare name).
pub fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Follows `dir` component by component from `/` and checks every folder
/// passed through before the last one (and every link) by the rule above;
/// returns the real path of `dir`, which the caller checks itself. With
/// `create`, missing folders are made (mode 0700, whatever the umask); a
/// folder another process made meanwhile is checked like any other.
pub fn resolve(dir: &Path, create: bool) -> Result<PathBuf, Untrusted> {
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|source| Untrusted::Io {
                path: dir.to_path_buf(),
                source,
            })?
            .join(dir)
    };
    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_front(&mut pending, &abs);
    let mut real = PathBuf::from("/");
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        if part == "/" {
            real = PathBuf::from("/");
            if !pending.is_empty() {
                check_on_the_way(&real, &meta(&real)?)?;
            }
            continue;
        }
        if part == ".." {
            real.pop();
            continue;
        }
        let next = real.join(&part);
        let m = match std::fs::symlink_metadata(&next) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                match make_dir(&next) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(source) => return Err(Untrusted::Create { path: next, source }),
                }
                meta(&next)?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Untrusted::Missing { path: next });
            }
            Err(source) => return Err(Untrusted::Io { path: next, source }),
        };
        if m.file_type().is_symlink() {
            // The link's folder was checked, but in a sticky folder the
            // link's owner can still swap it. (A link's own mode means
            // nothing: always 0777.)
            if !owned_by_us(m.uid()) {
                return Err(Untrusted::Owner {
                    path: next,
                    uid: m.uid(),
                    link: true,
                });
            }
            hops += 1;
            if hops > MAX_HOPS {
                return Err(Untrusted::Io {
                    path: abs,
                    source: io::Error::from(rustix::io::Errno::LOOP),
                });
            }
            let target = std::fs::read_link(&next).map_err(|source| Untrusted::Io {
                path: next.clone(),
                source,
            })?;
            push_front(&mut pending, &target);
            continue;
        }
        if !m.is_dir() {
            return Err(Untrusted::NotFolder { path: next });
        }
        if !pending.is_empty() {
            check_on_the_way(&next, &m)?;
        }
        real = next;
    }
    Ok(real)
}

/// A folder on the way: root's or the user's, and sticky if others may
/// write it.
fn check_on_the_way(path: &Path, m: &std::fs::Metadata) -> Result<(), Untrusted> {
    if !owned_by_us(m.uid()) {
        return Err(Untrusted::Owner {
            path: path.to_path_buf(),
            uid: m.uid(),
            link: false,
        });
    }
    let mode = m.mode() & 0o7777;
    if writable_by_others(mode) && !sticky(mode) {
        return Err(Untrusted::OpenToOthers {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

fn meta(path: &Path) -> Result<std::fs::Metadata, Untrusted> {
    std::fs::symlink_metadata(path).map_err(|source| Untrusted::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Puts the components of `path` at the front of `pending`, in order.
fn push_front(pending: &mut VecDeque<OsString>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::RootDir => pending.push_front("/".into()),
            Component::ParentDir => pending.push_front("..".into()),
            Component::Normal(n) => pending.push_front(n.to_owned()),
            Component::CurDir | Component::Prefix(_) => {}
        }
    }
}

/// A new folder, exactly 0700 whatever the umask.
fn make_dir(path: &Path) -> io::Result<()> {
    rustix::fs::mkdir(path, rustix::fs::Mode::from_raw_mode(NEW_DIR_MODE))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(NEW_DIR_MODE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ward-trust-{}-{}",
            std::process::id(),
            crate::clock::wall_ms()
        ));
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    #[test]
    fn a_folder_others_can_write_without_sticky_bit_on_the_way_is_refused() {
        let d = tmp();
        let open = d.join("open");
        std::fs::create_dir_all(open.join("inner")).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        match resolve(&open.join("inner"), false) {
            Err(Untrusted::OpenToOthers { path, mode }) => {
                assert_eq!(path, open);
                assert_eq!(mode, 0o777);
            }
            other => panic!("expected OpenToOthers, got {other:?}"),
        }
        // The last folder itself is the caller's to judge.
        assert_eq!(resolve(&open, false).unwrap(), open);
        // Sticky: others cannot move what is inside.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(
            resolve(&open.join("inner"), false).unwrap(),
            open.join("inner")
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn links_are_followed_by_hand_and_the_real_way_is_checked() {
        let d = tmp();
        let open = d.join("open");
        std::fs::create_dir_all(open.join("inner")).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        // A private-looking path whose link leads through the open folder.
        std::os::unix::fs::symlink(open.join("inner"), d.join("via")).unwrap();
        assert!(matches!(
            resolve(&d.join("via"), false),
            Err(Untrusted::OpenToOthers { .. })
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn missing_folders_are_reported_or_made_private() {
        let d = tmp();
        assert!(matches!(
            resolve(&d.join("a/b"), false),
            Err(Untrusted::Missing { path }) if path == d.join("a")
        ));
        let made = resolve(&d.join("a/b"), true).unwrap();
        assert_eq!(made, d.join("a/b"));
        let mode = std::fs::metadata(&made).unwrap().mode() & 0o7777;
        assert_eq!(mode, 0o700);
        std::fs::write(d.join("file"), b"x").unwrap();
        assert!(matches!(
            resolve(&d.join("file/below"), false),
            Err(Untrusted::NotFolder { .. })
        ));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
