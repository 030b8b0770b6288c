//! What `ward run` and `ward status` print about a run: hints that can be
//! pasted, no paths that do not exist, honest durations, plain English.

use crate::harness::{Scratch, status_step};

#[test]
fn the_hint_after_a_failure_repeats_the_state_quoted_for_the_shell() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: hint\nsteps:\n  - id: fail\n    run: exit 3\n",
    );
    let state = s.path().join("my state").join("ward.db");
    let state_arg = state.display().to_string();
    let run = s
        .ward()
        .args(["run", "--state", &state_arg, "p.yml"])
        .run()
        .expect_code(1);
    let quoted = format!("'{state_arg}'");
    let hint = run
        .stderr
        .lines()
        .find(|l| l.contains("continue: ward resume"))
        .unwrap_or_else(|| panic!("no hint in {}", run.stderr));
    assert!(
        hint.contains(&format!("ward status --state {quoted} "))
            && hint.contains(&format!("ward resume --state {quoted} ")),
        "{hint}"
    );
    // The hint works as printed (run through a shell).
    let id = hint.rsplit(' ').next().expect("run id");
    let cmd = format!(
        "{} status --state {quoted} {id}",
        env!("CARGO_BIN_EXE_ward")
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &cmd])
        .output()
        .expect("sh");
    assert!(out.status.success(), "{cmd}");
}

#[test]
fn a_silent_failed_step_has_no_log_path() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: silent\nsteps:\n  - id: quiet\n    run: exit 3\n",
    );
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(1);
    assert!(run.stderr.contains("log: (no output)"), "{}", run.stderr);
    assert!(!run.stderr.contains("quiet.1.log"), "{}", run.stderr);
}

#[test]
fn one_step_is_one_step() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: one\nsteps:\n  - id: only\n    run: 'true'\n",
    );
    let run = s
        .ward()
        .args(["run", "--progress", "p.yml"])
        .run()
        .expect_code(0);
    assert!(run.stdout.contains("(1 step)"), "{}", run.stdout);
    assert!(!run.stdout.contains("1 steps"), "{}", run.stdout);
}

#[test]
fn after_a_resume_a_step_shows_its_own_time_not_the_time_since_the_first_run() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: later\nsteps:\n  - id: quick\n    run: test -f ok\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(1);
    // Time passes between the run and its resume.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    s.write("ok", "");
    s.ward().args(["resume", "--last"]).run().expect_code(0);
    let status = s.status(None);
    let step = status_step(&status, "quick");
    let attempts = step["attempt_list"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2);
    let ms = crate::harness::json_ms;
    let own = ms(&attempts[1]["finished_at"]) - ms(&attempts[1]["started_at"]);
    assert_eq!(step["duration_ms"].as_i64(), Some(own), "{step}");
    let since_first = ms(&attempts[1]["finished_at"]) - ms(&attempts[0]["started_at"]);
    assert!(since_first >= 1500 && own < since_first, "{step}");
    let text = s.ward().args(["status"]).run().expect_code(0).stdout;
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("quick"))
        .expect("row");
    assert!(
        row.contains(&format!("{own}ms")) || own >= 1000,
        "the table shows the attempt's own time: {row}"
    );
}

#[test]
fn the_abandonment_message_repeats_the_state_quoted_for_the_shell() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: quit\nsteps:\n  - id: work\n    run: touch work.started; sleep 30\n  \
         - id: start\n    after: [work]\n    when: always\n    run: 'true'\n",
    );
    let state = s.path().join("my state").join("ward.db");
    let state_arg = state.display().to_string();
    let child = s
        .ward()
        .args(["run", "--state", &state_arg, "p.yml"])
        .spawn();
    assert!(crate::harness::wait_for(10, || s
        .path()
        .join("work.started")
        .exists()));
    let sent = std::process::Command::new("kill")
        .args(["-s", "QUIT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(131), "{stderr}");
    let resume = format!("`ward resume --state '{state_arg}' ");
    assert!(
        stderr.contains(&format!("did not run; {resume}")),
        "{stderr}"
    );
    let status = s
        .ward()
        .args(["status", "--json", "--state", &state_arg])
        .run()
        .expect_code(0)
        .json();
    let reason = status_step(&status, "start")["reason"].to_string();
    assert!(reason.contains(&resume), "{reason}");
}

#[test]
fn plan_of_an_invalid_playbook_counts_its_errors_in_plain_english() {
    let s = Scratch::new();
    s.write(
        "two.yml",
        "ward: 1\nname: bad\nsteps:\n  - id: a\n    rn: echo\n",
    );
    s.write(
        "one.yml",
        "ward: 1\nname: bad\nsteps:\n  - id: a\n    run: echo\n    needs: [zz]\n",
    );
    for (file, said) in [("one.yml", "1 error;"), ("two.yml", "2 errors;")] {
        let run = s.ward().args(["plan", file]).run().expect_code(2);
        assert!(
            run.stderr
                .contains(&format!("{file}: {said} nothing to plan")),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn control_characters_a_step_prints_are_shown_as_text_not_sent_to_the_terminal() {
    let s = Scratch::new();
    // Clear the screen, set the window title, ring the bell; then fail, so
    // the failure report's tail shows the same line again.
    s.write(
        "p.yml",
        "ward: 1\nname: esc\nsteps:\n  - id: loud\n    run: printf 'a\\033[2J\\033]0;owned\\007b\\n'; exit 3\n",
    );
    let run = s
        .ward()
        .args(["run", "--progress", "p.yml"])
        .run()
        .expect_code(1);
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(!all.contains('\u{1b}') && !all.contains('\u{7}'), "{all:?}");
    assert!(run.stdout.contains("a\\u{1b}[2J"), "{}", run.stdout);
    assert!(all.contains("| a\\u{1b}[2J"), "{all}");
    // The log keeps the bytes as the step wrote them.
    let log = s.ward().args(["log", "last", "loud"]).run().expect_code(0);
    assert!(log.stdout.contains("a\u{1b}[2J"), "{:?}", log.stdout);
}
