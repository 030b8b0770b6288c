//! When an `rsync` step with `changed_since:` may copy only what changed
//! since an earlier copy of the same tree (the walk itself is
//! `fs::changed`): the earlier copy succeeded in this ward process with the
//! same settings; the source and destination folders are the same ones;
//! no file system was mounted, unmounted or remounted at or below the
//! source (a rollback remounts; a mount hides a folder's old contents
//! without changing its times); and the wall clock was not set since the
//! earlier copy started (a timer that the kernel cancels on any clock set
//! tells, also for a step back and forth again). Otherwise the step copies
//! everything.
//!
//! Times are compared with a margin (two seconds before the earlier copy
//! started), which covers the coarse clock the kernel stamps files with.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fd::OwnedFd;

/// How long before the earlier copy's start a change still counts.
const MARGIN: Duration = Duration::from_secs(2);

/// What an earlier copy was and when it started, kept in this process.
#[derive(Clone, Debug)]
pub struct Stamp {
    /// The copy's identity, so a pass trusts only the same copy.
    copy: CopyKey,
    /// Source and destination folders' (device, inode) when it started.
    src_id: (u64, u64),
    dest_id: (u64, u64),
    /// The mounts at, above and below the source when it started.
    mounts: Vec<(u64, Vec<u8>)>,
    /// Wall-clock start (what files' change times compare with).
    wall: SystemTime,
    /// The wall clock's generation when it started ([`clock_generation`]).
    clock: u64,
}

/// What makes two rsync copies the same copy: everything that decides
/// which entries reach `dest` and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyKey {
    pub src: String,
    pub dest: String,
    pub filters: Vec<String>,
    pub hard_links: bool,
    pub delete: bool,
    pub args: Vec<String>,
    pub program: Option<String>,
}

impl Stamp {
    /// Takes the stamp of a copy about to start from `src` (resolved) to
    /// `dest`; None if one of them cannot be read (no later pass will
    /// trust this copy then).
    pub fn take(copy: CopyKey, src: &Path, dest: &Path) -> Option<Stamp> {
        // The generation first: a clock set after it is seen by the pass.
        let clock = clock_generation()?;
        Some(Stamp {
            src_id: folder_id(src)?,
            dest_id: folder_id(dest)?,
            mounts: mounts_around(src)?,
            wall: SystemTime::now(),
            clock,
            copy,
        })
    }
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

/// A timer on the wall clock, set far in the future, that the kernel
/// cancels when the clock is set (`TFD_TIMER_CANCEL_ON_SET`).
fn clock_watch() -> rustix::io::Result<OwnedFd> {
    use rustix::time::{
        Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
        timerfd_settime,
    };
    let fd = timerfd_create(
        TimerfdClockId::Realtime,
        TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
    )?;
    let far = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
        + 100 * 365 * 86_400;
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    timerfd_settime(
        &fd,
        TimerfdTimerFlags::ABSTIME | TimerfdTimerFlags::CANCEL_ON_SET,
        &Itimerspec {
            it_interval: zero,
            it_value: Timespec {
                tv_sec: far,
                tv_nsec: 0,
            },
        },
    )?;
    Ok(fd)
}

/// How many times this process has seen the wall clock set: one timer
/// for the whole process (not one per copy, which would hold a descriptor
/// per rsync step for the life of the run), re-armed each time it reports
/// a set. None if the timer cannot be made or read: then no stamp is
/// trusted.
fn clock_generation() -> Option<u64> {
    static WATCH: Mutex<Option<(OwnedFd, u64)>> = Mutex::new(None);
    let mut watch = WATCH.lock().ok()?;
    let (fd, generation) = match watch.take() {
        Some(w) => w,
        None => (clock_watch().ok()?, 0),
    };
    let now = if clock_was_set(&fd) {
        (clock_watch().ok()?, generation + 1)
    } else {
        (fd, generation)
    };
    let generation = now.1;
    *watch = Some(now);
    Some(generation)
}

/// True if the wall clock was set since the watch began.
fn clock_was_set(watch: &OwnedFd) -> bool {
    let mut buf = [0u8; 8];
    // Not expired (EAGAIN) is the expected answer; anything else (the
    // cancellation, or a timer that cannot be read) is not trusted.
    !matches!(
        rustix::io::read(watch, &mut buf),
        Err(rustix::io::Errno::AGAIN)
    )
}

/// The mounts whose mount point is `src`, below it or above it (by path),
/// with their mount ids, from /proc/self/mountinfo: None if it cannot be
/// read.
fn mounts_around(src: &Path) -> Option<Vec<(u64, Vec<u8>)>> {
    let info = std::fs::read("/proc/self/mountinfo").ok()?;
    let src = src.as_os_str().as_bytes();
    let related = |point: &[u8]| {
        let (short, long) = if point.len() <= src.len() {
            (point, src)
        } else {
            (src, point)
        };
        long.starts_with(short)
            && (short == b"/" || long.len() == short.len() || long[short.len()] == b'/')
    };
    Some(
        info.split(|&b| b == b'\n')
            .filter_map(|line| {
                let mut fields = line.split(|&b| b == b' ');
                let id = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
                let point = unescape(fields.nth(3)?);
                related(&point).then_some((id, point))
            })
            .collect(),
    )
}

/// A mountinfo field with its `\ooo` escapes (space, tab, newline,
/// backslash) decoded.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (field[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// Why a pass must copy everything instead of the changes.
pub type WhyFull = String;

/// What a pass may trust: changes count from this moment (seconds,
/// nanoseconds), and these folders below the source (relative paths) are
/// mount points, copied whole.
#[derive(Debug)]
pub struct Since {
    pub from: (i64, i64),
    pub mount_points: HashSet<Vec<u8>>,
    /// The earlier copy ran without `-H` and this one keeps hard links:
    /// the names of a file with more than one name are listed too,
    /// whatever its times, when their copies in `dest` are not one file,
    /// so that this pass links what the earlier one wrote apart.
    pub list_linked: bool,
}

/// From when changes count for a pass of `copy` after step `since`, and
/// the folders below `src` that are mount points (each copied whole), or
/// why everything must be copied. `src` is resolved.
pub fn threshold(
    run_id: &str,
    since: &str,
    copy: &CopyKey,
    src: &Path,
    dest: &Path,
) -> Result<Since, WhyFull> {
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
    // A warm pass without `-H` is the same copy but for the hard links,
    // which this pass then makes (see `Since::list_linked`).
    let list_linked = !stamp.copy.hard_links && copy.hard_links;
    let as_this = CopyKey {
        hard_links: copy.hard_links,
        ..stamp.copy.clone()
    };
    if as_this != *copy || (stamp.copy.hard_links && !copy.hard_links) {
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
    if clock_generation() != Some(stamp.clock) {
        return Err(format!(
            "the wall clock was set since `{since}` started, so change times cannot be \
             compared with its start"
        ));
    }
    let mounts = mounts_around(src);
    if mounts.as_ref() != Some(&stamp.mounts) {
        return Err(format!(
            "a file system was mounted, unmounted or remounted at or below {} since `{since}`",
            src.display()
        ));
    }
    let src_bytes = src.as_os_str().as_bytes();
    let below: HashSet<Vec<u8>> = stamp
        .mounts
        .iter()
        .filter_map(|(_, point)| {
            point
                .strip_prefix(src_bytes)
                .and_then(|rest| rest.strip_prefix(b"/"))
                .filter(|rel| !rel.is_empty())
                .map(<[u8]>::to_vec)
        })
        .collect();
    let from = stamp
        .wall
        .checked_sub(MARGIN)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .ok_or_else(|| "the clock reads before 1970".to_owned())?;
    Ok(Since {
        from: (from.as_secs() as i64, i64::from(from.subsec_nanos())),
        mount_points: below,
        list_linked,
    })
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
            args: Vec::new(),
            program: None,
        }
    }

    #[test]
    fn a_pass_trusts_only_the_same_copy_of_the_same_folders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (src, dest) = (dir.path().join("s"), dir.path().join("d"));
        std::fs::create_dir(&src).expect("src");
        std::fs::create_dir(&dest).expect("dest");
        let stamp = Stamp::take(key("/s"), &src, &dest).expect("stamp");
        record("run-a", "warm", stamp);
        assert!(threshold("run-a", "warm", &key("/s"), &src, &dest).is_ok());
        let why = threshold("run-a", "warm", &key("/other"), &src, &dest).expect_err("other");
        assert!(why.contains("other settings"), "{why}");
        let mut with_args = key("/s");
        with_args.args = vec!["--exclude=/cache/".into()];
        let why = threshold("run-a", "warm", &with_args, &src, &dest).expect_err("args");
        assert!(why.contains("other settings"), "{why}");
        // A warm pass without hard links: this pass lists linked files;
        // a warm pass with them and a pass without is another copy.
        let mut unlinked = key("/s");
        unlinked.hard_links = false;
        record(
            "run-a",
            "warm-unlinked",
            Stamp::take(unlinked.clone(), &src, &dest).expect("stamp"),
        );
        let since = threshold("run-a", "warm-unlinked", &key("/s"), &src, &dest).expect("same");
        assert!(since.list_linked);
        assert!(
            !threshold("run-a", "warm", &key("/s"), &src, &dest)
                .expect("same")
                .list_linked
        );
        let why = threshold("run-a", "warm", &unlinked, &src, &dest).expect_err("no -H");
        assert!(why.contains("other settings"), "{why}");
        let why = threshold("run-b", "warm", &key("/s"), &src, &dest).expect_err("run");
        assert!(why.contains("did not complete"), "{why}");
        let other = dir.path().join("other");
        std::fs::create_dir(&other).expect("other");
        let why = threshold("run-a", "warm", &key("/s"), &src, &other).expect_err("replaced");
        assert!(why.contains("replaced"), "{why}");
    }

    #[test]
    fn mount_points_are_read_with_their_escapes() {
        assert_eq!(unescape(b"/srv/with\\040space"), b"/srv/with space");
        assert_eq!(unescape(b"/plain"), b"/plain");
        assert_eq!(unescape(b"/trailing\\"), b"/trailing\\");
        let around = mounts_around(Path::new("/")).expect("mountinfo");
        assert!(around.iter().any(|(_, p)| p == b"/"), "{around:?}");
    }

    #[test]
    fn stamps_hold_no_descriptor_each() {
        // A playbook with many rsync steps keeps a stamp per step for the
        // whole run; each once held a timer descriptor of its own.
        let dir = tempfile::tempdir().expect("tempdir");
        let open = || std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
        let stamp = |i: usize| Stamp::take(key(&format!("/s{i}")), dir.path(), dir.path());
        record("run-fd", "warm-0", stamp(0).expect("stamp"));
        let before = open();
        for i in 1..200 {
            record("run-fd", &format!("warm-{i}"), stamp(i).expect("stamp"));
        }
        // Other tests run at the same time and open files too.
        assert!(open() < before + 100, "{before} -> {}", open());
    }

    #[test]
    fn an_untouched_clock_watch_reads_as_not_set() {
        let watch = clock_watch().expect("timerfd");
        assert!(!clock_was_set(&watch));
        let generation = clock_generation().expect("generation");
        assert_eq!(clock_generation(), Some(generation));
    }
}
