//! `ward validate FILE...`

use std::io::Write;

use super::vars;
use super::{DiagnosticFormat, ValidateArgs};
use crate::error::{WardError, exit};
use crate::report::{Style, render_human, render_json_file};

pub(super) fn validate(args: &ValidateArgs) -> Result<i32, WardError> {
    let format = super::plan::chosen_format(
        args.format,
        args.json,
        DiagnosticFormat::Json,
        DiagnosticFormat::Human,
    )?;
    let overrides = vars::parse(&args.vars.vars)?;
    let mut all_valid = true;
    let mut json_files = Vec::new();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let stderr = std::io::stderr();
    let mut err = stderr.lock();
    for file in &args.files {
        let shown = file.display().to_string();
        let checked = match crate::check_file(file, &overrides, "validate") {
            Ok(c) => c,
            Err(e) => {
                all_valid = false;
                match format {
                    DiagnosticFormat::Human => writeln!(err, "{}: {e}", Style::stderr().error("error"))?,
                    DiagnosticFormat::Json => json_files.push(serde_json::json!({
                        "file": shown,
                        "valid": false,
                        "errors": 1,
                        "warnings": 0,
                        "diagnostics": [{"severity": "error", "code": "unreadable", "message": e.to_string(), "file": shown}],
                    })),
                }
                continue;
            }
        };
        let valid = checked.plan.is_some();
        all_valid &= valid;
        match format {
            DiagnosticFormat::Json => {
                json_files.push(render_json_file(
                    Some(&checked.source),
                    &shown,
                    &checked.diagnostics,
                ));
            }
            DiagnosticFormat::Human => {
                render_human(
                    &mut err,
                    Some(&checked.source),
                    &shown,
                    &checked.diagnostics,
                    Style::stderr(),
                )?;
                match &checked.plan {
                    Some(v) if !args.quiet => writeln!(
                        out,
                        "ok: {shown}: playbook `{}`, {} step{}",
                        v.playbook.name.value,
                        v.steps.len(),
                        if v.steps.len() == 1 { "" } else { "s" }
                    )?,
                    Some(_) => {}
                    None => {
                        let errors = checked.diagnostics.iter().filter(|d| d.is_error()).count();
                        writeln!(
                            err,
                            "{}: {shown}: {errors} error{} found",
                            Style::stderr().error("invalid"),
                            if errors == 1 { "" } else { "s" }
                        )?;
                    }
                }
            }
        }
    }
    if format == DiagnosticFormat::Json {
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({ "valid": all_valid, "files": json_files }),
        )
        .map_err(std::io::Error::from)?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(if all_valid { exit::OK } else { exit::USAGE })
}
