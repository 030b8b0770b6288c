//! Guided restores: `confirm:` answered at a real pseudo-terminal, refused
//! without one, `--yes` recorded; `restore:` (snapshot choice, guards,
//! marker) and the lock a backup and a restore share.

use std::io::{Read, Write};
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::harness::Scratch;

/// Runs `cmd` with stdin, stdout and stderr on a pseudo-terminal; each
/// time the output so far contains `answers[n].0` (after the previous
/// answer), types `answers[n].1` and Enter. Returns the exit code and all
/// output.
pub(crate) fn run_answering(mut cmd: Command, answers: &[(&str, &str)]) -> (i32, String) {
    let (master, slave) = crate::progress::open_pty();
    cmd.stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave);
    let mut child = cmd.spawn().expect("ward starts");
    drop(cmd);
    let seen = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut writer = master.try_clone().expect("dup master");
    let reader = {
        let seen = seen.clone();
        let mut master = master;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match master.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.lock().expect("lock").extend_from_slice(&buf[..n]),
                }
            }
        })
    };
    let mut from = 0;
    for (trigger, reply) in answers {
        let found = crate::harness::wait_for(60, || {
            let all = seen.lock().expect("lock");
            let text = String::from_utf8_lossy(&all[from.min(all.len())..]).into_owned();
            text.find(trigger)
                .map(|at| from += at + trigger.len())
                .is_some()
        });
        if !found {
            break;
        }
        writer
            .write_all(format!("{reply}\r").as_bytes())
            .expect("type");
    }
    let status = child.wait().expect("wait");
    drop(writer);
    reader.join().expect("reader");
    let out = seen.lock().expect("lock").clone();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out).into_owned(),
    )
}

/// Event messages of `kind` recorded for run `run`.
pub(crate) fn events(s: &Scratch, run: &str, kind: &str) -> Vec<String> {
    let db = rusqlite::Connection::open(s.state()).expect("open state");
    let mut stmt = db
        .prepare("SELECT message FROM events WHERE run_id = ?1 AND kind = ?2 ORDER BY rowid")
        .expect("prepare");
    stmt.query_map(rusqlite::params![run, kind], |r| r.get::<_, String>(0))
        .expect("query")
        .map(|r| r.expect("row"))
        .collect()
}

fn last_run_id(s: &Scratch) -> String {
    s.status(None)["id"].as_str().expect("run id").to_owned()
}

const WIPE: &str = "\
ward: 1
name: wipe-all
vars:
  what: the database
steps:
  - id: check
    run: \"echo checked > checked\"
  - id: wipe
    needs: check
    confirm: \"Replace {{ what }} with the dump?\"
    run: \"echo wiped > wiped\"
  - id: after
    needs: wipe
    run: \"echo after > after\"
";

#[test]
fn the_right_word_at_a_terminal_lets_the_step_run() {
    let s = Scratch::new();
    let book = s.write("wipe.yml", WIPE);
    let cmd = s.ward().arg("run").arg(&book).command();
    let (code, out) = run_answering(cmd, &[("to go on", "wipe-all")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Replace the database with the dump?"), "{out}");
    assert!(out.contains("type `wipe-all`"), "{out}");
    // The question came after the step before it: that one had run.
    assert_eq!(s.read("checked").trim(), "checked");
    assert_eq!(s.read("wiped").trim(), "wiped");
    assert_eq!(s.read("after").trim(), "after");
    let id = last_run_id(&s);
    let notes = events(&s, &id, "confirmed");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("step `wipe`"), "{notes:?}");
    assert!(notes[0].contains("typed `wipe-all`"), "{notes:?}");
    assert!(notes[0].contains("uid"), "who: {notes:?}");
}

#[test]
fn a_wrong_word_fails_the_step_and_nothing_after_it_runs() {
    let s = Scratch::new();
    let book = s.write("wipe.yml", WIPE);
    let cmd = s.ward().arg("run").arg(&book).command();
    let (code, out) = run_answering(cmd, &[("to go on", "yes")]);
    assert_eq!(code, 8, "{out}");
    assert_eq!(s.read("checked").trim(), "checked");
    assert!(!s.path().join("wiped").exists());
    assert!(!s.path().join("after").exists());
    let states = s.step_states();
    assert_eq!(states["wipe"], "failed");
    assert_eq!(states["after"], "skipped");
    let id = last_run_id(&s);
    let notes = events(&s, &id, "not-confirmed");
    assert!(
        notes[0].contains("`yes` was typed, not `wipe-all`"),
        "{notes:?}"
    );
}

#[test]
fn without_a_terminal_and_without_yes_nothing_runs_or_is_recorded() {
    let s = Scratch::new();
    let book = s.write("wipe.yml", WIPE);
    let r = s.ward().arg("run").arg(&book).run().expect_code(8);
    assert!(
        r.stderr.contains("step `wipe` must be confirmed"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--yes"), "{}", r.stderr);
    // Not even the step before it ran, and no run was recorded.
    assert!(!s.path().join("checked").exists());
    assert!(s.step_states_if_any().is_empty());
}

#[test]
fn yes_is_recorded_with_who_gave_it() {
    let s = Scratch::new();
    let book = s.write("wipe.yml", WIPE);
    s.ward()
        .args(["run", "--yes"])
        .arg(&book)
        .env("SUDO_USER", "alice")
        .run()
        .expect_code(0);
    assert_eq!(s.read("after").trim(), "after");
    let id = last_run_id(&s);
    let notes = events(&s, &id, "confirmed");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("with --yes"), "{notes:?}");
    assert!(notes[0].contains("via sudo by alice"), "{notes:?}");
    assert!(notes[0].contains("step `wipe`"), "{notes:?}");
}

#[test]
fn a_resume_asks_again_only_for_steps_not_yet_confirmed() {
    let s = Scratch::new();
    // `wipe` fails once after it was confirmed: the resume does not ask
    // again for it (it had an attempt), but for `second` it must.
    let book = s.write(
        "wipe.yml",
        "ward: 1\nname: wipe-all\nsteps:\n  - id: wipe\n    confirm: Wipe?\n    run: \"test -e go\"\n  - id: second\n    needs: wipe\n    confirm: { prompt: Second?, word: again }\n    run: \"echo second > second\"\n",
    );
    s.ward()
        .args(["run", "--yes"])
        .arg(&book)
        .run()
        .expect_code(1);
    s.write("go", "");
    // No terminal, no --yes: `second` still needs its answer.
    let r = s.ward().args(["resume", "--last"]).run().expect_code(8);
    assert!(r.stderr.contains("`second`"), "{}", r.stderr);
    assert!(!r.stderr.contains("`wipe`"), "{}", r.stderr);
    let cmd = s.ward().args(["resume", "--last"]).command();
    let (code, out) = run_answering(cmd, &[("to go on", "again")]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("Wipe?"), "{out}");
    assert!(out.contains("Second?"), "{out}");
    assert_eq!(s.read("second").trim(), "second");
}

#[test]
fn confirm_is_checked_like_every_key() {
    let s = Scratch::new();
    let book = s.write(
        "bad.yml",
        "ward: 1\nname: b\nsteps:\n  - id: a\n    confirm: { word: x }\n    run: \"true\"\n  - id: c\n    confirm: { prompt: \"{{ nope }}\", wrod: x }\n    run: \"true\"\n",
    );
    let r = s.ward().arg("validate").arg(&book).run().expect_code(2);
    assert!(r.stderr.contains("bad.yml:5:14"), "{}", r.stderr);
    assert!(r.stderr.contains("has no `prompt`"), "{}", r.stderr);
    assert!(r.stderr.contains("unknown key `wrod`"), "{}", r.stderr);
    assert!(r.stderr.contains("nope"), "{}", r.stderr);
}
