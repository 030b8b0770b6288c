//! The report as Markdown: headings, tables and lists that read well as
//! plain text and render on any forge. Every recorded text is escaped
//! (`text::md`, `text::md_code`): a message cannot add markup or break a
//! table.

use std::fmt::Write as _;

use super::text::{attempt_end, detail_lines, duration, md, md_code, offset, time, value_text};
use super::{RunReport, StepReport};

/// The report as Markdown.
pub fn render(r: &RunReport) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_all(&mut out, r);
    out
}

fn write_all(out: &mut String, r: &RunReport) -> std::fmt::Result {
    let run = &r.run;
    writeln!(
        out,
        "# Run report: {} (run {})\n",
        md(&run.playbook_name),
        md_code(&run.id)
    )?;
    writeln!(out, "| | |\n|---|---|")?;
    let mut row = |k: &str, v: String| writeln!(out, "| {k} | {v} |");
    row("Playbook", md(&run.playbook_name))?;
    row("File", md_code(&run.playbook_path))?;
    row("Host", md(&run.host))?;
    row("Run", md_code(&run.id))?;
    row("State", format!("**{}**", run.state))?;
    row("Started", time(Some(run.started_at)))?;
    row("Ended", time(run.finished_at))?;
    row("Duration", duration(r.duration_ms()))?;
    if run.resumes > 0 {
        row("Resumed", format!("{} time(s)", run.resumes))?;
    }
    if let Some(m) = &run.message {
        row("Message", md(m))?;
    }
    row("ward", md(&run.ward_version))?;
    writeln!(out)?;

    writeln!(out, "## Variables\n")?;
    match &r.vars {
        Err(why) => writeln!(out, "The recorded variables cannot be read: {}\n", md(why))?,
        Ok(vars) if vars.is_empty() => writeln!(out, "None.\n")?,
        Ok(vars) => {
            writeln!(out, "| name | value | given |\n|---|---|---|")?;
            for v in vars {
                writeln!(
                    out,
                    "| {} | {} | {} |",
                    md_code(&v.name),
                    md_code(&value_text(&v.value)),
                    if v.overridden { "`--var`" } else { "" }
                )?;
            }
            writeln!(out)?;
        }
    }

    writeln!(out, "## Preconditions\n")?;
    match &run.preconditions {
        None => writeln!(out, "None recorded.\n")?,
        Some(p) if p.skipped_by_operator => writeln!(
            out,
            "Not checked: the run was started with `--skip-preconditions`.\n"
        )?,
        Some(p) => {
            writeln!(out, "| check | result | found |\n|---|---|---|")?;
            for c in &p.checks {
                writeln!(
                    out,
                    "| {} | {} | {} |",
                    md(&c.check),
                    if c.passed { "held" } else { "**FAILED**" },
                    md(&c.detail)
                )?;
            }
            if let Some(log) = &p.log_path {
                writeln!(out, "\nOutput of the checks: {}", md_code(log))?;
            }
            writeln!(out)?;
        }
    }

    writeln!(out, "## Steps\n")?;
    if r.steps.is_empty() {
        writeln!(out, "No steps.\n")?;
    } else {
        writeln!(
            out,
            "| step | state | attempts | exit | duration | what |\n|---|---|---|---|---|---|"
        )?;
        for s in &r.steps {
            let rec = &s.record;
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                md_code(&rec.id),
                state_word(s),
                rec.attempts,
                rec.exit_code.map_or("-".to_owned(), |c| c.to_string()),
                duration(s.duration_ms),
                what(s)
            )?;
        }
        writeln!(out)?;
        for s in &r.steps {
            step_section(out, r, s)?;
        }
    }

    writeln!(out, "## Timeline\n")?;
    let t = &r.timeline;
    if t.bars.is_empty() {
        writeln!(out, "No step ran.\n")?;
    } else {
        writeln!(
            out,
            "Times from the run's start; attempts that overlap ran side by side ({} lane(s)).\n",
            t.lanes
        )?;
        writeln!(
            out,
            "| from | to | lane | step | attempt | outcome |\n|---|---|---|---|---|---|"
        )?;
        for b in &t.bars {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                offset(b.start_ms),
                offset(b.end_ms),
                b.lane + 1,
                md_code(&b.step_id),
                b.attempt,
                super::outcome_class(b.outcome)
            )?;
        }
        writeln!(out)?;
    }
    match &t.downtime {
        Some(d) => {
            let until = match (&d.start_step, d.closed) {
                (Some(s), true) => format!("the end of {}", md_code(s)),
                _ => "the end of the run: no `service.start` step ended after it".to_owned(),
            };
            writeln!(
                out,
                "Downtime: {} to {} ({}), from the start of {} to {until}.\n",
                offset(d.start_ms),
                offset(d.end_ms),
                duration(Some(d.end_ms - d.start_ms)),
                md_code(&d.stop_step)
            )?;
        }
        None => writeln!(out, "Downtime: none (no `service.stop` step ran).\n")?,
    }

    writeln!(out, "## Guards, confirmations and notes\n")?;
    let notes: Vec<_> = r.notes().collect();
    if notes.is_empty() {
        writeln!(out, "None recorded.\n")?;
    } else {
        writeln!(out, "| time | kind | step | message |\n|---|---|---|---|")?;
        for e in notes {
            writeln!(
                out,
                "| {} | {} | {} | {} |",
                time(Some(e.at)),
                md_code(&e.kind.as_text()),
                e.step_id.as_deref().map_or(String::new(), md_code),
                e.message.as_deref().map_or(String::new(), md)
            )?;
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "---\nReport made {} by ward {} from the state database.",
        time(Some(r.generated_at)),
        md(env!("CARGO_PKG_VERSION"))
    )
}

fn state_word(s: &StepReport) -> String {
    match super::state_class(s.record.state) {
        "bad" => format!("**{}**", s.record.state),
        _ => s.record.state.to_string(),
    }
}

fn what(s: &StepReport) -> String {
    let d = &s.definition;
    let mut parts = Vec::new();
    if let Some(n) = &d.name {
        parts.push(md(n));
    }
    if let Some(a) = &d.action {
        parts.push(md_code(a));
    }
    if let Some(w) = &d.what {
        parts.push(md(w));
    }
    parts.join(": ")
}

fn step_section(out: &mut String, r: &RunReport, s: &StepReport) -> std::fmt::Result {
    let rec = &s.record;
    writeln!(out, "### {} ({})\n", md_code(&rec.id), rec.state)?;
    if let Some(items) = &s.items {
        writeln!(out, "- {}", md(&items.counts.line()))?;
    }
    if let Some(reason) = s.reason() {
        writeln!(out, "- reason: {}", md(reason))?;
    }
    if rec.compensation {
        writeln!(out, "- a compensation step")?;
    }
    if let Some(u) = &rec.unflushed {
        writeln!(
            out,
            "- output not yet known to be on disk: {}",
            md(&u.paths.join(", "))
        )?;
    }
    if s.attempts.is_empty() {
        writeln!(out, "- not run")?;
    }
    for a in &s.attempts {
        let took = a.finished_at.map(|f| f - a.started_at);
        writeln!(
            out,
            "- attempt {}: {} at {} ({}, took {})",
            a.attempt,
            md(&attempt_end(a)),
            offset(a.started_at - r.timeline.origin),
            time(Some(a.started_at)),
            duration(took)
        )?;
        if let Some(m) = &a.message {
            writeln!(out, "  - {}", md(m))?;
        }
        if let Some(d) = &a.details {
            for line in detail_lines(d) {
                writeln!(out, "  - {}", md(&line))?;
            }
        }
        writeln!(out, "  - log: {}", md_code(&a.log_path))?;
    }
    if !s.failure_tail.is_empty() {
        writeln!(out, "- last lines of its output:\n")?;
        let longest = s
            .failure_tail
            .iter()
            .map(|l| longest_run(l, '`'))
            .max()
            .unwrap_or(0);
        let fence = "`".repeat((longest + 1).max(3));
        writeln!(out, "  {fence}text")?;
        for line in &s.failure_tail {
            writeln!(out, "  {line}")?;
        }
        writeln!(out, "  {fence}")?;
    }
    if let Some(items) = &s.items
        && !items.failed.is_empty()
    {
        writeln!(
            out,
            "\n| item | key | exit | attempts | why | log |\n|---|---|---|---|---|---|"
        )?;
        for it in items.failed.iter().take(super::html::MAX_FAILED_ROWS) {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                it.position + 1,
                md_code(&it.key),
                it.exit_code.map_or("-".to_owned(), |c| c.to_string()),
                it.attempts,
                it.message.as_deref().map_or(String::new(), md),
                it.log_path.as_deref().map_or(String::new(), md_code)
            )?;
        }
        if items.failed.len() > super::html::MAX_FAILED_ROWS {
            writeln!(
                out,
                "\nand {} more failed items: `ward items {} --step {} --status failed` lists them all.",
                items.failed.len() - super::html::MAX_FAILED_ROWS,
                r.run.id,
                crate::shell::quote(&rec.id)
            )?;
        }
    }
    writeln!(out)
}

/// The longest run of `c` in `text`.
fn longest_run(text: &str, c: char) -> usize {
    let (mut longest, mut run) = (0, 0);
    for x in text.chars() {
        run = if x == c { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
}
