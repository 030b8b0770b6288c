//! `ward next PLAYBOOK [-n N] [--json]`, and what the scheduling commands
//! (`next`, `cron`, `systemd`) share: a checked playbook with its schedule.

use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::NextArgs;
use crate::diagnostic::Diagnostics;
use crate::error::{WardError, exit};
use crate::model::Duration;
use crate::report::Style;
use crate::schedule::Schedule;

/// A valid playbook that has a `schedule:`.
pub(super) struct Scheduled {
    /// The playbook file, absolute (symlinks resolved).
    pub path: PathBuf,
    /// Its `name:`.
    pub name: String,
    /// `schedule:` in its zone.
    pub schedule: Schedule,
    /// `jitter:`.
    pub jitter: Option<Duration>,
}

/// Checks `file` as `ward validate` does (diagnostics to stderr) and reads
/// its schedule. `Err(code)`: the playbook is invalid or has no schedule,
/// which was said on stderr.
pub(super) fn load(file: &Path, command: &str) -> Result<Result<Scheduled, i32>, WardError> {
    let checked = crate::check_file(file, &[], command)?;
    let shown = file.display().to_string();
    let plan = match super::checked::plan_or_exit(checked, &shown, "") {
        Ok(plan) => plan,
        Err(code) => return Ok(Err(code)),
    };
    let stderr = std::io::stderr();
    let playbook = plan.playbook;
    // Validation passed, so reading it again cannot fail; no schedule is `None`.
    let Some(schedule) =
        crate::validate::schedule::schedule(&playbook, &mut Diagnostics::default())
    else {
        let _ = writeln!(
            stderr.lock(),
            "{}: {shown}: playbook `{}` has no `schedule:`; add one such as \
             `schedule: \"30 2 * * *\"` (docs/playbook.md, \"Schedule\")",
            Style::stderr().error("error"),
            playbook.name.value
        );
        return Ok(Err(exit::USAGE));
    };
    let path = std::fs::canonicalize(file)
        .map_err(|e| WardError::Usage(format!("cannot resolve {}: {e}", file.display())))?;
    Ok(Ok(Scheduled {
        path,
        name: playbook.name.value.clone(),
        schedule,
        jitter: playbook.jitter.map(|j| j.value),
    }))
}

/// Now: `WARD_NOW` (a local time in the system's zone; in a repeated hour
/// the first of the two, in a gap the time after it) or the clock.
pub(super) fn now() -> Result<Timestamp, WardError> {
    let set = std::env::var_os(crate::clock::WARD_NOW).is_some_and(|v| !v.is_empty());
    if !set {
        return Ok(Timestamp::now());
    }
    let naive = crate::clock::now().map_err(|e| WardError::Usage(e.to_string()))?;
    let text = naive.format("%Y-%m-%dT%H:%M:%S").to_string();
    let civil: jiff::civil::DateTime = text
        .parse()
        .map_err(|e| WardError::Internal(format!("WARD_NOW={text}: {e}")))?;
    civil
        .to_zoned_datetime(TimeZone::system())
        .map(|z| z.timestamp())
        .map_err(|e| WardError::Usage(format!("WARD_NOW={text}: {e}")))
}

pub(super) fn next(args: &NextArgs) -> Result<i32, WardError> {
    let s = match load(&args.file, "next")? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let fires = s.schedule.upcoming(now()?, usize::from(args.count));
    let zone = s.schedule.zone().name().to_owned();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if args.json {
        let next: Vec<serde_json::Value> = fires
            .iter()
            .map(|f| {
                serde_json::json!({
                    "at": f.at.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
                    "local": f.at.datetime().to_string(),
                    "offset": f.at.strftime("%:z").to_string(),
                    "slot": f.slot.to_string(),
                    "moved": f.moved(),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "playbook": s.name,
            "file": s.path.display().to_string(),
            "schedule": s.schedule.expr().written(),
            "crontab": s.schedule.expr().crontab_fields(),
            "timezone": zone,
            "jitter": s.jitter.map(|j| j.to_string()),
            "next": next,
        });
        serde_json::to_writer_pretty(&mut out, &doc).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        let jitter = s
            .jitter
            .map(|j| format!(", each up to {j} later (jitter)"))
            .unwrap_or_default();
        writeln!(
            out,
            "{}: `{}` in {zone}{jitter}",
            s.name,
            s.schedule.expr().written()
        )?;
        for f in &fires {
            write!(out, "  {} {zone}", f.at.strftime("%a %Y-%m-%d %H:%M %:z"))?;
            if f.moved() {
                write!(
                    out,
                    "  ({} did not happen that day: the clocks went forward)",
                    f.slot.strftime("%H:%M")
                )?;
            }
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(exit::OK)
}
