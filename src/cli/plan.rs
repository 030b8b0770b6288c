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
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match format {
        PlanFormat::Text => report::plan_text(&mut out, &plan, Style::stdout())?,
        PlanFormat::Json => report::plan_json(&mut out, &plan)?,
        PlanFormat::Dot => report::plan_dot(&mut out, &plan)?,
        PlanFormat::Mermaid => report::plan_mermaid(&mut out, &plan)?,
    }
    out.flush()?;
    Ok(exit::OK)
}
