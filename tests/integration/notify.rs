//! Notifications with real parts: an SMTP server (aiosmtpd) and an HTTP
//! server (tests/support/*.py) on loopback, real programs for
//! `notify.command`, and the metrics file read back. A test that needs a
//! part the machine lacks says so and passes; .ci/run installs them all.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Scratch, repo_path};

/// A Python that can import `module` (Debian's first: python3-aiosmtpd
/// installs there, whatever `python3` on PATH is).
pub(crate) fn python_with(module: &str) -> Option<&'static str> {
    ["/usr/bin/python3", "python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", &format!("import {module}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// A server started from tests/support, killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `python script args` and waits for its `READY <port>` line.
pub(crate) fn start(python: &str, script: &str, args: &[&str]) -> Server {
    let mut child = Command::new(python)
        .arg(repo_path(script))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("server starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("server says READY");
    let port = line
        .trim()
        .strip_prefix("READY ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("server said {line:?}"));
    Server { child, port }
}

/// An SMTP server writing each mail to `out`; `None` (with the reason
/// printed) where aiosmtpd is not installed.
pub(crate) fn smtp_server(out: &Path, extra: &[&str]) -> Option<Server> {
    let Some(python) = python_with("aiosmtpd") else {
        eprintln!(
            "skipped: aiosmtpd is not installed (apt-get install python3-aiosmtpd; .ci/run does)"
        );
        return None;
    };
    std::fs::create_dir_all(out).expect("mail folder");
    let mut args = vec!["--out", out.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    Some(start(python, "tests/support/smtp_server.py", &args))
}

/// The HTTP server, logging requests to `log`; HTTPS with `tls` (cert, key).
fn http_server(log: &Path, tls: Option<(&Path, &Path)>) -> Option<Server> {
    let Some(python) = python_with("http.server") else {
        eprintln!("skipped: no python3");
        return None;
    };
    let mut args = vec![log.to_str().expect("utf-8 path")];
    if let Some((cert, key)) = tls {
        args.push(cert.to_str().expect("utf-8 path"));
        args.push(key.to_str().expect("utf-8 path"));
    }
    Some(start(python, "tests/support/http_server.py", &args))
}

/// The mails received so far, in order, as the server recorded them.
pub(crate) fn mails(out: &Path) -> Vec<serde_json::Value> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(out)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .iter()
        .map(|p| {
            serde_json::from_str(&std::fs::read_to_string(p).expect("mail")).expect("mail json")
        })
        .collect()
}

/// The parsed mail: headers (name -> value, unfolded) and decoded body.
pub(crate) struct Mail {
    headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Mail {
    pub(crate) fn parse(record: &serde_json::Value) -> Mail {
        let raw = record["data"].as_str().expect("data").replace("\r\n", "\n");
        let (head, body) = raw.split_once("\n\n").expect("head and body");
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
            } else if let Some((k, v)) = line.split_once(':') {
                headers.push((k.to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let mail = Mail {
            headers,
            body: String::new(),
        };
        let body = match mail.header("content-transfer-encoding").as_str() {
            "quoted-printable" => decode_qp(body),
            _ => body.to_owned(),
        };
        Mail { body, ..mail }
    }

    pub(crate) fn header(&self, name: &str) -> String {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

/// Quoted-printable, as far as a plain-text mail needs it.
fn decode_qp(text: &str) -> String {
    let joined = text.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The run ids of a state, newest first.
pub(crate) fn run_ids(s: &Scratch) -> Vec<String> {
    let runs = s
        .ward()
        .args(["runs", "--json"])
        .run()
        .expect_code(0)
        .json();
    runs.as_array()
        .expect("runs")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect()
}

/// `kind: message` of a run's events of `kind`.
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

/// A playbook whose `dump` step prints 60 lines, then fails while
/// `fail-flag` exists.
fn flaky(notify: &str) -> String {
    format!(
        "ward: 1\nname: nightly\n{notify}\nsteps:\n  - id: prepare\n    run: \"true\"\n  - id: dump\n    needs: prepare\n    run: for i in $(seq 1 60); do echo \"dump line $i\"; done; test ! -e fail-flag\n"
    )
}

#[test]
fn mails_for_failure_recovery_and_success_say_what_an_operator_needs() {
    let s = Scratch::new();
    let out = s.path().join("mail");
    let Some(server) = smtp_server(&out, &[]) else {
        return;
    };
    let port = server.port;
    s.write(
        "p.yml",
        &flaky(&format!(
            "notify:\n  email:\n    to: [ops@example.org, \"Backup Team <backup@example.org>\"]\n    from: ward@backup1.example.org\n    host: 127.0.0.1\n    port: {port}\n    tls: none\n    on: [failure, success, recovered]\n"
        )),
    );
    s.write("fail-flag", "");
    let state = s.state();
    let state_arg = state.display().to_string();

    // 1. Failure.
    let run = s
        .ward()
        .args(["run", "--state", &state_arg, "p.yml"])
        .run()
        .expect_code(1);
    assert!(
        !run.stderr.contains("notification not sent"),
        "{}",
        run.stderr
    );
    let failed_id = run_ids(&s)[0].clone();
    let got = mails(&out);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["mail_from"], "ward@backup1.example.org");
    assert_eq!(
        got[0]["rcpt_tos"],
        serde_json::json!(["ops@example.org", "backup@example.org"])
    );
    let mail = Mail::parse(&got[0]);
    let subject = mail.header("subject");
    assert!(
        subject.starts_with("[ward] nightly FAILED on ") && subject.contains(&failed_id),
        "{subject}"
    );
    assert_eq!(mail.header("from"), "ward@backup1.example.org");
    let to = mail.header("to");
    assert!(
        to.contains("ops@example.org")
            && to.contains("Backup Team")
            && to.contains("<backup@example.org>"),
        "{to}"
    );
    assert!(
        mail.header("content-type").starts_with("text/plain"),
        "{:?}",
        mail.headers
    );
    let body = &mail.body;
    assert!(body.contains("Playbook nightly on "), "{body}");
    assert!(body.contains(&format!("Run {failed_id}")), "{body}");
    assert!(
        body.contains("Why: step `dump` failed: exit code 1"),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "    ward resume --state {state_arg} {failed_id}\n"
        )),
        "{body}"
    );
    assert!(body.contains("prepare  succeeded"), "{body}");
    assert!(body.contains("dump     failed"), "{body}");
    // The last 50 lines of the failing step's log, no more.
    assert!(body.contains("Last 50 lines of `dump`'s log"), "{body}");
    assert!(body.contains("  | dump line 11\n"), "{body}");
    assert!(body.contains("  | dump line 60\n"), "{body}");
    assert!(!body.contains("  | dump line 10\n"), "{body}");

    // 2. Recovered: one mail, saying so.
    std::fs::remove_file(s.path().join("fail-flag")).expect("unflag");
    s.ward()
        .args(["run", "--state", &state_arg, "p.yml"])
        .run()
        .expect_code(0);
    let got = mails(&out);
    assert_eq!(got.len(), 2, "{got:?}");
    let mail = Mail::parse(&got[1]);
    assert!(
        mail.header("subject")
            .starts_with("[ward] nightly RECOVERED on "),
        "{}",
        mail.header("subject")
    );
    assert!(
        mail.body
            .contains(&format!("The previous run, {failed_id}, had failed.")),
        "{}",
        mail.body
    );
    assert!(!mail.body.contains("ward resume"), "{}", mail.body);
    assert!(!mail.body.contains("Last 50 lines"), "{}", mail.body);

    // 3. Plain success.
    s.ward()
        .args(["run", "--state", &state_arg, "p.yml"])
        .run()
        .expect_code(0);
    let got = mails(&out);
    assert_eq!(got.len(), 3, "{got:?}");
    let mail = Mail::parse(&got[2]);
    assert!(
        mail.header("subject")
            .starts_with("[ward] nightly succeeded on "),
        "{}",
        mail.header("subject")
    );
    drop(server);
}

#[test]
fn the_default_on_mails_failures_and_recoveries_only_and_a_resume_that_succeeds_recovers() {
    let s = Scratch::new();
    let out = s.path().join("mail");
    let Some(server) = smtp_server(&out, &[]) else {
        return;
    };
    let port = server.port;
    s.write(
        "p.yml",
        &flaky(&format!(
            "notify:\n  email:\n    to: ops@example.org\n    from: ward@backup1.example.org\n    host: 127.0.0.1\n    port: {port}\n    tls: none\n"
        )),
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert_eq!(mails(&out).len(), 0, "no mail for a plain success");
    s.write("fail-flag", "");
    s.ward().args(["run", "p.yml"]).run().expect_code(1);
    assert_eq!(mails(&out).len(), 1);
    std::fs::remove_file(s.path().join("fail-flag")).expect("unflag");
    s.ward().args(["resume", "--last"]).run().expect_code(0);
    let got = mails(&out);
    assert_eq!(got.len(), 2, "{got:?}");
    let mail = Mail::parse(&got[1]);
    assert!(
        mail.header("subject").contains("RECOVERED"),
        "{}",
        mail.header("subject")
    );
    assert!(mail.body.contains("(resumed)"), "{}", mail.body);
}

/// A private CA and a server certificate for `localhost` signed by it.
fn certificates(dir: &Path) -> bool {
    let sh = |script: &str| {
        Command::new("sh")
            .args(["-ec", script])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !sh("command -v openssl") {
        eprintln!("skipped: openssl is not installed (.ci/run installs it)");
        return false;
    }
    assert!(sh(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
           -keyout ca.key -out ca.pem -days 2 -subj '/CN=ward test CA'
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
           -keyout server.key -out server.csr -subj /CN=localhost
         printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf
         openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
           -out server.pem -days 2 -extfile ext.cnf"
    ));
    true
}

#[test]
fn starttls_to_a_relay_with_a_private_ca_and_a_password_that_stays_secret() {
    let s = Scratch::new();
    if !certificates(s.path()) {
        return;
    }
    let password = "Pw-for-the-relay-93127";
    let out = s.path().join("mail");
    let cert = s.path().join("server.pem");
    let key = s.path().join("server.key");
    let Some(server) = smtp_server(
        &out,
        &[
            "--tls",
            cert.to_str().expect("path"),
            key.to_str().expect("path"),
            "--auth",
            "ward",
            password,
        ],
    ) else {
        return;
    };
    let port = server.port;
    let email = |ca: &str| {
        format!(
            "notify:\n  email:\n    to: ops@example.org\n    from: ward@backup1.example.org\n    host: localhost\n    port: {port}\n    tls: starttls\n    user: ward\n    password_env: WARD_TEST_SMTP_PW\n{ca}    on: [success, failure]\n  command:\n    cmd: [sh, -c, 'env > hook-env.txt; cat > hook.json']\n    on: [success]\n"
        )
    };
    // `ca_file` relative to the playbook's folder.
    s.write("p.yml", &flaky(&email("    ca_file: ca.pem\n")));
    let run = s
        .ward()
        .args(["run", "p.yml"])
        .env("WARD_TEST_SMTP_PW", password)
        .run()
        .expect_code(0);
    assert!(!run.stderr.contains("not sent"), "{}", run.stderr);
    let got = mails(&out);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["tls"], true, "the mail went over STARTTLS");
    assert_eq!(got[0]["login"], "ward");
    // The hook does not inherit the password's variable.
    let env = s.read("hook-env.txt");
    assert!(env.contains("PATH="), "{env}");
    assert!(!env.contains("WARD_TEST_SMTP_PW"), "{env}");
    // The password is nowhere ward writes.
    assert!(!s.read("hook.json").contains(password));
    assert!(!run.stderr.contains(password) && !run.stdout.contains(password));
    for entry in std::fs::read_dir(s.state().parent().expect("state folder")).expect("state") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let bytes = std::fs::read(&path).expect("read");
            assert!(
                !bytes
                    .windows(password.len())
                    .any(|w| w == password.as_bytes()),
                "password in {}",
                path.display()
            );
        }
    }

    // Without the CA the relay's certificate is not trusted: no mail, the
    // run's result stands, and the failure is recorded.
    s.write("p.yml", &flaky(&email("")));
    let run = s
        .ward()
        .args(["run", "p.yml"])
        .env("WARD_TEST_SMTP_PW", password)
        .run()
        .expect_code(0);
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("notification not sent"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].contains(&format!("(email via localhost:{port})")),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(password));
    assert_eq!(mails(&out).len(), 1, "no second mail");
    let id = run_ids(&s)[0].clone();
    let notes = events(&s, &id, "notify-failed");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].starts_with("email via localhost:"), "{notes:?}");
    assert_eq!(s.status(Some(&id))["state"], "succeeded");
}

#[test]
fn an_unreachable_or_silent_mail_server_leaves_the_result_and_exit_code_alone() {
    let s = Scratch::new();
    // A port nobody listens on, and one that accepts but never speaks.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let playbook = |port: u16| {
        flaky(&format!(
            "notify:\n  email:\n    to: ops@example.org\n    from: ward@backup1.example.org\n    host: 127.0.0.1\n    port: {port}\n    tls: none\n    timeout: 1s\n    on: [failure, success]\n"
        ))
    };
    for (port, flag, code) in [
        (closed, true, 1),
        (closed, false, 0),
        (silent_port, true, 1),
    ] {
        s.write("p.yml", &playbook(port));
        if flag {
            s.write("fail-flag", "");
        } else {
            let _ = std::fs::remove_file(s.path().join("fail-flag"));
        }
        let started = Instant::now();
        let run = s.ward().args(["run", "p.yml"]).run().expect_code(code);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the timeout bounds the wait"
        );
        let lines: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("warning: notification not sent (email via 127.0.0.1:"))
            .collect();
        assert_eq!(lines.len(), 1, "{}", run.stderr);
        assert!(
            lines[0].ends_with("; the run's result stands"),
            "{}",
            lines[0]
        );
        let id = run_ids(&s)[0].clone();
        assert_eq!(events(&s, &id, "notify-failed").len(), 1);
        let state = s.status(Some(&id))["state"].clone();
        assert_eq!(state, if code == 0 { "succeeded" } else { "failed" });
    }
    drop(silent);
}

#[test]
fn pings_arrive_in_order_and_a_warning_still_pings_success() {
    let s = Scratch::new();
    let log = s.path().join("requests.log");
    let Some(server) = http_server(&log, None) else {
        return;
    };
    let port = server.port;
    let base = format!("http://127.0.0.1:{port}");
    s.write("current/f", "x");
    // rotate before verify: the new snapshot is not counted, a warning.
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: pinged\nnotify:\n  ping:\n    start: {base}/ping/abc/start\n    success: {base}/ping/abc\n    failure: {base}/ping/abc/fail\n    timeout: 5s\n  command:\n    cmd: [sh, -c, 'cat > hook.json']\n    on: [success, failure]\nsteps:\n  - id: snapshot\n    action: snapshot.hardlink\n    with: {{ src: current, dir: snaps }}\n  - id: rotate\n    needs: [snapshot]\n    action: rotate\n    with: {{ dir: snaps, keep_last: 3 }}\n  - id: verify\n    needs: [rotate]\n    action: verify\n    with: {{ path: snaps/latest }}\n  - id: gate\n    needs: [verify]\n    run: sleep 0.3; test ! -e fail-flag\n"
        ),
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "GET /ping/abc/start\nGET /ping/abc\n"
    );
    let hook: serde_json::Value = serde_json::from_str(&s.read("hook.json")).expect("json");
    assert_eq!(hook["result"], "succeeded");
    assert_eq!(hook["warnings"][0]["step"], "rotate", "{hook}");
    assert!(
        hook["warnings"][0]["message"]
            .as_str()
            .expect("warning")
            .contains("not counted"),
        "{hook}"
    );
    assert_eq!(hook["failures"], serde_json::json!([]));
    assert_eq!(hook["snapshots"], 1, "{hook}");

    s.write("fail-flag", "");
    s.ward().args(["run", "p.yml"]).run().expect_code(1);
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "GET /ping/abc/start\nGET /ping/abc\nGET /ping/abc/start\nGET /ping/abc/fail\n"
    );

    // A ping service that answers an error is recorded, nothing else changes.
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: pinged\nnotify:\n  ping:\n    success: {base}/status/503\nsteps:\n  - id: a\n    run: \"true\"\n"
        ),
    );
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert!(
        run.stderr
            .contains("warning: notification not sent (ping success): 127.0.0.1 answered HTTP 503"),
        "{}",
        run.stderr
    );
    // The ping's path (its token) is not repeated.
    assert!(!run.stderr.contains("/status/503"), "{}", run.stderr);
    let id = run_ids(&s)[0].clone();
    assert_eq!(
        events(&s, &id, "notify-failed"),
        vec!["ping success: 127.0.0.1 answered HTTP 503".to_owned()]
    );
    drop(server);
}

#[test]
fn the_hook_command_gets_the_summary_as_json_and_its_failures_are_only_noted() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        &flaky("notify:\n  command:\n    cmd: [sh, -c, 'cat > hook.json']\n"),
    );
    s.write("fail-flag", "");
    s.ward().args(["run", "p.yml"]).run().expect_code(1);
    let id = run_ids(&s)[0].clone();
    let hook: serde_json::Value = serde_json::from_str(&s.read("hook.json")).expect("json");
    assert_eq!(hook["version"], 1);
    assert_eq!(hook["playbook"], "nightly");
    assert_eq!(hook["run_id"], id.as_str());
    assert_eq!(hook["result"], "failed");
    assert_eq!(hook["events"], serde_json::json!(["failure"]));
    assert_eq!(hook["host"], s.status(Some(&id))["host"]);
    assert_eq!(hook["steps"][0]["id"], "prepare");
    assert_eq!(hook["steps"][0]["state"], "succeeded");
    assert!(hook["steps"][0]["duration_ms"].is_u64(), "{hook}");
    assert_eq!(hook["steps"][1]["state"], "failed");
    assert_eq!(hook["steps"][1]["exit_code"], 1);
    let failure = &hook["failures"][0];
    assert_eq!(failure["step"], "dump");
    let tail = failure["log_tail"].as_array().expect("tail");
    assert_eq!(tail.len(), 50);
    assert_eq!(tail[49], "dump line 60");
    // Scratch names the state through $WARD_STATE: the command says it.
    let state = s.state().display().to_string();
    assert_eq!(
        hook["commands"]["resume"],
        format!("ward resume --state {state} {id}")
    );

    // A hook that fails, or hangs, is one line and a note.
    for (cmd, text) in [
        (
            "[sh, -c, 'echo chat is down >&2; exit 7']",
            "(command): `sh` exited with code 7: chat is down",
        ),
        (
            "[sleep, '30']",
            "(command): `sleep` did not finish within 500ms; it was killed",
        ),
    ] {
        s.write(
            "p.yml",
            &flaky(&format!(
                "notify:\n  command:\n    cmd: {cmd}\n    timeout: 500ms\n"
            )),
        );
        let started = Instant::now();
        let run = s.ward().args(["run", "p.yml"]).run().expect_code(1);
        assert!(started.elapsed() < Duration::from_secs(15));
        assert!(run.stderr.contains(text), "{}", run.stderr);
        let id = run_ids(&s)[0].clone();
        assert_eq!(events(&s, &id, "notify-failed").len(), 1);
    }
}

/// A night skipped by a precondition: `on: [skipped]` hears of it, with
/// the result `skipped`, and the metrics count it apart from failures.
#[test]
fn a_run_skipped_by_a_precondition_notifies_skipped() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: guarded\npreconditions:\n  - path_exists: no-such-disk\nnotify:\n  command:\n    cmd: [sh, -c, 'cat > hook.json']\n    on: [skipped]\nmetrics: guarded.prom\nsteps:\n  - id: s\n    run: \"true\"\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(6);
    let hook: serde_json::Value = serde_json::from_str(&s.read("hook.json")).expect("json");
    assert_eq!(hook["result"], "skipped", "{hook}");
    assert_eq!(hook["events"], serde_json::json!(["skipped"]));
    let m = samples(&s.read("guarded.prom"));
    assert_eq!(
        m.get("ward_last_run_success{playbook=\"guarded\"}"),
        Some(&0.0),
        "{m:?}"
    );
    assert_eq!(
        m.get("ward_last_run_result{playbook=\"guarded\",result=\"skipped\"}"),
        Some(&1.0),
        "{m:?}"
    );
}

/// `name{labels}` -> value, from a Prometheus text file.
fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("sample");
            (k.to_owned(), v.parse().expect("number"))
        })
        .collect()
}

#[test]
fn metrics_are_written_atomically_per_playbook_into_one_file() {
    let s = Scratch::new();
    s.write("src/data.bin", &"x".repeat(1000));
    let prom = s.path().join("textfile/ward.prom");
    std::fs::create_dir_all(prom.parent().expect("folder")).expect("folder");
    s.write(
        "alpha.yml",
        "ward: 1\nname: alpha\nmetrics: textfile/ward.prom\nsteps:\n  - id: copy\n    action: rsync\n    with: { src: src, dest: copy }\n",
    );
    s.write(
        "beta.yml",
        "ward: 1\nname: beta\nmetrics: textfile/ward.prom\nsteps:\n  - id: a\n    run: test ! -e fail-flag\n",
    );
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    // Under cron's strict umask the collector must still read the file.
    s.ward_via(&["sh", "-c", "umask 077 && exec \"$0\" \"$@\""])
        .args(["run", "alpha.yml"])
        .run()
        .expect_code(0);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&prom).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o644, "readable by the collector");
    s.write("fail-flag", "");
    s.ward().args(["run", "beta.yml"]).run().expect_code(1);

    let text = std::fs::read_to_string(&prom).expect("metrics");
    let m = samples(&text);
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in\n{text}"));
    assert_eq!(get("ward_last_run_success{playbook=\"alpha\"}"), 1.0);
    assert_eq!(get("ward_last_run_success{playbook=\"beta\"}"), 0.0);
    assert_eq!(
        get("ward_last_run_result{playbook=\"beta\",result=\"failed\"}"),
        1.0
    );
    assert_eq!(
        get("ward_last_run_result{playbook=\"beta\",result=\"succeeded\"}"),
        0.0
    );
    assert_eq!(
        get("ward_last_run_bytes_copied{playbook=\"alpha\"}"),
        1000.0
    );
    let ran = get("ward_last_run_timestamp_seconds{playbook=\"alpha\"}");
    assert!(
        ran >= before - 1.0 && ran < before + 60.0,
        "{ran} vs {before}"
    );
    assert_eq!(
        get("ward_last_success_timestamp_seconds{playbook=\"alpha\"}"),
        ran
    );
    assert!(get("ward_last_run_duration_seconds{playbook=\"beta\"}") >= 0.0);
    // Never succeeded: no last-success series (alert on its absence).
    assert!(!text.contains("ward_last_success_timestamp_seconds{playbook=\"beta\"}"));
    // Each metric has its HELP and TYPE once.
    assert_eq!(
        text.matches("# TYPE ward_last_run_success gauge\n").count(),
        1,
        "{text}"
    );
    // beta recovers: its series are replaced, alpha's kept.
    std::fs::remove_file(s.path().join("fail-flag")).expect("unflag");
    s.ward().args(["run", "beta.yml"]).run().expect_code(0);
    let text = std::fs::read_to_string(&prom).expect("metrics");
    let m = samples(&text);
    assert_eq!(m["ward_last_run_success{playbook=\"beta\"}"], 1.0);
    assert_eq!(m["ward_last_run_success{playbook=\"alpha\"}"], 1.0);
    assert_eq!(
        text.matches("ward_last_run_success{playbook=\"beta\"}")
            .count(),
        1
    );
    assert!(m.contains_key("ward_last_success_timestamp_seconds{playbook=\"beta\"}"));
    // Written under a temporary name and renamed: nothing else is left but
    // the lock, which the collector ignores (not *.prom).
    let mut names: Vec<String> = std::fs::read_dir(prom.parent().expect("folder"))
        .expect("folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec![".ward.prom.lock", "ward.prom"]);
    let mode = std::fs::metadata(&prom).expect("meta").permissions().mode();
    assert_eq!(mode & 0o777, 0o644, "readable by the collector");
}

#[test]
fn a_run_stopped_by_a_signal_still_notifies_after_its_finalizers() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: stopped\nnotify:\n  command:\n    cmd: [sh, -c, 'cat > hook.json']\nsteps:\n  - id: work\n    run: touch work.started; sleep 30\n  - id: cleanup\n    after: work\n    when: always\n    run: echo cleaned\n",
    );
    let mut child = s.ward().args(["run", "p.yml"]).spawn();
    let started = Instant::now();
    while !s.path().join("work.started").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "work never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(143), "exit code of SIGTERM, unchanged");
    let hook: serde_json::Value = serde_json::from_str(&s.read("hook.json")).expect("json");
    assert_eq!(hook["result"], "interrupted", "{hook}");
    assert_eq!(hook["events"], serde_json::json!(["failure"]));
    let states: Vec<(&str, &str)> = hook["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().expect("id"),
                s["state"].as_str().expect("state"),
            )
        })
        .collect();
    assert_eq!(states, [("work", "interrupted"), ("cleanup", "succeeded")]);
    assert!(
        hook["commands"]["resume"]
            .as_str()
            .expect("resume")
            .starts_with("ward resume --state "),
        "{hook}"
    );
}

#[test]
fn https_pings_trust_the_public_roots_or_the_given_ca_only() {
    let s = Scratch::new();
    if !certificates(s.path()) {
        return;
    }
    let log = s.path().join("requests.log");
    let (cert, key) = (s.path().join("server.pem"), s.path().join("server.key"));
    let Some(server) = http_server(&log, Some((&cert, &key))) else {
        return;
    };
    let base = format!("https://localhost:{}", server.port);
    let playbook = |ca: &str| {
        format!(
            "ward: 1\nname: pinged\nnotify:\n  ping:\n    start: {base}/start\n    success: {base}/ok\n{ca}steps:\n  - id: a\n    run: \"true\"\n"
        )
    };
    s.write("p.yml", &playbook("    ca_file: ca.pem\n"));
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert!(!run.stderr.contains("not sent"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "GET /start\nGET /ok\n"
    );
    // The test CA is not among the public roots: both pings fail, are
    // noted, and the run still succeeds.
    s.write("p.yml", &playbook(""));
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("notification not sent (ping "))
        .collect();
    assert_eq!(lines.len(), 2, "{}", run.stderr);
    let id = run_ids(&s)[0].clone();
    assert_eq!(events(&s, &id, "notify-failed").len(), 2);
    assert_eq!(s.status(Some(&id))["state"], "succeeded");
    assert_eq!(
        std::fs::read_to_string(&log).expect("log"),
        "GET /start\nGET /ok\n",
        "nothing got through"
    );
    drop(server);
}

/// A hostile server from tests/support/slow_server.py.
fn slow_server(mode: &str) -> Option<Server> {
    let Some(python) = python_with("socket") else {
        eprintln!("skipped: no python3");
        return None;
    };
    Some(start(python, "tests/support/slow_server.py", &[mode]))
}

/// Every file in the state's folder, as bytes (the database and its
/// journal files).
fn state_bytes(s: &Scratch) -> Vec<(PathBuf, Vec<u8>)> {
    std::fs::read_dir(s.state().parent().expect("state folder"))
        .expect("state folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read");
            (p, bytes)
        })
        .collect()
}

fn holds(bytes: &[u8], text: &str) -> bool {
    bytes.windows(text.len()).any(|w| w == text.as_bytes())
}

#[test]
fn a_password_pasted_as_the_variable_name_is_not_repeated_at_send_time() {
    let s = Scratch::new();
    let secret = "Xk9vQ2pLm7Rt";
    s.write(
        "p.yml",
        &flaky(&format!(
            "notify:\n  email:\n    to: ops@example.org\n    from: ward@example.org\n    host: 127.0.0.1\n    port: 9\n    tls: none\n    user: ward\n    password_env: {secret}\n    on: [success]\n"
        )),
    );
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert!(
        run.stderr
            .contains("the variable named by `password_env` is not set"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(secret), "{}", run.stderr);
    assert!(!run.stdout.contains(secret), "{}", run.stdout);
    let id = run_ids(&s)[0].clone();
    let notes = events(&s, &id, "notify-failed");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(!notes[0].contains(secret), "{notes:?}");
    // `ward log`/`ward status` read the same records.
    let status = s.ward().args(["status", "--json"]).run();
    assert!(!status.stdout.contains(secret), "{}", status.stdout);
}

#[test]
fn validate_never_shows_a_line_that_may_hold_a_secret() {
    let s = Scratch::new();
    let cases = [
        (
            "Hunter3Secret",
            "notify:\n  email:\n    to: ops@example.org\n    from: ward@example.org\n    host: localhost\n    user: ward\n    password_env: \"not a name Hunter3Secret\"\n",
        ),
        (
            "TOKEN9fj3",
            "notify:\n  ping:\n    success: http://user:TOKEN9fj3@127.0.0.1/x\n",
        ),
        (
            "TOKEN4kq8",
            "notify:\n  ping:\n    failure: \"ftp://hc-ping.example/TOKEN4kq8\"\n",
        ),
        (
            "Pw7hidden",
            "notify:\n  email:\n    to: ops@example.org\n    from: ward@example.org\n    host: localhost\n    user: ward\n    pasword: Pw7hidden\n    password_env: SMTP_PW\n",
        ),
        (
            "Pw8hidden",
            "notify:\n  email:\n    to: ops@example.org\n    from: ward@example.org\n    host: localhost\n    password_env: [Pw8hidden]\n    user: ward\n",
        ),
    ];
    for (secret, notify) in cases {
        s.write(
            "p.yml",
            &format!("ward: 1\nname: p\n{notify}steps:\n  - id: s\n    run: \"true\"\n"),
        );
        let human = s.ward().args(["validate", "p.yml"]).run().expect_code(2);
        assert!(human.stderr.contains("p.yml:"), "{}", human.stderr);
        let json = s
            .ward()
            .args(["validate", "p.yml", "--format", "json"])
            .run()
            .expect_code(2);
        assert!(json.stdout.contains("\"line\""), "{}", json.stdout);
        for out in [&human.stdout, &human.stderr, &json.stdout, &json.stderr] {
            assert!(!out.contains(secret), "{secret}: {out}");
        }
    }
}

#[test]
fn an_smtp_server_echoing_the_login_does_not_leak_the_password() {
    let s = Scratch::new();
    let Some(server) = slow_server("smtp-echo") else {
        return;
    };
    let password = "Echo-pw-55120";
    // PLAIN (lettre's first choice) and the plain password: both forms
    // the server repeats must be hidden.
    let b64 = |t: &str| {
        let out = Command::new("base64")
            .arg("-w0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().expect("stdin").write_all(t.as_bytes())?;
                c.wait_with_output()
            })
            .expect("base64");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let plain = b64(&format!("\0ward\0{password}"));
    s.write(
        "p.yml",
        &flaky(&format!(
            "notify:\n  email:\n    to: ops@example.org\n    from: ward@example.org\n    host: 127.0.0.1\n    port: {}\n    tls: none\n    user: ward\n    password_env: WARD_TEST_ECHO_PW\n    timeout: 5s\n    on: [success]\n",
            server.port
        )),
    );
    let run = s
        .ward()
        .args(["run", "p.yml"])
        .env("WARD_TEST_ECHO_PW", password)
        .run()
        .expect_code(0);
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("notification not sent (email"))
        .unwrap_or_else(|| panic!("{}", run.stderr));
    assert!(line.contains("refused: AUTH PLAIN ********"), "{line}");
    for form in [password, plain.as_str(), plain.trim_end_matches('=')] {
        assert!(!run.stderr.contains(form), "{form}: {}", run.stderr);
        for (path, bytes) in state_bytes(&s) {
            assert!(!holds(&bytes, form), "{form} in {}", path.display());
        }
    }
}

#[test]
fn a_server_answering_one_byte_at_a_time_cannot_hold_a_ping_or_a_mail_past_its_timeout() {
    let s = Scratch::new();
    let Some(server) = slow_server("trickle") else {
        return;
    };
    let port = server.port;
    for (channel, notify) in [
        (
            "ping success",
            format!(
                "notify:\n  ping:\n    success: http://127.0.0.1:{port}/ping/tok\n    timeout: 1s\n"
            ),
        ),
        (
            "email via 127.0.0.1",
            format!(
                "notify:\n  email:\n    to: ops@example.org\n    from: ward@example.org\n    host: 127.0.0.1\n    port: {port}\n    tls: none\n    timeout: 1s\n    on: [success]\n"
            ),
        ),
    ] {
        s.write("p.yml", &flaky(&notify));
        let started = Instant::now();
        // `timeout` ends a ward that would wait for ever (exit 124).
        let run = s
            .ward_via(&["timeout", "-k", "5", "30"])
            .args(["run", "p.yml"])
            .run()
            .expect_code(0);
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(6),
            "{channel}: the run took {took:?}"
        );
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains(&format!("notification not sent ({channel}")))
            .unwrap_or_else(|| panic!("{channel}: {}", run.stderr));
        assert!(
            line.contains("in time") || line.contains("within the timeout"),
            "{line}"
        );
    }
}

#[test]
fn a_held_lock_a_fifo_or_a_symlink_at_the_metrics_path_never_hangs_a_run() {
    let s = Scratch::new();
    let Some(python) = python_with("fcntl") else {
        eprintln!("skipped: no python3");
        return;
    };
    let dir = s.path().join("textfile");
    std::fs::create_dir_all(&dir).expect("folder");
    let prom = dir.join("ward.prom");
    s.write(
        "p.yml",
        "ward: 1\nname: alpha\nmetrics: textfile/ward.prom\nsteps:\n  - id: s\n    run: \"true\"\n",
    );
    let run = || {
        let started = Instant::now();
        // `timeout` ends a ward that would wait for ever (exit 124).
        let run = s
            .ward_via(&["timeout", "-k", "5", "40"])
            .args(["run", "p.yml"])
            .run()
            .expect_code(0);
        (run, started.elapsed())
    };

    // A FIFO: not read, replaced.
    let made = Command::new(python)
        .args(["-c", "import os,sys; os.mkfifo(sys.argv[1])"])
        .arg(&prom)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let (out, took) = run();
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert!(
        out.stderr.contains("is not a regular file"),
        "{}",
        out.stderr
    );
    assert!(std::fs::symlink_metadata(&prom).expect("prom").is_file());
    assert!(
        s.read("textfile/ward.prom")
            .contains("ward_last_run_success{playbook=\"alpha\"} 1")
    );

    // A symlink to /dev/zero: not followed, replaced; /dev/zero untouched.
    std::fs::remove_file(&prom).expect("rm");
    std::os::unix::fs::symlink("/dev/zero", &prom).expect("symlink");
    let (out, took) = run();
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert!(out.stderr.contains("is a symbolic link"), "{}", out.stderr);
    assert!(std::fs::symlink_metadata(&prom).expect("prom").is_file());

    // A shared lock held by another user's process: ward gives up after
    // its bound, notes it, and the run's result stands.
    let lock = dir.join(".ward.prom.lock");
    let mut holder = Command::new(python)
        .args([
            "-c",
            "import fcntl,sys,time; f=open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_SH); print('held', flush=True); time.sleep(120)",
        ])
        .arg(&lock)
        .stdout(Stdio::piped())
        .spawn()
        .expect("holder");
    let mut line = String::new();
    BufReader::new(holder.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("held");
    assert_eq!(line.trim(), "held");
    let (out, took) = run();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(took < Duration::from_secs(25), "{took:?}");
    assert!(
        out.stderr
            .contains("warning: notification not sent (metrics): another process has held"),
        "{}",
        out.stderr
    );
    let id = run_ids(&s)[0].clone();
    assert_eq!(events(&s, &id, "notify-failed").len(), 1);
}

#[test]
fn a_step_printing_one_huge_line_gives_a_small_summary_and_ward_log_keeps_it_whole() {
    let s = Scratch::new();
    // 3 MB on one line, then 20 short lines.
    s.write(
        "p.yml",
        "ward: 1\nname: noisy\nnotify:\n  command:\n    cmd: [sh, -c, 'cat > hook.json']\n    on: [failure]\nsteps:\n  - id: dump\n    run: head -c 3000000 /dev/zero | tr '\\0' a; echo; for i in $(seq 1 20); do echo \"line $i\"; done; exit 1\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(1);
    let json = s.read("hook.json");
    assert!(json.len() < 70 * 1024, "summary is {} bytes", json.len());
    let hook: serde_json::Value = serde_json::from_str(&json).expect("json");
    let tail: Vec<&str> = hook["failures"][0]["log_tail"]
        .as_array()
        .expect("log_tail")
        .iter()
        .map(|l| l.as_str().expect("line"))
        .collect();
    assert_eq!(tail.len(), 21, "{tail:.200?}");
    let huge = tail[0];
    assert!(
        huge.starts_with("[start of line cut] aaaa") && huge.ends_with("a [rest of line cut]"),
        "{huge:.80}"
    );
    assert!(huge.len() < 600, "{}", huge.len());
    assert_eq!(tail[20], "line 20");
    // `ward log` still shows the whole log.
    let log = s.ward().args(["log", "last", "dump"]).run().expect_code(0);
    assert!(log.stdout.len() > 3_000_000, "{}", log.stdout.len());
}

#[test]
fn a_skipped_night_between_two_successes_is_no_recovery() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: guarded\npreconditions:\n  - path_exists: disk\nnotify:\n  command:\n    cmd: [sh, -c, 'cat >> hook.jsonl; echo >> hook.jsonl']\nsteps:\n  - id: s\n    run: \"true\"\n",
    );
    s.write("disk", "");
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    std::fs::remove_file(s.path().join("disk")).expect("rm");
    s.ward().args(["run", "p.yml"]).run().expect_code(6);
    s.write("disk", "");
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    // The default `on: [failure, recovered]`: nothing happened to tell.
    assert!(
        !s.path().join("hook.jsonl").exists(),
        "{}",
        s.read("hook.jsonl")
    );
    // A failure, a skipped night, then a success: that recovers.
    s.write(
        "p.yml",
        &s.read("p.yml")
            .replace("run: \"true\"", "run: test ! -e fail-flag"),
    );
    s.write("fail-flag", "");
    s.ward().args(["run", "p.yml"]).run().expect_code(1);
    std::fs::remove_file(s.path().join("disk")).expect("rm");
    s.ward().args(["run", "p.yml"]).run().expect_code(6);
    s.write("disk", "");
    std::fs::remove_file(s.path().join("fail-flag")).expect("rm");
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let results: Vec<String> = s
        .read("hook.jsonl")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json");
            format!("{} {}", v["result"], v["events"])
        })
        .collect();
    assert_eq!(
        results,
        vec![
            "\"failed\" [\"failure\"]".to_owned(),
            "\"succeeded\" [\"success\",\"recovered\"]".to_owned()
        ]
    );
}

/// Once the run is over, a SIGTERM ends the wait for a slow notification
/// at once: ward exits with the run's own code and says what was not sent
/// (found by a red-team review: the run's listeners swallowed it).
#[test]
fn a_signal_while_notifying_ends_the_wait_and_keeps_the_runs_code() {
    let s = Scratch::new();
    let Some(server) = slow_server("trickle") else {
        return;
    };
    s.write(
        "p.yml",
        &flaky(&format!(
            "notify:\n  ping:\n    success: http://127.0.0.1:{}/ping/tok\n    timeout: 60s\n",
            server.port
        )),
    );
    let child = s.ward().args(["run", "p.yml"]).spawn();
    // The run itself takes well under a second; then the ping trickles.
    std::thread::sleep(Duration::from_millis(2500));
    let sent_at = Instant::now();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    let out = child.wait_with_output().expect("wait");
    assert!(
        sent_at.elapsed() < Duration::from_secs(10),
        "took {:?}",
        sent_at.elapsed()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("stopped by SIGTERM before every one was sent"),
        "{stderr}"
    );
    drop(server);
}
