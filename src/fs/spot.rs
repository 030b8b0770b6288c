//! The spot check of a backup set against its live source (`verify`'s
//! `against:`): the manifest comparison proves the set is what was written;
//! only a look at the source proves that what was written is the right
//! thing. A backup that copied the wrong folder, or nothing, verifies clean
//! against its own manifest; here it fails.
//!
//! The source is listed in full (metadata only) for its file count; a
//! sample of its files, different each night, is compared with the set by
//! size and content. A source file modified after the snapshot was made is
//! "changed since", not a failure.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::FsError;
use super::manifest::{Manifest, ManifestEntry};

/// The sample and the tolerances.
#[derive(Clone, Debug, PartialEq)]
pub struct SpotPolicy {
    /// Sample one file in `share` of the source's.
    pub share: u32,
    /// At least this many files (all if the source has fewer).
    pub min: usize,
    /// At most this many files.
    pub max: usize,
    /// Percent of sampled files that may be missing from the set.
    pub max_missing: f64,
    /// Percent of sampled files that may differ (unmodified since the snapshot).
    pub max_changed: f64,
    /// Percent by which the set's file count may differ from the source's.
    pub max_count_diff: f64,
}

impl Default for SpotPolicy {
    fn default() -> SpotPolicy {
        SpotPolicy {
            share: 100,
            min: 100,
            max: 2000,
            max_missing: 1.0,
            max_changed: 1.0,
            max_count_diff: 10.0,
        }
    }
}

/// What the spot check found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpotReport {
    /// Regular files in the source.
    pub source_files: u64,
    /// Regular files in the set (by its manifest).
    pub set_files: u64,
    /// Files sampled.
    pub sampled: usize,
    /// Sampled files not in the set.
    pub missing: Vec<String>,
    /// Sampled files that differ, not modified since the snapshot: (path, how).
    pub changed: Vec<(String, String)>,
    /// Sampled files modified (or created) since the snapshot was made.
    pub changed_since: usize,
    /// Why the check failed; empty if it passed.
    pub failures: Vec<String>,
}

/// One regular file of the source.
struct SrcFile {
    rel: Vec<u8>,
    size: u64,
    mtime: std::time::SystemTime,
}

/// Lists the regular files below `src` (symlinks are not followed).
fn list_source(src: &Path) -> Result<Vec<SrcFile>, FsError> {
    let mut out = Vec::new();
    let mut todo: Vec<(PathBuf, Vec<u8>)> = vec![(src.to_path_buf(), Vec::new())];
    while let Some((dir, rel)) = todo.pop() {
        let cannot = |e: std::io::Error| {
            FsError::new(format!(
                "spot check: cannot list {} of the source: {e}",
                dir.display()
            ))
        };
        for item in std::fs::read_dir(&dir).map_err(cannot)? {
            let item = item.map_err(cannot)?;
            let mut child = rel.clone();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(item.file_name().as_bytes());
            let meta = std::fs::symlink_metadata(item.path()).map_err(cannot)?;
            if meta.is_dir() {
                todo.push((item.path(), child));
            } else if meta.is_file() {
                out.push(SrcFile {
                    rel: child,
                    size: meta.len(),
                    mtime: meta.modified().map_err(cannot)?,
                });
            }
        }
    }
    Ok(out)
}

/// sha256 of the regular file `rel` below `root`, no symlink followed, a
/// FIFO refused without waiting (see [`super::dumpcheck::open_file_below`]).
fn sha256_below(root: &Path, rel: &[u8]) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = super::dumpcheck::open_file_below(root, rel)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// True if a source file's read failed because it is no longer a
/// regular file reached without a symlink (removed, or replaced since it
/// was listed).
fn replaced(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::NotFound
        || err.kind() == std::io::ErrorKind::InvalidInput
        || err.raw_os_error().is_some_and(|c| {
            c == rustix::io::Errno::LOOP.raw_os_error()
                || c == rustix::io::Errno::NOTDIR.raw_os_error()
        })
}

/// Percent of `part` in `whole` (0 for an empty whole).
fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Compares the set `set` (its manifest `m`, made at `made`) with the
/// source `src`. `seed` (the run's date) picks the sample: another sample
/// each night, the same on a re-run of the night.
pub fn check(
    src: &Path,
    set: &Path,
    m: &Manifest,
    made: std::time::SystemTime,
    seed: &str,
    policy: &SpotPolicy,
) -> Result<SpotReport, FsError> {
    let meta = std::fs::metadata(src).map_err(|e| {
        FsError::new(format!(
            "spot check: cannot open the source {}: {e}",
            src.display()
        ))
    })?;
    if !meta.is_dir() {
        return Err(FsError::new(format!(
            "spot check: the source {} is not a folder",
            src.display()
        )));
    }
    let mut files = list_source(src)?;
    let mut report = SpotReport {
        source_files: files.len() as u64,
        set_files: m.files,
        ..SpotReport::default()
    };
    let (s, t) = (report.source_files, report.set_files);
    let count_diff = if s == 0 {
        if t == 0 { 0.0 } else { 100.0 }
    } else {
        s.abs_diff(t) as f64 * 100.0 / s as f64
    };
    if s == 0 && t > 0 {
        report.failures.push(format!(
            "the source {} holds no files, the set {t}: is the source mounted?",
            src.display()
        ));
    } else if t == 0 && s > 0 {
        report.failures.push(format!(
            "the set holds no files, the source {} holds {s}: the backup copied nothing",
            src.display()
        ));
    } else if count_diff > policy.max_count_diff {
        report.failures.push(format!(
            "the set holds {t} files, the source {} {s} ({count_diff:.1}% apart, \
             max_count_diff {}%)",
            src.display(),
            policy.max_count_diff
        ));
    }

    // The sample: the files whose hash with tonight's seed is lowest.
    let want = files
        .len()
        .div_ceil(policy.share.max(1) as usize)
        .clamp(policy.min, policy.max.max(policy.min))
        .min(files.len());
    let rank = |rel: &[u8]| {
        let mut h = Sha256::new();
        h.update(seed.as_bytes());
        h.update([0]);
        h.update(rel);
        h.finalize()
    };
    files.sort_by_cached_key(|f| rank(&f.rel));
    files.truncate(want);
    report.sampled = files.len();

    let by_path: HashMap<Vec<u8>, &ManifestEntry> =
        m.entries.iter().map(|e| (e.rel_bytes(), e)).collect();
    let base = m
        .base
        .as_ref()
        .and_then(|b| set.parent().map(|p| p.join(b)));
    for f in &files {
        let shown = String::from_utf8_lossy(&f.rel).into_owned();
        // The manifest's time has whole seconds: a file modified in the
        // second the snapshot was made is not excused.
        let since = f
            .mtime
            .duration_since(made)
            .is_ok_and(|d| d >= std::time::Duration::from_secs(1));
        let Some(e) = by_path.get(&f.rel) else {
            if since {
                report.changed_since += 1;
            } else {
                report.missing.push(shown);
            }
            continue;
        };
        let how = if e.kind != "file" {
            Some(format!("a {} in the set, a file in the source", e.kind))
        } else if e.size != Some(f.size) {
            Some(format!(
                "{} bytes in the source, {} in the set",
                f.size,
                e.size.unwrap_or(0)
            ))
        } else {
            // The source is live and others write it: a file removed since
            // it was listed, or replaced by a symlink, a FIFO or a folder,
            // changed since the snapshot (not a failure, and not read).
            let src_sum = match sha256_below(src, &f.rel) {
                Ok(sum) => sum,
                Err(err) if replaced(&err) => {
                    report.changed_since += 1;
                    continue;
                }
                Err(err) => {
                    return Err(FsError::new(format!(
                        "spot check: cannot read {} of the source: {err}",
                        shown
                    )));
                }
            };
            let holder = match (&base, e.in_base) {
                (Some(b), true) => b.as_path(),
                _ => set,
            };
            let set_sum = match &e.sha256 {
                Some(sum) => Ok(sum.clone()),
                None => sha256_below(holder, &f.rel),
            };
            match set_sum {
                Ok(sum) if sum == src_sum => None,
                Ok(_) => Some("content differs (sha256)".to_owned()),
                Err(err) => Some(format!("unreadable in the set: {err}")),
            }
        };
        match how {
            None => {}
            Some(_) if since => report.changed_since += 1,
            Some(how) => report.changed.push((shown, how)),
        }
    }
    let n = report.sampled;
    let examples = |paths: Vec<&str>| {
        let mut shown: Vec<&str> = paths.into_iter().take(3).collect();
        shown.sort_unstable();
        shown.join(", ")
    };
    let missing = percent(report.missing.len(), n);
    if missing > policy.max_missing {
        report.failures.push(format!(
            "{} of {n} sampled files of {} are not in the set ({missing:.1}%, max_missing {}%), \
             e.g. {}: is the backup copying the right folder?",
            report.missing.len(),
            src.display(),
            policy.max_missing,
            examples(report.missing.iter().map(String::as_str).collect())
        ));
    }
    let changed = percent(report.changed.len(), n);
    if changed > policy.max_changed {
        report.failures.push(format!(
            "{} of {n} sampled files differ from {} although not modified since the snapshot \
             ({changed:.1}%, max_changed {}%), e.g. {}",
            report.changed.len(),
            src.display(),
            policy.max_changed,
            examples(report.changed.iter().map(|c| c.0.as_str()).collect())
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_file_replaced_since_it_was_listed_is_not_read_and_does_not_hang() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("d")).expect("src");
        std::fs::write(src.join("d/f"), b"data").expect("f");
        assert_eq!(
            sha256_below(&src, b"d/f").expect("read"),
            super::super::manifest::sha256_file(&src.join("d/f")).expect("sum")
        );
        // A FIFO in its place: refused at once, not waited on.
        std::fs::remove_file(src.join("d/f")).expect("rm");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            src.join("d/f").as_path(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("fifo");
        let e = sha256_below(&src, b"d/f").expect_err("fifo");
        assert!(replaced(&e), "{e}");
        // A symlink to a file elsewhere, or a folder on the way swapped
        // for a symlink: not followed.
        std::fs::write(dir.path().join("secret"), b"s").expect("secret");
        std::fs::remove_file(src.join("d/f")).expect("rm");
        std::os::unix::fs::symlink(dir.path().join("secret"), src.join("d/f")).expect("sym");
        let e = sha256_below(&src, b"d/f").expect_err("symlink");
        assert!(replaced(&e), "{e}");
        std::fs::create_dir(dir.path().join("elsewhere")).expect("elsewhere");
        std::fs::write(dir.path().join("elsewhere/f"), b"data").expect("f");
        std::fs::remove_dir_all(src.join("d")).expect("rm d");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), src.join("d")).expect("sym");
        let e = sha256_below(&src, b"d/f").expect_err("folder symlink");
        assert!(replaced(&e), "{e}");
        // Gone.
        let e = sha256_below(&src, b"gone/f").expect_err("gone");
        assert!(replaced(&e), "{e}");
    }

    #[test]
    fn percent_of_nothing_is_zero() {
        assert_eq!(percent(0, 0), 0.0);
        assert_eq!(percent(1, 4), 25.0);
    }
}
