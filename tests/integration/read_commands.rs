//! The read commands as operators use them: one `--json` convention,
//! RFC 3339 times, `ward runs` filters, `ward status` of a live run from
//! another process, and `ward log --follow`.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::harness::{Scratch, json_ms, repo_path, status_step, wait_for, ward};

const QUICK: &str = "\
ward: 1
name: quick
steps:
  - id: hello
    run: echo hello
";

/// A step that prints a line, then sleeps until the file `go` exists, then
/// prints another: a test decides when it ends.
const GATED: &str = "\
ward: 1
name: gated
steps:
  - id: first
    run: echo first
  - id: wait
    needs: [first]
    run: echo before; while [ ! -e go ]; do sleep 0.05; done; echo after
";

fn is_rfc3339(v: &serde_json::Value) -> bool {
    v.as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some()
}

#[test]
fn every_read_command_takes_json() {
    let s = Scratch::new();
    s.write("p.yml", QUICK);
    s.write(
        "sched.yml",
        "ward: 1\nname: sched\nschedule: \"30 2 * * *\"\nmax_age: 26h\nsteps:\n  - id: a\n    run: \"true\"\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    s.ward().args(["run", "sched.yml"]).run().expect_code(0);
    std::fs::create_dir_all(s.path().join("set")).expect("set");
    for (args, code) in [
        (&["validate", "--json", "p.yml"][..], 0),
        (&["plan", "--json", "p.yml"], 0),
        (&["status", "--json"], 0),
        (&["runs", "--json"], 0),
        (&["log", "last", "--json"], 0),
        // WARD_NOW (the harness's) is before the run: `future`, exit 7.
        (&["check", "--json"], 7),
        (&["next", "--json", "sched.yml"], 0),
        (&["actions", "--json"], 0),
    ] {
        s.ward().args(args).run().expect_code(code).json();
    }
    // A set without a manifest is not verified, but still answered in JSON.
    s.ward()
        .args(["verify", "--json", "set"])
        .run()
        .expect_code(1)
        .json();
}

#[test]
fn json_and_format_are_the_same_and_may_not_disagree() {
    let file = repo_path("examples/quickstart.yml");
    let by_flag = ward()
        .arg("plan")
        .arg("--json")
        .arg(&file)
        .run()
        .expect_code(0);
    let by_format = ward()
        .args(["plan", "--format", "json"])
        .arg(&file)
        .run()
        .expect_code(0);
    assert_eq!(by_flag.stdout, by_format.stdout);
    let both = ward()
        .args(["plan", "--json", "--format", "json"])
        .arg(&file)
        .run()
        .expect_code(0);
    assert_eq!(both.stdout, by_format.stdout);
    for (command, format) in [("plan", "dot"), ("plan", "text"), ("validate", "human")] {
        let r = ward()
            .args([command, "--json", "--format", format])
            .arg(&file)
            .run()
            .expect_code(2);
        assert!(
            r.stderr
                .contains(&format!("`--json` and `--format {format}`")),
            "{}",
            r.stderr
        );
        assert!(r.stdout.is_empty(), "{}", r.stdout);
    }
    let v = ward()
        .args(["validate", "--json"])
        .arg(&file)
        .run()
        .expect_code(0)
        .json();
    assert_eq!(v["valid"], true, "{v}");
}

#[test]
fn actions_json_lists_the_registry_with_parameters() {
    let text = ward().arg("actions").run().expect_code(0).stdout;
    let json = ward()
        .args(["actions", "--json"])
        .run()
        .expect_code(0)
        .json();
    let list = json.as_array().expect("a list");
    // The same actions, in the same order, as the text listing.
    let names: Vec<&str> = list
        .iter()
        .map(|a| a["name"].as_str().expect("name"))
        .collect();
    let text_names: Vec<&str> = text
        .lines()
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().next().expect("name"))
        .collect();
    assert_eq!(names, text_names);
    let rsync = list.iter().find(|a| a["name"] == "rsync").expect("rsync");
    let src = rsync["params"]
        .as_array()
        .expect("params")
        .iter()
        .find(|p| p["name"] == "src")
        .expect("src param");
    assert_eq!(src["required"], true, "{src}");
    assert!(src["description"].is_string(), "{src}");
}

#[test]
fn json_times_are_rfc3339_with_an_offset() {
    let s = Scratch::new();
    s.write("p.yml", QUICK);
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let status = s.status(None);
    assert!(is_rfc3339(&status["started_at"]), "{status}");
    assert!(is_rfc3339(&status["finished_at"]), "{status}");
    let step = status_step(&status, "hello");
    assert!(is_rfc3339(&step["started_at"]), "{step}");
    assert!(
        is_rfc3339(&step["attempt_list"][0]["finished_at"]),
        "{step}"
    );
    // Milliseconds are kept: the order of start and end survives.
    assert!(json_ms(&status["started_at"]) <= json_ms(&step["started_at"]));
    let runs = s
        .ward()
        .args(["runs", "--json"])
        .run()
        .expect_code(0)
        .json();
    assert_eq!(runs[0]["started_at"], status["started_at"]);
    let log = s
        .ward()
        .args(["log", "last", "--json"])
        .run()
        .expect_code(0)
        .json();
    assert!(is_rfc3339(&log["attempts"][0]["started_at"]), "{log}");
    assert_eq!(log["attempts"][0]["output"], "hello\n");
}

#[test]
fn runs_filters_by_status_and_time() {
    let s = Scratch::new();
    s.write("p.yml", QUICK);
    s.write(
        "bad.yml",
        "ward: 1\nname: bad\nsteps:\n  - id: fail\n    run: exit 3\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    s.ward().args(["run", "bad.yml"]).run().expect_code(1);
    let list = |args: &[&str]| -> Vec<String> {
        let v = s
            .ward()
            .arg("runs")
            .args(args)
            .arg("--json")
            .run()
            .expect_code(0)
            .json();
        v.as_array()
            .expect("list")
            .iter()
            .map(|r| {
                format!(
                    "{}:{}",
                    r["playbook_name"].as_str().expect("name"),
                    r["state"].as_str().expect("state")
                )
            })
            .collect()
    };
    assert_eq!(list(&["--status", "failed"]), ["bad:failed"]);
    assert_eq!(list(&["--status", "succeeded"]), ["quick:succeeded"]);
    assert_eq!(list(&["--status", "failed,succeeded"]).len(), 2);
    assert_eq!(
        list(&["--status", "failed", "--status", "succeeded"]).len(),
        2
    );
    assert!(list(&["--status", "running"]).is_empty());
    assert_eq!(
        list(&["--playbook", "bad", "--status", "succeeded"]),
        Vec::<String>::new()
    );
    // Relative ages and dates: both runs are from the last hour and today.
    assert_eq!(list(&["--since", "1h"]).len(), 2);
    assert!(list(&["--until", "1h"]).is_empty());
    let today = chrono::Local::now().date_naive();
    let tomorrow = today.succ_opt().expect("tomorrow");
    assert_eq!(list(&["--since", &today.to_string()]).len(), 2);
    assert!(list(&["--since", &tomorrow.to_string()]).is_empty());
    let none = s
        .ward()
        .args(["runs", "--since", &tomorrow.to_string()])
        .run()
        .expect_code(0);
    assert_eq!(none.stdout, "no recorded run matches these filters\n");
    assert_eq!(list(&["--until", &tomorrow.to_string()]).len(), 2);
    // An RFC 3339 time between the two runs splits them.
    let runs = s
        .ward()
        .args(["runs", "--json"])
        .run()
        .expect_code(0)
        .json();
    let first_start = runs[1]["started_at"].as_str().expect("time").to_owned();
    assert_eq!(list(&["--since", &first_start]).len(), 2);
    assert_eq!(list(&["--until", &first_start]).len(), 0);
    // The text table takes the same filters.
    let text = s
        .ward()
        .args(["runs", "--status", "failed"])
        .run()
        .expect_code(0)
        .stdout;
    assert!(
        text.contains(" bad ") && !text.contains(" quick "),
        "{text}"
    );
}

#[test]
fn runs_filters_refuse_bad_input_with_exit_2() {
    let s = Scratch::new();
    s.write("p.yml", QUICK);
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    for (args, says) in [
        (
            &["--status", "broken"][..],
            "not a run state; use one of running",
        ),
        (
            &["--since", "yesterday"],
            "--since yesterday: not a date, a time or an age",
        ),
        (&["--since", "7"], "--since 7:"),
        (&["--until", "2026-02-30"], "--until 2026-02-30:"),
        (&["--since", "2026-12-01T08:00:00"], "needs an offset"),
        (&["--since", "1h", "--until", "2h"], "is not before --until"),
    ] {
        let r = s.ward().arg("runs").args(args).run().expect_code(2);
        assert!(r.stderr.contains(says), "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
    }
}

/// Starts `GATED` in the background and waits until its step `wait` runs.
fn start_gated(s: &Scratch) -> std::process::Child {
    s.write("p.yml", GATED);
    let child = s.ward().args(["run", "p.yml"]).spawn();
    assert!(
        wait_for(20, || s
            .step_states_if_any()
            .get("wait")
            .map(String::as_str)
            == Some("running")),
        "step `wait` never ran: {:?}",
        s.step_states_if_any()
    );
    child
}

#[test]
fn status_of_a_live_run_shows_running_steps_with_their_time_so_far() {
    let s = Scratch::new();
    let mut run = start_gated(&s);
    std::thread::sleep(Duration::from_millis(300));
    // Read while the run holds the database open and writes to it: a
    // reader is neither blocked nor blocks (WAL).
    let started = Instant::now();
    let status = s.status(None);
    let text = s.ward().arg("status").run().expect_code(0).stdout;
    let runs = s
        .ward()
        .args(["runs", "--json"])
        .run()
        .expect_code(0)
        .json();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "readers were blocked"
    );
    assert_eq!(status["state"], "running", "{status}");
    assert!(
        status["running_ms"].as_u64().expect("running_ms") >= 300,
        "{status}"
    );
    assert!(status["note"].is_null(), "a live run has no note: {status}");
    let step = status_step(&status, "wait");
    assert_eq!(step["state"], "running");
    assert!(
        step["running_ms"].as_u64().expect("running_ms") >= 300,
        "{step}"
    );
    assert!(step["duration_ms"].is_null(), "{step}");
    assert!(status_step(&status, "first").get("running_ms").is_none());
    assert!(runs[0]["running_ms"].is_u64(), "{runs}");
    let table = s.ward().arg("runs").run().expect_code(0).stdout;
    assert!(table.contains(" so far"), "{table}");
    assert!(text.contains(", running for "), "{text}");
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("wait "))
        .expect("row of `wait`");
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(columns[1], "running", "{row}");
    assert_ne!(
        columns[3], "-",
        "a running step shows its time so far: {row}"
    );
    // The run goes on and ends as usual while it was being read.
    s.write("go", "");
    let status = run.wait().expect("ward ends");
    assert!(status.success());
    let done = s.status(None);
    assert_eq!(done["state"], "succeeded");
    assert!(done.get("running_ms").is_none(), "{done}");
}

/// Reads `child`'s stdout on a thread, so that a test can look at what
/// has arrived so far.
fn collect_stdout(child: &mut std::process::Child) -> std::sync::Arc<std::sync::Mutex<String>> {
    let mut out = child.stdout.take().expect("stdout");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .expect("lock")
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    seen
}

#[test]
fn log_follow_prints_what_arrives_and_ends_with_the_step() {
    let s = Scratch::new();
    let mut run = start_gated(&s);
    let mut follow = s.ward().args(["log", "last", "wait", "--follow"]).spawn();
    let seen = collect_stdout(&mut follow);
    assert!(
        wait_for(20, || seen.lock().expect("lock").contains("before\n")),
        "the output so far was not printed: {:?}",
        seen.lock().expect("lock")
    );
    // It keeps following while the step runs.
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        follow.try_wait().expect("try_wait").is_none(),
        "follow ended early"
    );
    s.write("go", "");
    assert!(run.wait().expect("run ends").success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = follow.try_wait().expect("try_wait") {
            break status.code();
        }
        assert!(
            Instant::now() < deadline,
            "follow did not end with the step"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
    // Give the reader thread the last bytes.
    assert!(wait_for(5, || seen
        .lock()
        .expect("lock")
        .contains("after\n")));
    let text = seen.lock().expect("lock").clone();
    assert!(text.starts_with("==> wait (attempt 1) "), "{text}");
    assert_eq!(text.matches("before").count(), 1, "{text}");
    // A finished step: what is there, then exit 0 at once.
    let again = s
        .ward()
        .args(["log", "last", "first", "--follow"])
        .run()
        .expect_code(0);
    assert!(again.stdout.contains("first\n"), "{}", again.stdout);
}

#[test]
fn log_follow_ends_when_the_run_dies() {
    let s = Scratch::new();
    let mut run = start_gated(&s);
    let mut follow = s.ward().args(["log", "last", "wait", "--follow"]).spawn();
    let seen = collect_stdout(&mut follow);
    assert!(wait_for(20, || seen
        .lock()
        .expect("lock")
        .contains("before\n")));
    run.kill().expect("kill -9 ward");
    run.wait().expect("reaped");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = follow.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "follow did not notice the dead run"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1));
    let mut err = String::new();
    follow
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    assert!(err.contains("stopped following step `wait`"), "{err}");
    assert!(err.contains("is gone"), "{err}");
    // Let the orphaned step end, and wait until no process works in the
    // scratch folder: once it is removed, the step could never see `go`
    // and would loop for ever. (Its output went through the dead ward,
    // so its log cannot tell.)
    s.write("go", "");
    let works_here = || {
        std::fs::read_dir("/proc").is_ok_and(|procs| {
            procs.flatten().any(|p| {
                std::fs::read_link(p.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(s.path()))
            })
        })
    };
    assert!(
        wait_for(20, || !works_here()),
        "the orphaned step did not end"
    );
}

#[test]
fn log_follow_needs_a_step_and_is_not_json() {
    let s = Scratch::new();
    s.write("p.yml", QUICK);
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    s.ward()
        .args(["log", "last", "--follow"])
        .run()
        .expect_code(2);
    s.ward()
        .args(["log", "last", "hello", "--follow", "--json"])
        .run()
        .expect_code(2);
    let r = s.ward().args(["log", "last", "nope", "--follow"]).run();
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("no step `nope`"), "{}", r.stderr);
}

/// Readers polling while a run commits step after step: each read answers
/// at once with a consistent document, and the run is not held up.
#[test]
fn readers_and_a_run_do_not_block_each_other() {
    let s = Scratch::new();
    let mut playbook = String::from("ward: 1\nname: many\nsteps:\n");
    for i in 0..40 {
        playbook.push_str(&format!("  - id: s{i}\n    run: echo {i}\n"));
        if i > 0 {
            playbook.push_str(&format!("    needs: [s{}]\n", i - 1));
        }
    }
    s.write("p.yml", &playbook);
    let mut run = s.ward().args(["run", "p.yml"]).spawn();
    // From the moment the run is recorded, every read must answer.
    assert!(wait_for(20, || s.ward().arg("status").run().code == 0));
    let mut reads = 0;
    let mut slowest = Duration::ZERO;
    let ended = loop {
        let started = Instant::now();
        let r = s.ward().args(["status", "--json"]).run();
        slowest = slowest.max(started.elapsed());
        {
            let v = r.expect_code(0).json();
            let states: Vec<&str> = v["steps"]
                .as_array()
                .expect("steps")
                .iter()
                .map(|st| st["state"].as_str().expect("state"))
                .collect();
            // Steps run in order: never a pending step before a finished one.
            let first_pending = states.iter().position(|st| *st == "pending");
            if let Some(p) = first_pending {
                assert!(states[p..].iter().all(|st| *st == "pending"), "{states:?}");
            }
            reads += 1;
        }
        if let Some(status) = run.try_wait().expect("try_wait") {
            break status;
        }
    };
    assert!(ended.success());
    assert!(reads >= 1);
    assert!(slowest < Duration::from_secs(5), "a read took {slowest:?}");
    assert_eq!(s.status(None)["state"], "succeeded");
}

#[test]
fn log_follow_of_a_step_that_never_ran_says_so() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: p\nsteps:\n  - id: a\n    run: exit 1\n  - id: b\n    needs: [a]\n    run: echo never\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(1);
    let r = s
        .ward()
        .args(["log", "last", "b", "--follow"])
        .run()
        .expect_code(0);
    assert_eq!(r.stdout, "");
    assert!(
        r.stderr.contains("step `b`") && r.stderr.contains("did not run"),
        "{}",
        r.stderr
    );
}
