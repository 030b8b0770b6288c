//! When an `rsync` step with `changed_since:` may copy only what changed
//! since an earlier copy of the same tree (the walk itself is
//! `fs::changed`): the earlier copy succeeded in this ward process with the
//! same settings, the source and destination folders are the same ones,
//! and the wall clock did not go back since it started. Otherwise the step
//! copies everything.
//!
//! Times are compared with a margin (two seconds before the earlier copy
//! started), which covers the coarse clock the kernel stamps files with.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
