//! Finalizers (`when: always` steps) run whatever happens: repeated
//! signals (GNU `timeout` sends two), a state database on a full disk.

use std::process::Command;

use crate::harness::{Scratch, Tmpfs, status_step, wait_for};

/// stop -> work -> start (always). `start` takes a second and appends to
/// `journal` only when it completes; `work` waits until `release` exists.
const WINDOW: &str = "\
ward: 1
name: window
steps:
  - id: stop
    run: echo stop >> journal
  - id: work
    needs: [stop]
    run: echo work >> journal; touch work.started; while [ ! -f release ]; do sleep 0.05; done
  - id: start
    after: [stop, work]
    when: always
    run: touch start.started; sleep 1; echo start >> journal
";

/// WINDOW with its finalizer as a built-in action (the FOSSology
/// playbooks start the scheduler with `service.start`).
const WINDOW_ACTION: &str = "\
ward: 1
name: window
steps:
  - id: stop
    run: echo stop >> journal
  - id: work
    needs: [stop]
    run: echo work >> journal; touch work.started; while [ ! -f release ]; do sleep 0.05; done
  - id: start
    after: [stop, work]
    when: always
    action: service.start
    with:
      start: [bash, -c, 'touch start.started; sleep 1; echo start >> journal']
";

fn kill(signal: &str, target: &str) {
    let sent = Command::new("kill")
        .args(["-s", signal, "--", target])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill -s {signal} {target}");
}

fn journal(s: &Scratch) -> Vec<String> {
    s.read("journal").lines().map(str::to_owned).collect()
}

#[test]
fn two_sigterms_from_gnu_timeout_still_run_the_finalizer() {
    // The real thing: `timeout` sends SIGTERM to ward, then to its whole
    // process group, so ward sees two. Ten trials: every one must start
    // the service again, with a `run:` finalizer and with an action.
    for trial in 0..10 {
        let s = Scratch::new();
        s.write(
            "p.yml",
            if trial % 2 == 0 {
                WINDOW
            } else {
                WINDOW_ACTION
            },
        );
        let out = Command::new("timeout")
            .args(["--preserve-status", "2", env!("CARGO_BIN_EXE_ward"), "run"])
            .arg("p.yml")
            .current_dir(s.path())
            .env("WARD_STATE", s.state())
            .env("WARD_KILL_GRACE", "500ms")
            .env("NO_COLOR", "1")
            .output()
            .expect("timeout runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(143), "trial {trial}: {stderr}");
        assert_eq!(
            journal(&s).last().map(String::as_str),
            Some("start"),
            "trial {trial}: the finalizer ran to its end\n{stderr}"
        );
        assert_eq!(s.step_states()["start"], "succeeded", "trial {trial}");
    }
}

#[test]
fn a_second_sigterm_during_the_finalizer_is_only_noted() {
    for trial in 0..3 {
        let s = Scratch::new();
        s.write("p.yml", WINDOW);
        let child = s.ward().args(["run", "p.yml"]).spawn();
        let pid = child.id().to_string();
        assert!(wait_for(10, || s.path().join("work.started").exists()));
        kill("TERM", &pid);
        assert!(wait_for(10, || s.path().join("start.started").exists()));
        kill("TERM", &pid);
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(143), "trial {trial}: {stderr}");
        assert_eq!(journal(&s), ["stop", "work", "start"], "trial {trial}");
        assert!(
            stderr.contains("received SIGTERM again (signal 2)"),
            "{stderr}"
        );
    }
}

/// WINDOW whose `work` step sleeps (in a child of the shell) until stopped.
const HANGUP_WINDOW: &str = "\
ward: 1
name: window
steps:
  - id: stop
    run: echo stop >> journal
  - id: work
    needs: [stop]
    run: echo work >> journal; sleep 30 & echo $! > sleep.pid; touch work.started; wait
  - id: start
    after: [stop, work]
    when: always
    run: touch start.started; sleep 1; echo start >> journal
";

#[test]
fn sighup_from_a_dropped_session_stops_the_steps_and_runs_the_finalizer() {
    // An ssh session that drops sends SIGHUP: it must not kill ward with
    // the service stopped, the run recorded `running` and the step alive.
    let s = Scratch::new();
    s.write("p.yml", HANGUP_WINDOW);
    let child = s.ward().args(["run", "p.yml"]).spawn();
    let pid = child.id().to_string();
    assert!(wait_for(10, || s.path().join("work.started").exists()));
    kill("HUP", &pid);
    // A second hangup (the shell forwards its own) is only noted.
    assert!(wait_for(10, || s.path().join("start.started").exists()));
    kill("HUP", &pid);
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(129), "{stderr}");
    assert!(stderr.contains("SIGHUP"), "{stderr}");
    assert_eq!(journal(&s), ["stop", "work", "start"], "{stderr}");
    let status = s.status(None);
    assert_eq!(status["state"], "interrupted", "{status}");
    assert_eq!(status_step(&status, "start")["state"], "succeeded");
    let sleeper = s.read("sleep.pid").trim().to_owned();
    assert!(
        wait_for(10, || !std::path::Path::new(&format!("/proc/{sleeper}"))
            .exists()),
        "the step's `sleep 30` (pid {sleeper}) was stopped"
    );
}

#[test]
fn under_nohup_a_hangup_is_ignored_and_the_run_goes_on() {
    let s = Scratch::new();
    s.write("p.yml", WINDOW);
    let child = Command::new("nohup")
        .args([env!("CARGO_BIN_EXE_ward"), "run", "p.yml"])
        .current_dir(s.path())
        .env("WARD_STATE", s.state())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nohup ward starts");
    let pid = child.id().to_string();
    assert!(wait_for(10, || s.path().join("work.started").exists()));
    kill("HUP", &pid);
    s.write("release", "");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(journal(&s), ["stop", "work", "start"]);
}

#[test]
fn a_third_sighup_abandons_the_finalizer_and_resume_runs_it() {
    let s = Scratch::new();
    let stderr = abandon(&s, &["HUP", "HUP"], 129);
    assert!(stderr.contains("received SIGHUP again"), "{stderr}");
    assert!(stderr.contains("abandoning"), "{stderr}");
    resume_finishes(&s);
}

/// Starts WINDOW, interrupts it, and abandons the finalizer with `last`
/// (a third SIGTERM, or SIGQUIT) once it started; returns ward's output.
fn abandon(s: &Scratch, last: &[&str], code: i32) -> String {
    s.write("p.yml", WINDOW);
    // ward's report goes to a file, so the test can see each signal noted
    // before it sends the next (signals that arrive together count as one).
    let report = s.path().join("report.txt");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["run", "p.yml"])
        .current_dir(s.path())
        .env("WARD_STATE", s.state())
        .env("WARD_KILL_GRACE", "500ms")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&report).expect("report file"))
        .spawn()
        .expect("ward starts");
    let pid = child.id().to_string();
    assert!(wait_for(10, || s.path().join("work.started").exists()));
    kill("TERM", &pid);
    assert!(wait_for(10, || s.path().join("start.started").exists()));
    for (n, sig) in last.iter().enumerate() {
        kill(sig, &pid);
        if n + 1 < last.len() {
            assert!(wait_for(10, || s.read("report.txt").contains("again")));
        }
    }
    let status = child.wait().expect("wait");
    let stderr = s.read("report.txt");
    assert_eq!(status.code(), Some(code), "{stderr}");
    assert_eq!(journal(s), ["stop", "work"], "the finalizer was abandoned");
    stderr
}

/// `ward resume` of an abandoned run runs the finalizer (and, as it may
/// have half-run, its whole window again).
fn resume_finishes(s: &Scratch) {
    s.write("release", "");
    s.ward().args(["resume", "--last"]).run().expect_code(0);
    let j = journal(s);
    assert_eq!(j.last().map(String::as_str), Some("start"), "{j:?}");
    assert_eq!(s.status(None)["state"], "succeeded");
}

#[test]
fn a_third_sigterm_abandons_the_finalizer_and_resume_runs_it() {
    let s = Scratch::new();
    // One by one: signals that arrive together may count as one.
    let stderr = abandon(&s, &["TERM", "TERM"], 143);
    assert!(stderr.contains("received SIGTERM again"), "{stderr}");
    assert!(stderr.contains("abandoning"), "{stderr}");
    assert_eq!(
        status_step(&s.status(None), "start")["state"],
        "interrupted"
    );
    resume_finishes(&s);
}

#[test]
fn sigquit_abandons_the_finalizer_and_resume_runs_it() {
    let s = Scratch::new();
    let stderr = abandon(&s, &["QUIT"], 131);
    assert!(stderr.contains("abandon"), "{stderr}");
    let status = s.status(None);
    assert_eq!(status["state"], "interrupted");
    assert_eq!(status_step(&status, "start")["state"], "interrupted");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("`start` did not run") && m.contains("ward resume")),
        "{status}"
    );
    resume_finishes(&s);
}

#[test]
fn sigquit_before_the_finalizer_leaves_it_pending_and_resume_runs_it() {
    let s = Scratch::new();
    s.write("p.yml", WINDOW);
    let child = s.ward().args(["run", "p.yml"]).spawn();
    let pid = child.id().to_string();
    assert!(wait_for(10, || s.path().join("work.started").exists()));
    kill("QUIT", &pid);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(131));
    assert!(!s.path().join("start.started").exists());
    let status = s.status(None);
    let start = status_step(&status, "start");
    assert_eq!(start["state"], "pending");
    assert!(
        start["reason"]
            .as_str()
            .is_some_and(|r| r.contains("abandoned") && r.contains("ward resume")),
        "{start}"
    );
    resume_finishes(&s);
    // The window was not closed, so it is not opened again: `stop` ran once.
    assert_eq!(journal(&s), ["stop", "work", "work", "start"]);
}

#[test]
fn a_full_state_disk_still_runs_the_finalizer_and_exits_4() {
    let s = Scratch::new();
    let disk = Tmpfs::mount(&s.path().join("disk"), "size=1m,mode=0700");
    let state = disk.path.join("state").join("ward.db");
    let state_arg = state.display().to_string();
    s.write(
        "p.yml",
        &format!(
            "ward: 1
name: full
steps:
  - id: stop
    run: echo stop >> journal
  - id: fill
    needs: [stop]
    run: test -f filled || {{ touch filled; head -c 4M /dev/zero > {disk}/filler || true; }}
  - id: work
    needs: [fill]
    run: echo work >> journal; while [ ! -f release ]; do sleep 0.05; done
  - id: start
    after: [stop, fill, work]
    when: always
    run: echo start >> journal
",
            disk = disk.path.display()
        ),
    );
    let run = s
        .ward()
        .args(["run", "--state", &state_arg, "p.yml"])
        .run()
        .expect_code(4);
    let j = journal(&s);
    assert!(
        j.last().is_some_and(|l| l == "start"),
        "the finalizer ran: {j:?}\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("the state could not be recorded")
            && run.stderr.contains("ward resume"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("stopped because the state could not be recorded"),
        "the running step was stopped: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("start succeeded"),
        "its outcome is printed: {}",
        run.stderr
    );
    // `status` and `log` tell the same truth about what was not recorded.
    let status = s
        .ward()
        .args(["status", "--state", &state_arg])
        .run()
        .expect_code(0);
    assert!(
        status.stdout.contains("is gone") && status.stdout.contains("was not recorded"),
        "{}",
        status.stdout
    );
    // Its hint works as printed: it names the same state.
    assert!(
        status
            .stdout
            .contains(&format!("ward resume --state {state_arg} ")),
        "{}",
        status.stdout
    );
    let log = s
        .ward()
        .args(["log", "--state", &state_arg, "last"])
        .run()
        .expect_code(0);
    assert!(
        log.stdout.contains("(attempt 1, end not recorded)")
            && log.stdout.contains("was not recorded")
            && !log.stdout.contains("running or crashed"),
        "{}",
        log.stdout
    );
    // Room again: the resume finishes the run from what was recorded.
    std::fs::remove_file(disk.path.join("filler")).expect("free space");
    s.write("release", "");
    let resumed = s
        .ward()
        .args(["resume", "--state", &state_arg, "--last"])
        .run();
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert_eq!(journal(&s).last().map(String::as_str), Some("start"));
    drop(disk);
}
