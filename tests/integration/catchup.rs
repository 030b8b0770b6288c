//! Catch-up from the scheduler: `ward run --if-due`, missed slots, `overlap:`
//! and `jitter:`, with the real `ward` binary, real locks held by real
//! processes, and `WARD_NOW` standing for the clock.

use std::time::{Duration, Instant};

use crate::harness::Scratch;

/// Local time `hours` from now, as WARD_NOW takes it.
fn now_plus(hours: i64) -> String {
    (chrono::Local::now() + chrono::Duration::hours(hours))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

/// A nightly playbook whose one step appends a line to `count`.
fn nightly(s: &Scratch, extra: &str) {
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: nightly\nschedule: \"0 3 * * *\"\n{extra}steps:\n  - id: a\n    run: echo x >> count\n"
        ),
    );
}

fn count(s: &Scratch) -> usize {
    s.read("count").lines().count()
}

/// `ward runs --json` of the playbook: (state, message) newest first.
fn runs(s: &Scratch) -> Vec<serde_json::Value> {
    s.ward()
        .args(["runs", "--json"])
        .run()
        .expect_code(0)
        .json()
        .as_array()
        .expect("runs")
        .clone()
}

#[test]
fn if_due_runs_after_a_missed_night_and_not_when_fresh() {
    let s = Scratch::new();
    nightly(&s, "");
    let now = now_plus(0);
    // Never succeeded: due.
    s.ward()
        .args(["run", "--if-due", "p.yml"])
        .env("WARD_NOW", &now)
        .run()
        .expect_code(0);
    assert_eq!(count(&s), 1);
    // Fresh: silent, nothing run, nothing recorded.
    let quiet = s
        .ward()
        .args(["run", "--if-due", "p.yml"])
        .env("WARD_NOW", &now)
        .run()
        .expect_code(0);
    assert_eq!((quiet.stdout.as_str(), quiet.stderr.as_str()), ("", ""));
    assert_eq!(count(&s), 1);
    assert_eq!(runs(&s).len(), 1);
    // With --progress it says why, in one line.
    let said = s
        .ward()
        .args(["run", "--if-due", "--progress", "p.yml"])
        .env("WARD_NOW", &now)
        .run()
        .expect_code(0);
    assert_eq!(said.stdout.lines().count(), 1, "{}", said.stdout);
    assert!(
        said.stdout
            .starts_with("not due: playbook `nightly` last succeeded in run "),
        "{}",
        said.stdout
    );
    assert_eq!(count(&s), 1);
    // The machine was off over a night: the 03:00 slot passed without a run.
    s.ward()
        .args(["run", "--if-due", "p.yml"])
        .env("WARD_NOW", &now_plus(25))
        .run()
        .expect_code(0);
    assert_eq!(count(&s), 2);
}

#[test]
fn if_due_without_a_schedule_is_a_usage_error() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: adhoc\nsteps:\n  - id: a\n    run: echo x >> count\n",
    );
    let r = s
        .ward()
        .args(["run", "--if-due", "p.yml"])
        .run()
        .expect_code(2);
    assert!(
        r.stderr
            .contains("p.yml: playbook `adhoc` has no `schedule:`"),
        "{}",
        r.stderr
    );
    assert_eq!(count(&s), 0);
}

#[test]
fn jitter_waits_within_its_bounds_and_no_jitter_does_not_wait() {
    let s = Scratch::new();
    nightly(&s, "jitter: 400ms\n");
    let mut drawn = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let r = s
            .ward()
            .args(["run", "--progress", "p.yml"])
            .run()
            .expect_code(0);
        let elapsed = t.elapsed();
        let first = r.stdout.lines().next().unwrap_or("");
        let ms: u64 = first
            .strip_prefix("waiting ")
            .and_then(|rest| rest.split_once("ms before starting (jitter: up to 400ms)"))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("no wait said: {}", r.stdout));
        assert!(ms <= 400, "{first}");
        // It really waited that long.
        assert!(elapsed >= Duration::from_millis(ms), "{elapsed:?} < {ms}ms");
        drawn.push(ms);
    }
    // Uniform in [0, 400ms]: five draws all under 20ms is a 1 in 3.2 million chance.
    assert!(drawn.iter().any(|ms| *ms > 20), "{drawn:?}");
    let bare = s
        .ward()
        .args(["run", "--progress", "--no-jitter", "p.yml"])
        .run()
        .expect_code(0);
    assert!(!bare.stdout.contains("waiting"), "{}", bare.stdout);
    assert_eq!(count(&s), 6);
}

#[test]
fn a_signal_during_the_jitter_wait_ends_the_run_unrecorded() {
    let s = Scratch::new();
    nightly(&s, "jitter: 1h\n");
    let mut child = s.ward().args(["run", "--progress", "p.yml"]).spawn();
    // It says how long it waits, then waits.
    let mut out = child.stdout.take().expect("stdout");
    let mut line = String::new();
    {
        use std::io::BufRead;
        std::io::BufReader::new(&mut out)
            .read_line(&mut line)
            .expect("read");
    }
    assert!(line.starts_with("waiting "), "{line}");
    assert!(line.contains("(jitter: up to 1h)"), "{line}");
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(143));
    assert_eq!(count(&s), 0);
    // Nothing recorded: no database was even needed.
    let r = s.ward().args(["runs", "--json"]).run();
    if r.code == 0 {
        assert_eq!(r.json().as_array().map(Vec::len), Some(0));
    }
}
