//! Renders diagnostics as `file:line:col` with the source line and a caret,
//! or as JSON.

use std::io::{self, Write};

use serde_json::{Value, json};

use super::Style;
use crate::diagnostic::{Diagnostic, Severity};
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
    for d in diags {
        let label = match d.severity {
            Severity::Error => style.error(&format!("error[{}]", d.code)),
            Severity::Warning => style.warning(&format!("warning[{}]", d.code)),
        };
        writeln!(out, "{label}: {}", style.bold(&d.message))?;
        if d.span.is_unknown() {
            writeln!(out, "  {} {path}", style.dim("-->"))?;
        } else {
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
    Ok(())
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
    writeln!(out, "{gutter} {}", style.dim("|"))?;
    writeln!(out, "{} {line}", style.dim(&format!("{line_no} |")))?;
    // Copy tabs from the source so the caret lines up whatever the tab width.
    let col = span.start.col.saturating_sub(1) as usize;
    let pad: String = line
        .chars()
        .take(col)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let line_len = line.chars().count();
    let width = if span.end.line == span.start.line && span.end.col > span.start.col {
        (span.end.col - span.start.col) as usize
    } else {
        line_len.saturating_sub(col)
    }
    .max(1);
    let carets = "^".repeat(width);
    let carets = if note.is_some() {
        style.dim(&carets)
    } else {
        style.error(&carets)
    };
    writeln!(out, "{gutter} {} {pad}{carets}", style.dim("|"))
}

/// One file's diagnostics as a JSON object.
pub fn render_json_file(source: Option<&SourceFile>, path: &str, diags: &[Diagnostic]) -> Value {
    let items: Vec<Value> = diags
        .iter()
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
                if let Some(line) = source.and_then(|s| s.line(d.span.start.line)) {
                    v["source_line"] = json!(line);
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
    json!({
        "file": path,
        "valid": errors == 0,
        "errors": errors,
        "warnings": diags.len() - errors,
        "diagnostics": items,
    })
}
