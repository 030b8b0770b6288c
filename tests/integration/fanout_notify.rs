//! `on_item:` of `for_each` steps with real parts: the local SMTP server of
//! the notify tests (aiosmtpd), real programs for `command`, and ward's
//! own state read back. A machine without aiosmtpd says so and passes.

use std::time::{Duration, Instant};

use crate::harness::Scratch;
use crate::notify::{Mail, events, mails, run_ids, smtp_server};

/// `notify.email` towards the SMTP server on loopback `port` (only for
/// failed runs: the run's own mail must not be mistaken for an item's).
fn notify_email(port: u16) -> String {
    format!(
        "notify:\n  email:\n    to: ops@example.org\n    from: ward@backup1.example.org\n    \
         host: 127.0.0.1\n    port: {port}\n    tls: none\n    timeout: 2s\n    on: [skipped]\n"
    )
}

/// A playbook migrating alice, bob and carol (bob fails) with `on_item`.
fn migrate(notify: &str, on: &str) -> String {
    format!(
        "ward: 1\nname: homes\n{notify}steps:\n  - id: migrate\n    for_each: {{ lines: users.txt }}\n    \
         run: test {{{{ item }}}} != bob\n    on_item:\n{on}      email:\n        \
         to: \"{{{{ item }}}}@example.org\"\n        \
         subject: \"your home {{{{ item }}}} was migrated ({{{{ item_state }}}})\"\n"
    )
}

/// (recipient, subject, body) of each mail received, sorted by recipient.
fn received(out: &std::path::Path) -> Vec<(String, String, String)> {
    let mut got: Vec<(String, String, String)> = mails(out)
        .iter()
        .map(|m| {
            let to = m["rcpt_tos"][0].as_str().unwrap_or("").to_owned();
            let mail = Mail::parse(m);
            (to, mail.header("subject"), mail.body.clone())
        })
        .collect();
    got.sort();
    got
}

#[test]
fn each_item_end_named_in_on_mails_its_user_through_the_real_server() {
    let s = Scratch::new();
    let out = s.path().join("mails");
    let Some(server) = smtp_server(&out, &[]) else {
        return;
    };
    s.write("users.txt", "alice\nbob\ncarol\n");
    s.write(
        "p.yml",
        &migrate(
            &notify_email(server.port),
            "      on: [succeeded, failed]\n",
        ),
    );
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(10);
    let got = received(&out);
    let who: Vec<(&str, &str)> = got
        .iter()
        .map(|(to, subject, _)| (to.as_str(), subject.as_str()))
        .collect();
    assert_eq!(
        who,
        [
            (
                "alice@example.org",
                "your home alice was migrated (succeeded)"
            ),
            ("bob@example.org", "your home bob was migrated (failed)"),
            (
                "carol@example.org",
                "your home carol was migrated (succeeded)"
            ),
        ],
        "{}",
        run.stderr
    );
    // The default body names the item, its end, the run and the host.
    let id = run_ids(&s)[0].clone();
    let (_, _, body) = &got[1];
    assert!(body.contains("Item bob of step migrate failed"), "{body}");
    assert!(body.contains(&id), "{body}");
    assert!(events(&s, &id, "notify-failed").is_empty());
    // A resume runs only bob again: only bob is mailed again.
    s.write("users.txt", "alice\nbob\ncarol\n");
    s.write(
        "p.yml",
        &migrate(
            &notify_email(server.port),
            "      on: [succeeded, failed]\n",
        ),
    );
    s.ward().args(["resume", &id]).run().expect_code(10);
    let again: Vec<String> = received(&out).into_iter().map(|(to, _, _)| to).collect();
    assert_eq!(
        again,
        [
            "alice@example.org",
            "bob@example.org",
            "bob@example.org",
            "carol@example.org"
        ]
    );
    drop(server);
}

#[test]
fn the_default_on_mails_failed_items_only_and_a_command_gets_the_item_as_json() {
    let s = Scratch::new();
    let out = s.path().join("mails");
    let Some(server) = smtp_server(&out, &[]) else {
        return;
    };
    s.write("users.txt", "alice\nbob\ncarol\n");
    let mut playbook = migrate(&notify_email(server.port), "");
    playbook.push_str("      command: [sh, -c, \"cat > told-$0.json\", \"{{ item }}\"]\n");
    s.write("p.yml", &playbook);
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(10);
    let got = received(&out);
    assert_eq!(got.len(), 1, "{got:?} {}", run.stderr);
    assert_eq!(got[0].0, "bob@example.org");
    let told: serde_json::Value =
        serde_json::from_str(&s.read("told-bob.json")).expect("the item as JSON");
    assert_eq!(told["state"], "failed");
    assert_eq!(told["key"], "bob");
    assert_eq!(told["step"], "migrate");
    assert!(!s.path().join("told-alice.json").exists());
    drop(server);
}

#[test]
fn an_unreachable_or_silent_server_leaves_items_alone_and_is_noted_within_the_bound() {
    let s = Scratch::new();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    // Accepts, never speaks: each mail waits for its timeout (2s).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    s.write("users.txt", "alice\ncarol\ndave\nerin\nfrank\n");
    for port in [closed, silent_port] {
        s.write(
            "p.yml",
            &migrate(&notify_email(port), "      on: [succeeded]\n"),
        );
        let started = Instant::now();
        let run = s.ward().args(["run", "p.yml"]).run().expect_code(0);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "each send is bounded by its timeout"
        );
        let id = run_ids(&s)[0].clone();
        assert_eq!(s.status(Some(&id))["state"], "succeeded");
        let noted = events(&s, &id, "notify-failed");
        assert_eq!(noted.len(), 1, "{noted:?} {}", run.stderr);
        assert!(
            noted[0].starts_with("on_item: 5 of 5 per-item notifications not sent"),
            "{}",
            noted[0]
        );
        assert!(
            run.stderr
                .contains("warning: notification not sent (on_item): 5 of 5"),
            "{}",
            run.stderr
        );
        // Each failure is a warning in the step's fan-out log.
        let logs = step_log(&s, &id);
        assert_eq!(
            logs.matches("on_item notification not sent").count(),
            5,
            "{logs}"
        );
    }
    drop(silent);
}

/// The `migrate` step's attempt log of run `id` (one line per item).
fn step_log(s: &Scratch, id: &str) -> String {
    let path = s
        .state()
        .parent()
        .expect("state folder")
        .join("logs")
        .join(id)
        .join("migrate.1.log");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn misplaced_or_incomplete_on_item_is_reported_with_file_line_and_column() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: bad\nvars:\n  db_password: \"\"\nsteps:\n  \
         - id: a\n    run: \"true\"\n    on_item: { email: { to: a@example.org } }\n  \
         - id: b\n    for_each: [x]\n    run: echo {{ item }}\n    \
         on_item: { on: [done], email: { to: a@example.org } }\n  \
         - id: c\n    for_each: [x]\n    run: echo {{ item }}\n    \
         on_item: { email: { to: \"{{ item }}@example.org\" } }\n  \
         - id: d\n    for_each: [x]\n    run: echo {{ item }}\n    \
         on_item: { command: [tell, \"{{ db_password }}\"] }\n",
    );
    let out = s
        .ward()
        .args(["validate", "p.yml", "--var", "db_password=hunter2secret"])
        .run()
        .expect_code(2);
    let text = format!("{}{}", out.stdout, out.stderr);
    for (place, words) in [
        (
            "p.yml:8:5",
            "`on_item` in step `a` has no `for_each` to apply to",
        ),
        ("p.yml:12:21", "invalid `on_item.on` in step `b`"),
        (
            "p.yml:16:23",
            "`on_item.email` of step `c` needs the playbook's `notify.email`",
        ),
        ("p.yml:20:", "`on_item.command` of step `d` uses"),
    ] {
        assert!(
            text.lines().any(|l| l.contains(place)) && text.contains(words),
            "{place} {words}:\n{text}"
        );
    }
    assert!(!text.contains("hunter2secret"), "{text}");
}
