//! The decisions as people read them: a table (the run's log, `ward
//! plan`), with each snapshot's unique bytes where they were counted.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use super::decide::{Decision, Selection};
use crate::fs::FsError;
use crate::fs::unique::{ScanError, scan};
use crate::report::fmt_bytes;

/// A snapshot's unique bytes: those of the files all of whose names are
/// inside it, what deleting it frees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unique {
    /// Counted.
    Bytes(u64),
    /// Not counted (too costly here, or not asked).
    Skipped,
    /// Could not be counted: why.
    Failed(String),
}

impl Unique {
    fn cell(&self) -> String {
        match self {
            Unique::Bytes(n) => fmt_bytes(*n),
            Unique::Skipped => "-".to_owned(),
            Unique::Failed(_) => "?".to_owned(),
        }
    }
}

/// Counts the unique bytes of each of `names` in `dir`, one snapshot at a
/// time (so that only one snapshot's linked files are in memory). With a
/// `budget` of entries for all of them together, stops counting once it is
/// spent: the rest are [`Unique::Skipped`], and the second value is true.
/// A cancellation is an error; a snapshot that cannot be read is
/// [`Unique::Failed`].
pub fn count(
    dir: &Path,
    names: &[&str],
    threads: usize,
    cancelled: &AtomicBool,
    budget: Option<u64>,
) -> Result<(HashMap<String, Unique>, bool), FsError> {
    let mut left = budget;
    let mut out = HashMap::new();
    let mut spent = false;
    for name in names {
        if spent {
            out.insert((*name).to_owned(), Unique::Skipped);
            continue;
        }
        let value = match scan(&dir.join(name), threads, cancelled, left) {
            Ok(links) => {
                left = left.map(|b| b.saturating_sub(links.entries));
                Unique::Bytes(links.unique())
            }
            Err(ScanError::TooMany(_)) => {
                spent = true;
                Unique::Skipped
            }
            Err(ScanError::Fs(FsError::Stopped)) => return Err(FsError::Stopped),
            Err(ScanError::Fs(e)) => Unique::Failed(e.to_string()),
        };
        out.insert((*name).to_owned(), value);
    }
    Ok((out, spent))
}

/// The table: one row per snapshot, newest first (SNAPSHOT, DECISION,
/// UNIQUE with `unique`, WHY), and a legend line for `keep*`.
pub fn table(sel: &Selection, unique: Option<&HashMap<String, Unique>>) -> Vec<String> {
    let w_name = sel
        .snapshots
        .iter()
        .map(|j| j.name.len())
        .max()
        .unwrap_or(0)
        .max("SNAPSHOT".len());
    let cells: Vec<String> = sel
        .snapshots
        .iter()
        .map(|j| {
            unique
                .and_then(|u| u.get(&j.name))
                .map_or_else(|| "-".to_owned(), Unique::cell)
        })
        .collect();
    let w_bytes = cells.iter().map(String::len).max().unwrap_or(0).max(6);
    let row = |name: &str, decision: &str, bytes: &str, why: &str| match unique {
        Some(_) => format!("{name:<w_name$}  {decision:<8}  {bytes:>w_bytes$}  {why}"),
        None => format!("{name:<w_name$}  {decision:<8}  {why}"),
    };
    let mut lines = vec![row("SNAPSHOT", "DECISION", "UNIQUE", "WHY")];
    for (j, bytes) in sel.snapshots.iter().zip(&cells) {
        lines.push(row(&j.name, j.decision.word(), bytes, &j.why()));
    }
    if sel
        .snapshots
        .iter()
        .any(|j| j.decision == Decision::NotCounted)
    {
        lines.push(
            "keep* = kept and not counted: only complete, verified snapshots count toward the rules"
                .to_owned(),
        );
    }
    if let Some(u) = unique {
        for j in &sel.snapshots {
            if let Some(Unique::Failed(e)) = u.get(&j.name) {
                lines.push(format!("unique bytes of {} not counted: {e}", j.name));
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::snapshots::{Listing, Snapshot};

    #[test]
    fn a_budget_counts_the_first_snapshots_and_skips_the_rest() {
        let d = tempfile::tempdir().expect("tempdir");
        for (name, files) in [("new", 2), ("old", 5)] {
            for i in 0..files {
                let path = d.path().join(name).join(format!("f{i}"));
                std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                std::fs::write(&path, "12345").expect("write");
            }
        }
        let never = AtomicBool::new(false);
        let (u, spent) =
            count(d.path(), &["new", "old", "gone"], 2, &never, Some(4)).expect("count");
        assert!(spent);
        assert_eq!(u["new"], Unique::Bytes(10));
        assert_eq!(u["old"], Unique::Skipped);
        assert_eq!(u["gone"], Unique::Skipped);
        let (u, spent) = count(d.path(), &["new", "old", "gone"], 2, &never, None).expect("count");
        assert!(!spent);
        assert_eq!(u["old"], Unique::Bytes(25));
        assert!(matches!(u["gone"], Unique::Failed(_)));

        // The table: a column for the bytes, the legend, the failure named.
        let snap = |name: &str, day, verified| Snapshot {
            name: name.into(),
            time: chrono::NaiveDate::from_ymd_opt(2026, 1, day)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .expect("t"),
            complete: true,
            verified,
            verify_failed: false,
            base: None,
        };
        let listing = Listing {
            snapshots: vec![
                snap("new", 3, true),
                snap("old", 1, true),
                snap("gone", 2, false),
            ],
            latest_target: None,
            deleting: vec![],
        };
        let p: super::super::RotateParams =
            serde_json::from_value(serde_json::json!({"dir": "x", "keep_last": 1}))
                .expect("params");
        let now = listing.snapshots[0].time;
        let sel = super::super::select(&p, &listing, now);
        let lines = table(&sel, Some(&u));
        assert_eq!(lines[0], "SNAPSHOT  DECISION  UNIQUE  WHY");
        assert!(
            lines.iter().any(|l| l.starts_with(
                "old       delete      25 B  no rule keeps it: keep_last 1: it is #2"
            )),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("gone      keep*          ?  not counted: not verified")),
            "{lines:#?}"
        );
        assert!(
            lines.iter().any(|l| l.starts_with("keep* = ")),
            "{lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("unique bytes of gone not counted: cannot open folder")),
            "{lines:#?}"
        );
    }
}
