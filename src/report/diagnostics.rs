//! Renders diagnostics as `file:line:col` with the source line and a caret,
//! or as JSON.

use std::io::{self, Write};

use serde_json::{Value, json};

use super::Style;
use crate::diagnostic::{Diagnostic, Severity, capped};
use crate::source::{SourceFile, Span};

/// Writes diagnostics for one file the way compilers do:
///
/// ```text
/// error[unknown-key]: unknown key `need` in step `dump-db`
///   --> backup.yml:12:5
///    |
/// 12 |     need: [stop]
///    |     ^^^^
///    = help: did you mean `needs`?
/// ```
pub fn render_human(
    out: &mut dyn Write,
    source: Option<&SourceFile>,
    path: &str,
    diags: &[Diagnostic],
    style: Style,
) -> io::Result<()> {
    let (shown, omitted) = capped(diags);
    for d in shown {
        let label = match d.severity {
            Severity::Error => style.error(&format!("error[{}]", d.code)),
            Severity::Warning => style.warning(&format!("warning[{}]", d.code)),
        };
        writeln!(out, "{label}: {}", style.bold(&d.message))?;
        if d.span.is_unknown() {
            writeln!(out, "  {} {path}", style.dim("-->"))?;
        } else {
            let source = source.filter(|_| !d.hide_source);
            snippet(out, source, path, d.span, None, style)?;
        }
        for (span, note) in &d.notes {
            snippet(out, source, path, *span, Some(note), style)?;
        }
        if let Some(help) = &d.help {
            writeln!(
                out,
                "   {} {}",
                style.dim("="),
                style.help(&format!("help: {help}"))
            )?;
        }
        writeln!(out)?;
    }
    for o in omitted {
        let what = match o.severity {
            Severity::Error => style.error(&format!("error[{}]", o.code)),
            Severity::Warning => style.warning(&format!("warning[{}]", o.code)),
        };
        writeln!(
            out,
            "{what}: ... and {} more like the above (the first {} of this kind are shown)",
            o.count,
            crate::diagnostic::SHOWN_PER_CODE
        )?;
        writeln!(out)?;
    }
    Ok(())
}

/// Characters of a source line shown at most; a longer line is cut around
/// the caret and the cuts are marked with `…`.
const SHOWN_LINE_CHARS: usize = 120;

/// Characters kept before the caret when a long line is cut.
const BEFORE_CARET: usize = 40;

/// The part of a source line to show for a caret at char `col` (0-based),
/// the caret's column in that part, and how many carets fit.
fn excerpt(line: &str, col: usize, width: usize) -> (String, usize, usize) {
    let len = line.chars().count();
    if len <= SHOWN_LINE_CHARS {
        return (line.to_owned(), col, width);
    }
    let col = col.min(len);
    let start = col.saturating_sub(BEFORE_CARET);
    let end = (start + SHOWN_LINE_CHARS).min(len);
    let mut text = String::new();
    if start > 0 {
        text.push('…');
    }
    text.extend(line.chars().skip(start).take(end - start));
    if end < len {
        text.push('…');
    }
    let shown_col = col - start + usize::from(start > 0);
    let width = width.min(end.saturating_sub(col)).max(1);
    (text, shown_col, width)
}

fn snippet(
    out: &mut dyn Write,
    source: Option<&SourceFile>,
    path: &str,
    span: Span,
    note: Option<&str>,
    style: Style,
) -> io::Result<()> {
    let line_no = span.start.line;
    let gutter = " ".repeat(line_no.to_string().len());
    match note {
        None => writeln!(
            out,
            "{gutter}{} {path}:{}:{}",
            style.dim("-->"),
            line_no,
            span.start.col
        )?,
        Some(n) => writeln!(
            out,
            "{gutter}{} {n}: {path}:{}:{}",
            style.dim("::"),
            line_no,
            span.start.col
        )?,
    }
    let Some(line) = source.and_then(|s| s.line(line_no)) else {
        return Ok(());
    };
    let col = span.start.col.saturating_sub(1) as usize;
    let width = if span.end.line == span.start.line && span.end.col > span.start.col {
        (span.end.col - span.start.col) as usize
    } else {
        line.chars().count().saturating_sub(col)
    }
    .max(1);
    let (line, col, width) = excerpt(line, col, width);
    writeln!(out, "{gutter} {}", style.dim("|"))?;
    writeln!(out, "{} {line}", style.dim(&format!("{line_no} |")))?;
    // Copy tabs from the source so the caret lines up whatever the tab width.
    let pad: String = line
        .chars()
        .take(col)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let carets = "^".repeat(width);
    let carets = if note.is_some() {
        style.dim(&carets)
    } else {
        style.error(&carets)
    };
    writeln!(out, "{gutter} {} {pad}{carets}", style.dim("|"))
}

/// One file's diagnostics as a JSON object. As in the human form, only the
/// first diagnostics of each code are listed (`omitted` counts the rest)
/// and a long `source_line` is cut around the place (`source_line_cut`).
pub fn render_json_file(source: Option<&SourceFile>, path: &str, diags: &[Diagnostic]) -> Value {
    let (shown, omitted) = capped(diags);
    let items: Vec<Value> = shown
        .into_iter()
        .map(|d| {
            let mut v = json!({
                "severity": d.severity,
                "code": d.code,
                "message": d.message,
                "file": path,
            });
            if !d.span.is_unknown() {
                v["line"] = json!(d.span.start.line);
                v["column"] = json!(d.span.start.col);
                v["end_line"] = json!(d.span.end.line);
                v["end_column"] = json!(d.span.end.col);
                let line = source
                    .filter(|_| !d.hide_source)
                    .and_then(|s| s.line(d.span.start.line));
                if let Some(line) = line {
                    let col = d.span.start.col.saturating_sub(1) as usize;
                    let (shown, _, _) = excerpt(line, col, 1);
                    if shown != line {
                        v["source_line_cut"] = json!(true);
                    }
                    v["source_line"] = json!(shown);
                }
            }
            if let Some(h) = &d.help {
                v["help"] = json!(h);
            }
            if !d.notes.is_empty() {
                v["notes"] = d
                    .notes
                    .iter()
                    .map(
                        |(s, n)| json!({"line": s.start.line, "column": s.start.col, "message": n}),
                    )
                    .collect();
            }
            v
        })
        .collect();
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let mut file = json!({
        "file": path,
        "valid": errors == 0,
        "errors": errors,
        "warnings": diags.len() - errors,
        "diagnostics": items,
    });
    if !omitted.is_empty() {
        file["omitted"] = omitted
            .iter()
            .map(|o| json!({"code": o.code, "severity": o.severity, "count": o.count}))
            .collect();
    }
    file
}
