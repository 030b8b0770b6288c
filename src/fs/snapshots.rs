//! A snapshots folder, as `snapshot.hardlink` makes it and `rotate` and
//! `verify` read it: snapshot names with same-day suffixes (`NAME`,
//! `NAME.2`), the files beside each snapshot (`.NAME.manifest.json`,
//! `.NAME.verified`, `.NAME.base`, `.NAME.unlinks.json`; files, so never
//! listed as snapshots), and a listing by age.

use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveDateTime};

use super::FsError;
use super::manifest;

/// The marker `rotate` looks for: `<dir>/.<name>.verified` next to the set
/// (its format: [`super::verified`]).
pub fn marker_path(set: &std::path::Path) -> Option<std::path::PathBuf> {
    super::verified::path(set)
}

/// Whether the last verify of `set` passed (`Some(true)`) or recorded a
/// failure (`Some(false)`), counting only a marker of the manifest beside
/// it when that manifest's checksum can be read from its tail (cheap: no
/// parse of a 100,000-entry manifest per snapshot listed). A marker written
/// before a manifest was replaced no longer counts, nor does one beside a
/// manifest whose checksum cannot be read (cut short or damaged since the
/// verify: ward writes the checksum as its last field): with no checksum
/// to compare, any passed marker would count. `None`: no marker counts.
pub fn last_verify(set: &Path) -> Option<bool> {
    match manifest::located(set) {
        Some(m) => super::verified::last_result(set, Some(&manifest::recorded_checksum(&m)?)),
        None => super::verified::last_result(set, None),
    }
}

/// `NAME` for the first snapshot of a name, `NAME.2`, `NAME.3`, ... for
/// the later ones (a second run on the same day).
pub fn with_suffix(name: &str, k: u32) -> String {
    if k <= 1 {
        name.to_owned()
    } else {
        format!("{name}.{k}")
    }
}

/// `(NAME, k)` for `NAME.k` (k >= 2, no leading zero), else `(name, 1)`:
/// the order of snapshots that share a name.
pub fn split_suffix(name: &str) -> (&str, u32) {
    if let Some((stem, k)) = name.rsplit_once('.')
        && !stem.is_empty()
        && let Some(n) = suffix_number(k)
    {
        return (stem, n);
    }
    (name, 1)
}

/// `k` of a same-day suffix `NAME.k` (k >= 2, no leading zero), else None.
pub fn suffix_number(k: &str) -> Option<u32> {
    if k.is_empty() || k.len() > 9 || k.starts_with('0') || !k.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    k.parse().ok().filter(|n| *n >= 2)
}

/// A snapshot named like `set` with a suffix (`NAME.2`, ...) that the run
/// `run_id` made, if `set` itself is not that run's: a later step that
/// names the snapshot by its template would otherwise check an older one.
/// A folder that cannot be listed is an error: the guard must not pass
/// silently and let the older snapshot be checked and marked.
pub fn made_later_by(set: &Path, run_id: &str) -> Result<Option<std::path::PathBuf>, FsError> {
    let (Some(name), Some(dir)) = (set.file_name().and_then(|n| n.to_str()), set.parent()) else {
        return Ok(None);
    };
    let cannot = |e: std::io::Error| {
        FsError::new(format!(
            "cannot list {} to look for this run's snapshot: {e}",
            dir.display()
        ))
    };
    let mut items = Vec::new();
    for item in std::fs::read_dir(dir).map_err(cannot)? {
        items.push(item.map_err(cannot)?);
    }
    let mut later: Vec<(u32, std::path::PathBuf)> = items
        .into_iter()
        .filter_map(|item| {
            let file = item.file_name().to_str()?.to_owned();
            let k = suffix_number(file.strip_prefix(name)?.strip_prefix('.')?)?;
            Some((k, item.path()))
        })
        .collect();
    later.sort_by_key(|l| std::cmp::Reverse(l.0));
    Ok(later
        .into_iter()
        .map(|(_, p)| p)
        .find(|p| manifest::find(p).is_ok_and(|f| f.is_some_and(|f| f.manifest.run_id == run_id))))
}

/// Removes a file if it exists; any other error names the file.
pub fn remove_if_present(path: &Path) -> Result<(), FsError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FsError::new(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}

/// `<dir>/.<name>.base`: present for incremental snapshots, holding the base's name.
pub fn base_marker(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join(format!(".{name}.base"))
}

/// A snapshot found in the folder.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// Folder name.
    pub name: String,
    /// When it was taken (from its name, else its folder's mtime).
    pub time: NaiveDateTime,
    /// It has a manifest (the snapshot completed).
    pub complete: bool,
    /// Its last verify passed (a marker that records a failure, is of
    /// another manifest or cannot be read does not count).
    pub verified: bool,
    /// Its last verify, of the manifest beside it, recorded a failure
    /// (only to explain why it does not count).
    pub verify_failed: bool,
    /// For incremental snapshots: the base it needs.
    pub base: Option<String>,
}

impl Snapshot {
    /// Orders snapshots from oldest to newest: by the time in the name (or
    /// the folder's), and `NAME.2` after `NAME` (a later run, same day).
    pub fn age_order(&self) -> (NaiveDateTime, (&str, u32)) {
        (self.time, split_suffix(&self.name))
    }
}

/// What is in a snapshot folder.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    /// Snapshots, any order.
    pub snapshots: Vec<Snapshot>,
    /// The name `latest` points at, if any.
    pub latest_target: Option<String>,
    /// `.NAME.deleting` folders left by an interrupted rotation.
    pub deleting: Vec<String>,
}

/// Reads a snapshot name's date: `2026-11-23`, `2026-11-23T02:00:00`,
/// `2026-11-23_0200`...; a same-name suffix (`2026-11-23.2`) is not part of it.
pub fn time_from_name(name: &str) -> Option<NaiveDateTime> {
    let name = split_suffix(name).0;
    let date = NaiveDate::parse_from_str(name.get(..10)?, "%Y-%m-%d").ok()?;
    let rest = name.get(10..).unwrap_or("");
    let digits: String = rest.chars().filter(char::is_ascii_digit).take(6).collect();
    let (h, m, s) = match digits.len() {
        6 => (
            digits[0..2].parse().ok()?,
            digits[2..4].parse().ok()?,
            digits[4..6].parse().ok()?,
        ),
        4 => (digits[0..2].parse().ok()?, digits[2..4].parse().ok()?, 0),
        _ => (0, 0, 0),
    };
    date.and_hms_opt(h, m, s)
}

/// Whether a file ward reads beside a snapshot (a manifest, an unlinks
/// file) is ward's own as far as its metadata tells: owned by this user
/// or root, and writable by nobody else. A hash taken from a file anyone
/// else could write would let them hide a change from `verify`.
pub fn wards_own(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    super::trust::owned_by_us(meta.uid()) && !super::trust::writable_by_others(meta.mode())
}

/// The manifest of `set` as the next snapshot would take hashes from it
/// ([`manifest::previous`]), only if it is ward's own ([`wards_own`]);
/// Err says why not. The snapshot that reuses its hashes and the rotation
/// that records its unlinks for that snapshot take it by the same rule.
pub fn own_previous(set: &Path) -> Result<manifest::Previous, String> {
    let previous = match manifest::previous(set) {
        Ok(Some(p)) => p,
        Ok(None) => return Err(format!("{} has no manifest", set.display())),
        Err(e) => {
            return Err(format!(
                "the manifest of {} cannot be used ({e})",
                set.display()
            ));
        }
    };
    match std::fs::symlink_metadata(&previous.path) {
        Ok(meta) if wards_own(&meta) => Ok(previous),
        Ok(_) => Err(format!(
            "the manifest {} is not ward's own (another owner, or others may write it)",
            previous.path.display()
        )),
        Err(e) => Err(format!("cannot read {}: {e}", previous.path.display())),
    }
}

/// The snapshot the next snapshot of the folder takes its hashes from:
/// the one `latest` points at if it is complete, else the newest complete
/// one; snapshots for which `skip` is true are not considered (the one
/// being made; those a rotation deletes).
pub fn carried_from(listing: &Listing, skip: impl Fn(&str) -> bool) -> Option<&Snapshot> {
    let usable = |s: &&Snapshot| s.complete && !skip(&s.name);
    listing
        .latest_target
        .as_deref()
        .and_then(|name| {
            listing
                .snapshots
                .iter()
                .filter(usable)
                .find(|s| s.name == name)
        })
        .or_else(|| {
            listing
                .snapshots
                .iter()
                .filter(usable)
                .max_by(|a, b| a.age_order().cmp(&b.age_order()))
        })
}

/// Lists `dir` (read-only); `latest` is the name of the link to protect.
pub fn list(dir: &Path, latest: &str) -> Result<Listing, FsError> {
    let mut listing = Listing::default();
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(listing),
        Err(e) => {
            return Err(FsError::new(format!("cannot list {}: {e}", dir.display())));
        }
    };
    // What cannot be read is an error, never left out: a `latest` link or a
    // base marker that is missed would let rotate delete what it protects.
    let unreadable = |path: &Path, e: std::io::Error| {
        FsError::new(format!("cannot read {}: {e}", path.display()))
    };
    for item in read {
        let item = item.map_err(|e| unreadable(dir, e))?;
        let name = item.file_name().to_string_lossy().into_owned();
        let ft = item.file_type().map_err(|e| unreadable(&item.path(), e))?;
        if ft.is_symlink() {
            if name == latest {
                let target =
                    std::fs::read_link(item.path()).map_err(|e| unreadable(&item.path(), e))?;
                listing.latest_target =
                    target.file_name().map(|n| n.to_string_lossy().into_owned());
            }
            continue;
        }
        if !ft.is_dir() {
            continue;
        }
        if let Some(inner) = name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".deleting"))
        {
            let _ = inner;
            listing.deleting.push(name);
            continue;
        }
        if name.starts_with('.') || name.ends_with(".partial") {
            continue;
        }
        let path: PathBuf = item.path();
        // A time that cannot be read is not the epoch: that would make the
        // snapshot the oldest, the first to go.
        let time = match time_from_name(&name) {
            Some(t) => t,
            None => std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .map(|t| chrono::DateTime::<chrono::Local>::from(t).naive_local())
                .map_err(|e| unreadable(&path, e))?,
        };
        let marker = base_marker(dir, &name);
        let base = match std::fs::read_to_string(&marker) {
            Ok(b) => Some(b.trim().to_owned()).filter(|b| !b.is_empty()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(unreadable(&marker, e)),
        };
        let last = last_verify(&path);
        listing.snapshots.push(Snapshot {
            // Both only ever make a snapshot count less (an incomplete or
            // unverified snapshot is never deleted), so an unreadable
            // manifest or marker cannot cost a backup.
            complete: manifest::present(&path),
            verified: last == Some(true),
            verify_failed: last == Some(false),
            base,
            name,
            time,
        });
    }
    Ok(listing)
}
