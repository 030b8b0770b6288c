//! `ward plan FILE`

use std::io::Write;

use super::vars;
use super::{PlanArgs, PlanFormat};
use crate::error::{WardError, exit};
use crate::report::{self, Style};

pub(super) fn plan(args: &PlanArgs) -> Result<i32, WardError> {
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
