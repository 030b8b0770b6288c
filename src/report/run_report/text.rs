//! Text helpers the renderings share: escaping for XML and Markdown, times
//! and offsets, an attempt's end in words, an action's details as lines.

use std::fmt::Write as _;
use std::time::Duration;

use crate::report::fmt_duration;
use crate::state::AttemptRecord;

/// Recorded text with control characters written out
/// (`report::progress::visible`) and the Unicode bidirectional controls
/// too (U+202A..U+202E, U+2066..U+2069, U+200E, U+200F, U+061C): those are
/// no control characters to Rust, but a step name or output holding one
/// would reorder what the reader of the report sees (a "succeeded"
/// spelled backwards, a path that reads as another), so they are shown as
/// `\u{202e}` like any other invisible character.
pub(super) fn visible(text: &str) -> String {
    let shown = crate::report::progress::visible(text);
    let mut out = String::with_capacity(shown.len());
    for c in shown.chars() {
        if matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
        {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Text for XML/HTML content and attribute values: control characters
/// written out first (`report::visible`; XML 1.0 allows none but tab,
/// newline and carriage return, and a step's output may hold any), then
/// `<`, `>`, `&`, `"` and `'` as character references, so that a step
/// name or message can close no element and end no attribute.
pub(super) fn xml(text: &str) -> String {
    let shown = visible(text);
    let mut out = String::with_capacity(shown.len());
    for c in shown.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // visible() keeps tabs; Unicode non-characters are not XML.
            '\u{FFFE}' | '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Text for a Markdown paragraph or table cell: control characters
/// written out, one line, and every character that Markdown (CommonMark
/// and GitHub's tables) would read as markup backslash-escaped, so a
/// message like `<b>*x*|y` shows as written.
pub(super) fn md(text: &str) -> String {
    let shown = visible(text);
    let mut out = String::with_capacity(shown.len() + 8);
    for c in shown.chars() {
        if "\\`*_[]<>|#!~&".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Text as a Markdown code span (ids, paths, commands): fenced with more
/// backticks than it holds in a row, `|` escaped for tables (GitHub reads
/// `\|` as `|` inside a cell's code span too).
pub(super) fn md_code(text: &str) -> String {
    let shown = visible(text).replace('|', "\\|");
    let mut longest = 0;
    let mut run = 0;
    for c in shown.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if shown.starts_with('`') || shown.ends_with('`') || shown.is_empty() {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{shown}{pad}{fence}")
}

/// A time as RFC 3339 (local offset, milliseconds), or `-`.
pub(super) fn time(ms: Option<i64>) -> String {
    ms.and_then(crate::report::rfc3339)
        .unwrap_or_else(|| "-".to_owned())
}

/// A length of time as ward prints it (`850ms`, `4.2s`, `3m12s`), or `-`.
pub(super) fn duration(ms: Option<i64>) -> String {
    match ms {
        Some(ms) if ms >= 0 => fmt_duration(Duration::from_millis(ms as u64)),
        _ => "-".to_owned(),
    }
}

/// A moment as an offset from the run's start: `+4.2s`.
pub(super) fn offset(ms: i64) -> String {
    if ms < 0 {
        format!("-{}", duration(Some(-ms)))
    } else {
        format!("+{}", duration(Some(ms)))
    }
}

/// How an attempt ended, in words: `failed, exit 3`, `timed-out, signal
/// 9`, `end not recorded`.
pub(super) fn attempt_end(a: &AttemptRecord) -> String {
    match (a.outcome, a.exit_code, a.signal) {
        (Some(o), Some(code), _) => format!("{o}, exit {code}"),
        (Some(o), None, Some(sig)) => format!("{o}, signal {sig}"),
        (Some(o), None, None) => o.to_string(),
        (None, _, _) => "end not recorded".to_owned(),
    }
}

/// An action's details (JSON) as `key: value` lines, nested keys joined
/// with dots, at most `MAX_DETAIL_LINES` lines (the rest counted).
pub(super) fn detail_lines(details: &serde_json::Value) -> Vec<String> {
    let mut lines = Vec::new();
    flatten("", details, &mut lines);
    if lines.len() > MAX_DETAIL_LINES {
        let more = lines.len() - MAX_DETAIL_LINES;
        lines.truncate(MAX_DETAIL_LINES);
        lines.push(format!("(and {more} more)"));
    }
    lines
}

/// How many lines of one attempt's details a report shows.
const MAX_DETAIL_LINES: usize = 40;
/// How long one value of the details may be before it is cut.
const MAX_DETAIL_CHARS: usize = 300;

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, x) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        Value::Null => {}
        other => {
            let mut text = match other {
                Value::String(s) => s.clone(),
                x => x.to_string(),
            };
            if text.chars().count() > MAX_DETAIL_CHARS {
                text = text.chars().take(MAX_DETAIL_CHARS).collect();
                text.push_str(" [cut]");
            }
            let mut line = String::new();
            if !prefix.is_empty() {
                let _ = write!(line, "{prefix}: ");
            }
            line.push_str(&text);
            out.push(line);
        }
    }
}

/// A JSON value as one line of text (strings without their quotes).
pub(super) fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_can_close_nothing_and_holds_no_control_characters() {
        let t = xml("a<b>&\"c'\u{1b}[2J\u{0}\tz");
        assert_eq!(t, "a&lt;b&gt;&amp;&quot;c&#39;\\u{1b}[2J\\u{0}\tz");
    }

    #[test]
    fn markdown_text_is_shown_as_written() {
        // A newline is written out (`\n`), and its backslash escaped in turn.
        assert_eq!(md("<b>*x*|y_z\n"), "\\<b\\>\\*x\\*\\|y\\_z\\\\n");
        assert_eq!(md_code("a|b"), "`a\\|b`");
        assert_eq!(md_code("x `y` z"), "``x `y` z``");
        assert_eq!(md_code("`y`"), "`` `y` ``");
    }

    #[test]
    fn details_are_flat_key_value_lines() {
        let v = serde_json::json!({"snapshot": "/b/2026", "stats": {"files": 3, "bytes": 10}, "none": null});
        assert_eq!(
            detail_lines(&v),
            ["snapshot: /b/2026", "stats.bytes: 10", "stats.files: 3"]
        );
        assert_eq!(detail_lines(&serde_json::json!("x")), ["x"]);
    }
}
