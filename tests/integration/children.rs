//! What a step leaves running in the background is stopped when the step
//! ends, unless the step keeps it (`keep_children: true`) or starts a
//! service (`service.start`).

use crate::harness::{Scratch, alive, wait_for};

/// A step that escapes twice: a subshell's background job (handed to ward
/// when the subshell ends) and a process in a session of its own.
const ESCAPE: &str = concat!(
    "  - id: escape\n",
    "    run: |\n",
    "      (sleep 100 & echo $! > bg.pid)\n",
    "      setsid sleep 101 &\n",
    "      echo $! > setsid.pid\n",
);

fn pids(s: &Scratch) -> [String; 2] {
    [
        s.read("bg.pid").trim().to_owned(),
        s.read("setsid.pid").trim().to_owned(),
    ]
}

/// Stops what a test left running on purpose.
fn kill_all(pids: &[String]) {
    for pid in pids {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", pid])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[test]
fn processes_a_step_leaves_behind_are_stopped_before_the_next_step() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: escape\nsteps:\n{ESCAPE}  - id: next\n    needs: [escape]\n    \
             run: for p in $(cat bg.pid setsid.pid); do if kill -0 $p 2>/dev/null; then echo \"$p still there\"; exit 1; fi; done\n"
        ),
    );
    let run = s.ward().args(["run", "p.yml"]).run();
    let left = pids(&s);
    kill_all(&left);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for pid in &left {
        assert!(!pid.is_empty());
        assert!(!alive(pid), "{pid} was stopped");
        assert!(
            run.stderr.contains(&format!("sleep (pid {pid})")),
            "{pid} is named: {}",
            run.stderr
        );
    }
    let log = std::fs::read_dir(s.path().join("state/logs"))
        .expect("logs")
        .flatten()
        .map(|run| std::fs::read_to_string(run.path().join("escape.1.log")).unwrap_or_default())
        .collect::<String>();
    assert!(
        log.contains("stopped what this attempt left running"),
        "{log}"
    );
}

#[test]
fn keep_children_leaves_them_running() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        &format!("ward: 1\nname: keep\nsteps:\n{ESCAPE}    keep_children: true\n"),
    );
    let run = s.ward().args(["run", "p.yml"]).run();
    let left = pids(&s);
    let survived: Vec<bool> = left.iter().map(|p| alive(p)).collect();
    kill_all(&left);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(survived, [true, true], "both kept");
    assert!(
        !run.stderr.contains("left processes behind"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_daemon_started_by_service_start_survives_the_run() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: daemon\nsteps:\n  - id: start\n    action: service.start\n    with:\n      \
         start: [bash, -c, 'setsid sleep 103 < /dev/null > /dev/null 2>&1 & echo $! > daemon.pid']\n      \
         wait_cmd: [test, -s, daemon.pid]\n  - id: after\n    needs: [start]\n    run: 'true'\n",
    );
    let run = s.ward().args(["run", "p.yml"]).run();
    let daemon = s.read("daemon.pid").trim().to_owned();
    let survived = !daemon.is_empty() && alive(&daemon);
    kill_all(std::slice::from_ref(&daemon));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(survived, "the service ward started is still running");
    assert!(wait_for(5, || !alive(&daemon)));
}

#[test]
fn a_resume_after_a_crash_keeps_the_service_the_run_started() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: crash\nsteps:\n  - id: start\n    action: service.start\n    with:\n      \
         start: [bash, -c, 'setsid sleep 104 < /dev/null > /dev/null 2>&1 & echo $! > daemon.pid']\n      \
         wait_cmd: [test, -s, daemon.pid]\n  - id: long\n    needs: [start]\n    \
         run: echo $$ > long.pid; while [ ! -f release ]; do sleep 0.05; done\n",
    );
    let mut first = s.ward().args(["run", "p.yml"]).spawn();
    assert!(wait_for(10, || !s.read("long.pid").trim().is_empty()));
    first.kill().expect("kill -9");
    first.wait().expect("wait");
    let daemon = s.read("daemon.pid").trim().to_owned();
    let long = s.read("long.pid").trim().to_owned();
    s.write("release", "");
    let resumed = s.ward().args(["resume", "--last"]).run();
    let survived = alive(&daemon);
    kill_all(&[daemon.clone(), long.clone()]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(!alive(&long), "the dead run's step was stopped");
    assert!(survived, "the service the run started was left running");
}

#[test]
fn a_kept_child_that_ends_is_reaped_not_left_a_zombie() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: reap\nsteps:\n  - id: spawn\n    keep_children: true\n    \
         run: setsid sleep 0.2 & echo $! > z.pid\n  - id: wait\n    needs: [spawn]\n    \
         run: while [ -d /proc/$(cat z.pid) ] && ! grep -q '^State:.*Z' /proc/$(cat z.pid)/status; do sleep 0.05; done\n  \
         - id: check\n    needs: [wait]\n    run: test ! -e /proc/$(cat z.pid)\n",
    );
    let run = s.ward().args(["run", "p.yml"]).run();
    assert_eq!(
        run.code, 0,
        "the ended child was reaped by ward: {}",
        run.stderr
    );
}

/// In a container whose session and process group are led from outside
/// its PID namespace, the kernel reports both ids as 0. ward once asserted
/// them positive and every step ended in "internal error"; it must run,
/// and still stop what a step leaves behind. Needs `unshare` (root).
#[test]
fn a_run_in_a_pid_namespace_led_from_outside_works_and_stops_leftovers() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: ns\nsteps:\n{ESCAPE}  - id: next\n    needs: [escape]\n    \
             run: for p in $(cat bg.pid setsid.pid); do if kill -0 $p 2>/dev/null; then echo \"$p still there\"; exit 1; fi; done\n"
        ),
    );
    let probe = std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stderr(std::process::Stdio::null())
        .status();
    if !probe.is_ok_and(|st| st.success()) {
        eprintln!("skipped: unshare --pid is not available here");
        return;
    }
    let run = s
        .ward_via(&["unshare", "--pid", "--fork", "--mount-proc", "--"])
        .args(["run", "p.yml"])
        .run()
        .expect_code(0);
    let stderr = run.stderr;
    // The pids were written inside the namespace, which is gone with its
    // init; what matters is that the next step saw nothing left.
    assert!(
        stderr.contains("left behind") || stderr.contains("sleep (pid"),
        "{stderr}"
    );
}
