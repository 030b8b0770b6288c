//! The report as one self-contained HTML file: inline CSS, the timeline
//! as inline SVG, no script and nothing loaded from elsewhere (a content
//! security policy in the file forbids both), so it can be mailed, filed
//! as evidence and opened years later without a network.
//!
//! It is polyglot markup: valid HTML that is also well-formed XML (every
//! element closed, `xmlns` on `<html>` and `<svg>`, only the five XML
//! character references), so XML tools can read it and the tests parse it
//! with an XML parser. Every recorded text goes through `text::xml`.

use std::fmt::Write as _;

use super::text::{attempt_end, detail_lines, duration, offset, time, value_text, xml};
use super::{RunReport, StepItems, StepReport, outcome_class, run_class, state_class};

/// The most failed items a report lists one row each (the rest are
/// counted; `ward items RUN --status failed` lists them all).
pub(super) const MAX_FAILED_ROWS: usize = 200;

const STYLE: &str = "
body { font-family: sans-serif; margin: 2em auto; max-width: 1000px; color: #222222; padding: 0 1em; }
h1 { font-size: 1.5em; }
h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #dddddd; }
h3 { font-size: 1em; margin-bottom: 0.3em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #dddddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
code { font-family: monospace; word-break: break-all; }
.ok { color: #2e7d32; font-weight: bold; }
.bad { color: #c62828; font-weight: bold; }
.undone { color: #6a1b9a; }
.running { color: #1565c0; }
.none { color: #666666; }
ul.attempts { margin: 0.2em 0 0.8em 0; }
ul.details { color: #444444; font-size: 0.9em; }
figure { margin: 0.5em 0; overflow-x: auto; }
figcaption { color: #555555; font-size: 0.9em; }
pre { white-space: pre-wrap; background: #f5f5f5; padding: 0.5em; font-size: 0.9em; }
footer { margin-top: 2em; color: #666666; font-size: 0.85em; }
";

/// The report as an HTML document.
pub fn render(r: &RunReport) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write_all(&mut out, r);
    out
}

fn code(text: &str) -> String {
    format!("<code>{}</code>", xml(text))
}

fn write_all(out: &mut String, r: &RunReport) -> std::fmt::Result {
    let run = &r.run;
    let title = format!("Run report: {} (run {})", run.playbook_name, run.id);
    writeln!(out, "<!DOCTYPE html>")?;
    writeln!(
        out,
        r#"<html xmlns="http://www.w3.org/1999/xhtml" lang="en" xml:lang="en">"#
    )?;
    writeln!(out, "<head>")?;
    writeln!(out, r#"<meta charset="utf-8"/>"#)?;
    writeln!(
        out,
        r#"<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'"/>"#
    )?;
    writeln!(out, "<title>{}</title>", xml(&title))?;
    writeln!(out, "<style>{STYLE}</style>")?;
    writeln!(out, "</head>")?;
    writeln!(out, "<body>")?;
    writeln!(out, "<h1>{}</h1>", xml(&title))?;

    writeln!(out, r#"<table class="facts">"#)?;
    let mut row = |k: &str, v: String| writeln!(out, "<tr><th>{k}</th><td>{v}</td></tr>");
    row("Playbook", xml(&run.playbook_name))?;
    row("File", code(&run.playbook_path))?;
    row("Host", xml(&run.host))?;
    row("Run", code(&run.id))?;
    row(
        "State",
        format!(
            r#"<span class="{}" id="run-state">{}</span>"#,
            run_class(run.state),
            run.state
        ),
    )?;
    row("Started", xml(&time(Some(run.started_at))))?;
    row("Ended", xml(&time(run.finished_at)))?;
    row("Duration", xml(&duration(r.duration_ms())))?;
    if run.resumes > 0 {
        row("Resumed", format!("{} time(s)", run.resumes))?;
    }
    if let Some(m) = &run.message {
        row("Message", xml(m))?;
    }
    row("ward", xml(&run.ward_version))?;
    writeln!(out, "</table>")?;

    writeln!(out, "<h2>Timeline</h2>")?;
    let t = &r.timeline;
    if t.bars.is_empty() {
        writeln!(out, "<p>No step ran.</p>")?;
    } else {
        writeln!(out, "<figure>")?;
        out.push_str(&super::svg::render(t));
        let window = match &t.downtime {
            Some(d) if d.closed => format!(
                " The shaded window is the services' downtime: {} to {} ({}), from the start of {} to the end of {}.",
                offset(d.start_ms),
                offset(d.end_ms),
                duration(Some(d.end_ms - d.start_ms)),
                code(&d.stop_step),
                code(d.start_step.as_deref().unwrap_or_default())
            ),
            Some(d) => format!(
                " The shaded window is the services' downtime from {} (the start of {}) to the end of the run: no <code>service.start</code> step ended after it.",
                offset(d.start_ms),
                code(&d.stop_step)
            ),
            None => String::new(),
        };
        writeln!(
            out,
            "<figcaption>Each bar is one attempt, on a time axis from the run's start; attempts that ran at the same time are side by side ({} lane(s)).{window}</figcaption>",
            t.lanes
        )?;
        writeln!(out, "</figure>")?;
    }

    writeln!(out, "<h2>Variables</h2>")?;
    match &r.vars {
        Err(why) => writeln!(
            out,
            "<p>The recorded variables cannot be read: {}</p>",
            xml(why)
        )?,
        Ok(vars) if vars.is_empty() => writeln!(out, "<p>None.</p>")?,
        Ok(vars) => {
            writeln!(
                out,
                r#"<table class="vars"><tr><th>name</th><th>value</th><th>given</th></tr>"#
            )?;
            for v in vars {
                writeln!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    code(&v.name),
                    code(&value_text(&v.value)),
                    if v.overridden {
                        "<code>--var</code>"
                    } else {
                        ""
                    }
                )?;
            }
            writeln!(out, "</table>")?;
        }
    }

    writeln!(out, "<h2>Preconditions</h2>")?;
    match &run.preconditions {
        None => writeln!(out, "<p>None recorded.</p>")?,
        Some(p) if p.skipped_by_operator => writeln!(
            out,
            "<p>Not checked: the run was started with <code>--skip-preconditions</code>.</p>"
        )?,
        Some(p) => {
            writeln!(
                out,
                r#"<table class="preconditions"><tr><th>check</th><th>result</th><th>found</th></tr>"#
            )?;
            for c in &p.checks {
                writeln!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                    xml(&c.check),
                    if c.passed {
                        r#"<span class="ok">held</span>"#
                    } else {
                        r#"<span class="bad">FAILED</span>"#
                    },
                    xml(&c.detail)
                )?;
            }
            writeln!(out, "</table>")?;
            if let Some(log) = &p.log_path {
                writeln!(out, "<p>Output of the checks: {}</p>", code(log))?;
            }
        }
    }

    writeln!(out, "<h2>Steps</h2>")?;
    if r.steps.is_empty() {
        writeln!(out, "<p>No steps.</p>")?;
    } else {
        writeln!(
            out,
            r#"<table class="steps"><tr><th>step</th><th>state</th><th>attempts</th><th>exit</th><th>duration</th><th>what</th></tr>"#
        )?;
        for s in &r.steps {
            let rec = &s.record;
            writeln!(
                out,
                r#"<tr data-step="{}"><td>{}</td><td><span class="{}">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                xml(&rec.id),
                code(&rec.id),
                state_class(rec.state),
                rec.state,
                rec.attempts,
                rec.exit_code.map_or("-".to_owned(), |c| c.to_string()),
                xml(&duration(s.duration_ms)),
                what(s)
            )?;
        }
        writeln!(out, "</table>")?;
        for s in &r.steps {
            step_section(out, r, s)?;
        }
    }

    writeln!(out, "<h2>Guards, confirmations and notes</h2>")?;
    let notes: Vec<_> = r.notes().collect();
    if notes.is_empty() {
        writeln!(out, "<p>None recorded.</p>")?;
    } else {
        writeln!(
            out,
            r#"<table class="events"><tr><th>time</th><th>kind</th><th>step</th><th>message</th></tr>"#
        )?;
        for e in notes {
            writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                xml(&time(Some(e.at))),
                code(&e.kind.as_text()),
                e.step_id.as_deref().map_or(String::new(), code),
                e.message.as_deref().map_or(String::new(), xml)
            )?;
        }
        writeln!(out, "</table>")?;
    }
    writeln!(
        out,
        "<footer>Report made {} by ward {} from the state database.</footer>",
        xml(&time(Some(r.generated_at))),
        xml(env!("CARGO_PKG_VERSION"))
    )?;
    writeln!(out, "</body>")?;
    writeln!(out, "</html>")
}

fn what(s: &StepReport) -> String {
    let d = &s.definition;
    let mut parts = Vec::new();
    if let Some(n) = &d.name {
        parts.push(xml(n));
    }
    if let Some(a) = &d.action {
        parts.push(code(a));
    }
    if let Some(w) = &d.what {
        parts.push(xml(w));
    }
    parts.join(": ")
}

fn step_section(out: &mut String, r: &RunReport, s: &StepReport) -> std::fmt::Result {
    let rec = &s.record;
    writeln!(
        out,
        r#"<h3>{} <span class="{}">{}</span></h3>"#,
        code(&rec.id),
        state_class(rec.state),
        rec.state
    )?;
    writeln!(out, r#"<ul class="attempts">"#)?;
    if let Some(reason) = s.reason() {
        writeln!(out, "<li>reason: {}</li>", xml(reason))?;
    }
    if rec.compensation {
        writeln!(out, "<li>a compensation step</li>")?;
    }
    if let Some(u) = &rec.unflushed {
        writeln!(
            out,
            "<li>output not yet known to be on disk: {}</li>",
            xml(&u.paths.join(", "))
        )?;
    }
    if s.attempts.is_empty() {
        writeln!(out, "<li>not run</li>")?;
    }
    for a in &s.attempts {
        let took = a.finished_at.map(|f| f - a.started_at);
        write!(
            out,
            r#"<li class="{}">attempt {}: {} at {} ({}, took {})"#,
            outcome_class(a.outcome),
            a.attempt,
            xml(&attempt_end(a)),
            xml(&offset(a.started_at - r.timeline.origin)),
            xml(&time(Some(a.started_at))),
            xml(&duration(took))
        )?;
        write!(out, r#"<ul class="details">"#)?;
        if let Some(m) = &a.message {
            write!(out, "<li>{}</li>", xml(m))?;
        }
        if let Some(d) = &a.details {
            for line in detail_lines(d) {
                write!(out, "<li>{}</li>", xml(&line))?;
            }
        }
        write!(out, "<li>log: {}</li>", code(&a.log_path))?;
        writeln!(out, "</ul></li>")?;
    }
    if !s.failure_tail.is_empty() {
        writeln!(
            out,
            "<li>last lines of its output:<pre>{}</pre></li>",
            s.failure_tail
                .iter()
                .map(|l| xml(l))
                .collect::<Vec<_>>()
                .join("\n")
        )?;
    }
    writeln!(out, "</ul>")?;
    if let Some(items) = &s.items {
        items_section(out, r, &rec.id, items)?;
    }
    Ok(())
}

/// A `for_each` step's items: counts, the strip, the failed items.
fn items_section(
    out: &mut String,
    r: &RunReport,
    step: &str,
    items: &StepItems,
) -> std::fmt::Result {
    let c = &items.counts;
    writeln!(
        out,
        r#"<p class="item-counts" data-step="{}" data-total="{}" data-succeeded="{}" data-failed="{}" data-running="{}" data-pending="{}" data-skipped="{}">{}</p>"#,
        xml(step),
        c.total,
        c.succeeded,
        c.failed,
        c.running,
        c.pending,
        c.skipped,
        xml(&c.line())
    )?;
    let strip = &items.strip;
    if !strip.bars.is_empty() || !strip.buckets.is_empty() {
        writeln!(out, "<figure>")?;
        out.push_str(&super::svg::render_items(step, strip));
        let how = if strip.bars.is_empty() {
            format!(
                "How many items ended in each {} of the time axis, by state (too many items for a bar each)",
                duration(strip.buckets.first().map(|b| b.end_ms - b.start_ms))
            )
        } else {
            format!(
                "Each bar is one item's last attempt; items that ran at the same time are side by side ({} lane(s))",
                strip.lanes
            )
        };
        writeln!(
            out,
            "<figcaption>{how}; time from the first item's start ({}).</figcaption>",
            xml(&time(Some(strip.origin)))
        )?;
        writeln!(out, "</figure>")?;
    }
    if items.failed.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        r#"<table class="failed-items" data-step="{}"><tr><th>item</th><th>key</th><th>exit</th><th>attempts</th><th>why</th><th>log</th></tr>"#,
        xml(step)
    )?;
    for it in items.failed.iter().take(MAX_FAILED_ROWS) {
        writeln!(
            out,
            r#"<tr data-key="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            xml(&it.key),
            it.position + 1,
            code(&it.key),
            it.exit_code.map_or("-".to_owned(), |c| c.to_string()),
            it.attempts,
            it.message.as_deref().map_or(String::new(), xml),
            it.log_path.as_deref().map_or(String::new(), code)
        )?;
    }
    writeln!(out, "</table>")?;
    if items.failed.len() > MAX_FAILED_ROWS {
        writeln!(
            out,
            "<p>and {} more failed items: <code>ward items {} --step {} --status failed</code> lists them all.</p>",
            items.failed.len() - MAX_FAILED_ROWS,
            xml(&r.run.id),
            xml(&crate::shell::quote(step))
        )?;
    }
    Ok(())
}
