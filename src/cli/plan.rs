//! `ward plan FILE`

use std::io::Write;

use super::vars;
use super::{PlanArgs, PlanFormat};
use crate::error::{WardError, exit};
use crate::report::{self, Style};

/// The format asked for by `--format` and `--json` (the same as
/// `--format json`); both naming different formats is a usage error
/// rather than one silently winning.
pub(super) fn chosen_format<F: clap::ValueEnum + Copy + PartialEq>(
    format: Option<F>,
    json: bool,
    json_format: F,
    default: F,
) -> Result<F, WardError> {
    match (format, json) {
        (Some(f), true) if f != json_format => {
            let name = f
                .to_possible_value()
                .map(|v| v.get_name().to_owned())
                .unwrap_or_default();
            Err(WardError::Usage(format!(
                "`--json` and `--format {name}` ask for different outputs; give only one of them"
            )))
        }
        (_, true) => Ok(json_format),
        (Some(f), false) => Ok(f),
        (None, false) => Ok(default),
    }
}

pub(super) fn plan(args: &PlanArgs) -> Result<i32, WardError> {
    let format = chosen_format(args.format, args.json, PlanFormat::Json, PlanFormat::Text)?;
    let overrides = vars::parse(&args.vars.vars)?;
    let checked = crate::check_file(&args.file, &overrides, "plan")?;
    // Diagnostics go to stderr so the plan on stdout stays parseable.
    let plan = match super::checked::plan_or_exit(
        checked,
        &args.file.display().to_string(),
        "; nothing to plan",
    ) {
        Ok(plan) => plan,
        Err(code) => return Ok(code),
    };
    if plan.restore.is_none() && args.snapshot.snapshot.is_some() {
        return Err(WardError::Usage(format!(
            "{}: --snapshot is for playbooks with `restore:`, and playbook `{}` has none",
            args.file.display(),
            plan.playbook.name.value
        )));
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match format {
        PlanFormat::Text => report::plan_text(&mut out, &plan, Style::stdout())?,
        PlanFormat::Json => report::plan_json(&mut out, &plan)?,
        PlanFormat::Dot => report::plan_dot(&mut out, &plan)?,
        PlanFormat::Mermaid => report::plan_mermaid(&mut out, &plan)?,
    }
    if format == PlanFormat::Text
        && let Some(r) = &plan.restore
    {
        for line in restore_lines(&plan, r, args.snapshot.snapshot.as_deref())? {
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    Ok(exit::OK)
}

/// The `restore:` section of a text plan: the snapshots to choose from,
/// the guards, the marker; with `--snapshot`, what each guard says of it.
fn restore_lines(
    plan: &crate::plan::Plan,
    r: &crate::validate::ResolvedRestore,
    wanted: Option<&str>,
) -> Result<Vec<String>, WardError> {
    let work_dir = crate::source::playbook_dir(plan.playbook.source.path());
    let dir = work_dir.join(&r.spec.snapshots);
    let g = &r.spec.guards;
    let mut lines = vec![String::new(), "restore:".to_owned()];
    lines.push(format!(
        "  snapshots: {} (--snapshot sets `{}`)",
        dir.display(),
        r.spec.snapshot_var
    ));
    match crate::restore::candidates(&dir) {
        Ok(all) if all.is_empty() => lines.push("    (no complete snapshot)".into()),
        Ok(all) => lines.extend(all.iter().map(|c| format!("    {}", c.line()))),
        Err(e) => lines.push(format!("    (cannot list: {e})")),
    }
    let mut guards = vec!["format".to_owned()];
    if g.host {
        guards.push(format!("host = {}", plan.facts.host));
    }
    if let Some(pg) = &g.postgres {
        guards.push(format!(
            "postgres major of the server at {}",
            pg.db.describe()
        ));
    }
    if let Some(p) = &g.playbook {
        guards.push(format!("playbook in [{}]", p.join(", ")));
    }
    if let Some(s) = &g.scope {
        guards.push(format!("scope = {s}"));
    }
    lines.push(format!("  guards: {}", guards.join("; ")));
    if let Some(m) = &r.spec.marker {
        lines.push(format!(
            "  marker: {} (while a restore is unfinished)",
            work_dir.join(m).display()
        ));
    }
    if let Some(w) = wanted {
        let c = crate::restore::choose(&dir, w)?;
        lines.push(format!("  chosen: {}", c.line()));
        let here = crate::restore::Here {
            host: &plan.facts.host,
            work_dir: &work_dir,
        };
        let refusals = crate::session::block_on(crate::restore::check_guards(&r.spec, &c, &here))?;
        if refusals.is_empty() {
            lines.push("  every guard passes".into());
        }
        lines.extend(refusals.iter().map(|x| format!("  refuses: {x}")));
    }
    Ok(lines)
}
