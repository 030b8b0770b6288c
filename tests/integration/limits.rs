//! Validation cost and output stay bounded: many vars, long chains, floods of
//! unknown ids on one line, templates that would run forever.
//!
//! The timeouts are sanity bounds against quadratic blowups (each of these
//! took from 10 s to forever before), not speed measurements.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::Scratch;

/// What a `ward` run printed; fails the test if it runs past `limit`.
struct Bounded {
    code: i32,
    stdout: String,
    stderr: String,
}

fn ward_within(s: &Scratch, args: &[&str], limit: Duration) -> Bounded {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(args)
        .current_dir(s.path())
        .env("NO_COLOR", "1")
        .env("WARD_NOW", "2026-11-23T02:00:00")
        .env("WARD_STATE", s.state())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ward starts");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let readers = (
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        }),
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ward {args:?} ran longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Bounded {
        code: status.code().unwrap_or(-1),
        stdout: readers.0.join().expect("stdout reader"),
        stderr: readers.1.join().expect("stderr reader"),
    }
}

const LIMIT: Duration = Duration::from_secs(30);

fn unknown_needs(n: usize) -> String {
    let ids: Vec<String> = (0..n).map(|i| format!("missing{i}")).collect();
    format!(
        "ward: 1\nname: flood\nsteps:\n  - id: a\n    run: echo\n  - id: b\n    run: echo\n    needs: [{}]\n",
        ids.join(", ")
    )
}

#[test]
fn twenty_thousand_unknown_needs_give_a_short_report() {
    let s = Scratch::new();
    s.write("flood.yml", &unknown_needs(20_000));
    let out = ward_within(&s, &["validate", "flood.yml"], LIMIT);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let e = &out.stderr;
    assert_eq!(
        e.matches("error[unknown-step]: `needs` of step `b`")
            .count(),
        20,
        "the first 20 are shown"
    );
    assert!(
        e.contains("error[unknown-step]: ... and 19980 more like the above"),
        "{}",
        &e[e.len().saturating_sub(600)..]
    );
    assert!(e.contains("20000 error"), "the count stays exact");
    assert!(e.len() < 20_000, "{} bytes of diagnostics", e.len());
    assert!(
        e.lines().all(|l| l.chars().count() < 200),
        "long source lines are cut"
    );

    let json = ward_within(&s, &["validate", "--format", "json", "flood.yml"], LIMIT);
    assert_eq!(json.code, 2);
    assert!(
        json.stdout.len() < 50_000,
        "{} bytes of JSON",
        json.stdout.len()
    );
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    let file = &v["files"][0];
    assert_eq!(file["errors"], 20_000);
    assert_eq!(file["diagnostics"].as_array().map(Vec::len), Some(20));
    assert_eq!(
        file["omitted"],
        serde_json::json!([{"code": "unknown-step", "severity": "error", "count": 19_980}])
    );
    let first = &file["diagnostics"][0];
    assert_eq!(first["source_line_cut"], true);
    assert!(first["source_line"].as_str().expect("line").chars().count() <= 122);
}

#[test]
fn the_caret_stays_under_its_name_in_a_cut_line() {
    let s = Scratch::new();
    // One unknown id far into a long line of known ones.
    let mut known: Vec<String> = (0..400).map(|i| format!("s{i}")).collect();
    let mut text = String::from("ward: 1\nname: caret\nsteps:\n");
    for id in &known {
        text.push_str(&format!("  - id: {id}\n    run: echo\n"));
    }
    known.insert(300, "nope-not-a-step".to_owned());
    text.push_str(&format!(
        "  - id: last\n    run: echo\n    needs: [{}]\n",
        known.join(", ")
    ));
    s.write("caret.yml", &text);
    let out = ward_within(&s, &["validate", "caret.yml"], LIMIT);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains(" | …"))
        .unwrap_or_else(|| panic!("no cut line:\n{}", out.stderr));
    let shown = lines[at];
    let carets = lines[at + 1];
    let name_at = shown.find("nope-not-a-step").expect("name shown");
    let name_col = shown[..name_at].chars().count();
    let caret_col = carets[..carets.find('^').expect("caret")].chars().count();
    assert_eq!(caret_col, name_col, "\n{shown}\n{carets}");
    assert_eq!(carets.matches('^').count(), "nope-not-a-step".len());
    assert!(shown.ends_with('…'));
}

#[test]
fn thousands_of_vars_and_long_chains_resolve() {
    let s = Scratch::new();
    let mut flat = String::from("ward: 1\nname: many\nvars:\n");
    let mut chain = String::from("ward: 1\nname: chain\nvars:\n  c0: x\n");
    for i in 0..20_000 {
        flat.push_str(&format!("  v{i}: value{i}\n"));
        if i > 0 {
            chain.push_str(&format!("  c{i}: \"{{{{ c{} }}}}\"\n", i - 1));
        }
    }
    flat.push_str("steps:\n  - id: a\n    run: echo {{ v19999 }}\n");
    chain.push_str("steps:\n  - id: a\n    run: echo {{ c19999 }}\n");
    s.write("flat.yml", &flat);
    s.write("chain.yml", &chain);
    for file in ["flat.yml", "chain.yml"] {
        let out = ward_within(&s, &["plan", "--format", "json", file], LIMIT);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
        let run = v["steps"][0]["run"].as_str().expect("run");
        assert!(run == "echo value19999" || run == "echo x", "{run}");
    }
}

#[test]
fn a_template_that_would_run_forever_runs_out_of_fuel() {
    let s = Scratch::new();
    s.write(
        "fuel.yml",
        r#"ward: 1
name: fuel
vars:
  huge: "{{ 'x' * 2000000 }}"
steps:
  - id: loops
    run: "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
  - id: fine
    run: "echo {% for i in range(100) %}{{ i }}{% endfor %}"
"#,
    );
    let out = ward_within(&s, &["validate", "fuel.yml"], LIMIT);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let e = &out.stderr;
    assert!(
        e.contains("error[template-budget]: template in `run` of step `loops` does too much work"),
        "{e}"
    );
    assert!(e.contains("fuel.yml:7:"), "{e}");
    assert!(
        e.contains("error[template-budget]: template in variable `huge` does too much work: its output is 2000000 bytes"),
        "{e}"
    );
    assert!(!e.contains("step `fine`"), "{e}");
    assert_eq!(e.matches("error[").count(), 2, "{e}");
}

#[test]
fn a_var_that_failed_stops_the_vars_and_steps_made_from_it() {
    let s = Scratch::new();
    // Each var doubles the one before: the 18th is past the output budget.
    // The ones after it must not start over from some stand-in value.
    let mut chain = String::from("ward: 1\nname: chain\nvars:\n  v0: xxxxxxxxxxxxxxxx\n");
    for i in 1..100 {
        chain.push_str(&format!(
            "  v{i}: \"{{{{ v{p} }}}}{{{{ v{p} }}}}\"\n",
            p = i - 1
        ));
    }
    chain.push_str(
        "  other: \"{{ v99 | length }}\"\nsteps:\n  - id: a\n    run: echo {{ v99 }}\n  - id: b\n    cmd: [echo, \"{{ other }}\"]\n  - id: c\n    run: echo fine\n",
    );
    s.write("chain.yml", &chain);
    let out = ward_within(&s, &["validate", "chain.yml"], LIMIT);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let e = &out.stderr;
    assert!(
        e.contains("error[template-budget]: template in variable `v17` does too much work"),
        "{e}"
    );
    assert_eq!(
        e.matches("error[").count(),
        1,
        "one error, at the cause:\n{}",
        &e[..e.len().min(4000)]
    );
}

#[test]
fn a_repeated_sequence_is_refused_before_it_is_built() {
    let s = Scratch::new();
    s.write(
        "repeat.yml",
        r#"ward: 1
name: repeat
vars:
  big: "{{ ['x'] * 100000000 }}"
  nested: "{{ [['x'] * 100000000] }}"
  quoted: "{{ (['x'] * 100000000) | quote }}"
  fine: "{{ [1, 2] * 3 }}"
steps:
  - id: ranges
    run: echo {{ (range(100000)|list) * 1000 }}
  - id: fine
    cmd: [echo, "{{ fine }}"]
"#,
    );
    let out = ward_within(&s, &["validate", "repeat.yml"], LIMIT);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let e = &out.stderr;
    for what in [
        "variable `big`",
        "variable `nested`",
        "variable `quoted`",
        "`run` of step `ranges`",
    ] {
        assert!(
            e.contains(&format!(
                "error[template-budget]: template in {what} does too much work"
            )),
            "{what}: {e}"
        );
    }
    assert_eq!(e.matches("error[").count(), 4, "{e}");
    // A small repetition is an ordinary list.
    s.write(
        "small.yml",
        "ward: 1\nname: small\nvars:\n  l: \"{{ [1, 2] * 2 }}\"\nsteps:\n  - id: a\n    cmd: [echo, \"{{ l | join(',') }}\"]\n",
    );
    let out = ward_within(&s, &["plan", "--format", "json", "small.yml"], LIMIT);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(v["vars"]["l"], serde_json::json!([1, 2, 1, 2]));
    assert_eq!(v["steps"][0]["cmd"], serde_json::json!(["echo", "1,2,1,2"]));
}
