//! `for_each: { pg_query: ... }` against a real PostgreSQL server (Debian's
//! `postgresql`, a fresh cluster per test, password logins over TCP): rows
//! become items with their columns as fields, `key` and `priority` read
//! them, a resume uses the recorded rows (the query is not run again, the
//! table may have changed), bad SQL, a refused permission, an unreachable
//! server, too many rows, a timeout and a stop fail the step before any
//! item runs, and the password shows nowhere.

use std::path::PathBuf;

use crate::harness::{Scratch, Ward};
use crate::pg_cluster::Cluster;
use crate::pg_store::{SECRET, all_files, cluster};

/// A cluster (role `ward` with password [`SECRET`], database `wardstate`)
/// whose TCP logins need that password, with a table `users` of four rows,
/// three of them active.
fn users_cluster() -> Cluster {
    let c = cluster();
    // initdb's `trust` for everything: TCP logins must give the password,
    // so it really travels (and could leak); psql's socket stays trusted.
    std::fs::write(
        c.data().join("pg_hba.conf"),
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
    )
    .expect("pg_hba.conf");
    c.psql("postgres", "SELECT pg_reload_conf()");
    c.psql(
        "wardstate",
        "CREATE TABLE users (name text, blocks int, active bool); \
         INSERT INTO users VALUES ('alice', 10, true), ('bob', 30, true), \
         ('carol', 20, true), ('dave', 99, false); \
         ALTER TABLE users OWNER TO ward",
    );
    c
}

/// The `db:` mapping of role `ward` over TCP (no password: it comes from
/// `PGPASSWORD`).
fn db(c: &Cluster) -> String {
    format!(
        "{{ host: 127.0.0.1, port: {}, user: ward, dbname: wardstate }}",
        c.port
    )
}

/// A playbook whose step `each` lists `sql` on `db` and appends
/// `name:blocks` of each item to `journal`; `extra` is more of the step.
fn playbook(s: &Scratch, db: &str, sql: &str, extra: &str) {
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: seed\nvars:\n  min_blocks: 5\nsteps:\n  - id: each\n    \
             for_each:\n      pg_query:\n        sql: \"{sql}\"\n        db: {db}\n    \
             key: \"{{{{ item.name }}}}\"\n{extra}    \
             run: echo {{{{ item.name }}}}:{{{{ item.blocks }}}} >> journal\n"
        ),
    );
}

fn ward(s: &Scratch) -> Ward {
    s.ward().env("PGPASSWORD", SECRET)
}

fn journal(s: &Scratch) -> Vec<String> {
    std::fs::read_to_string(s.path().join("journal"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Nothing under the scratch folder (state database, logs) holds the
/// password, nor any of `shown`.
fn no_password(s: &Scratch, shown: &[&str]) {
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    all_files(s.path(), &mut files);
    assert!(!files.is_empty());
    for (path, text) in &files {
        assert!(!text.contains(SECRET), "{}", path.display());
    }
    for text in shown {
        assert!(!text.contains(SECRET), "{text}");
    }
}

#[test]
fn rows_become_items_and_a_resume_uses_the_recorded_rows() {
    let c = users_cluster();
    let s = Scratch::new();
    // `bob` fails until `fixed` exists; one item at a time, the largest
    // first.
    playbook(
        &s,
        &db(&c),
        "SELECT name, blocks FROM users WHERE active AND blocks >= {{ min_blocks }} ORDER BY name",
        "    priority: \"{{ item.blocks }}\"\n    max_parallel: 1\n",
    );
    s.write(
        "p.yml",
        &s.read("p.yml").replace(
            ">> journal\n",
            ">> journal; test {{ item.name }} != bob || test -e fixed\n",
        ),
    );
    let first = ward(&s).args(["run", "p.yml"]).run().expect_code(10);
    assert_eq!(journal(&s), ["bob:30", "carol:20", "alice:10"]);
    let mut items = crate::fanout::items(&s, None);
    items.sort();
    assert_eq!(
        items,
        [
            ("alice".to_owned(), "succeeded".to_owned()),
            ("bob".to_owned(), "failed".to_owned()),
            ("carol".to_owned(), "succeeded".to_owned()),
        ]
    );
    // Each item is the row: columns as fields, values as PostgreSQL's text
    // (what pg.query saves).
    let listed = ward(&s)
        .args(["items", "last", "--json"])
        .run()
        .expect_code(0);
    let json = listed.json();
    let bob = json
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["key"] == "bob")
        .expect("bob");
    assert_eq!(
        bob["item"],
        serde_json::json!({"name": "bob", "blocks": "30"}),
        "{bob}"
    );
    // The table changes (and then cannot be read at all): the resume runs
    // the recorded `bob`, and queries nothing.
    c.psql(
        "wardstate",
        "INSERT INTO users VALUES ('erin', 50, true); ALTER TABLE users RENAME TO gone",
    );
    s.write("fixed", "");
    let resumed = ward(&s).args(["resume", "--last"]).run().expect_code(0);
    assert_eq!(journal(&s), ["bob:30", "carol:20", "alice:10", "bob:30"]);
    let mut keys: Vec<String> = crate::fanout::items(&s, None)
        .into_iter()
        .map(|(k, st)| {
            assert_eq!(st, "succeeded", "{k}");
            k
        })
        .collect();
    keys.sort();
    assert_eq!(keys, ["alice", "bob", "carol"]);
    let plan = ward(&s).args(["plan", "p.yml"]).run().expect_code(0);
    assert!(
        plan.stdout
            .contains("the rows of `SELECT name, blocks FROM users WHERE active AND blocks >= 5"),
        "{}",
        plan.stdout
    );
    no_password(
        &s,
        &[
            &first.stdout,
            &first.stderr,
            &listed.stdout,
            &resumed.stdout,
            &resumed.stderr,
            &plan.stdout,
        ],
    );
}

/// Runs `p.yml` (with `env`), which must fail its step `each` before any
/// item ran, saying each of `words`, and never the password.
fn fails_before_items(s: &Scratch, env: &[(&str, &str)], words: &[&str]) {
    let _ = std::fs::remove_file(s.path().join("journal"));
    let mut w = ward(s).args(["run", "p.yml"]);
    for (k, v) in env {
        w = w.env(k, v);
    }
    let run = w.run().expect_code(1);
    for word in words {
        assert!(run.stderr.contains(word), "no `{word}` in:\n{}", run.stderr);
    }
    assert!(journal(s).is_empty(), "an item ran");
    assert!(
        crate::fanout::items(s, None).is_empty(),
        "items were recorded"
    );
    no_password(s, &[&run.stdout, &run.stderr]);
}

#[test]
fn bad_sql_permissions_servers_and_sizes_fail_the_step_before_any_item() {
    let c = users_cluster();
    let s = Scratch::new();
    playbook(&s, &db(&c), "SELECT name FROM nosuch", "");
    fails_before_items(
        &s,
        &[],
        &[
            "`each`",
            "its `for_each` query failed on wardstate (ward@127.0.0.1:",
            "relation \"nosuch\" does not exist",
            "fix `for_each.pg_query.sql`",
        ],
    );
    // A role that may log in but not read the table.
    c.psql(
        "postgres",
        &format!("CREATE ROLE reader LOGIN PASSWORD '{SECRET}'"),
    );
    playbook(
        &s,
        &db(&c).replace("user: ward", "user: reader"),
        "SELECT name, blocks FROM users",
        "",
    );
    fails_before_items(&s, &[], &["permission denied for table users"]);
    // A wrong password, and nothing listening on the port.
    playbook(&s, &db(&c), "SELECT name, blocks FROM users", "");
    fails_before_items(
        &s,
        &[("PGPASSWORD", "not-the-password")],
        &[
            "cannot connect to PostgreSQL on wardstate (ward@127.0.0.1:",
            "password authentication failed for user \"ward\"",
        ],
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    playbook(
        &s,
        &db(&c).replace(&c.port.to_string(), &closed.to_string()),
        "SELECT name, blocks FROM users",
        "",
    );
    fails_before_items(
        &s,
        &[],
        &[
            &format!("cannot connect to PostgreSQL on wardstate (ward@127.0.0.1:{closed})"),
            "check `for_each.pg_query.db`",
        ],
    );
    // More rows than the list limit (lowered for the test).
    playbook(
        &s,
        &db(&c),
        "SELECT 'user' || g AS name, g AS blocks FROM generate_series(1, 100) g",
        "",
    );
    fails_before_items(
        &s,
        &[("WARD_TEST_FOR_EACH_LIMIT", "500")],
        &[
            "gave rows of more than 500 bytes",
            "list fewer items per step",
        ],
    );
    // Under the limit, the same query lists its 100 rows.
    ward(&s).args(["run", "p.yml"]).run().expect_code(0);
    assert_eq!(journal(&s).len(), 100);
}

#[test]
fn validate_refuses_a_password_or_a_secret_in_db_and_a_missing_sql_with_their_place() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: shapes\nvars:\n  db_password: \"\"\nsteps:\n  \
         - id: a\n    for_each: { pg_query: { db: { dbname: app } } }\n    run: echo {{ item }}\n  \
         - id: b\n    for_each: { pg_query: { sql: SELECT 1, db: { dbname: \"host=h password=hunter2\" } } }\n    run: echo {{ item }}\n  \
         - id: c\n    for_each: { pg_query: { sql: SELECT 1, save: x.json } }\n    run: echo {{ item }}\n  \
         - id: d\n    for_each: { pg_query: { sql: \"SELECT {{ item }}\" } }\n    run: echo {{ item }}\n  \
         - id: e\n    for_each: { pg_query: { sql: SELECT 1, db: { dbname: \"{{ db_password }}\" } } }\n    run: echo {{ item }}\n",
    );
    let out = s
        .ward()
        .args(["validate", "p.yml", "--var", "db_password=hunter2secret"])
        .run()
        .expect_code(2);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(!text.contains("hunter2secret"), "{text}");
    for (place, words) in [
        ("p.yml:7:27", "`for_each.pg_query` in step `a` has no `sql`"),
        (
            "p.yml:10:48",
            "`for_each.pg_query.db` of step `b` holds a password",
        ),
        ("p.yml:13:44", "unknown key `save`"),
        (
            "p.yml:16:45",
            "undefined variable `item` in `for_each.pg_query.sql` of step `d`",
        ),
        ("p.yml:19:", "`for_each` of step `e` uses"),
    ] {
        assert!(text.contains(place), "no {place} in:\n{text}");
        assert!(text.contains(words), "no `{words}` in:\n{text}");
    }
}

/// Waits until ward's query runs on the server (its backend is `active`).
fn query_running(c: &Cluster) -> bool {
    c.psql(
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ward' \
         AND state = 'active'",
    ) == "1"
}

fn ward_backends(c: &Cluster) -> String {
    c.psql(
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ward'",
    )
}

#[test]
fn a_stop_and_a_timeout_cancel_a_slow_query() {
    let c = users_cluster();
    let s = Scratch::new();
    playbook(
        &s,
        &db(&c),
        "SELECT name, blocks FROM users, pg_sleep(60)",
        "    timeout: 3s\n",
    );
    let started = std::time::Instant::now();
    fails_before_items(
        &s,
        &[],
        &[
            "its `for_each` query on wardstate",
            "did not end within 3s; it was cancelled",
        ],
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(
        crate::harness::wait_for(5, || ward_backends(&c) == "0"),
        "the query still runs on the server"
    );
    // SIGTERM to ward while the query runs: ward does not wait for it, the
    // server no longer runs it, and the finalizer runs.
    playbook(
        &s,
        &db(&c),
        "SELECT name, blocks FROM users, pg_sleep(60)",
        "",
    );
    s.write(
        "p.yml",
        &format!(
            "{}  - id: fin\n    when: always\n    run: echo fin > fin.txt\n",
            s.read("p.yml")
        ),
    );
    let mut child = ward(&s).args(["run", "p.yml"]).spawn();
    assert!(
        crate::harness::wait_for(20, || query_running(&c)),
        "no query"
    );
    let started = std::time::Instant::now();
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(143), "{status:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "ward waited for the query ({:?})",
        started.elapsed()
    );
    assert!(s.path().join("fin.txt").exists(), "the finalizer ran");
    assert!(
        crate::harness::wait_for(5, || ward_backends(&c) == "0"),
        "the query still runs on the server"
    );
    assert!(journal(&s).is_empty());
    no_password(&s, &[]);
}
