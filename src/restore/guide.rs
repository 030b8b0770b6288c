//! The glue between a planned restore and its run: which snapshot (from
//! `--snapshot`, a pick at a terminal, or the playbook's `snapshot_var`),
//! the guards checked against it, what the run records, and the marker it
//! leaves. `ward run` calls [`choose_snapshot`] then [`guide`]; `ward
//! resume` calls [`resumed`] (the snapshot the run recorded, no guards).

use std::path::Path;

use crate::error::WardError;
use crate::plan::Plan;

/// What a guided restore adds to a run.
#[derive(Default)]
pub struct Guided {
    /// Shown above `confirm:` questions.
    pub context: Vec<String>,
    /// Recorded with the run (what was chosen, each override).
    pub notes: Vec<(crate::state::NoteKind, String)>,
    /// `restore.marker`.
    pub marker: Option<(std::path::PathBuf, super::Marker)>,
}

fn work_dir_of(v: &Plan) -> std::path::PathBuf {
    crate::source::playbook_dir(v.playbook.source.path())
}

/// The snapshot at `value` (a path, relative to the playbook's folder;
/// links such as `latest` followed), if it is one with a manifest.
fn snapshot_at(work_dir: &Path, value: &str) -> Option<super::Candidate> {
    let path = std::fs::canonicalize(work_dir.join(value)).ok()?;
    super::choose(path.parent()?, &path.display().to_string()).ok()
}

/// The snapshot to restore: `--snapshot`, else a pick from the list at a
/// terminal, else the `snapshot_var`'s value. Returns it and, when it was
/// chosen here, the `--var` that sets it.
#[allow(clippy::type_complexity)]
pub fn choose_snapshot(
    v: &Plan,
    wanted: Option<&str>,
) -> Result<(Option<super::Candidate>, Option<(String, String)>), WardError> {
    let Some(r) = &v.restore else {
        return Ok((None, None));
    };
    let work_dir = work_dir_of(v);
    let dir = work_dir.join(&r.spec.snapshots);
    let chosen = match wanted {
        Some(w) => {
            let w = if w.contains('/') {
                // A relative PATH is the operator's, not the playbook's.
                std::fs::canonicalize(w)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| w.to_owned())
            } else {
                w.to_owned()
            };
            super::choose(&dir, &w)?
        }
        None if crate::execute::confirm::terminal() => super::pick(&dir)?,
        None => {
            let value = v
                .vars
                .get(&r.spec.snapshot_var)
                .and_then(|s| s.as_str())
                .unwrap_or("");
            // Pinned as a `--var` like a chosen one: a value such as
            // `snaps/latest` may point elsewhere by the time of a resume,
            // which must restore the snapshot the guards checked.
            let Some(c) = snapshot_at(&work_dir, value) else {
                return Ok((None, None));
            };
            c
        }
    };
    let path = chosen.path.display().to_string();
    Ok((Some(chosen), Some((r.spec.snapshot_var.clone(), path))))
}

/// The marker of a restore of `snapshot` by run `run_id`.
fn marker_of(
    v: &Plan,
    run_id: &str,
    snapshot: Option<&super::Candidate>,
) -> Option<(std::path::PathBuf, super::Marker)> {
    let r = v.restore.as_ref()?;
    let path = work_dir_of(v).join(r.spec.marker.as_deref()?);
    let marker = super::Marker {
        run_id: run_id.to_owned(),
        playbook: v.playbook.name.value.clone(),
        snapshot: snapshot.map_or_else(
            || {
                v.vars
                    .get(&r.spec.snapshot_var)
                    .and_then(|s| s.as_str())
                    .unwrap_or("")
                    .to_owned()
            },
            |c| c.path.display().to_string(),
        ),
        started: chrono::Local::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
    };
    Some((path, marker))
}

/// Checks the guards against the chosen snapshot (before anything is
/// recorded or changed) and gathers what the run records and shows (the
/// caller prints the overrides: they are in `notes` after the first).
pub async fn guide(
    v: &Plan,
    run_id: &str,
    chosen: &Option<super::Candidate>,
    overrides: &[String],
) -> Result<Guided, WardError> {
    use crate::state::NoteKind;
    let Some(r) = &v.restore else {
        return Ok(Guided::default());
    };
    let name = &v.playbook.name.value;
    let work_dir = work_dir_of(v);
    let Some(c) = chosen else {
        let value = v
            .vars
            .get(&r.spec.snapshot_var)
            .and_then(|s| s.as_str())
            .unwrap_or("");
        if overrides.iter().any(|o| o == "format") {
            return Ok(Guided {
                context: Vec::new(),
                notes: vec![(
                    NoteKind::GuardOverridden,
                    format!(
                        "guard `format`: {value} has no ward manifest; overridden with --override format by {}",
                        crate::execute::confirm::operator()
                    ),
                )],
                marker: marker_of(v, run_id, None),
            });
        }
        return Err(WardError::Guard(format!(
            "playbook `{name}` not run: guard `format`: the snapshot `{value}` (`{}`) is not a \
             folder with a ward manifest, so nothing can be checked against it; nothing was run; \
             choose one with --snapshot, or pass --override format",
            r.spec.snapshot_var
        )));
    };
    let here = super::Here {
        host: &v.facts.host,
        work_dir: &work_dir,
    };
    let refusals = super::check_guards(&r.spec, c, &here).await;
    let overridden = super::verdict(name, c, &refusals, overrides)?;
    let mut notes = vec![(NoteKind::SnapshotChosen, format!("restoring {}", c.line()))];
    notes.extend(
        overridden
            .into_iter()
            .map(|o| (NoteKind::GuardOverridden, o)),
    );
    Ok(Guided {
        context: c.context(),
        notes,
        marker: marker_of(v, run_id, Some(c)),
    })
}

/// What a resume of run `run_id` shows above questions and which marker it
/// keeps: the snapshot the run recorded (its `--var`); guards are not
/// checked again.
pub fn resumed(v: &Plan, run_id: &str) -> Guided {
    let snapshot = v
        .restore
        .as_ref()
        .and_then(|r| v.vars.get(&r.spec.snapshot_var))
        .and_then(|s| s.as_str())
        .and_then(|s| snapshot_at(&work_dir_of(v), s));
    Guided {
        context: snapshot.as_ref().map(|c| c.context()).unwrap_or_default(),
        notes: Vec::new(),
        marker: marker_of(v, run_id, snapshot.as_ref()),
    }
}
