//! Secrets: everything made from a secret variable is masked in plans and
//! never stored; a changed secret still counts as a change on resume; a
//! secret never reaches a command line.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::harness::Scratch;

const SECRET: &str = "S3cr3t-hunter2-xyz";
/// What the playbook derives from the secret with a filter: only the taint
/// through templates can know it is secret (no text match would find it).
const DERIVED: &str = "S3CR3T-HUNTER2-XYZ";

const PLAYBOOK: &str = r#"ward: 1
name: secret-app
vars:
  # Defined below the vars that use it: order does not matter.
  conn: "host=db password={{ db_password }}"
  shout: "{{ db_password | upper }}"
  db_password: changeme
  target: out
steps:
  - id: use
    run: |
      test "$CONN" = "host=db password=$PGPASSWORD"
      printf %s "$SHOUT" > "$TARGET/shout.txt"
      # The write-ahead log while the run is live (it is gone after the run).
      cp "$WARD_STATE-wal" "$TARGET/wal.copy"
    env: { PGPASSWORD: "{{ db_password }}", CONN: "{{ conn }}", SHOUT: "{{ shout }}", TARGET: "{{ target }}" }
  - id: later
    needs: [use]
    # On resume the step gets the real (not the recorded, masked) value.
    run: test -e go && test "$SHOUT" = "$(cat "$TARGET/shout.txt")"
    env: { SHOUT: "{{ shout }}", TARGET: "{{ target }}" }
  - id: mark
    run: "true"
    creates: "{{ target }}/mark.done"
"#;

/// Every file under `dir` (database, WAL, logs, locks), as bytes.
fn all_files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).expect("read state folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            all_files(&path, out);
        } else {
            out.push((
                path.display().to_string(),
                std::fs::read(&path).unwrap_or_default(),
            ));
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn assert_no_secret(what: &str, bytes: &[u8]) {
    for needle in [SECRET, DERIVED, "host=db password=S3"] {
        assert!(!contains(bytes, needle), "{what} contains `{needle}`");
    }
}

fn definitions(s: &Scratch) -> Vec<(String, String)> {
    let db = rusqlite::Connection::open(s.state()).expect("open state");
    let mut q = db
        .prepare("SELECT step_id, definition_json FROM steps ORDER BY position")
        .expect("query");
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn secrets_and_values_made_from_them_are_never_shown_or_stored() {
    let s = Scratch::new();
    s.write("app.yml", PLAYBOOK);
    std::fs::create_dir_all(s.path().join("out")).expect("out");
    let var = format!("db_password={SECRET}");

    for format in ["text", "json", "dot", "mermaid"] {
        let plan = s
            .ward()
            .args(["plan", "app.yml", "--format", format, "--var", &var])
            .run()
            .expect_code(0);
        assert_no_secret(&format!("plan --format {format}"), plan.stdout.as_bytes());
        assert_no_secret("plan stderr", plan.stderr.as_bytes());
    }
    let plan = s
        .ward()
        .args(["plan", "app.yml", "--format", "json", "--var", &var])
        .run()
        .json();
    for name in ["db_password", "conn", "shout"] {
        assert_eq!(plan["vars"][name], "********", "var {name} is masked");
    }
    assert_eq!(plan["vars"]["target"], "out", "other vars are shown");
    let env = &plan["steps"][0]["env"];
    assert_eq!(env["CONN"], "********", "{env}");
    assert_eq!(env["SHOUT"], "********", "{env}");
    assert_eq!(env["TARGET"], "out", "{env}");
    assert_eq!(plan["steps"][2]["creates"], "out/mark.done");

    // `later` fails, so the run stays resumable (and its records stay).
    let run = s
        .ward()
        .args(["run", "app.yml", "--var", &var])
        .run()
        .expect_code(1);
    assert_no_secret("run output", run.stdout.as_bytes());
    assert_no_secret("run stderr", run.stderr.as_bytes());
    // The step got the real values through its environment.
    assert_eq!(s.read("out/shout.txt"), DERIVED);
    assert_eq!(s.step_states()["use"], "succeeded");

    let status = s.ward().args(["status", "--json"]).run().expect_code(0);
    assert_no_secret("status", status.stdout.as_bytes());
    let mut files = Vec::new();
    all_files(s.state().parent().expect("state folder"), &mut files);
    assert!(
        files.iter().any(|(p, _)| p.ends_with("ward.db")),
        "{files:?}"
    );
    for (path, bytes) in &files {
        assert_no_secret(path, bytes);
    }

    let wal = std::fs::read(s.path().join("out/wal.copy")).expect("WAL copied by the step");
    assert!(
        contains(&wal, r#""target":"out""#),
        "the WAL copy holds the run record"
    );
    assert_no_secret("the live WAL", &wal);

    // The definition keeps a keyed fingerprint, not the value nor its hash.
    let (_, def) = &definitions(&s)[0];
    let stored: serde_json::Value = serde_json::from_str(def).expect("definition is JSON");
    let fingerprint = stored["secrets"].as_str().expect("fingerprint");
    assert_eq!(fingerprint.len(), 64, "{def}");
    for plain in [SECRET, DERIVED, "host=db password=S3cr3t-hunter2-xyz"] {
        let hash: String = Sha256::digest(plain.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!def.contains(&hash), "plain hash of {plain} stored");
    }
    let key = s.state().parent().expect("folder").join("fingerprint.key");
    let meta = std::fs::metadata(&key).expect("key file");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 32);
}

#[test]
fn resume_notices_a_changed_secret_and_takes_the_real_one_again() {
    let s = Scratch::new();
    s.write("app.yml", PLAYBOOK);
    std::fs::create_dir_all(s.path().join("out")).expect("out");
    s.ward()
        .args(["run", "app.yml", "--var", &format!("db_password={SECRET}")])
        .run()
        .expect_code(1);
    s.write("go", "");

    // Not recorded, so it must be given again.
    let missing = s.ward().args(["resume", "--last"]).run().expect_code(2);
    assert!(
        missing.stderr.contains("--var db_password=..."),
        "{}",
        missing.stderr
    );

    // Same file, other password: the step made from it changed.
    let changed = s
        .ward()
        .args(["resume", "--last", "--var", "db_password=another-one"])
        .run()
        .expect_code(2);
    assert!(
        changed.stderr.contains("`use` changed"),
        "{}",
        changed.stderr
    );
    assert!(
        changed.stderr.contains("`later` changed"),
        "{}",
        changed.stderr
    );
    assert_eq!(s.step_states()["later"], "failed", "nothing ran");

    // The same password resumes; only `later` runs again.
    s.ward()
        .args([
            "resume",
            "--last",
            "--var",
            &format!("db_password={SECRET}"),
        ])
        .run()
        .expect_code(0);
    let states = s.step_states();
    assert_eq!(states["use"], "succeeded");
    assert_eq!(states["later"], "succeeded");
    let mut files = Vec::new();
    all_files(s.state().parent().expect("state folder"), &mut files);
    for (path, bytes) in &files {
        assert_no_secret(path, bytes);
    }
}

#[test]
fn a_bad_fingerprint_key_is_refused_with_its_path() {
    let s = Scratch::new();
    s.write("app.yml", PLAYBOOK);
    std::fs::create_dir_all(s.path().join("out")).expect("out");
    std::fs::create_dir_all(s.state().parent().expect("folder")).expect("state folder");
    let key = s.state().parent().expect("folder").join("fingerprint.key");
    std::os::unix::fs::symlink("/etc/passwd", &key).expect("plant a link");
    let run = s
        .ward()
        .args(["run", "app.yml", "--var", &format!("db_password={SECRET}")])
        .run();
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains(&key.display().to_string()) && run.stderr.contains("symbolic link"),
        "{}",
        run.stderr
    );
}

#[test]
fn secrets_on_a_command_line_are_refused_with_their_place() {
    let s = Scratch::new();
    s.write(
        "argv.yml",
        r#"ward: 1
name: argv
vars:
  api_token: t0ken
  conn: "host=db password={{ api_token }}"
steps:
  - id: shell
    run: psql "{{ conn }}" -c 'select 1'
  - id: argv
    cmd: [curl, -H, "Authorization: {{ api_token | upper }}", http://localhost/]
  - id: action
    action: rsync
    with: { src: "/srv/{{ conn }}", dest: /backup }
  - id: fine
    run: psql -c 'select 1'
    env: { PGPASSWORD: "{{ api_token }}", CONN: "{{ conn }}" }
"#,
    );
    let out = s
        .ward()
        .args(["run", "argv.yml", "--var", "api_token=xyzzy-token"])
        .run()
        .expect_code(2);
    let e = &out.stderr;
    assert!(
        e.contains("error[secret-in-command]: `run` of step `shell` uses variable `conn`, which is made from secret variable `api_token`"),
        "{e}"
    );
    assert!(e.contains("argv.yml:8:19"), "points at `conn`:\n{e}");
    assert!(
        e.contains(
            "error[secret-in-command]: `cmd` of step `argv` uses secret variable `api_token`"
        ),
        "{e}"
    );
    assert!(e.contains("argv.yml:10:40"), "points at `api_token`:\n{e}");
    assert!(e.contains("pass it through `env:`"), "{e}");
    assert!(
        e.contains("error[secret-in-parameter]: `with` of step `action` (action `rsync`)"),
        "{e}"
    );
    assert!(e.contains("argv.yml:13:27"), "points at `conn`:\n{e}");
    assert!(!e.contains("step `fine`"), "env is the right way:\n{e}");
    assert!(!e.contains("xyzzy-token"), "{e}");
    assert!(!s.state().exists(), "nothing was recorded");
}

#[test]
fn a_secret_var_value_is_not_echoed_in_a_usage_error() {
    let s = Scratch::new();
    s.write("app.yml", PLAYBOOK);
    let out = s
        .ward()
        .args([
            "plan",
            "app.yml",
            "--var",
            "db_password=[S3cr3t-hunter2-xyz",
        ])
        .run()
        .expect_code(2);
    assert!(
        out.stderr.contains("--var db_password=********"),
        "{}",
        out.stderr
    );
    assert_no_secret("usage error", out.stderr.as_bytes());
}

#[test]
fn a_short_secret_does_not_garble_messages() {
    let s = Scratch::new();
    s.write(
        "t2.yml",
        r#"ward: 1
name: t2
vars:
  api_token: changeme
  long_token: "{{ api_token }}-and-more"
steps:
  - id: a
    run: echo {{ missing_thing }}
    env: { TOKEN: "{{ long_token }}" }
"#,
    );
    let out = s
        .ward()
        .args(["validate", "t2.yml", "--var", "api_token=a"])
        .run()
        .expect_code(2);
    let e = &out.stderr;
    assert!(
        e.contains("undefined variable `missing_thing` in `run` of step `a`"),
        "a one-letter secret is not masked in free text:\n{e}"
    );
    assert!(!e.contains("v********"), "{e}");
    // A longer secret is still masked wherever a message quotes it.
    let out = s
        .ward()
        .args(["validate", "t2.yml", "--var", "api_token=variable"])
        .run()
        .expect_code(2);
    assert!(
        out.stderr.contains("undefined ******** `missing_thing`"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_malformed_var_never_echoes_its_value() {
    let s = Scratch::new();
    s.write("app.yml", PLAYBOOK);
    for arg in [
        "db_password hunter2",
        "db-password=hunter2",
        "api token=hunter2",
        "x y=hunter2",
        "9x=hunter2",
    ] {
        let out = s
            .ward()
            .args(["plan", "app.yml", "--var", arg])
            .run()
            .expect_code(2);
        assert!(out.stderr.contains("--var"), "{arg}: {}", out.stderr);
        assert!(!out.stderr.contains("hunter2"), "{arg}: {}", out.stderr);
    }
    // The name part is shown so the operator knows which one is wrong.
    let out = s
        .ward()
        .args(["plan", "app.yml", "--var", "db-password=hunter2"])
        .run()
        .expect_code(2);
    assert!(out.stderr.contains("`db-password`"), "{}", out.stderr);
}

#[test]
fn a_secret_in_creates_is_refused_and_names_are_never_rendered() {
    let s = Scratch::new();
    s.write(
        "creates.yml",
        r#"ward: 1
name: creates
description: "backs up {{ db_password }}"
vars:
  db_password: changeme
  marker: "/tmp/{{ db_password | upper }}"
steps:
  - id: direct
    run: "true"
    creates: "/tmp/{{ db_password }}.done"
  - id: derived
    name: "{{ db_password }}"
    run: "true"
    creates: "{{ marker }}"
  - id: fine
    name: "uses {{ db_password }}"
    if: "{{ db_password != '' }}"
    run: "true"
    env: { PGPASSWORD: "{{ db_password }}" }
"#,
    );
    let var = format!("db_password={SECRET}");
    let out = s
        .ward()
        .args(["run", "creates.yml", "--var", &var])
        .run()
        .expect_code(2);
    let e = &out.stderr;
    assert!(
        e.contains("error[secret-in-creates]: `creates` of step `direct` uses secret variable `db_password`"),
        "{e}"
    );
    assert!(
        e.contains("creates.yml:10:23"),
        "points at `db_password`:\n{e}"
    );
    assert!(
        e.contains("`creates` of step `derived` uses variable `marker`, which is made from secret variable `db_password`"),
        "{e}"
    );
    assert!(e.contains("name the marker file without the secret"), "{e}");
    assert!(!e.contains("step `fine`"), "{e}");
    assert_no_secret("run stderr", out.stderr.as_bytes());
    assert!(!s.state().exists(), "nothing was recorded");

    // `name:` and `description:` are not templates: shown as written, they
    // cannot hold a secret's value; `if` shows its expression as written.
    s.write(
        "names.yml",
        r#"ward: 1
name: names
description: "backs up {{ db_password }}"
vars:
  db_password: changeme
steps:
  - id: fine
    name: "uses {{ db_password }}"
    if: "{{ db_password != '' }}"
    run: "true"
    creates: /tmp/ward-names-test-never-exists
    env: { PGPASSWORD: "{{ db_password }}" }
"#,
    );
    for format in ["text", "json"] {
        let plan = s
            .ward()
            .args(["plan", "names.yml", "--format", format, "--var", &var])
            .run()
            .expect_code(0);
        assert_no_secret("plan", plan.stdout.as_bytes());
        assert!(plan.stdout.contains("{{ db_password"), "{}", plan.stdout);
    }
}

/// A password written into the playbook where none may be is refused
/// with its place, and neither the human nor the JSON report shows the
/// line that holds it.
#[test]
fn a_literal_password_is_refused_without_showing_its_line() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: p\nnotify:\n  email:\n    to: ops@example.org\n    from: ward@example.org\n    host: localhost\n    password: hunter2-literal\nsteps:\n  - id: s\n    run: \"true\"\n",
    );
    let human = s.ward().args(["validate", "p.yml"]).run().expect_code(2);
    assert!(human.stderr.contains("p.yml:8:5"), "{}", human.stderr);
    assert!(
        human.stderr.contains("secret-in-playbook"),
        "{}",
        human.stderr
    );
    let json = s
        .ward()
        .args(["validate", "p.yml", "--format", "json"])
        .run()
        .expect_code(2);
    assert!(
        json.stdout.contains("secret-in-playbook"),
        "{}",
        json.stdout
    );
    for out in [&human.stdout, &human.stderr, &json.stdout, &json.stderr] {
        assert!(!out.contains("hunter2"), "{out}");
    }
}

#[test]
fn a_secret_a_step_prints_is_masked_in_its_log_and_status() {
    let s = Scratch::new();
    s.write(
        "print.yml",
        r#"ward: 1
name: print
vars:
  db_password: changeme
steps:
  - id: loud
    # `set -x` and a program echoing its connection string: the common
    # ways a secret reaches a step's output. Printed in pieces too, so a
    # read may split it.
    run: |
      echo "connecting with password $PGPASSWORD"
      printf '%s' "${PGPASSWORD:0:5}"; sleep 0.2; printf '%s\n' "${PGPASSWORD:5}"
      set -x
      : "$PGPASSWORD"
    env: { PGPASSWORD: "{{ db_password }}" }
"#,
    );
    let out = s
        .ward()
        .args([
            "run",
            "print.yml",
            "--var",
            &format!("db_password={SECRET}"),
        ])
        .run()
        .expect_code(0);
    assert_no_secret("run output", out.stdout.as_bytes());
    assert_no_secret("run errors", out.stderr.as_bytes());
    let log = s.ward().args(["log", "last", "loud"]).run().expect_code(0);
    assert!(
        log.stdout.contains("connecting with password ********"),
        "{}",
        log.stdout
    );
    // Split across two writes, still masked whole.
    assert_eq!(log.stdout.matches("********").count(), 3, "{}", log.stdout);
    let mut files = Vec::new();
    all_files(s.state().parent().expect("state folder"), &mut files);
    for (path, bytes) in &files {
        assert_no_secret(path, bytes);
    }
    let status = s.ward().args(["status", "--json"]).run().expect_code(0);
    assert_no_secret("status", status.stdout.as_bytes());
}
