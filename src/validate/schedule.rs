//! `schedule:` and `timezone:`: the crontab expression read with
//! [`crate::schedule::CronExpr`], an error pointing at the field that is
//! wrong inside the expression; the zone looked up in the system's tz
//! database. (`jitter:` is a duration, checked when it is parsed.)

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::model::{Playbook, Spanned};
use crate::schedule::{CronExpr, ExprError, Schedule, Zone};
use crate::source::{Pos, SourceFile, Span};

/// The playbook's schedule in its zone; `None` when it has no `schedule:`
/// or when it is wrong (the reason is in `diags`).
pub fn schedule(playbook: &Playbook, diags: &mut Diagnostics) -> Option<Schedule> {
    let zone = match &playbook.timezone {
        None => Some(Zone::system()),
        Some(name) => match Zone::named(name.value.trim()) {
            Ok(zone) => Some(zone),
            Err(e) => {
                diags.push(
                    Diagnostic::error(
                        "unknown-timezone",
                        name.span,
                        format!("invalid `timezone` in the playbook: {e}"),
                    )
                    .with_help(
                        "write an IANA zone name as in /usr/share/zoneinfo, e.g. \
                         `Europe/Berlin` or `UTC`; leave `timezone` out for the system's zone",
                    ),
                );
                None
            }
        },
    };
    let Some(text) = &playbook.schedule else {
        if let Some(tz) = &playbook.timezone {
            diags.push(
                Diagnostic::warning(
                    "unused-timezone",
                    tz.span,
                    "`timezone` has no effect without `schedule`",
                )
                .with_help("add a `schedule:` such as `30 2 * * *`, or remove `timezone`"),
            );
        }
        return None;
    };
    let expr = match CronExpr::parse(&text.value) {
        Ok(expr) => expr,
        Err(e) => {
            diags.push(expr_error(&playbook.source, text, &e));
            return None;
        }
    };
    Some(Schedule::new(expr, zone?))
}

/// A diagnostic for a refused expression, at the field inside the value
/// when the value is on one line as written (plain or quoted without
/// escapes before it), else at the whole value.
fn expr_error(source: &SourceFile, text: &Spanned<String>, e: &ExprError) -> Diagnostic {
    let span = inner_span(source, text, e.start, e.end).unwrap_or(text.span);
    Diagnostic::error(
        "invalid-schedule",
        span,
        format!("invalid `schedule` `{}`: {}", text.value.trim(), e.message),
    )
    .with_help_opt(e.help.clone())
}

/// The span of characters `start..end` of `text`'s value in the file.
fn inner_span(
    source: &SourceFile,
    text: &Spanned<String>,
    start: usize,
    end: usize,
) -> Option<Span> {
    let span = text.span;
    if span.start.line != span.end.line || span.start.line == 0 {
        return None;
    }
    let line = source.line(span.start.line)?;
    let raw: Vec<char> = line
        .chars()
        .skip(usize::try_from(span.start.col).ok()?.checked_sub(1)?)
        .collect();
    let value: Vec<char> = text.value.chars().collect();
    let shift = match raw.first() {
        Some('"' | '\'') if raw.get(1..=value.len()) == Some(&value[..]) => 1,
        _ if raw.get(..value.len()) == Some(&value[..]) => 0,
        _ => return None,
    };
    let col =
        |i: usize| -> Option<u32> { span.start.col.checked_add(u32::try_from(i + shift).ok()?) };
    Some(Span::new(
        Pos {
            line: span.start.line,
            col: col(start)?,
        },
        Pos {
            line: span.start.line,
            col: col(end)?,
        },
    ))
}
