//! What a rehearsal checks after its run:
//!
//! - every folder an `rsync` step restored into a target: compared with
//!   the manifest of the snapshot it came from (the entries the copy was
//!   meant to bring: all of them, `gold/` and `license/` for `gold-only`;
//!   for `filter` only what arrived is compared, nothing is called missing);
//! - every database a `pg.restore` step loaded: each table's row count in
//!   the sandbox cluster equals the rows its dump's COPY block holds
//!   ([`super::dump`]), unless `row_counts: false`; a database whose dump
//!   has no COPY blocks (made with `--inserts`) is compared, loosely, with
//!   the row estimates the dump's side file recorded;
//! - the playbook's own `rehearse.checks` (a query and its expected value,
//!   a path that must exist in a target).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Sandbox;
use crate::fs::manifest::{self, Manifest};
use crate::model::rehearse::{Rehearse, RehearseCheckKind};
use crate::plan::{Plan, ResolvedBody};
use crate::source::playbook_dir;

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// It held.
    Passed,
    /// It did not hold (the detail says why).
    Failed,
    /// It could not be made (the run failed before, or nothing to check).
    Skipped,
}

impl Verdict {
    /// The word the report prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::Skipped => "skipped",
        }
    }
}

/// One check and its verdict.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    /// What was checked.
    pub name: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Why (the first problems, or what held).
    pub detail: String,
}

impl CheckResult {
    fn new(name: impl Into<String>, verdict: Verdict, detail: impl Into<String>) -> CheckResult {
        CheckResult {
            name: name.into(),
            verdict,
            detail: detail.into(),
        }
    }
}

/// Makes every check. `ran`: the run succeeded (else the checks are
/// recorded skipped: a failed restore proves nothing either way).
pub fn run_all(plan: &Plan, r: &Rehearse, sandbox: &Sandbox, ran: bool) -> Vec<CheckResult> {
    let base = playbook_dir(plan.playbook.source.path());
    let mut out = Vec::new();
    let skipped =
        |name: String| CheckResult::new(name, Verdict::Skipped, "the run did not succeed");
    for step in &plan.steps {
        let ResolvedBody::Action(p) = &step.body else {
            continue;
        };
        let json = p.to_json();
        let text = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        match p.action() {
            "rsync" => {
                let (Some(src), Some(dest)) = (text("src"), text("dest")) else {
                    continue;
                };
                let dest = base.join(&dest);
                if !sandbox.targets.iter().any(|(_, t)| dest.starts_with(t)) {
                    continue;
                }
                let name = format!("files restored by `{}` match the snapshot", step.id);
                if !ran {
                    out.push(skipped(name));
                    continue;
                }
                let mode = text("mode").unwrap_or_else(|| "full".into());
                out.push(verify_copy(name, &base.join(src), &dest, &mode));
            }
            "pg.restore" if r.row_counts => {
                let Some(src) = text("src") else { continue };
                let name = format!("row counts of `{}` match its dump", step.id);
                match (&sandbox.cluster, ran) {
                    (Some(c), true) => out.push(row_counts(name, &base.join(src), c)),
                    (Some(_), false) => out.push(skipped(name)),
                    (None, _) => {}
                }
            }
            _ => {}
        }
    }
    for c in &r.checks {
        match &c.kind {
            RehearseCheckKind::Sql { db, query, expect } => {
                let name = c
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{query} = {expect}"));
                let Some(cluster) = sandbox.cluster.as_ref().filter(|_| ran) else {
                    out.push(skipped(name));
                    continue;
                };
                out.push(match cluster.psql(db, query) {
                    Ok(got) if got == *expect => CheckResult::new(name, Verdict::Passed, got),
                    Ok(got) => CheckResult::new(
                        name,
                        Verdict::Failed,
                        format!(
                            "expected {expect}, got {}",
                            if got.is_empty() { "no rows" } else { &got }
                        ),
                    ),
                    Err(e) => {
                        CheckResult::new(name, Verdict::Failed, format!("the query failed: {e}"))
                    }
                });
            }
            RehearseCheckKind::Exists { target, path } => {
                let name = c
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{path} exists in {}", target.value));
                if !ran {
                    out.push(skipped(name));
                    continue;
                }
                let Some(dir) = sandbox.target(&target.value) else {
                    continue;
                };
                let full = dir.join(path);
                out.push(match std::fs::symlink_metadata(&full) {
                    Ok(_) => CheckResult::new(name, Verdict::Passed, full.display().to_string()),
                    Err(e) => {
                        CheckResult::new(name, Verdict::Failed, format!("{}: {e}", full.display()))
                    }
                });
            }
        }
    }
    out
}

/// The snapshot folder holding `src` (which may be a folder inside it),
/// with its manifest, and `src`'s path inside it.
fn snapshot_of(src: &Path) -> Result<(PathBuf, manifest::Found, String), String> {
    let src =
        std::fs::canonicalize(src).map_err(|e| format!("cannot open {}: {e}", src.display()))?;
    let mut set = src.clone();
    loop {
        if let Some(found) = manifest::find(&set).map_err(|e| e.to_string())? {
            let prefix = src
                .strip_prefix(&set)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Ok((set, found, prefix));
        }
        if !set.pop() {
            return Err(format!(
                "{} is in no snapshot with a manifest: nothing to compare the restored files with",
                src.display()
            ));
        }
    }
}

/// The part of `m` under `prefix` as a manifest of its own, for the
/// restored copy of that folder (whose entries are all here, none in a base).
fn sub_manifest(m: &Manifest, prefix: &str, mode: &str) -> Manifest {
    let prefix = prefix.trim_matches('/');
    let mut sub = m.clone();
    sub.base = None;
    sub.entries = m
        .entries
        .iter()
        .filter_map(|e| {
            let rel = if prefix.is_empty() {
                e.path.clone()
            } else {
                e.path.strip_prefix(prefix)?.strip_prefix('/')?.to_owned()
            };
            let first = rel.split('/').next().unwrap_or("");
            if mode == "gold-only" && first != "gold" && first != "license" {
                return None;
            }
            let mut e = e.clone();
            e.path = rel;
            e.path_hex = None;
            e.in_base = false;
            Some(e)
        })
        .collect();
    sub
}

fn verify_copy(name: String, src: &Path, dest: &Path, mode: &str) -> CheckResult {
    let (set, found, prefix) = match snapshot_of(src) {
        Ok(f) => f,
        Err(e) => return CheckResult::new(name, Verdict::Failed, e),
    };
    let sub = sub_manifest(&found.manifest, &prefix, mode);
    let compared = manifest::compare(
        dest,
        &sub,
        false,
        &crate::fs::verified::Depth::Full,
        crate::fs::default_threads(),
        &crate::progress::Progress::default(),
    );
    let mut mismatches = match compared {
        Ok(m) => m,
        Err(e) => return CheckResult::new(name, Verdict::Failed, e.to_string()),
    };
    if mode == "gold-only" {
        // Only those trees were copied: other top-level names are not the copy's.
        mismatches.retain(|m| {
            let first = m.path.split('/').next().unwrap_or("");
            m.kind != manifest::MismatchKind::Extra || first == "gold" || first == "license"
        });
    }
    if mode == "filter" {
        mismatches.retain(|m| m.kind != manifest::MismatchKind::Missing);
    }
    if mismatches.is_empty() {
        return CheckResult::new(
            name,
            Verdict::Passed,
            format!(
                "{}: {} entries match {}",
                dest.display(),
                sub.entries.len(),
                set.display()
            ),
        );
    }
    let first: Vec<String> = mismatches
        .iter()
        .take(5)
        .map(|m| {
            format!(
                "{} {} ({})",
                m.kind.as_str(),
                dest.join(&m.path).display(),
                m.detail
            )
        })
        .collect();
    CheckResult::new(
        name,
        Verdict::Failed,
        format!(
            "{} problem(s) against the manifest of {}: {}{}",
            mismatches.len(),
            set.display(),
            first.join(", "),
            if mismatches.len() > 5 { ", ..." } else { "" }
        ),
    )
}

/// One table whose restored rows are compared: with its dump's COPY
/// block (exact), or, for a database whose dump has no COPY blocks (made
/// with `--inserts`), with the row estimate its side file recorded.
struct Expect {
    db: String,
    table: String,
    rows: u64,
    exact: bool,
}

/// The tables of the databases that have no COPY block in `tables`, with
/// the row estimates the dump's side file (`<dump>.ward.json`) recorded
/// for them; none if it recorded none.
fn estimated(dump: &Path, tables: &[super::dump::TableRows]) -> Vec<Expect> {
    let mut side = dump.as_os_str().to_owned();
    side.push(manifest::SIDECAR_SUFFIX);
    let dbs: Vec<crate::pg::RowEstimates> = std::fs::read(&side)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| serde_json::from_value(v.get("databases")?.clone()).ok())
        .unwrap_or_default();
    dbs.into_iter()
        .filter(|d| !tables.iter().any(|t| t.db == d.name))
        .flat_map(|d| {
            d.row_estimates.into_iter().filter_map(move |(table, n)| {
                Some(Expect {
                    db: d.name.clone(),
                    table,
                    rows: u64::try_from(n?).ok()?,
                    exact: false,
                })
            })
        })
        .collect()
}

/// A restored count close enough to a planner estimate: within half and
/// twice it, with 1000 rows of slack (an estimate lags the rows written
/// since the table was last analyzed; an empty restore of a full table is
/// what this catches).
fn near_estimate(estimate: u64, got: u64) -> bool {
    got.saturating_add(1000) >= estimate / 2
        && got <= estimate.saturating_mul(2).saturating_add(1000)
}

fn row_counts(name: String, dump: &Path, c: &super::sandbox::Cluster) -> CheckResult {
    let tables = match super::dump::table_rows(dump) {
        Ok(t) => t,
        Err(e) => return CheckResult::new(name, Verdict::Failed, e),
    };
    let mut expects: Vec<Expect> = tables
        .iter()
        .map(|t| Expect {
            db: t.db.clone(),
            table: t.table.clone(),
            rows: t.rows,
            exact: true,
        })
        .collect();
    expects.extend(estimated(dump, &tables));
    let mut dbs: Vec<&str> = expects.iter().map(|t| t.db.as_str()).collect();
    dbs.dedup();
    let mut wrong = Vec::new();
    for db in dbs {
        let mine: Vec<_> = expects.iter().filter(|t| t.db == db).collect();
        // One query per database: each table's count on its own line.
        // `ONLY`: a dump copies the rows of each table of an inheritance
        // tree apart (FOSSology's uploadtree_a inherits uploadtree).
        let sql: String = mine
            .iter()
            .map(|t| format!("SELECT count(*) FROM ONLY {};\n", t.table))
            .collect();
        let got = match c.psql(db, &sql) {
            Ok(got) => got,
            Err(e) => {
                return CheckResult::new(
                    name,
                    Verdict::Failed,
                    format!("cannot count the rows in database {db}: {e}"),
                );
            }
        };
        let counts: Vec<&str> = got.lines().collect();
        for (i, t) in mine.iter().enumerate() {
            let n = counts.get(i).and_then(|n| n.trim().parse::<u64>().ok());
            let holds = match n {
                Some(n) if t.exact => n == t.rows,
                Some(n) => near_estimate(t.rows, n),
                None => false,
            };
            if !holds {
                wrong.push(format!(
                    "{db}.{}: {} rows, {} {}",
                    t.table,
                    n.map_or_else(|| "?".to_owned(), |n| n.to_string()),
                    if t.exact {
                        "the dump has"
                    } else {
                        "the dump's side file estimated"
                    },
                    t.rows
                ));
            }
        }
    }
    let estimates = expects.iter().filter(|t| !t.exact).count();
    if wrong.is_empty() {
        let rows: u64 = tables.iter().map(|t| t.rows).sum();
        CheckResult::new(
            name,
            Verdict::Passed,
            format!(
                "{} tables, {rows} rows, as in {}{}",
                tables.len(),
                dump.display(),
                if estimates > 0 {
                    format!(
                        "; {estimates} table(s) without COPY rows near their recorded estimates"
                    )
                } else {
                    String::new()
                }
            ),
        )
    } else {
        CheckResult::new(
            name,
            Verdict::Failed,
            format!("{} table(s) differ: {}", wrong.len(), wrong.join(", ")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_fill_in_for_databases_without_copy_rows_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dump = dir.path().join("all.sql.gz");
        std::fs::write(
            dir.path().join("all.sql.gz.ward.json"),
            r#"{"databases": [
                {"name": "shop", "row_estimates": {"public.items": 5000, "public.new": null}},
                {"name": "app", "row_estimates": {"public.a": 7}}]}"#,
        )
        .expect("side file");
        let copied = [super::super::dump::TableRows {
            db: "app".into(),
            table: "public.a".into(),
            rows: 7,
        }];
        let got: Vec<(String, String, u64, bool)> = estimated(&dump, &copied)
            .into_iter()
            .map(|e| (e.db, e.table, e.rows, e.exact))
            .collect();
        assert_eq!(got, [("shop".into(), "public.items".into(), 5000, false)]);
        assert!(estimated(&dir.path().join("none.sql.gz"), &[]).is_empty());
    }

    #[test]
    fn an_estimate_allows_drift_but_not_an_empty_table() {
        assert!(near_estimate(5000, 5000));
        assert!(near_estimate(5000, 8000));
        assert!(near_estimate(10, 0));
        assert!(!near_estimate(50_000, 0));
        assert!(!near_estimate(50_000, 200_000));
    }
}
