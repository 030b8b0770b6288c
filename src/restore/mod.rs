//! Guided restores (`restore:`, docs/playbook.md "Restore"): choosing the
//! snapshot, the guards read from its manifest before anything changes,
//! and the marker a restore leaves until every step succeeded.
//!
//! The CLI calls these between planning and starting the run: the chosen
//! snapshot becomes a `--var` (so a resume restores the same one), and
//! what was chosen and overridden is recorded as run events.

mod guide;

pub use guide::{Guided, choose_snapshot, guide, resumed};

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use crate::error::WardError;
use crate::fs::{manifest, snapshots};
use crate::model::{NoServer, PostgresGuard, RestoreSpec};

/// A snapshot that can be restored: a folder with a ward manifest.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The folder's name.
    pub name: String,
    /// The folder.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: manifest::Manifest,
    /// A clean `verify` marked it.
    pub verified: bool,
}

impl Candidate {
    fn of(path: &Path) -> Result<Option<Candidate>, WardError> {
        let found = manifest::find(path).map_err(|e| WardError::Usage(e.to_string()))?;
        Ok(found.map(|f| Candidate {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: path.to_path_buf(),
            verified: crate::fs::verified::passed(path, Some(&f.manifest.checksum)),
            manifest: f.manifest,
        }))
    }

    /// One line for lists and questions.
    pub fn line(&self) -> String {
        let m = &self.manifest;
        format!(
            "{}  created {}  {}  {} files  {}  scope {}",
            self.name,
            m.created,
            crate::report::fmt_bytes(m.bytes),
            m.files,
            if self.verified {
                "verified"
            } else {
                "NOT verified"
            },
            m.scope.as_deref().unwrap_or("(not recorded)")
        )
    }

    /// What the `confirm:` questions show above themselves.
    pub fn context(&self) -> Vec<String> {
        let m = &self.manifest;
        vec![
            format!("snapshot:  {}", self.path.display()),
            format!(
                "made:      {} on {} by playbook {} (run {})",
                m.created,
                m.host,
                m.playbook.as_deref().unwrap_or("(not recorded)"),
                m.run_id
            ),
            format!(
                "holds:     {} in {} files, scope {}{}",
                crate::report::fmt_bytes(m.bytes),
                m.files,
                m.scope.as_deref().unwrap_or("(not recorded)"),
                m.postgres_version
                    .as_deref()
                    .map(|v| format!(", PostgreSQL {v}"))
                    .unwrap_or_default()
            ),
            format!(
                "verified:  {}",
                if self.verified {
                    "yes (a clean `verify` marked it)"
                } else {
                    "NO: no clean `verify` marked it"
                }
            ),
        ]
    }
}

/// A complete snapshot whose manifest cannot be read: its name and why.
type Damaged = (String, String);

/// The complete snapshots in `dir`, newest first, each read or damaged.
fn listed(dir: &Path) -> Result<Vec<Result<Candidate, Damaged>>, WardError> {
    let listing = snapshots::list(dir, "latest").map_err(|e| WardError::Usage(e.to_string()))?;
    let mut found: Vec<&snapshots::Snapshot> =
        listing.snapshots.iter().filter(|s| s.complete).collect();
    found.sort_by(|a, b| b.age_order().cmp(&a.age_order()));
    let mut out = Vec::new();
    for s in found {
        // One damaged manifest must not hide every other snapshot.
        match Candidate::of(&dir.join(&s.name)) {
            Ok(Some(c)) => out.push(Ok(c)),
            Ok(None) => {}
            Err(e) => out.push(Err((s.name.clone(), e.to_string()))),
        }
    }
    Ok(out)
}

/// The complete snapshots in `dir` whose manifest reads, newest first;
/// each one left out is named on stderr.
pub fn candidates(dir: &Path) -> Result<Vec<Candidate>, WardError> {
    let mut out = Vec::new();
    for c in listed(dir)? {
        match c {
            Ok(c) => out.push(c),
            Err((name, why)) => eprintln!("note: snapshot {name} left out: {why}"),
        }
    }
    Ok(out)
}

/// `--snapshot latest|DATE|NAME|PATH`, resolved against `dir`.
pub fn choose(dir: &Path, wanted: &str) -> Result<Candidate, WardError> {
    let fail = |why: String| {
        WardError::Usage(format!(
            "--snapshot {wanted}: {why}; `ward plan` on the playbook lists the snapshots of {}",
            dir.display()
        ))
    };
    if wanted.contains('/') {
        let path = Path::new(wanted);
        if !path.is_dir() {
            return Err(fail("no such folder".into()));
        }
        return Candidate::of(path)?.ok_or_else(|| {
            fail("that folder has no ward manifest: it is not a complete ward snapshot".into())
        });
    }
    let listed = listed(dir)?;
    if let Some(Err((name, why))) = listed
        .iter()
        .find(|c| wanted == "latest" || c.as_ref().is_err_and(|(n, _)| n == wanted))
        .filter(|c| c.is_err())
    {
        // Not silently the next one: the operator asked for this one.
        return Err(fail(format!(
            "the snapshot {name} cannot be restored: {why}; name another one (`ward plan` lists              them)"
        )));
    }
    let all = candidates(dir)?;
    let pick = if wanted == "latest" {
        all.first()
    } else if chrono::NaiveDate::parse_from_str(wanted, "%Y-%m-%d").is_ok() {
        // The newest snapshot of that day (`NAME.2` after `NAME`), before
        // a folder named like the date: that is the older one of the day.
        let that_day: Vec<&Candidate> = all
            .iter()
            .filter(|c| {
                snapshots::time_from_name(&c.name)
                    .map(|t| t.date().format("%Y-%m-%d").to_string())
                    .or_else(|| c.manifest.created.get(..10).map(str::to_owned))
                    .as_deref()
                    == Some(wanted)
            })
            .collect();
        if let [newest, others @ ..] = that_day.as_slice()
            && !others.is_empty()
        {
            // At 3 a.m. "the snapshot of that day" may mean another one.
            eprintln!(
                "note: --snapshot {wanted}: {} snapshots were made that day; restoring the newest, {}; the other{} ({}) can be given by path, e.g. --snapshot {}",
                that_day.len(),
                newest.name,
                if others.len() == 1 { "" } else { "s" },
                others
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                others[0].path.display()
            );
        }
        that_day
            .first()
            .copied()
            .or_else(|| all.iter().find(|c| c.name == wanted))
    } else {
        all.iter().find(|c| c.name == wanted)
    };
    pick.cloned().ok_or_else(|| {
        if all.is_empty() {
            fail(format!("{} holds no complete snapshot", dir.display()))
        } else {
            fail(format!(
                "no snapshot matches; there are: {}",
                all.iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    })
}

/// At a terminal: lists the snapshots (numbered, newest first) on stderr
/// and reads the number of the one to restore from stdin.
pub fn pick(dir: &Path) -> Result<Candidate, WardError> {
    let all = candidates(dir)?;
    if all.is_empty() {
        return Err(WardError::Usage(format!(
            "{} holds no complete snapshot to restore",
            dir.display()
        )));
    }
    let mut err = std::io::stderr();
    let _ = writeln!(err, "snapshots in {}:", dir.display());
    for (i, c) in all.iter().enumerate() {
        let _ = writeln!(err, "  {:>2}) {}", i + 1, c.line());
    }
    loop {
        let _ = write!(err, "restore which one? [1-{}]: ", all.len());
        let _ = err.flush();
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) => {
                return Err(WardError::Usage(
                    "no snapshot chosen (the terminal closed); nothing was run".into(),
                ));
            }
            Ok(_) => {}
            Err(e) => {
                return Err(WardError::Usage(format!(
                    "cannot read the snapshot's number: {e}"
                )));
            }
        }
        match line.trim().parse::<usize>() {
            Ok(n) if (1..=all.len()).contains(&n) => return Ok(all[n - 1].clone()),
            _ => {
                let _ = writeln!(
                    err,
                    "`{}` is not a number from the list",
                    crate::execute::confirm::plain(line.trim())
                );
            }
        }
    }
}

/// One guard that refused the snapshot.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// The guard's name (`--override NAME`).
    pub guard: &'static str,
    /// What the manifest says.
    pub manifest: String,
    /// What this system has.
    pub here: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "guard `{}`: the snapshot says {}, this system has {}",
            self.guard, self.manifest, self.here
        )
    }
}

/// What the guards compare the manifest with.
pub struct Here<'a> {
    /// This host's name (`ward.host`).
    pub host: &'a str,
    /// The playbook's folder (relative `passfile`s).
    pub work_dir: &'a Path,
}

/// Checks every guard of `spec` against the snapshot's manifest; returns
/// those that refuse. `format` is always checked.
pub async fn check_guards(spec: &RestoreSpec, c: &Candidate, here: &Here<'_>) -> Vec<Refusal> {
    let m = &c.manifest;
    let g = &spec.guards;
    let mut out = Vec::new();
    if m.format != manifest::FORMAT {
        out.push(Refusal {
            guard: "format",
            manifest: format!("format `{}`", m.format),
            here: format!("a ward that reads `{}`", manifest::FORMAT),
        });
    }
    if g.host && m.host != here.host {
        out.push(Refusal {
            guard: "host",
            manifest: format!("host `{}`", m.host),
            here: format!("host `{}`", here.host),
        });
    }
    if let Some(names) = &g.playbook {
        let made_by = m.playbook.as_deref();
        if !made_by.is_some_and(|p| names.iter().any(|n| n == p)) {
            out.push(Refusal {
                guard: "playbook",
                manifest: match made_by {
                    Some(p) => format!("playbook `{p}`"),
                    None => "no playbook (made before ward recorded it)".into(),
                },
                here: format!("a restore of {}", names.join(", ")),
            });
        }
    }
    if let Some(scope) = &g.scope
        && m.scope.as_deref() != Some(scope.as_str())
    {
        out.push(Refusal {
            guard: "scope",
            manifest: match &m.scope {
                Some(s) => format!("scope `{s}`"),
                None => "no scope".into(),
            },
            here: format!("a restore of scope `{scope}`"),
        });
    }
    if let Some(pg) = &g.postgres
        && let Some(r) = postgres_guard(pg, m, here).await
    {
        out.push(r);
    }
    out
}

/// The major version in a version text: `16.4` -> 16, `9.6.24` -> 9.6,
/// `16.4 (Debian 16.4-1)` -> 16.
pub fn major(version: &str) -> Option<String> {
    let v = version.split_whitespace().next()?;
    let mut parts = v.split('.');
    let first = parts.next()?;
    let n: u32 = first.parse().ok()?;
    if n < 10 {
        Some(format!("{n}.{}", parts.next()?))
    } else {
        Some(n.to_string())
    }
}

async fn postgres_guard(
    pg: &PostgresGuard,
    m: &manifest::Manifest,
    here: &Here<'_>,
) -> Option<Refusal> {
    let server = server_version(&pg.db, here.work_dir).await;
    let wanted = m.postgres_version.as_deref().and_then(major);
    match (server, wanted) {
        (Err(why), _) if pg.no_server == NoServer::Pass => {
            tracing::info!("restore guard `postgres`: {why}; passes (no_server: pass)");
            None
        }
        (Err(why), wanted) => Some(Refusal {
            guard: "postgres",
            manifest: match wanted {
                Some(w) => format!("PostgreSQL {w}"),
                None => "no PostgreSQL version".into(),
            },
            here: format!(
                "no server answering at {} ({why}; `no_server: pass` lets a restore that creates it go on)",
                pg.db.describe()
            ),
        }),
        (Ok(_), None) => Some(Refusal {
            guard: "postgres",
            manifest: "no PostgreSQL version (no dump in the snapshot)".into(),
            here: format!("a server at {}", pg.db.describe()),
        }),
        (Ok(have), Some(wanted)) => {
            let have_major = major(&have).unwrap_or_else(|| have.clone());
            (have_major != wanted).then(|| Refusal {
                guard: "postgres",
                manifest: format!("PostgreSQL {wanted}"),
                here: format!("PostgreSQL {have_major} at {}", pg.db.describe()),
            })
        }
    }
}

/// `SHOW server_version` of the server at `db`.
async fn server_version(db: &crate::pg::PgConn, work_dir: &Path) -> Result<String, String> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let cfg = crate::pg::native_config(db, &env, work_dir).map_err(|e| e.to_string())?;
    let (client, connection) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| crate::pg::native_error(&e))?;
    let task = tokio::spawn(connection);
    let rows = client
        .simple_query("SHOW server_version")
        .await
        .map_err(|e| crate::pg::native_error(&e));
    drop(client);
    let _ = task.await;
    rows?
        .into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .ok_or_else(|| "the server did not say its version".into())
}

/// The guards' verdict: an error naming every refusing guard that was not
/// overridden; else the overrides used, in words (recorded).
pub fn verdict(
    playbook: &str,
    c: &Candidate,
    refusals: &[Refusal],
    overrides: &[String],
) -> Result<Vec<String>, WardError> {
    let (overridden, refusing): (Vec<&Refusal>, Vec<&Refusal>) = refusals
        .iter()
        .partition(|r| overrides.iter().any(|o| o == r.guard));
    if !refusing.is_empty() {
        let lines: Vec<String> = refusing.iter().map(|r| format!("  {r}")).collect();
        let flags: Vec<String> = refusing
            .iter()
            .map(|r| format!("--override {}", r.guard))
            .collect();
        return Err(WardError::Guard(format!(
            "playbook `{playbook}` not run: the snapshot {} does not match this system:\n{}\n\
             nothing was run; restore another snapshot (--snapshot), or, if this one is \
             meant, pass {}",
            c.path.display(),
            lines.join("\n"),
            flags.join(" ")
        )));
    }
    Ok(overridden
        .iter()
        .map(|r| {
            format!(
                "{r}; overridden with --override {} by {}",
                r.guard,
                crate::execute::confirm::operator()
            )
        })
        .collect())
}

/// `--override` names that are not guards.
pub fn check_override_names(overrides: &[String]) -> Result<(), WardError> {
    for o in overrides {
        if !crate::model::GUARD_NAMES.contains(&o.as_str()) {
            return Err(WardError::Usage(format!(
                "--override {o}: no such guard; the guards are {}",
                crate::model::GUARD_NAMES.join(", ")
            )));
        }
    }
    Ok(())
}

pub use crate::fs::restore_marker::{Marker, read_marker, remove_marker, write_marker};

#[cfg(test)]
mod tests {
    use super::major;

    #[test]
    fn majors_of_old_and_new_version_numbers() {
        assert_eq!(major("16.4").as_deref(), Some("16"));
        assert_eq!(
            major("16.4 (Debian 16.4-1.pgdg120+1)").as_deref(),
            Some("16")
        );
        assert_eq!(major("9.6.24").as_deref(), Some("9.6"));
        assert_eq!(major("x"), None);
    }
}
