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
//!
//! Across runs, a copy that succeeded leaves its stamp in the `copies`
//! folder of ward's state folder ([`save`], [`kept_file`]; removed by
//! [`forget`] before every copy into the same destination,
//! so a copy that fails or is killed leaves none). A later full pass of the
//! same copy narrows its history check (rsync's dry run, `rsync.rs`) to
//! what changed in the source since that stamp ([`kept_threshold`]); the
//! copy itself stays a full pass. The in-process clock timer cannot span
//! processes, so the stamp records the boot (`boot_id`) and the distance
//! CLOCK_REALTIME - CLOCK_BOOTTIME, which only a set of the wall clock
//! moves (NTP's slewing moves both clocks alike): a step since the stamp
//! shows as a new distance, two steps that cancel out do not.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fd::OwnedFd;
use serde::{Deserialize, Serialize};

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
    /// CLOCK_REALTIME - CLOCK_BOOTTIME (ns) when it started, for a stamp
    /// kept across runs ([`boot_offset`]); None before 1970.
    offset: Option<i64>,
}

/// What makes two rsync copies the same copy: everything that decides
/// which entries reach `dest` and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
        let (src_id, dest_id, mounts) = (folder_id(src)?, folder_id(dest)?, mounts_around(src)?);
        let wall = SystemTime::now();
        Some(Stamp {
            src_id,
            dest_id,
            mounts,
            offset: boot_offset(wall),
            wall,
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
    since_from(stamp.wall, MARGIN, &stamp.mounts, src, list_linked)
}

/// Changes count from `slack` before `wall`; the mount points below `src`
/// among `mounts` are copied whole.
fn since_from(
    wall: SystemTime,
    slack: Duration,
    mounts: &[(u64, Vec<u8>)],
    src: &Path,
    list_linked: bool,
) -> Result<Since, WhyFull> {
    let src_bytes = src.as_os_str().as_bytes();
    let below: HashSet<Vec<u8>> = mounts
        .iter()
        .filter_map(|(_, point)| {
            point
                .strip_prefix(src_bytes)
                .and_then(|rest| rest.strip_prefix(b"/"))
                .filter(|rel| !rel.is_empty())
                .map(<[u8]>::to_vec)
        })
        .collect();
    let from = wall
        .checked_sub(slack)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .ok_or_else(|| "the clock reads before 1970".to_owned())?;
    Ok(Since {
        from: (from.as_secs() as i64, i64::from(from.subsec_nanos())),
        mount_points: below,
        list_linked,
    })
}

/// How far CLOCK_REALTIME - CLOCK_BOOTTIME may have moved since a kept
/// stamp was written and the stamp still be trusted (a leap second moves
/// it by one; a resume from suspend by the hardware clock's rounding); the
/// listing then starts that much earlier still.
const DRIFT: Duration = Duration::from_secs(1);

/// What a kept stamp says it is (and its format's version).
const KEPT_FORMAT: &str = "ward rsync copy stamp 1";

/// The largest kept stamp read (a few mounts make one a few KiB).
const KEPT_MAX: u64 = 1 << 20;

/// CLOCK_REALTIME - CLOCK_BOOTTIME in nanoseconds, `wall` read just
/// before: the wall clock's distance from the boot. Setting the wall clock
/// moves it; NTP's slewing does not (it adjusts both clocks' rate alike),
/// nor does a suspend (the kernel advances both by the time asleep).
fn boot_offset(wall: SystemTime) -> Option<i64> {
    let boot = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let wall = i64::try_from(wall.duration_since(UNIX_EPOCH).ok()?.as_nanos()).ok()?;
    Some(wall - boot.tv_sec.checked_mul(1_000_000_000)? - boot.tv_nsec)
}

/// This boot's id (the kernel draws a new one at every boot).
fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// A [`Stamp`] as kept in ward's state folder, across runs.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Saved {
    /// [`KEPT_FORMAT`].
    format: String,
    copy: CopyKey,
    src_id: (u64, u64),
    dest_id: (u64, u64),
    mounts: Vec<(u64, Vec<u8>)>,
    /// The copy's wall-clock start: seconds and nanoseconds since 1970.
    start: (u64, u32),
    boot_id: String,
    /// [`boot_offset`] at the start.
    realtime_minus_boottime_ns: i64,
}

/// What a stamp's folder is called in refusals of it.
const COPIES_WHAT: &str = "copy stamp folder";

/// Where the stamp of the last successful copy into `dest` is kept: in
/// `copies` (the `copies` folder of ward's state folder, private to ward's
/// user), named by the first 128 bits of the sha256 of `dest` resolved (so
/// every path to `dest` finds the same file, and a copy through one path
/// removes what another left). Not beside or in `dest`: there it would be
/// hard-linked into every snapshot taken of `dest`'s folder, and a restore
/// would leave it in the live tree. None for a `dest` that cannot be
/// resolved.
pub fn kept_file(copies: &Path, dest: &Path) -> Option<PathBuf> {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let real = std::fs::canonicalize(dest).ok()?;
    let digest = Sha256::digest(real.as_os_str().as_bytes());
    let mut name = String::with_capacity(37);
    for b in &digest[..16] {
        let _ = write!(name, "{b:02x}");
    }
    name.push_str(".json");
    Some(copies.join(name))
}

/// `copies` may hold stamps ward trusts: missing (no stamp yet), or a
/// folder (not a link) of ward's user that others cannot write, as the
/// state folder's own `locks/` and `logs/` are checked.
fn check_copies(copies: &Path) -> Result<(), String> {
    crate::state::private::check_dir(copies, COPIES_WHAT).map_err(|e| one_line(&e))
}

/// A refusal of the state folder's checks on one line (for the log and
/// the step's details).
fn one_line(e: &crate::state::StateError) -> String {
    e.to_string().replace("\n  ", "; ")
}

/// Removes the stamp of `dest` from `copies`: done before every copy into
/// it (whatever its source or settings), so one that fails or is killed
/// leaves none. Not made durable: after a crash of the machine the boot
/// id refuses a stamp that came back. A `copies` that fails
/// [`check_copies`] is left alone: no stamp in it is ever read.
pub fn forget(copies: &Path, dest: &Path) -> Result<(), String> {
    let Some(file) = kept_file(copies, dest) else {
        return Ok(());
    };
    if check_copies(copies).is_err() {
        return Ok(());
    }
    match std::fs::remove_file(&file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!(
            "cannot remove {}, the stamp of an earlier copy into {}: {e}",
            file.display(),
            dest.display()
        )),
    }
}

/// Keeps `stamp` of a copy into `dest` in `copies` once the copy
/// succeeded (`copies` made 0700 if missing; temp name, fsync, rename,
/// mode 0600 as every file of the state folder): a later full pass of the
/// same copy may narrow its history check to what changed since (see
/// [`kept_threshold`]).
pub fn save(stamp: &Stamp, copies: &Path, dest: &Path) -> Result<(), String> {
    let file = kept_file(copies, dest)
        .ok_or_else(|| format!("cannot resolve {} to name its stamp", dest.display()))?;
    crate::state::private::ensure_dir(copies, COPIES_WHAT).map_err(|e| one_line(&e))?;
    let start = stamp
        .wall
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the clock reads before 1970".to_owned())?;
    let kept = Saved {
        format: KEPT_FORMAT.to_owned(),
        copy: stamp.copy.clone(),
        src_id: stamp.src_id,
        dest_id: stamp.dest_id,
        mounts: stamp.mounts.clone(),
        start: (start.as_secs(), start.subsec_nanos()),
        boot_id: boot_id().ok_or("cannot read /proc/sys/kernel/random/boot_id")?,
        realtime_minus_boottime_ns: stamp.offset.ok_or("the clock reads before 1970")?,
    };
    let bytes = serde_json::to_vec(&kept).map_err(|e| format!("cannot encode a stamp: {e}"))?;
    crate::fs::write_atomic(&file, &bytes, crate::state::private::FILE_MODE)
        .map_err(|e| e.to_string())
}

/// What a kept stamp allows: changes count from `since` (the copy's start
/// less the margins), and that copy started at `started`.
#[derive(Debug)]
pub struct Prior {
    pub since: Since,
    pub started: SystemTime,
}

/// From when changes in `src` (resolved) count for the history check of
/// a full pass of `copy` into `dest`, by the stamp the last successful
/// copy into `dest` kept in `copies`; or why the whole tree must be
/// checked. The stamp holds if it is ward's own (root's or this user's, not
/// writable by others, in a `copies` that passes [`check_copies`] and that
/// others cannot replace it in), of this boot, of the
/// same copy (`hard_links` aside: `-H` decides which names share an inode,
/// not an entry's mode, owner or times, and FOSSology's warm pass runs
/// without it), of the same source and destination folders with the same
/// mounts around the source, and if the wall clock was not set since
/// (CLOCK_REALTIME - CLOCK_BOOTTIME within [`DRIFT`] of what it was; two
/// sets that cancel out are not seen, unlike the in-process timer).
pub fn kept_threshold(
    copy: &CopyKey,
    src: &Path,
    copies: &Path,
    dest: &Path,
) -> Result<Prior, WhyFull> {
    let file = kept_file(copies, dest)
        .ok_or_else(|| format!("cannot resolve {} to find its stamp", dest.display()))?;
    check_copies(copies)?;
    let kept = read_kept(&file)?;
    if boot_id().as_ref() != Some(&kept.boot_id) {
        return Err("the machine restarted since the last copy".to_owned());
    }
    let as_this = CopyKey {
        hard_links: copy.hard_links,
        ..kept.copy.clone()
    };
    if as_this != *copy {
        return Err(format!(
            "the last copy into {} was another copy (from {}, or with other filters or \
             arguments)",
            kept.copy.dest, kept.copy.src
        ));
    }
    if folder_id(src) != Some(kept.src_id) || folder_id(dest) != Some(kept.dest_id) {
        return Err("the source or destination folder was replaced since the last copy".to_owned());
    }
    if mounts_around(src).as_ref() != Some(&kept.mounts) {
        return Err(format!(
            "a file system was mounted, unmounted or remounted at or below {} since the last \
             copy",
            src.display()
        ));
    }
    let now = boot_offset(SystemTime::now()).ok_or("the clock reads before 1970")?;
    let drift = Duration::from_nanos(now.abs_diff(kept.realtime_minus_boottime_ns));
    if drift > DRIFT {
        return Err(format!(
            "the wall clock was set since the last copy started (by {:.1}s against the time \
             since boot)",
            drift.as_secs_f64()
        ));
    }
    let started = UNIX_EPOCH
        .checked_add(Duration::from_secs(kept.start.0))
        .and_then(|t| t.checked_add(Duration::from_nanos(u64::from(kept.start.1))))
        .ok_or_else(|| format!("{} holds an impossible time", file.display()))?;
    let since = since_from(started, MARGIN + drift, &kept.mounts, src, false)?;
    Ok(Prior { since, started })
}

/// Reads a kept stamp, if it is ward's own: a regular file of root or
/// this user that others cannot write, in a folder where others cannot
/// replace it (not writable by them, or sticky).
fn read_kept(file: &Path) -> Result<Saved, WhyFull> {
    use crate::fs::trust::{folder_of, owned_by_us, sticky, writable_by_others};
    use rustix::fs::{FileType, Mode, OFlags};
    use std::io::Read;
    let shown = file.display();
    let fd = match rustix::fs::open(
        file,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => {
            return Err(format!(
                "no copy into it succeeded since the last one that failed or was stopped, or \
                 none yet (no stamp {shown})"
            ));
        }
        Err(e) => return Err(format!("cannot open the stamp {shown}: {e}")),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if FileType::from_raw_mode(st.st_mode as _) != FileType::RegularFile {
        return Err(format!("the stamp {shown} is not a file"));
    }
    if !owned_by_us(st.st_uid) {
        return Err(format!(
            "the stamp {shown} belongs to uid {}, not to ward's user or root",
            st.st_uid
        ));
    }
    if writable_by_others(st.st_mode as u32) {
        return Err(format!(
            "the stamp {shown} can be written by others (mode {:04o})",
            st.st_mode as u32 & 0o7777
        ));
    }
    let folder = folder_of(file);
    let dir =
        std::fs::metadata(folder).map_err(|e| format!("cannot read {}: {e}", folder.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = dir.permissions().mode();
        if writable_by_others(mode) && !sticky(mode) {
            return Err(format!(
                "others can replace the stamp {shown}: its folder is writable by them (mode \
                 {:04o})",
                mode & 0o7777
            ));
        }
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(KEPT_MAX)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    let kept: Saved = serde_json::from_slice(&bytes)
        .map_err(|e| format!("the stamp {shown} cannot be read: {e}"))?;
    if kept.format != KEPT_FORMAT {
        return Err(format!(
            "the stamp {shown} is of another format ({:?})",
            kept.format
        ));
    }
    Ok(kept)
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

    #[test]
    fn a_kept_stamp_holds_for_the_same_copy_only_and_is_gone_once_forgotten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let (src, dest) = (dir.path().join("s"), dir.path().join("d"));
        let copies = dir.path().join("state/copies");
        std::fs::create_dir(&src).expect("src");
        std::fs::create_dir(&dest).expect("dest");
        std::fs::create_dir(dir.path().join("state")).expect("state");
        let src = std::fs::canonicalize(&src).expect("real");
        let why = kept_threshold(&key("/s"), &src, &copies, &dest).expect_err("none yet");
        assert!(why.contains("no stamp"), "{why}");
        forget(&copies, &dest).expect("no folder, nothing to forget");
        let stamp = Stamp::take(key("/s"), &src, &dest).expect("stamp");
        save(&stamp, &copies, &dest).expect("save");
        let mode = std::fs::metadata(&copies)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o700, "{mode:o}");
        let file = kept_file(&copies, &dest).expect("file");
        assert_eq!(file.parent(), Some(copies.as_path()));
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(
            name.len() == 37
                && name.ends_with(".json")
                && name[..32].bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}"
        );
        // Every path to dest names the same stamp; another dest another.
        let other = dir.path().join("other");
        std::fs::create_dir(&other).expect("other");
        let via = other.join("../d");
        assert_eq!(kept_file(&copies, &via), Some(file.clone()));
        assert_ne!(kept_file(&copies, &other), Some(file.clone()));
        // Nothing beside dest or in it.
        let names = |d: &Path| -> Vec<_> {
            std::fs::read_dir(d)
                .expect("list")
                .map(|e| e.expect("entry").file_name())
                .collect()
        };
        assert!(names(&dest).is_empty());
        let mut beside = names(dir.path());
        beside.sort();
        assert_eq!(beside, ["d", "other", "s", "state"]);
        let mode = std::fs::metadata(&file).expect("stat").permissions().mode();
        assert_eq!(mode & 0o7777, 0o600, "{mode:o}");
        let prior = kept_threshold(&key("/s"), &src, &copies, &dest).expect("same copy");
        assert_eq!(prior.started, stamp.wall);
        let wall = stamp.wall.duration_since(UNIX_EPOCH).expect("after 1970");
        assert!(prior.since.from.0 <= wall.as_secs() as i64 - 2, "{prior:?}");
        // hard_links decides links, not attributes: the same copy here.
        let mut unlinked = key("/s");
        unlinked.hard_links = false;
        assert!(kept_threshold(&unlinked, &src, &copies, &dest).is_ok());
        let mut filtered = key("/s");
        filtered.filters = vec!["- /cache/".into()];
        let why = kept_threshold(&filtered, &src, &copies, &dest).expect_err("other filters");
        assert!(why.contains("another copy"), "{why}");
        let why = kept_threshold(&key("/s"), &other, &copies, &dest).expect_err("other source");
        assert!(why.contains("replaced"), "{why}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let why = kept_threshold(&key("/s"), &src, &copies, &dest).expect_err("open to others");
        assert!(why.contains("written by others"), "{why}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let text = std::fs::read_to_string(&file).expect("read");
        let moved = text.replace(
            &format!("\"boot_id\":\"{}\"", boot_id().expect("boot id")),
            "\"boot_id\":\"another\"",
        );
        assert_ne!(moved, text);
        std::fs::write(&file, moved).expect("write");
        let why = kept_threshold(&key("/s"), &src, &copies, &dest).expect_err("another boot");
        assert!(why.contains("restarted"), "{why}");
        forget(&copies, &dest).expect("forget");
        assert!(!file.exists());
        forget(&copies, &dest).expect("nothing to forget");
    }

    #[test]
    fn a_copies_folder_that_is_a_link_or_open_to_others_is_not_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let (src, dest) = (dir.path().join("s"), dir.path().join("d"));
        std::fs::create_dir(&src).expect("src");
        std::fs::create_dir(&dest).expect("dest");
        let src = std::fs::canonicalize(&src).expect("real");
        let (real, copies) = (dir.path().join("real"), dir.path().join("copies"));
        let stamp = Stamp::take(key("/s"), &src, &dest).expect("stamp");
        save(&stamp, &real, &dest).expect("save");
        std::os::unix::fs::symlink(&real, &copies).expect("symlink");
        // O_NOFOLLOW | O_DIRECTORY on a link: ENOTDIR (or ELOOP).
        let refused = |why: &str| why.contains("symbolic link") || why.contains("not a folder");
        let why = kept_threshold(&key("/s"), &src, &copies, &dest).expect_err("a link");
        assert!(refused(&why), "{why}");
        assert!(!why.contains('\n'), "{why}");
        let why = save(&stamp, &copies, &dest).expect_err("a link");
        assert!(refused(&why), "{why}");
        // Left alone: no stamp there is read.
        forget(&copies, &dest).expect("forget");
        assert!(kept_file(&real, &dest).expect("file").exists());
        std::fs::remove_file(&copies).expect("unlink");
        std::fs::rename(&real, &copies).expect("rename");
        assert!(kept_threshold(&key("/s"), &src, &copies, &dest).is_ok());
        std::fs::set_permissions(&copies, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let why = kept_threshold(&key("/s"), &src, &copies, &dest).expect_err("open");
        assert!(why.contains("other users can write"), "{why}");
    }

    #[test]
    fn the_boot_offset_holds_still_while_the_clock_is_not_set() {
        let a = boot_offset(SystemTime::now()).expect("offset");
        std::thread::sleep(Duration::from_millis(50));
        let b = boot_offset(SystemTime::now()).expect("offset");
        assert!(a.abs_diff(b) < 20_000_000, "{a} {b}");
    }
}
