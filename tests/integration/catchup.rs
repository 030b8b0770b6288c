//! Catch-up from the scheduler: `ward run --if-due`, missed slots, `overlap:`
//! and `jitter:`, with the real `ward` binary, real locks held by real
//! processes, and `WARD_NOW` standing for the clock.

use std::time::{Duration, Instant};

use crate::harness::{Scratch, wait_for};

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
        said.stdout.starts_with("not due: playbook `nightly`: run ")
            && said.stdout.contains(") succeeded; next slot "),
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

/// `ward runs --json` of the playbook, newest first.
fn missed_slots(s: &Scratch) -> Vec<i64> {
    let mut slots: Vec<i64> = runs(s)
        .iter()
        .filter(|r| r["state"] == "missed")
        .map(|r| crate::harness::json_ms(&r["slot_at"]))
        .collect();
    slots.sort_unstable();
    slots
}

#[test]
fn a_downtime_window_records_each_missed_slot_once_and_notifies_it_once() {
    let s = Scratch::new();
    nightly(
        &s,
        "notify:\n  command:\n    cmd: [sh, -c, 'cat >> notes; echo >> notes']\n    on: [missed]\n",
    );
    // The last run before the machine went down.
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert!(missed_slots(&s).is_empty());
    // Three days later: three 03:00 slots passed; the newest is this
    // run's own (late, not missed), the two before it were missed.
    let later = now_plus(72);
    let r = s
        .ward()
        .args(["run", "--progress", "p.yml"])
        .env("WARD_NOW", &later)
        .run()
        .expect_code(0);
    let slots = missed_slots(&s);
    assert_eq!(slots.len(), 2, "{}", r.stdout);
    assert_eq!(slots[1] - slots[0], 86_400_000, "a day apart: {slots:?}");
    assert_eq!(
        r.stdout
            .lines()
            .filter(|l| l.starts_with("missed: "))
            .count(),
        2,
        "{}",
        r.stdout
    );
    // Each missed run: no steps, its slot as its start, notified once.
    let missed: Vec<serde_json::Value> = runs(&s)
        .into_iter()
        .filter(|r| r["state"] == "missed")
        .collect();
    for m in &missed {
        assert_eq!(m["started_at"], m["slot_at"]);
        let id = m["id"].as_str().expect("id");
        let status = s.status(Some(id));
        assert_eq!(status["state"], "missed");
        assert_eq!(status["steps"].as_array().map(Vec::len), Some(0));
    }
    let notes = s.read("notes");
    let sent: Vec<serde_json::Value> = notes
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("summary JSON"))
        .collect();
    assert_eq!(sent.len(), 2, "{notes}");
    for n in &sent {
        assert_eq!(n["result"], "missed");
        assert_eq!(n["events"], serde_json::json!(["missed"]));
    }
    // The same moment again (a second run, the hourly line): nothing new.
    s.ward()
        .args(["run", "p.yml"])
        .env("WARD_NOW", &later)
        .run()
        .expect_code(0);
    assert_eq!(missed_slots(&s), slots);
    assert_eq!(
        s.read("notes")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count(),
        2
    );
    assert_eq!(count(&s), 3);
    // The clock jumped back two days: nothing passed, nothing is missed.
    s.ward()
        .args(["run", "p.yml"])
        .env("WARD_NOW", &now_plus(-48))
        .run()
        .expect_code(0);
    assert_eq!(missed_slots(&s), slots);
    assert_eq!(count(&s), 4);
    // `ward runs` shows them.
    let text = s.ward().args(["runs"]).run().expect_code(0);
    assert_eq!(text.stdout.matches("missed").count(), 2, "{}", text.stdout);
    // A missed run is nothing to resume.
    let id = missed[0]["id"].as_str().expect("id");
    let resumed = s.ward().args(["resume", id]).run().expect_code(2);
    assert!(resumed.stderr.contains("missed"), "{}", resumed.stderr);
}

/// Another playbook holding the lock `shared` until `release` exists, as a
/// real ward process; returns it once it holds the lock.
fn hold_shared_lock(s: &Scratch) -> std::process::Child {
    s.write(
        "holder.yml",
        "ward: 1\nname: holder\nlock: shared\nsteps:\n  - id: hold\n    run: touch held; while [ ! -f release ]; do sleep 0.02; done\n",
    );
    let child = s.ward().args(["run", "holder.yml"]).spawn();
    assert!(wait_for(10, || s.path().join("held").exists()));
    child
}

fn scheduled(s: &Scratch, overlap: &str, schedule: &str) {
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: nightly\nlock: shared\nschedule: \"{schedule}\"\n{overlap}steps:\n  - id: a\n    run: echo x >> count\n"
        ),
    );
}

fn nightly_runs(s: &Scratch) -> Vec<serde_json::Value> {
    runs(s)
        .into_iter()
        .filter(|r| r["playbook_name"] == "nightly")
        .collect()
}

#[test]
fn overlap_skip_exits_3_with_one_line_and_records_the_slot_skipped() {
    let s = Scratch::new();
    scheduled(&s, "", "0 3 * * *");
    let mut holder = hold_shared_lock(&s);
    let r = s
        .ward()
        .args(["run", "--if-due", "p.yml"])
        .run()
        .expect_code(3);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("lock `shared`"), "{}", r.stderr);
    s.write("release", "");
    assert!(holder.wait().expect("wait").success());
    assert_eq!(count(&s), 0);
    let ours = nightly_runs(&s);
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0]["state"], "skipped");
    let message = ours[0]["message"].as_str().expect("message");
    assert!(
        message.contains("previous run still holds the lock (overlap: skip)"),
        "{message}"
    );
    // A run by hand keeps today's rule: exit 3, nothing recorded.
    for f in ["held", "release"] {
        std::fs::remove_file(s.path().join(f)).expect("remove");
    }
    let mut holder = hold_shared_lock(&s);
    s.ward().args(["run", "p.yml"]).run().expect_code(3);
    s.write("release", "");
    assert!(holder.wait().expect("wait").success());
    assert_eq!(nightly_runs(&s).len(), 1);
}

#[test]
fn overlap_queue_waits_for_the_lock_then_runs() {
    let s = Scratch::new();
    scheduled(&s, "overlap: queue\n", "0 3 * * *");
    let mut holder = hold_shared_lock(&s);
    let queued = s.ward().args(["run", "--if-due", "p.yml"]).spawn();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(count(&s), 0, "it ran while the lock was held");
    s.write("release", "");
    assert!(holder.wait().expect("wait").success());
    let out = queued.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(&s), 1);
    assert_eq!(nightly_runs(&s)[0]["state"], "succeeded");
}

#[test]
fn overlap_queue_gives_up_at_the_next_slot() {
    let s = Scratch::new();
    scheduled(&s, "overlap: queue\n", "* * * * *");
    let mut holder = hold_shared_lock(&s);
    let t = Instant::now();
    // One second before the next minute's slot.
    let r = s
        .ward()
        .args(["run", "--if-due", "p.yml"])
        .env("WARD_NOW", "2026-11-23T02:00:59")
        .run()
        .expect_code(3);
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    assert!(
        r.stderr.contains("until the schedule's next slot"),
        "{}",
        r.stderr
    );
    s.write("release", "");
    assert!(holder.wait().expect("wait").success());
    let ours = nightly_runs(&s);
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0]["state"], "skipped");
    assert_eq!(count(&s), 0);
}

#[test]
fn overlap_latest_runs_only_the_newest_waiting_run() {
    let s = Scratch::new();
    scheduled(&s, "overlap: latest\n", "0 3 * * *");
    let mut holder = hold_shared_lock(&s);
    let older = s.ward().args(["run", "--if-due", "p.yml"]).spawn();
    let ticket = s
        .state()
        .parent()
        .expect("folder")
        .join("locks/shared.latest");
    assert!(wait_for(10, || ticket.exists()));
    let newer = s.ward().args(["run", "--if-due", "p.yml"]).spawn();
    // The older one gives way as soon as the newer one waits.
    let out = older.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("a newer scheduled run"), "{stderr}");
    assert_eq!(count(&s), 0);
    s.write("release", "");
    assert!(holder.wait().expect("wait").success());
    let out = newer.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(&s), 1);
    let mut states: Vec<String> = nightly_runs(&s)
        .iter()
        .map(|r| r["state"].as_str().unwrap_or("").to_owned())
        .collect();
    states.sort();
    assert_eq!(states, ["skipped", "succeeded"]);
}

#[test]
fn a_run_still_going_after_its_slot_makes_if_due_quiet_not_skipped() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: nightly\nschedule: \"0 3 * * *\"\nsteps:\n  - id: a\n    run: touch started; while [ ! -f release ]; do sleep 0.02; done\n",
    );
    let now = now_plus(0);
    let mut first = s
        .ward()
        .args(["run", "--if-due", "p.yml"])
        .env("WARD_NOW", &now)
        .spawn();
    assert!(wait_for(10, || s.path().join("started").exists()));
    // The hourly line an hour later: the slot's run is still going.
    let r = s
        .ward()
        .args(["run", "--if-due", "--progress", "p.yml"])
        .env("WARD_NOW", &now)
        .run()
        .expect_code(0);
    assert!(
        r.stdout.contains(") is still running; next slot "),
        "{}",
        r.stdout
    );
    s.write("release", "");
    assert!(first.wait().expect("wait").success());
    let ours = runs(&s);
    assert_eq!(ours.len(), 1, "no skipped run recorded: {ours:?}");
    assert_eq!(ours[0]["state"], "succeeded");
}
