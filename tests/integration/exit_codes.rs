//! Every exit code of docs/cli.md's table, from the real binary, in
//! scenarios the other tests do not assert; and the failures that used to
//! be silent (damaged recorded facts of a run, a verify whose scan for
//! extra files could not finish).

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use crate::harness::{Scratch, wait_for};

fn kill(signal: &str, pid: u32) {
    let sent = Command::new("kill")
        .args(["-s", signal, "--", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill -s {signal} {pid}");
}

/// A run whose `work` step fails until `go` exists, then blocks (after
/// `work.started`) until `release` exists; `start` is its finalizer and
/// blocks after `start.started` until `finish` exists.
const BLOCKING: &str = "\
ward: 1
name: blocking
vars:
  target: default
steps:
  - id: work
    run: test -f go; echo \"{{ target }}\" > target.txt; touch work.started; while [ ! -f release ]; do sleep 0.05; done
  - id: start
    after: [work]
    when: always
    run: touch start.started; while [ ! -f finish ]; do sleep 0.05; done; echo start >> journal
";

/// A scratch folder with BLOCKING and one failed run of it (given
/// `--var target=mine`); returns its run id.
fn failed_run() -> (Scratch, String) {
    let s = Scratch::new();
    s.write("p.yml", BLOCKING);
    s.write("finish", "");
    s.ward()
        .args(["run", "p.yml", "--var", "target=mine"])
        .run()
        .expect_code(1);
    let id = s.status(None)["id"].as_str().expect("run id").to_owned();
    for done in ["finish", "start.started", "journal"] {
        std::fs::remove_file(s.path().join(done)).expect("rm");
    }
    s.write("go", "");
    (s, id)
}

/// Output of a spawned ward, once it has ended.
fn ended(child: std::process::Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn exit_0_for_help_and_version() {
    let s = Scratch::new();
    let help = s.ward().arg("--help").run().expect_code(0);
    assert!(help.stdout.contains("Usage"), "{}", help.stdout);
    let version = s.ward().arg("--version").run().expect_code(0);
    assert!(version.stdout.starts_with("ward "), "{}", version.stdout);
}

#[test]
fn exit_1_when_the_output_cannot_be_written() {
    let s = Scratch::new();
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .arg("schema")
        .current_dir(s.path())
        .stdout(std::fs::File::create("/dev/full").expect("/dev/full"))
        .stderr(Stdio::piped())
        .output()
        .expect("ward starts");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write output"), "{stderr}");
}

#[test]
fn exit_2_for_an_unknown_step_or_command() {
    let (s, id) = failed_run();
    let log = s.ward().args(["log", &id, "nosuch"]).run().expect_code(2);
    assert!(
        log.stderr
            .contains(&format!("run {id} has no step `nosuch`")),
        "{}",
        log.stderr
    );
    let unknown = s.ward().arg("frobnicate").run().expect_code(2);
    assert!(unknown.stderr.contains("frobnicate"), "{}", unknown.stderr);
}

/// A `WARD_NOW` that is not a time is a wrong command line (exit 2) that
/// says which forms are meant, before anything runs.
#[test]
fn exit_2_for_a_ward_now_that_is_not_a_time() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: t\nsteps:\n  - id: a\n    run: \"true\"\n",
    );
    let run = s
        .ward()
        .args(["run", "p.yml"])
        .env("WARD_NOW", "23.11.2026")
        .run()
        .expect_code(2);
    assert!(
        run.stderr
            .contains("WARD_NOW=23.11.2026 is not a local time; write e.g. 2026-11-23T02:00:00"),
        "{}",
        run.stderr
    );
}

/// A `postgres://` state that cannot be reached fails every command with
/// exit 4 (the state), from `--state` and from `$WARD_STATE` alike, before
/// anything runs: never a file `ward` in a folder `postgres:`, never the
/// password in the message. (`.invalid` never resolves: RFC 6761.)
#[test]
fn exit_4_for_a_postgres_state_that_cannot_be_reached() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: p\nsteps:\n  - id: a\n    run: touch ran\n",
    );
    let url = "postgres://ward:hunter22@db.example.invalid/ward";
    let folder = s.path().join("local").display().to_string();
    let runs = [
        s.ward()
            .args(["run", "p.yml", "--state", url])
            .env("WARD_STATE_FOLDER", &folder)
            .run(),
        s.ward()
            .args(["runs", "--state", url])
            .env("WARD_STATE_FOLDER", &folder)
            .run(),
        s.ward()
            .args(["status", "--state", url])
            .env("WARD_STATE_FOLDER", &folder)
            .run(),
        s.ward()
            .args(["resume", "--last", "--state", url])
            .env("WARD_STATE_FOLDER", &folder)
            .run(),
        s.ward()
            .args(["run", "p.yml"])
            .env("WARD_STATE", url)
            .env("WARD_STATE_FOLDER", &folder)
            .run(),
        s.ward()
            .args(["log", "last"])
            .env("WARD_STATE", "postgresql://db.example.invalid/ward")
            .env("WARD_STATE_FOLDER", &folder)
            .run(),
    ];
    for run in runs {
        let run = run.expect_code(4);
        assert!(run.stderr.contains("cannot connect"), "{}", run.stderr);
        assert!(!run.stderr.contains("hunter22"), "{}", run.stderr);
    }
    assert!(!s.path().join("postgres:").exists());
    assert!(!s.path().join("postgresql:").exists());
    assert!(!s.path().join("ran").exists());
    assert!(!s.state().exists());
}

#[test]
fn exit_3_when_another_process_holds_the_lock_file() {
    let (s, id) = failed_run();
    let lock = s
        .state()
        .parent()
        .expect("state folder")
        .join("locks/blocking.lock");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lock)
        .expect("lock file");
    file.lock().expect("take the lock");
    let resume = s.ward().args(["resume", &id]).run().expect_code(3);
    assert!(
        resume
            .stderr
            .contains("another run holds the lock `blocking`"),
        "{}",
        resume.stderr
    );
    file.unlock().expect("unlock");
}

/// Replaces a column of the run's row in the state database.
fn damage(s: &Scratch, id: &str, column: &str, value: &str) {
    let db = rusqlite::Connection::open(s.state()).expect("open state");
    let changed = db
        .execute(
            &format!("UPDATE runs SET {column} = ?1 WHERE id = ?2"),
            rusqlite::params![value, id],
        )
        .expect("update");
    assert_eq!(changed, 1);
}

#[test]
fn exit_4_when_the_recorded_var_overrides_cannot_be_read() {
    // Resuming without them would back up with another `target` than the
    // run was started with.
    let (s, id) = failed_run();
    s.write("release", "");
    s.write("finish", "");
    damage(&s, &id, "overrides_json", "{\"target\": \"mi");
    let resume = s.ward().args(["resume", &id]).run().expect_code(4);
    assert!(
        resume.stderr.contains(&format!("run {id}"))
            && resume
                .stderr
                .contains("recorded `--var` overrides cannot be read"),
        "{}",
        resume.stderr
    );
    assert!(!s.path().join("work.started").exists(), "nothing ran");
    // `--last` finds the same run and the same damage.
    s.ward().args(["resume", "--last"]).run().expect_code(4);
}

#[test]
fn exit_4_when_the_recorded_facts_cannot_be_read() {
    let (s, id) = failed_run();
    damage(&s, &id, "facts_json", "");
    let resume = s.ward().args(["resume", &id]).run().expect_code(4);
    assert!(
        resume.stderr.contains(&format!("run {id}"))
            && resume
                .stderr
                .contains("recorded `ward.*` facts cannot be read"),
        "{}",
        resume.stderr
    );
}

#[test]
fn exit_5_when_ward_state_names_no_database() {
    let s = Scratch::new();
    let run = s.ward().args(["runs", "--json"]).run().expect_code(5);
    assert!(run.stderr.contains("no state database"), "{}", run.stderr);
    assert!(!s.state().exists());
}

#[test]
fn exit_130_for_sigint_during_a_run() {
    let s = Scratch::new();
    s.write("p.yml", BLOCKING);
    s.write("go", "");
    s.write("finish", "");
    let child = s.ward().args(["run", "p.yml"]).spawn();
    let pid = child.id();
    assert!(wait_for(10, || s.path().join("work.started").exists()));
    kill("INT", pid);
    let (code, stderr) = ended(child);
    assert_eq!(code, Some(130), "{stderr}");
    assert_eq!(s.read("journal"), "start\n", "the finalizer ran: {stderr}");
    assert_eq!(s.status(None)["state"], "interrupted");
}

#[test]
fn exit_143_for_a_third_sigterm_that_abandons_the_finalizer() {
    let s = Scratch::new();
    s.write("p.yml", BLOCKING);
    s.write("go", "");
    // stderr in a file, to see when the second signal has been noted
    // (signals that arrive together may count as one).
    let log = s.path().join("stderr.txt");
    let child = Command::new(env!("CARGO_BIN_EXE_ward"))
        .args(["run", "p.yml"])
        .current_dir(s.path())
        .env("WARD_STATE", s.state())
        .env("WARD_NOW", "2026-11-23T02:00:00")
        .env("WARD_KILL_GRACE", "500ms")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("stderr file"))
        .spawn()
        .expect("ward starts");
    let pid = child.id();
    assert!(wait_for(10, || s.path().join("work.started").exists()));
    kill("TERM", pid);
    assert!(wait_for(10, || s.path().join("start.started").exists()));
    kill("TERM", pid);
    assert!(wait_for(10, || s.read("stderr.txt").contains("(signal 2)")));
    kill("TERM", pid);
    let out = child.wait_with_output().expect("wait");
    let stderr = s.read("stderr.txt");
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("abandoned on SIGTERM"), "{stderr}");
    assert_eq!(s.read("journal"), "", "the finalizer was abandoned");
}

#[test]
fn exit_129_for_sighup_during_a_resume() {
    let (s, _) = failed_run();
    s.write("finish", "");
    let child = s.ward().args(["resume", "--last"]).spawn();
    let pid = child.id();
    assert!(wait_for(10, || s.path().join("work.started").exists()));
    kill("HUP", pid);
    let (code, stderr) = ended(child);
    assert_eq!(code, Some(129), "{stderr}");
    assert_eq!(s.read("target.txt"), "mine\n", "the run's own --var");
    assert_eq!(s.status(None)["state"], "interrupted");
}

#[test]
fn exit_131_for_sigquit_during_a_resume() {
    let (s, _) = failed_run();
    let child = s.ward().args(["resume", "--last"]).spawn();
    let pid = child.id();
    assert!(wait_for(10, || s.path().join("work.started").exists()));
    kill("QUIT", pid);
    let (code, stderr) = ended(child);
    assert_eq!(code, Some(131), "{stderr}");
    assert!(!s.path().join("start.started").exists(), "{stderr}");
}

/// A snapshot of `current` made by ward, and the path of the snapshot.
fn snapshot(s: &Scratch) -> std::path::PathBuf {
    s.write(
        "snap.yml",
        "ward: 1\nname: snap\nsteps:\n  - id: snapshot\n    action: snapshot.hardlink\n    with: { src: current, dir: snaps }\n",
    );
    s.ward().args(["run", "snap.yml"]).run().expect_code(0);
    s.path().join("snaps/2026-11-23")
}

#[test]
fn exit_1_when_verify_cannot_scan_a_folder_for_extra_files() {
    // A folder that can be searched but not listed (mode 0311): its files
    // are found by name and match, but a file added to it can only be
    // found by listing it. As another user than root, that listing fails;
    // the verification must fail too, never pass as "no extra files".
    let s = Scratch::new();
    s.write("current/locked/data.txt", "backed up\n");
    let locked = s.path().join("current/locked");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o311)).expect("chmod");
    let set = snapshot(&s);
    std::fs::write(set.join("locked/planted"), "not backed up\n").expect("plant");
    std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    let verify = |json: bool| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_ward"))
            .args(["verify", "--no-hashes"])
            .arg(&set)
            .env("NO_COLOR", "1");
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().expect("setpriv");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = verify(false);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains(&set.join("locked").display().to_string())
            && stderr.contains("Permission denied")
            && stderr.contains("not verified"),
        "{stderr}"
    );
    let (code, stdout, _) = verify(true);
    assert_eq!(code, Some(1), "{stdout}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(doc["ok"], false, "{doc}");
    // root can list it: the extra file is found.
    let root = s
        .ward()
        .args(["verify", "--no-hashes"])
        .arg(&set)
        .run()
        .expect_code(1);
    assert!(root.stdout.contains("locked/planted"), "{}", root.stdout);
}

/// A mistyped `WARD_KILL_GRACE` is refused before anything runs (it used
/// to become the default 10 s silently).
#[test]
fn a_kill_grace_that_is_not_a_duration_is_refused_before_anything_runs() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: grace\nsteps:\n  - id: a\n    run: touch ran\n",
    );
    let run = s
        .ward()
        .env("WARD_KILL_GRACE", "2 minutes")
        .args(["run", "p.yml"])
        .run()
        .expect_code(2);
    assert!(run.stderr.contains("WARD_KILL_GRACE"), "{}", run.stderr);
    assert!(!s.path().join("ran").exists(), "nothing ran");
    s.ward()
        .env("WARD_KILL_GRACE", "2m")
        .args(["run", "p.yml"])
        .run()
        .expect_code(0);
    assert!(s.path().join("ran").exists());
}
