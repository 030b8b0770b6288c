//! `ward report RUN_ID`, and `--report FILE` of `ward run` and `ward
//! resume`: a recorded run as Markdown, one self-contained HTML file with a
//! timeline picture, or JSON (report/run_report/).
//!
//! A report is read from the state alone, so any past run has one. A file
//! is written as every artifact of ward is: a temporary name beside it,
//! fsync, rename (`fs::atomic`), so a reader never finds half a report.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{ReportArgs, ReportFileArgs, ReportFormatArg};
use crate::error::{WardError, exit};
use crate::report::{ReportFormat, RunReport, Style};
use crate::session::{StateSession, block_on};
use crate::state::{Access, Store};

impl From<ReportFormatArg> for ReportFormat {
    fn from(f: ReportFormatArg) -> ReportFormat {
        match f {
            ReportFormatArg::Md => ReportFormat::Markdown,
            ReportFormatArg::Html => ReportFormat::Html,
            ReportFormatArg::Json => ReportFormat::Json,
        }
    }
}

/// Where a report goes and in which form, checked before anything runs.
#[derive(Clone, Debug)]
pub(super) struct ReportTarget {
    path: PathBuf,
    format: ReportFormat,
}

/// The format for a report file: the one given, else the file's
/// extension; neither is a usage error that says what to write.
fn format_for(
    flag: &str,
    path: &Path,
    given: Option<ReportFormatArg>,
) -> Result<ReportFormat, WardError> {
    if let Some(f) = given {
        return Ok(f.into());
    }
    ReportFormat::from_extension(path).ok_or_else(|| {
        WardError::Usage(format!(
            "{flag} {}: the format cannot be told from the file's name; name it .md, .html or \
             .json, or give the format ({flag}-format md|html|json)",
            path.display()
        ))
    })
}

impl ReportTarget {
    /// `--report FILE [--report-format F]` of `ward run`/`ward resume`.
    pub(super) fn from_args(args: &ReportFileArgs) -> Result<Option<ReportTarget>, WardError> {
        args.report
            .as_ref()
            .map(|path| {
                Ok(ReportTarget {
                    format: format_for("--report", path, args.report_format)?,
                    path: path.clone(),
                })
            })
            .transpose()
    }
}

/// The report of run `run_id`, read from `store`.
async fn build(store: &dyn Store, run_id: &str) -> Result<RunReport, WardError> {
    let run = store.run(run_id).await?.ok_or_else(|| {
        WardError::RunNotFound(format!(
            "no run `{run_id}` in {}; see `ward runs`",
            store.describe()
        ))
    })?;
    let steps = store.steps(run_id).await?;
    let attempts = store.attempts(run_id, None).await?;
    let events = store.events(run_id).await?;
    // The items of its `for_each` steps: counts, failed items, timeline.
    let items = store.items(run_id, None, None).await?;
    Ok(RunReport::build(run, steps, attempts, events, crate::clock::wall_ms()).with_items(items))
}

/// The report in `format`, as text.
fn render(report: &RunReport, format: ReportFormat) -> Result<String, WardError> {
    format
        .render(report)
        .map_err(|e| WardError::Internal(format!("cannot write the report as JSON: {e}")))
}

/// Writes `text` to `path`: temp name, fsync, rename, folder fsync. The
/// file gets mode 0644 less the umask: a report holds no secret (variables
/// are masked) and is meant to be filed and read.
fn write_file(path: &Path, text: &str) -> Result<(), String> {
    crate::fs::write_atomic(path, text.as_bytes(), 0o644).map_err(|e| e.to_string())
}

/// `--report FILE` after a run ended, however it ended: writes the report,
/// and on failure says so on stderr as a warning. The run's result and
/// exit code stay what they are: the run is recorded, and `ward report`
/// writes the report again from the state.
pub(super) async fn write_after_run(store: &dyn Store, run_id: &str, target: &ReportTarget) {
    let written = async {
        let report = build(store, run_id).await.map_err(|e| e.to_string())?;
        let text = render(&report, target.format).map_err(|e| e.to_string())?;
        write_file(&target.path, &text)
    }
    .await;
    match written {
        Ok(()) => tracing::info!(
            "report of run {run_id} written to {}",
            target.path.display()
        ),
        Err(e) => eprintln!(
            "{}: the report of run {run_id} was not written to {}: {e}; the run's result is \
             unchanged (`ward report {run_id} --output FILE` writes it from the state)",
            Style::stderr().warning("warning"),
            target.path.display()
        ),
    }
}

/// `ward report`.
pub(super) fn report(args: &ReportArgs) -> Result<i32, WardError> {
    // Checked before the state is opened: a wrong name costs nothing.
    let format = match (&args.output, args.format) {
        (_, Some(f)) => f.into(),
        (Some(path), None) => format_for("--output", path, None)?,
        (None, None) => ReportFormat::Markdown,
    };
    let report = block_on(async {
        let session = StateSession::open(args.state.state.as_deref(), Access::Read).await?;
        let run = super::inspect::find_run(&session, args.run_id.as_deref()).await?;
        build(session.store.as_ref(), &run.id).await
    })??;
    let text = render(&report, format)?;
    match &args.output {
        Some(path) => write_file(path, &text).map_err(|e| {
            WardError::Output(std::io::Error::other(format!(
                "the report was not written: {e}"
            )))
        })?,
        None => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            out.write_all(text.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(exit::OK)
}
