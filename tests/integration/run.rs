//! `ward run`: order, parallelism, failure handling, retries, timeouts.

use crate::harness::{Scratch, repo_path, status_step};

/// A step body that records its start and end times (seconds, float) and sleeps.
fn timed(id: &str, secs: &str) -> String {
    format!("run: date +%s.%N > {id}.start; sleep {secs}; date +%s.%N > {id}.end")
}

fn time_of(s: &Scratch, file: &str) -> f64 {
    s.read(file)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no time in {file}"))
}

#[test]
fn quickstart_runs_on_the_embedded_default_and_status_shows_it() {
    let s = Scratch::new();
    let work = s.path().join("qs");
    let run = s
        .ward()
        .args(["run", "--var"])
        .arg(format!("work={}", work.display()))
        .arg(repo_path("examples/quickstart.yml"))
        .run()
        .expect_code(0);
    assert_eq!(run.stdout, "", "quiet without a terminal");
    assert_eq!(run.stderr, "");
    assert!(
        work.join("backup/snapshots/2026-11-23/documents/numbers.txt")
            .exists()
    );
    let status = s.status(None);
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["playbook_name"], "quickstart");
    for step in status["steps"].as_array().expect("steps") {
        assert_eq!(step["state"], "succeeded", "{step}");
        assert_eq!(step["attempts"], 1);
        assert_eq!(step["exit_code"], 0);
        assert!(step["log_path"].as_str().expect("log").ends_with(".1.log"));
    }
    // Second run: the sample data exists, so `creates:` skips that step.
    s.ward()
        .args(["run", "--var"])
        .arg(format!("work={}", work.display()))
        .arg(repo_path("examples/quickstart.yml"))
        .run()
        .expect_code(0);
    let status = s.status(None);
    let make = status_step(&status, "make-sample-app");
    assert_eq!(make["state"], "succeeded");
    assert_eq!(make["attempts"], 0);
    assert!(
        make["reason"]
            .as_str()
            .expect("reason")
            .contains("already done")
    );
}

#[test]
fn independent_steps_overlap_and_joins_wait() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: diamond\nmax_parallel: 4\nsteps:\n  - id: a\n    {}\n  - id: b\n    needs: [a]\n    {}\n  - id: c\n    needs: [a]\n    {}\n  - id: d\n    needs: [b, c]\n    {}\n",
            timed("a", "0.05"),
            timed("b", "0.4"),
            timed("c", "0.4"),
            timed("d", "0.05")
        ),
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let (a_end, b_start, b_end, c_start, c_end, d_start) = (
        time_of(&s, "a.end"),
        time_of(&s, "b.start"),
        time_of(&s, "b.end"),
        time_of(&s, "c.start"),
        time_of(&s, "c.end"),
        time_of(&s, "d.start"),
    );
    assert!(b_start >= a_end && c_start >= a_end, "b and c wait for a");
    assert!(
        b_start < c_end && c_start < b_end,
        "b and c run at the same time"
    );
    assert!(d_start >= b_end && d_start >= c_end, "d waits for b and c");
}

#[test]
fn max_parallel_bounds_running_steps() {
    let s = Scratch::new();
    let mut text = String::from("ward: 1\nname: bounded\nmax_parallel: 2\nsteps:\n");
    for i in 0..5 {
        text.push_str(&format!(
            "  - id: s{i}\n    {}\n",
            timed(&format!("s{i}"), "0.3")
        ));
    }
    s.write("p.yml", &text);
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let spans: Vec<(f64, f64)> = (0..5)
        .map(|i| {
            (
                time_of(&s, &format!("s{i}.start")),
                time_of(&s, &format!("s{i}.end")),
            )
        })
        .collect();
    let max_overlap = spans
        .iter()
        .map(|(start, _)| {
            spans
                .iter()
                .filter(|(a, b)| a <= start && start < b)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert_eq!(max_overlap, 2, "{spans:?}");
}

const FAILING: &str = "\
ward: 1
name: failing
max_parallel: 1
steps:
  - id: setup
    cmd: [touch, setup.done]
    compensate: undo-setup
  - id: undo-setup
    cmd: [touch, setup.undone]
  - id: broken
    needs: [setup]
    run: echo about to fail; exit 3
  - id: needs-broken
    needs: [broken]
    cmd: [touch, needs-broken.ran]
  - id: chained
    needs: [needs-broken]
    cmd: [touch, chained.ran]
  - id: after-broken
    after: [broken]
    cmd: [touch, after-broken.ran]
  - id: on-failure
    after: [broken]
    when: failure
    cmd: [touch, on-failure.ran]
  - id: cleanup
    after: [broken, setup]
    when: always
    cmd: [touch, cleanup.ran]
";

#[test]
fn failure_skips_dependents_runs_finalizers_and_compensates() {
    let s = Scratch::new();
    s.write("p.yml", FAILING);
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(1);
    assert!(run.stderr.contains("✘ broken failed"), "{}", run.stderr);
    assert!(
        run.stderr.contains("| about to fail"),
        "log tail in the cron report: {}",
        run.stderr
    );
    assert!(run.stderr.contains("ward: run "), "{}", run.stderr);
    assert_eq!(run.stdout, "");
    let states = s.step_states();
    assert_eq!(states["setup"], "compensated");
    assert_eq!(states["undo-setup"], "succeeded");
    assert_eq!(states["broken"], "failed");
    assert_eq!(states["needs-broken"], "skipped");
    assert_eq!(states["chained"], "skipped");
    assert_eq!(states["after-broken"], "skipped");
    assert_eq!(states["on-failure"], "succeeded");
    assert_eq!(states["cleanup"], "succeeded");
    for f in [
        "setup.done",
        "setup.undone",
        "on-failure.ran",
        "cleanup.ran",
    ] {
        assert!(s.path().join(f).exists(), "{f}");
    }
    for f in ["needs-broken.ran", "chained.ran", "after-broken.ran"] {
        assert!(!s.path().join(f).exists(), "{f}");
    }
    let status = s.status(None);
    assert_eq!(status["state"], "failed");
    assert_eq!(status["message"], "step `broken` failed: exit code 3");
    let chained = status_step(&status, "chained");
    assert_eq!(chained["reason"], "needs `needs-broken`, which was skipped");
}

#[test]
fn retries_record_every_attempt_and_back_off() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: flaky\nsteps:\n  - id: flaky\n    run: echo try >> tries; echo attempt $WARD_ATTEMPT; date +%s.%N >> times; test $(wc -l < tries) -ge 3\n    retry: { attempts: 4, delay: 200ms, backoff: 2.0 }\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let status = s.status(None);
    let step = &status["steps"][0];
    assert_eq!(step["state"], "succeeded");
    assert_eq!(step["attempts"], 3);
    let attempts = step["attempt_list"].as_array().expect("attempts");
    let outcomes: Vec<&str> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(outcomes, ["failed", "failed", "succeeded"]);
    let times: Vec<f64> = s
        .read("times")
        .lines()
        .map(|l| l.parse().expect("time"))
        .collect();
    // 200ms then 400ms, each with up to ±20% jitter.
    assert!(times[1] - times[0] >= 0.15, "{times:?}");
    assert!(times[2] - times[1] >= 0.3, "{times:?}");
    for (i, a) in attempts.iter().enumerate() {
        let log =
            std::fs::read_to_string(a["log_path"].as_str().expect("log")).expect("attempt log");
        assert_eq!(log, format!("attempt {}\n", i + 1));
    }
    let all = s.ward().args(["log", "last"]).run().expect_code(0).stdout;
    assert!(
        all.contains("==> flaky (attempt 2, failed, exit 1)"),
        "{all}"
    );
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: slow\nsteps:\n  - id: slow\n    timeout: 500ms\n    run: |\n      sleep 60 &\n      echo $! > child.pid\n      trap '' TERM\n      sleep 60\n",
    );
    let started = std::time::Instant::now();
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "grace then SIGKILL"
    );
    assert!(
        run.stderr.contains("timed out after 500ms"),
        "{}",
        run.stderr
    );
    let pid = s.read("child.pid").trim().to_owned();
    assert!(!pid.is_empty());
    let gone = crate::harness::wait_for(5, || !crate::harness::alive(&pid));
    assert!(
        gone,
        "background child {pid} of the timed-out step still runs"
    );
    let status = s.status(None);
    assert_eq!(
        status["steps"][0]["attempt_list"][0]["outcome"],
        "timed-out"
    );
}

#[test]
fn ok_codes_and_if_and_env() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: codes\nvars:\n  full: false\nsteps:\n  - id: vanished\n    run: exit 24\n    ok_codes: [0, 24]\n  - id: only-full\n    if: \"{{ full }}\"\n    cmd: [touch, full.ran]\n  - id: env\n    run: echo \"$GREETING $WARD_STEP $WARD_ATTEMPT\" > env.out\n    env: { GREETING: hello }\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let states = s.step_states();
    assert_eq!(states["vanished"], "succeeded");
    assert_eq!(states["only-full"], "skipped");
    assert!(!s.path().join("full.ran").exists());
    assert_eq!(s.read("env.out"), "hello env 1\n");
    s.ward()
        .args(["run", "p.yml", "--var", "full=true"])
        .run()
        .expect_code(0);
    assert!(s.path().join("full.ran").exists());
}

#[test]
fn steps_run_in_the_playbook_folder_with_a_clean_stdin() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("sub")).expect("mkdir");
    s.write(
        "sub/p.yml",
        "ward: 1\nname: cwd\nsteps:\n  - id: where\n    run: pwd > where.txt; cat > stdin.txt\n",
    );
    s.ward().args(["run", "sub/p.yml"]).run().expect_code(0);
    let canonical = std::fs::canonicalize(s.path().join("sub")).expect("canonical");
    assert_eq!(
        s.read("sub/where.txt").trim(),
        canonical.display().to_string()
    );
    assert_eq!(s.read("sub/stdin.txt"), "");
}

#[test]
fn progress_mode_prefixes_step_output() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: chatty\nsteps:\n  - id: talk\n    run: echo hello; echo oops >&2\n",
    );
    let run = s
        .ward()
        .args(["run", "--progress", "p.yml"])
        .run()
        .expect_code(0);
    assert!(run.stdout.contains("talk │ hello\n"), "{}", run.stdout);
    assert!(run.stdout.contains("talk │ oops\n"), "{}", run.stdout);
    assert!(run.stdout.contains("✔ talk"), "{}", run.stdout);
    let log = s
        .ward()
        .args(["log", "last", "talk"])
        .run()
        .expect_code(0)
        .stdout;
    assert!(log.contains("hello\n") && log.contains("oops\n"), "{log}");
}

#[test]
fn invalid_playbook_is_not_run() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: bad\nsteps:\n  - id: a\n    cmd: [touch, ran]\n    needs: [zzz]\n",
    );
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(2);
    assert!(run.stderr.contains("p.yml:6:13"), "{}", run.stderr);
    assert!(!s.path().join("ran").exists());
    assert!(
        !s.state().exists(),
        "no state written for an invalid playbook"
    );
}
