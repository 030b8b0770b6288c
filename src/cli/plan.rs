//! `ward plan FILE`

use std::io::Write;

use super::vars;
use super::{PlanArgs, PlanFormat};
use crate::error::{WardError, exit};
use crate::report::{self, Style, render_human};

pub(super) fn plan(args: &PlanArgs) -> Result<i32, WardError> {
    let overrides = vars::parse(&args.vars.vars)?;
    let checked = crate::check_file(&args.file, &overrides, "plan")?;
    let shown = args.file.display().to_string();
    // Warnings (and errors) go to stderr so the plan on stdout stays parseable.
    let stderr = std::io::stderr();
    render_human(
        &mut stderr.lock(),
        Some(&checked.source),
        &shown,
        &checked.diagnostics,
        Style::stderr(),
    )?;
    let Some(plan) = checked.plan else {
        let count = checked.diagnostics.iter().filter(|d| d.is_error()).count();
        // A closed stderr must not panic; the exit code still says it.
        let _ = writeln!(
            stderr.lock(),
            "{}: {shown}: {}; nothing to plan",
            Style::stderr().error("invalid"),
            report::count(count, "error")
        );
        return Ok(exit::USAGE);
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match args.format {
        PlanFormat::Text => report::plan_text(&mut out, &plan, Style::stdout())?,
        PlanFormat::Json => report::plan_json(&mut out, &plan)?,
        PlanFormat::Dot => report::plan_dot(&mut out, &plan)?,
        PlanFormat::Mermaid => report::plan_mermaid(&mut out, &plan)?,
    }
    out.flush()?;
    Ok(exit::OK)
}
