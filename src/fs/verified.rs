//! The verified marker `<dir>/.<name>.verified` beside a snapshot: what the
//! last `verify` of the snapshot read (structure only, one slice `k/N` of
//! the content, or all of it), when, whether it passed, and per slice of
//! the rolling read-back when each slice was last read and what it found.
//!
//! `rotate` counts a snapshot only while its last verify passed (and was of
//! this manifest): a verify that fails writes a failed marker over a good
//! one, so a snapshot damaged since it was last found good stops counting.
//!
//! Format `ward-verified/1` (one JSON object, written atomically). Markers
//! written before this format (`{"verified_at", "run_id",
//! "manifest_checksum", "hashes"}`) were written only when a verify passed,
//! so they read as passed: full if `hashes`, else structure.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::FsError;

/// The format tag.
pub const FORMAT: &str = "ward-verified/1";
/// A marker larger than this is not read (a marker is a few KiB even with
/// a long slice history; anything bigger is not ward's).
pub const MAX_BYTES: u64 = 1 << 20;
/// The largest `N` of a `1/N` read-back: more slices than nights in a
/// few years is not a schedule.
pub const MAX_SLICES: u32 = 1000;

/// How much of the content a verify reads back. Structure, sizes, modes
/// (and owner and mtime where the manifest records them) are checked in
/// full at every level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// No content is read.
    Structure,
    /// The files of slice `k` of `n` (1-based), by a stable hash of the path.
    Slice {
        /// The slice read, 1..=n.
        k: u32,
        /// How many slices the set is cut into.
        n: u32,
    },
    /// Every file with a recorded sha256 is re-hashed.
    Full,
}

impl Depth {
    /// True if the content of the file at `rel` is read at this depth.
    pub fn reads(&self, rel: &[u8]) -> bool {
        match *self {
            Depth::Structure => false,
            Depth::Full => true,
            Depth::Slice { k, n } => slice_of(rel, n) == k,
        }
    }

    /// `structure`, `partial` or `full`.
    pub fn level(&self) -> &'static str {
        match self {
            Depth::Structure => "structure",
            Depth::Slice { .. } => "partial",
            Depth::Full => "full",
        }
    }
}

impl std::fmt::Display for Depth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Depth::Slice { k, n } => write!(f, "partial {k}/{n}"),
            other => f.write_str(other.level()),
        }
    }
}

/// The `read:` a user asks for: `all`, `none`, or a share `1/N`; which
/// slice of `N` is read is chosen per night ([`choose_slice`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadShare {
    /// `none`.
    None,
    /// `all` (and `1/1`).
    All,
    /// `1/N`, N >= 2.
    Share(u32),
}

impl ReadShare {
    /// Parses `all`, `none` or `1/N` (1 <= N <= [`MAX_SLICES`]).
    pub fn parse(text: &str) -> Result<ReadShare, String> {
        let t = text.trim();
        match t {
            "all" => return Ok(ReadShare::All),
            "none" => return Ok(ReadShare::None),
            _ => {}
        }
        let n = t
            .strip_prefix("1/")
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(|| format!("`{t}` is not `all`, `none` or `1/N` (e.g. `1/7`)"))?;
        match n {
            0 => Err("`1/0`: N must be at least 1".to_owned()),
            1 => Ok(ReadShare::All),
            n if n > MAX_SLICES => Err(format!("`1/{n}`: N is at most {MAX_SLICES}")),
            n => Ok(ReadShare::Share(n)),
        }
    }
}

impl std::fmt::Display for ReadShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadShare::None => f.write_str("none"),
            ReadShare::All => f.write_str("all"),
            ReadShare::Share(n) => write!(f, "1/{n}"),
        }
    }
}

/// The slice (1..=n) a path belongs to: a hash of the path bytes, so a
/// file stays in its slice from night to night and snapshot to snapshot
/// (the same file in every hard-linked snapshot is in the same slice).
/// Domain-separated from the manifest's 1-in-32 hash sample, so slices do
/// not line up with the sampled files.
pub fn slice_of(rel: &[u8], n: u32) -> u32 {
    let mut h = Sha256::new();
    h.update(b"ward-slice\0");
    h.update(rel);
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(first) % u64::from(n.max(1))) as u32 + 1
}

/// One read of content: a slice's, or a full read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Read1 {
    /// The slice (absent for a full read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<u32>,
    /// When (local time, `YYYY-MM-DDTHH:MM:SS`).
    pub at: String,
    /// Nothing differed.
    pub ok: bool,
    /// How many differences were found.
    pub problems: u64,
    /// The snapshot it was read on (the slices of hard-linked snapshots
    /// are read on whichever snapshot was verified that night).
    pub set: String,
}

/// The rolling read-back's history: per slice of `n`, its last read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slices {
    /// The number of slices.
    pub n: u32,
    /// The last read of each slice that was ever read, by slice.
    pub last: Vec<Read1>,
}

/// The verified marker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// `ward-verified/1` (`legacy` for a marker of the old form).
    pub format: String,
    /// When the last verify ran (local time, `YYYY-MM-DDTHH:MM:SS`).
    pub at: String,
    /// The run that verified (empty for `ward verify`, which writes nothing).
    pub run_id: String,
    /// The checksum of the manifest checked against.
    pub manifest_checksum: String,
    /// `structure`, `partial` or `full`.
    pub level: String,
    /// The slice read, `k/N`, for `partial`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice: Option<String>,
    /// The last verify passed.
    pub ok: bool,
    /// How many differences it found.
    pub problems: u64,
    /// Why it failed, when it is not a list of differences (a damaged
    /// manifest, a failed spot check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The rolling read-back's history (carried from snapshot to snapshot
    /// of the folder: they share their unchanged files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slices: Option<Slices>,
    /// The last full read of this snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<Read1>,
}

/// The old marker: written only by a verify that passed.
#[derive(Deserialize)]
struct Legacy {
    verified_at: String,
    run_id: String,
    manifest_checksum: String,
    #[serde(default)]
    hashes: bool,
}

/// `<dir>/.<name>.verified`, the marker of the set `<dir>/<name>`.
pub fn path(set: &Path) -> Option<PathBuf> {
    let name = set.file_name()?.to_string_lossy().into_owned();
    Some(set.parent()?.join(format!(".{name}.verified")))
}

/// Reads a marker: `Ok(None)` if there is none. A symlink is never
/// followed (someone who can write the snapshots folder must not make a
/// snapshot count by pointing its marker at another's), a file larger than
/// [`MAX_BYTES`] or not a regular file is refused, as is text that is
/// neither format.
pub fn read(marker: &Path) -> Result<Option<Marker>, FsError> {
    use rustix::fs::{Mode, OFlags};
    let cannot = |e: &dyn std::fmt::Display| {
        FsError::new(format!("cannot read marker {}: {e}", marker.display()))
    };
    let fd = match rustix::fs::open(
        marker,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::LOOP) => {
            return Err(cannot(&"it is a symlink (not followed)"));
        }
        Err(e) => return Err(cannot(&e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| cannot(&e))?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode as _) != rustix::fs::FileType::RegularFile {
        return Err(cannot(&"not a regular file"));
    }
    // A marker makes a snapshot count for `rotate` and steers the rolling
    // read-back: one planted by another user who can write the folder (a
    // group-writable snapshots folder), or one others can rewrite, is not
    // ward's word.
    let folder_owner = rustix::fs::stat(super::trust::folder_of(marker))
        .ok()
        .map(|d| d.st_uid);
    if !super::trust::owned_by_us(st.st_uid) && Some(st.st_uid) != folder_owner {
        return Err(cannot(&format_args!(
            "it belongs to user {}, neither ward's user ({}), root nor the folder's owner: \
             not trusted",
            st.st_uid,
            rustix::process::geteuid().as_raw()
        )));
    }
    if super::trust::writable_by_others(st.st_mode) {
        return Err(cannot(&format_args!(
            "others can write it (mode {:o}): not trusted",
            st.st_mode & 0o7777
        )));
    }
    if st.st_size as u64 > MAX_BYTES {
        return Err(cannot(&format_args!(
            "{} bytes, more than a marker holds ({MAX_BYTES})",
            st.st_size
        )));
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cannot(&e))?;
    parse(&bytes).map(Some).map_err(|e| cannot(&e))
}

/// A marker from its bytes, either format.
pub fn parse(bytes: &[u8]) -> Result<Marker, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    match v.get("format").and_then(|f| f.as_str()) {
        Some(FORMAT) => serde_json::from_value(v).map_err(|e| format!("damaged: {e}")),
        Some(other) => Err(format!("unknown format `{other}`")),
        None => {
            let old: Legacy = serde_json::from_value(v)
                .map_err(|e| format!("neither {FORMAT} nor the old marker: {e}"))?;
            Ok(Marker {
                format: "legacy".to_owned(),
                at: old.verified_at,
                run_id: old.run_id,
                manifest_checksum: old.manifest_checksum,
                level: if old.hashes { "full" } else { "structure" }.to_owned(),
                slice: None,
                ok: true,
                problems: 0,
                error: None,
                slices: None,
                full: None,
            })
        }
    }
}

/// Writes `m` as the marker of `set` (temp name, fsync, rename, folder fsync).
pub fn write(set: &Path, m: &Marker) -> Result<(), FsError> {
    let dest = path(set)
        .ok_or_else(|| FsError::new(format!("{} has no name for a marker", set.display())))?;
    let bytes = serde_json::to_vec_pretty(m)
        .map_err(|e| FsError::new(format!("cannot encode marker: {e}")))?;
    super::manifest::write_file(&dest, &bytes, 0o644)
}

/// True if the last verify of `set` passed and was of the manifest whose
/// checksum is `manifest_checksum` (when it is known). A marker that cannot
/// be read counts as not passed: it only ever makes a snapshot count less.
pub fn passed(set: &Path, manifest_checksum: Option<&str>) -> bool {
    last_result(set, manifest_checksum) == Some(true)
}

/// Whether the last verify of `set` passed (`Some(true)`) or recorded a
/// failure (`Some(false)`), if it was of the manifest whose checksum is
/// `manifest_checksum` (when it is known); `None` when there is no such
/// marker or it cannot be read.
pub fn last_result(set: &Path, manifest_checksum: Option<&str>) -> Option<bool> {
    let m = read(&path(set)?).ok()??;
    manifest_checksum
        .is_none_or(|sum| sum == m.manifest_checksum)
        .then_some(m.ok)
}

/// The history of the rolling read-back of `n` slices in the snapshots
/// folder `dir`: per slice, its latest read over every marker there
/// (unreadable markers are left out: they only make a slice look older,
/// so it is read sooner; so are reads dated after `today`, see
/// [`choose_slice`]).
pub fn history(dir: &Path, n: u32, today: chrono::NaiveDate) -> Vec<Read1> {
    let mut last: Vec<Option<Read1>> = vec![None; n as usize];
    let Ok(items) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    for item in items.flatten() {
        let name = item.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with('.') && name.ends_with(".verified")) {
            continue;
        }
        let Ok(Some(m)) = read(&item.path()) else {
            continue;
        };
        let Some(slices) = m.slices.filter(|s| s.n == n) else {
            continue;
        };
        for r in slices.last {
            let Some(k) = r.slice.filter(|k| (1..=n).contains(k)) else {
                continue;
            };
            if !believable(&r.at, today) {
                continue;
            }
            let cell = &mut last[(k - 1) as usize];
            if cell.as_ref().is_none_or(|c| c.at < r.at) {
                *cell = Some(r);
            }
        }
    }
    last.into_iter().flatten().collect()
}

/// True if `at` is a time no later than `today`. A read recorded after
/// today (a clock that was once set ahead, or a time that is no time in a
/// marker) is no read: it would stay the newest for years, and its slice
/// would never be read again.
fn believable(at: &str, today: chrono::NaiveDate) -> bool {
    chrono::NaiveDateTime::parse_from_str(at, "%Y-%m-%dT%H:%M:%S").is_ok_and(|t| t.date() <= today)
}

/// Which slice of `n` to read tonight.
///
/// The slice read least recently by the history of the folder's markers
/// (slices never read first); among slices equally old (at first, all of
/// them) the one the date points at: days since the epoch mod `n`, then
/// the slices after it. Why the history and not the date alone: with the
/// date alone a night without a verify (the machine off every Sunday,
/// `1/7`) skips the same slice every week and that slice is never read;
/// by history every slice is read within `n` verifies, whatever the
/// calendar. Why the date as the tie-break: `ward verify --read 1/N`
/// writes no marker, so on its own it still covers every slice over `n`
/// successive days.
pub fn choose_slice(n: u32, history: &[Read1], today: chrono::NaiveDate) -> u32 {
    let n = n.max(1);
    let days = today
        .signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default())
        .num_days()
        .rem_euclid(i64::from(n)) as u32;
    let last_read = |k: u32| {
        history
            .iter()
            .filter(|r| r.slice == Some(k) && believable(&r.at, today))
            .map(|r| r.at.as_str())
            .max()
            .unwrap_or("")
    };
    (1..=n)
        .min_by_key(|&k| (last_read(k), (k - 1 + n - days) % n))
        .unwrap_or(1)
}

/// `history` with `read` (of slice `read.slice`) in its place.
pub fn record(n: u32, mut history: Vec<Read1>, read: Read1) -> Slices {
    history.retain(|r| r.slice != read.slice);
    history.push(read);
    history.sort_by_key(|r| r.slice);
    Slices { n, last: history }
}

/// The sentence added when damaged content is shared by hard links.
pub const SHARED_NOTE: &str = "Damaged files with other names (hard links) share one physical \
     copy with the other snapshots and `current`: the damage is in every snapshot holding them; \
     only a second copy (another disk or host) still has them";

/// The depth tonight: `1/N` becomes the slice the folder's history (or,
/// without one, the date) points at ([`choose_slice`]).
pub fn depth_for(share: ReadShare, set: &std::path::Path, today: chrono::NaiveDate) -> Depth {
    match share {
        ReadShare::None => Depth::Structure,
        ReadShare::All => Depth::Full,
        ReadShare::Share(n) => {
            let history = set
                .parent()
                .map(|dir| history(dir, n, today))
                .unwrap_or_default();
            Depth::Slice {
                k: choose_slice(n, &history, today),
                n,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(k: u32, at: &str) -> Read1 {
        Read1 {
            slice: Some(k),
            at: at.to_owned(),
            ok: true,
            problems: 0,
            set: "s".to_owned(),
        }
    }

    #[test]
    fn read_shares_parse_and_refuse() {
        assert_eq!(ReadShare::parse("all"), Ok(ReadShare::All));
        assert_eq!(ReadShare::parse("none"), Ok(ReadShare::None));
        assert_eq!(ReadShare::parse("1/1"), Ok(ReadShare::All));
        assert_eq!(ReadShare::parse("1/7"), Ok(ReadShare::Share(7)));
        for bad in ["1/0", "2/7", "1/x", "some", "1/1001", ""] {
            assert!(ReadShare::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_path_is_in_exactly_one_slice_and_slices_are_roughly_even() {
        let mut count = [0u32; 7];
        for i in 0..7000 {
            let rel = format!("dir{}/file{i}", i % 13);
            let k = slice_of(rel.as_bytes(), 7);
            assert!((1..=7).contains(&k));
            assert_eq!(k, slice_of(rel.as_bytes(), 7), "stable");
            count[(k - 1) as usize] += 1;
        }
        assert!(count.iter().all(|&c| (800..1200).contains(&c)), "{count:?}");
    }

    #[test]
    fn the_slice_read_is_the_oldest_and_a_skipped_night_skips_no_slice() {
        let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2026, 11, d).expect("date");
        // No history: successive days point at successive slices.
        let by_date: Vec<u32> = (1..=7).map(|d| choose_slice(7, &[], day(d))).collect();
        let mut sorted = by_date.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (1..=7).collect::<Vec<_>>(), "{by_date:?}");
        // With history, over 7 verifies on days 1, 2, 3, 5, 6, 8, 9 (never
        // on day 4 or 7 of the week), every slice is read once.
        let mut history = Vec::new();
        let mut read = Vec::new();
        for d in [1, 2, 3, 5, 6, 8, 9] {
            let k = choose_slice(7, &history, day(d));
            read.push(k);
            history = record(7, history, at(k, &format!("2026-11-{d:02}T02:00:00"))).last;
        }
        read.sort_unstable();
        assert_eq!(read, (1..=7).collect::<Vec<_>>());
        // The next is the one read longest ago.
        let k = choose_slice(7, &history, day(10));
        assert_eq!(
            history
                .iter()
                .min_by_key(|r| r.at.clone())
                .and_then(|r| r.slice),
            Some(k)
        );
    }

    #[test]
    fn a_read_dated_after_today_or_not_a_time_does_not_keep_its_slice_from_being_read() {
        let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2026, 11, d).expect("date");
        // Slice 3 was read by a clock set years ahead, slice 5 carries a
        // forged time; the others were read on the nights before.
        let mut history: Vec<Read1> = [1, 2, 4, 6, 7]
            .iter()
            .map(|&k| at(k, &format!("2026-11-{:02}T02:00:00", k + 1)))
            .collect();
        history.push(at(3, "2031-01-01T02:00:00"));
        history.push(at(5, "zzzz"));
        let mut read = Vec::new();
        for d in 10..12 {
            let k = choose_slice(7, &history, day(d));
            read.push(k);
            history = record(7, history, at(k, &format!("2026-11-{d:02}T02:00:00"))).last;
        }
        read.sort_unstable();
        assert_eq!(read, [3, 5]);
    }

    /// A full read that passed, of manifest `c`.
    fn passed_full() -> Marker {
        Marker {
            format: FORMAT.to_owned(),
            at: "2026-11-23T02:00:00".to_owned(),
            run_id: "r".to_owned(),
            manifest_checksum: "c".to_owned(),
            level: "full".to_owned(),
            slice: None,
            ok: true,
            problems: 0,
            error: None,
            slices: None,
            full: None,
        }
    }

    #[test]
    fn a_marker_of_another_user_or_that_others_can_write_does_not_count() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let set = dir.path().join("2026-11-23");
        let good = passed_full();
        write(&set, &good).expect("write");
        let marker = path(&set).expect("path");
        assert!(passed(&set, Some("c")));
        std::fs::set_permissions(&marker, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        assert!(read(&marker).is_err() && !passed(&set, Some("c")));
        std::fs::set_permissions(&marker, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(passed(&set, Some("c")));
        // Planted by another user (only root can give a file away).
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&marker, Some(54321), None).expect("chown");
            let e = read(&marker).expect_err("another user's");
            assert!(e.to_string().contains("user 54321"), "{e}");
            assert!(!passed(&set, Some("c")));
            // The folder's owner is trusted: it can write the folder anyway.
            std::os::unix::fs::chown(dir.path(), Some(54321), None).expect("chown");
            assert!(passed(&set, Some("c")));
        }
    }

    #[test]
    fn old_markers_read_as_passed_and_other_text_is_refused() {
        let m = parse(
            br#"{"verified_at":"2026-11-23T02:00:00","run_id":"r","manifest_checksum":"c","hashes":true}"#,
        )
        .expect("legacy");
        assert!(m.ok && m.level == "full" && m.manifest_checksum == "c");
        assert!(parse(b"{}").is_err());
        assert!(parse(br#"{"format":"ward-verified/9"}"#).is_err());
        assert!(parse(b"garbage").is_err());
    }

    #[test]
    fn a_marker_is_not_followed_through_a_symlink_nor_read_when_huge() {
        let dir = tempfile::tempdir().expect("tempdir");
        let set = dir.path().join("2026-11-23");
        let good = passed_full();
        write(&set, &good).expect("write");
        let marker = path(&set).expect("path");
        assert_eq!(read(&marker).expect("read"), Some(good.clone()));
        assert!(passed(&set, Some("c")) && !passed(&set, Some("other")));
        let other = dir.path().join("other");
        std::fs::rename(&marker, &other).expect("move");
        std::os::unix::fs::symlink(&other, &marker).expect("symlink");
        assert!(read(&marker).is_err() && !passed(&set, None));
        std::fs::remove_file(&marker).expect("rm");
        std::fs::write(&marker, vec![b' '; (MAX_BYTES + 1) as usize]).expect("huge");
        assert!(read(&marker).is_err());
        std::fs::remove_file(&marker).expect("rm");
        assert_eq!(read(&marker).expect("absent"), None);
    }
}
