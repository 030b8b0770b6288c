//! Readers of the `for_each` lists that are only known when their step
//! starts: a JSON array, CSV rows, and what a program prints. Each gives
//! the items as JSON values; where they come from (a file opened without
//! blocking, a program run with a timeout) is fan_out.rs's concern, and
//! what is wrong is said with its line so that the operator can fix it.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// What is wrong with a JSON list.
#[derive(Debug)]
pub(super) enum JsonProblem {
    /// Not JSON: serde_json's message, line and column (1-based).
    Syntax {
        line: usize,
        column: usize,
        error: String,
    },
    /// `at:` names nothing in the document.
    NoPointer,
    /// What was found instead of an array (`an object`, `a number`, ...).
    NotArray(&'static str),
}

/// The items of a JSON document: the array itself, or the array at the
/// JSON pointer `at` ("" for the whole document). Items may be any JSON
/// value; objects give `{{ item.field }}`.
pub(super) fn json_items(text: &str, at: &str) -> Result<Vec<Value>, JsonProblem> {
    let doc: Value = serde_json::from_str(text).map_err(|e| JsonProblem::Syntax {
        line: e.line(),
        column: e.column(),
        // serde_json's Display repeats "at line L column C": the place is
        // given by the caller, with the file's name.
        error: strip_place(&e.to_string()),
    })?;
    let found = if at.is_empty() {
        doc
    } else {
        doc.pointer(at).cloned().ok_or(JsonProblem::NoPointer)?
    };
    match found {
        Value::Array(items) => Ok(items),
        other => Err(JsonProblem::NotArray(kind(&other))),
    }
}

fn strip_place(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// What is wrong with a CSV list, and on which line (1-based, of the file).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct CsvProblem {
    pub line: usize,
    pub why: String,
}

/// One record: its fields and the line it starts on.
struct Record {
    line: usize,
    fields: Vec<String>,
}

/// Splits CSV text into records (RFC 4180): fields separated by
/// `delimiter`, records by CRLF or LF; a field in double quotes may hold
/// the delimiter, line breaks and `""` (one quote). A quote inside an
/// unquoted field is kept as it is (many tools write them). Blank lines
/// are no records, so a trailing newline or a spacer adds no item.
fn records(text: &str, delimiter: char) -> Result<Vec<Record>, CsvProblem> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut record_line = 1;
    // The current field was quoted (its closing quote seen or not).
    let mut quoted = false;
    // Inside quotes now.
    let mut in_quotes = false;
    // Where the open quote was, for an unterminated one.
    let mut quote_line = 0;
    let mut chars = text.chars().peekable();
    let end_record = |fields: &mut Vec<String>,
                      field: &mut String,
                      quoted: bool,
                      out: &mut Vec<Record>,
                      at: usize| {
        // A line with nothing on it (not even `""`) is blank, not a
        // record of one empty field.
        if fields.is_empty() && field.is_empty() && !quoted {
            return;
        }
        fields.push(std::mem::take(field));
        out.push(Record {
            line: at,
            fields: std::mem::take(fields),
        });
    };
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => {
                    in_quotes = false;
                    match chars.peek() {
                        None | Some('\n') | Some('\r') => {}
                        Some(&d) if d == delimiter => {}
                        Some(&other) => {
                            return Err(CsvProblem {
                                line,
                                why: format!(
                                    "`{other}` follows the closing quote of a field; a quoted \
                                     field ends at its quote (write a quote inside it as `\"\"`)"
                                ),
                            });
                        }
                    }
                }
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !quoted => {
                quoted = true;
                in_quotes = true;
                quote_line = line;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                end_record(&mut fields, &mut field, quoted, &mut out, record_line);
                quoted = false;
                line += 1;
                record_line = line;
            }
            d if d == delimiter => {
                fields.push(std::mem::take(&mut field));
                quoted = false;
            }
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err(CsvProblem {
            line: quote_line,
            why: "a quoted field is not closed before the end of the file; close it with `\"`"
                .to_owned(),
        });
    }
    end_record(&mut fields, &mut field, quoted, &mut out, record_line);
    Ok(out)
}

/// The items of a CSV text: with `header`, each row after the first is an
/// object keyed by the first row's names; without, each row is a list of
/// its fields. Every row has as many fields as the first (else the line
/// of the ragged one is named). Fields are text.
pub(super) fn csv_items(
    text: &str,
    delimiter: char,
    header: bool,
) -> Result<Vec<Value>, CsvProblem> {
    let rows = records(text, delimiter)?;
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    let width = first.fields.len();
    if header {
        let mut seen = std::collections::HashSet::new();
        for name in &first.fields {
            if name.trim().is_empty() || !seen.insert(name.as_str()) {
                return Err(CsvProblem {
                    line: first.line,
                    why: format!(
                        "the header row has {} column name `{name}`; each column needs a name \
                         of its own (or set `header: false` for rows as lists)",
                        if name.trim().is_empty() {
                            "an empty"
                        } else {
                            "a repeated"
                        }
                    ),
                });
            }
        }
    }
    let mut items = Vec::with_capacity(rows.len());
    for row in rows.iter().skip(usize::from(header)) {
        if row.fields.len() != width {
            return Err(CsvProblem {
                line: row.line,
                why: format!(
                    "this row has {} fields, but the {} has {width}; quote a field that \
                     holds the delimiter",
                    row.fields.len(),
                    if header { "header" } else { "first row" }
                ),
            });
        }
        items.push(if header {
            Value::Object(
                first
                    .fields
                    .iter()
                    .cloned()
                    .zip(row.fields.iter().cloned().map(Value::String))
                    .collect(),
            )
        } else {
            Value::Array(row.fields.iter().cloned().map(Value::String).collect())
        });
    }
    Ok(items)
}

/// The items of a text of lines: one per non-blank line, trimmed.
pub(super) fn line_items(text: &str) -> Vec<Value> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| Value::String(l.to_owned()))
        .collect()
}

/// Runs a `for_each.command` program and gives what it printed on stdout
/// (at most `limit` bytes). It runs in `cwd`, with ward's environment and
/// `env`, stdin from /dev/null, in a process group of its own like every
/// child ward starts (ward reaps children outside such groups as orphans
/// handed to it, `orphans::reap_orphans`, which would take this one's exit
/// status), and its group is killed after `timeout` or on `stop` (the
/// run's stop: a Ctrl-C at the terminal reaches ward, which sets it). The
/// error is one line: the command, what happened, the tail of its stderr.
pub(super) fn run_command(
    argv: &[String],
    cwd: &Path,
    env: &[(String, String)],
    timeout: Duration,
    limit: u64,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<Vec<u8>, String> {
    let shown = format!("`{}`", argv.join(" "));
    let (program, args) = argv.split_first().ok_or("an empty command")?;
    let mut child = crate::process::new_command(program)
        .args(args)
        .current_dir(cwd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("its `for_each` command {shown} could not start: {e}"))?;
    let (out_tx, out_rx) = mpsc::channel();
    let mut stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let r = (&mut stdout)
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map(|_| bytes);
        let _ = out_tx.send(r);
    });
    let (err_tx, err_rx) = mpsc::channel();
    let mut stderr = child.stderr.take().expect("piped");
    std::thread::spawn(move || {
        // Only the end is kept: the last lines say what went wrong.
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 4096 {
                tail.drain(..tail.len() - 2048);
            }
        }
        let _ = err_tx.send(tail);
    });
    let deadline = Instant::now() + timeout;
    let mut output: Option<std::io::Result<Vec<u8>>> = None;
    // The whole group: what `sh -c` started goes with it.
    let kill = |child: &mut std::process::Child| {
        if let Some(group) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = child.kill();
        let _ = child.wait();
    };
    let status = loop {
        if output.is_none() {
            output = out_rx.try_recv().ok();
        }
        if let Some(Ok(bytes)) = &output
            && bytes.len() as u64 > limit
        {
            kill(&mut child);
            return Err(format!(
                "its `for_each` command {shown} printed more than {} bytes; list fewer \
                 items per step (or write them to a file and split it)",
                limit
            ));
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                kill(&mut child);
                return Err(format!(
                    "its `for_each` command {shown} could not be waited for: {e}"
                ));
            }
        }
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            kill(&mut child);
            return Err(format!(
                "its `for_each` command {shown} was stopped: ward was asked to stop"
            ));
        }
        if Instant::now() >= deadline {
            kill(&mut child);
            return Err(format!(
                "its `for_each` command {shown} did not end within {}; it was killed (a longer \
                 `timeout:` on the step gives it more time)",
                crate::model::Duration(timeout)
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let output = match output {
        Some(o) => o,
        // It ended; its stdout ends too unless something it started in the
        // background holds it open: waited for until the deadline.
        None => out_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| {
                format!(
                    "its `for_each` command {shown} ended but its output stayed open (a \
                     program it left in the background?) until the timeout"
                )
            })?,
    }
    .map_err(|e| format!("the output of its `for_each` command {shown} could not be read: {e}"))?;
    if output.len() as u64 > limit {
        return Err(format!(
            "its `for_each` command {shown} printed more than {limit} bytes; list fewer \
             items per step (or write them to a file and split it)"
        ));
    }
    if !status.success() {
        let tail = err_rx
            .recv_timeout(Duration::from_millis(200))
            .unwrap_or_default();
        let tail = String::from_utf8_lossy(&tail);
        let tail: Vec<&str> = tail.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(3)..].join(" / ");
        let how = match status.code() {
            Some(code) => format!("exited with code {code}"),
            None => {
                use std::os::unix::process::ExitStatusExt;
                format!("was killed by signal {}", status.signal().unwrap_or(0))
            }
        };
        let said = if tail.is_empty() {
            String::new()
        } else {
            format!("; it said: {tail}")
        };
        return Err(format!(
            "its `for_each` command {shown} {how}{said}; no item ran"
        ));
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_json_array_or_the_array_at_a_pointer() {
        assert_eq!(
            json_items(r#"["a", 2, {"name": "b"}]"#, "").expect("array"),
            [json!("a"), json!(2), json!({"name": "b"})]
        );
        assert_eq!(
            json_items(r#"{"users": [{"n": 1}]}"#, "/users").expect("at"),
            [json!({"n": 1})]
        );
        assert!(matches!(
            json_items(r#"{"users": 1}"#, "/users"),
            Err(JsonProblem::NotArray("a number"))
        ));
        assert!(matches!(
            json_items(r#"{"a": []}"#, "/b"),
            Err(JsonProblem::NoPointer)
        ));
        assert!(matches!(
            json_items("{}", ""),
            Err(JsonProblem::NotArray("an object"))
        ));
        match json_items("[\n  \"a\",\n  b\n]", "") {
            Err(JsonProblem::Syntax {
                line,
                column,
                error,
            }) => {
                assert_eq!((line, column), (3, 3));
                assert!(!error.contains("at line"), "{error}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn csv_rows_are_objects_keyed_by_the_header() {
        let text = "user,home\r\nalice,/h/a\n\"bob, jr\",\"/h/\"\"b\"\"\"\n\n\"multi\nline\",x\n";
        assert_eq!(
            csv_items(text, ',', true).expect("csv"),
            [
                json!({"user": "alice", "home": "/h/a"}),
                json!({"user": "bob, jr", "home": "/h/\"b\""}),
                json!({"user": "multi\nline", "home": "x"}),
            ]
        );
        assert_eq!(
            csv_items("a;b\nc;\"\"\n", ';', false).expect("csv"),
            [json!(["a", "b"]), json!(["c", ""])]
        );
        assert_eq!(
            csv_items("", ',', true).expect("empty"),
            Vec::<Value>::new()
        );
        assert_eq!(
            csv_items("only,header\n", ',', true)
                .expect("no rows")
                .len(),
            0
        );
    }

    #[test]
    fn a_ragged_row_or_a_bad_quote_names_its_line() {
        let e = csv_items("a,b\n\"x\ny\",1\nz\n", ',', true).expect_err("ragged");
        assert_eq!(e.line, 4);
        assert!(
            e.why.contains("1 fields, but the header has 2"),
            "{}",
            e.why
        );
        let e = csv_items("a\n\"open\n\n", ',', true).expect_err("open quote");
        assert_eq!(e.line, 2);
        let e = csv_items("a,b\n\"x\"y,1\n", ',', true).expect_err("after quote");
        assert_eq!(e.line, 2);
        let e = csv_items("a,a\n1,2\n", ',', true).expect_err("repeated name");
        assert!(e.why.contains("repeated"), "{}", e.why);
    }

    #[test]
    fn a_command_gives_its_output_or_says_why_not() {
        let dir = std::env::temp_dir();
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let env = [("WHO".to_owned(), "x".to_owned())];
        let go = std::sync::atomic::AtomicBool::new(false);
        let out = run_command(
            &argv(&["sh", "-c", "echo $WHO; echo b"]),
            &dir,
            &env,
            Duration::from_secs(10),
            1000,
            &go,
        )
        .expect("runs");
        assert_eq!(out, b"x\nb\n");
        let e = run_command(
            &argv(&["sh", "-c", "echo oops >&2; exit 3"]),
            &dir,
            &[],
            Duration::from_secs(10),
            1000,
            &go,
        )
        .expect_err("exit 3");
        assert!(e.contains("exited with code 3; it said: oops"), "{e}");
        let e = run_command(
            &argv(&["sh", "-c", "yes"]),
            &dir,
            &[],
            Duration::from_secs(10),
            1000,
            &go,
        )
        .expect_err("too much");
        assert!(e.contains("more than 1000 bytes"), "{e}");
        let e = run_command(
            &argv(&["sleep", "5"]),
            &dir,
            &[],
            Duration::from_millis(100),
            1000,
            &go,
        )
        .expect_err("timeout");
        assert!(e.contains("did not end within"), "{e}");
        // A stop kills it at once, long before its timeout.
        let stop = std::sync::atomic::AtomicBool::new(true);
        let started = std::time::Instant::now();
        let e = run_command(
            &argv(&["sleep", "30"]),
            &dir,
            &[],
            Duration::from_secs(60),
            1000,
            &stop,
        )
        .expect_err("stopped");
        assert!(e.contains("was stopped"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
