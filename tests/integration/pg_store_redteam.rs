//! Red-team tests of the PostgreSQL state store: a password that must not
//! reach the processes ward starts or the mails it sends, ids and item
//! keys made of quotes and backslashes, a `ward` schema made by a DBA or
//! by a newer ward, and read commands under a read-only role.

use crate::harness::Scratch;
use crate::pg_cluster::Cluster;
use crate::pg_store::{SECRET, address, cluster, local, ward};

/// A password given in `$WARD_STATE` itself (no `PGPASSWORD`): a `run:`
/// step's environment must not hold it.
#[test]
fn a_password_in_ward_state_does_not_reach_a_run_step() {
    let c = cluster();
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: envdump\nsteps:\n  - id: dump\n    run: env > step-env.txt\n",
    );
    let url = format!("postgres://ward:{SECRET}@127.0.0.1:{}/wardstate", c.port);
    let out = s
        .ward()
        .env("WARD_STATE", &url)
        .env("WARD_STATE_FOLDER", &local(&s).display().to_string())
        .args(["run", "p.yml"])
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains(SECRET), "{}", out.stderr);
    let env = s.read("step-env.txt");
    assert!(!env.is_empty());
    assert!(
        !env.contains(SECRET),
        "a step sees the state's password:\n{env}"
    );
}

/// A failed run's notification names the commands to resume it, with the
/// `--state` ward was given: an address with its password masked, and not
/// made into a path.
#[test]
fn a_notification_never_holds_the_state_password() {
    let c = cluster();
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: mailed\nnotify:\n  command:\n    cmd: [sh, -c, 'cat > hook.json']\n    \
         on: [failure]\nsteps:\n  - id: bad\n    run: exit 3\n",
    );
    let url = format!("postgres://ward:{SECRET}@127.0.0.1:{}/wardstate", c.port);
    let out = s
        .ward()
        .env("WARD_STATE_FOLDER", &local(&s).display().to_string())
        .args(["run", "--state", &url, "p.yml"])
        .run();
    assert_ne!(out.code, 0, "{}", out.stderr);
    let hook = s.read("hook.json");
    assert!(hook.contains("ward resume"), "{hook}");
    assert!(
        !hook.contains(SECRET),
        "the summary holds the password:\n{hook}"
    );
    assert!(
        hook.contains("--state 'postgres://ward:********@127.0.0.1"),
        "the address is kept an address:\n{hook}"
    );
}

/// Step ids, a lock name and item keys with quotes, backslashes, `$$`,
/// SQL comments and non-ASCII text are stored and read back as they are.
#[test]
fn hostile_ids_and_item_keys_are_stored_as_data() {
    let c = cluster();
    let s = Scratch::new();
    let keys = [
        "o'brien",
        "back\\slash",
        "x'); DROP TABLE ward.runs; --",
        "$$dollar$$",
        "caf\u{e9} \u{1f600}",
        "\"quoted\"",
    ];
    s.write("keys.txt", &(keys.join("\n") + "\n"));
    s.write(
        "p.yml",
        "ward: 1\nname: evil\nsteps:\n  \
         - id: each\n    for_each: { lines: keys.txt }\n    run: printf '%s\\n' {{ item | quote }} >> journal\n",
    );
    let run = ward(&s, &c).args(["run", "p.yml"]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let items = ward(&s, &c)
        .args(["items", "last", "--json"])
        .run()
        .expect_code(0)
        .json();
    let got: Vec<&str> = items
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["key"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(got, keys, "{items}");
    assert_eq!(c.psql("wardstate", "SELECT count(*) FROM ward.runs"), "1");
    // A run id given by hand, quotes and all, is looked up as data.
    let odd = ward(&s, &c).args(["status", "x' OR '1'='1"]).run();
    assert_ne!(odd.code, 0, "{}", odd.stdout);
    let st = ward(&s, &c)
        .args(["status", "--json"])
        .run()
        .expect_code(0)
        .json();
    assert_eq!(st["state"], "succeeded", "{st}");
}

/// A DBA who may not give ward `CREATE` on the database makes an empty
/// schema `ward` owned by ward's role: that is ward's to fill, not a
/// foreign schema.
#[test]
fn an_empty_ward_schema_made_by_a_dba_is_used() {
    let c = Cluster::start();
    c.psql(
        "postgres",
        &format!("CREATE ROLE ward LOGIN PASSWORD '{SECRET}'"),
    );
    c.psql("postgres", "CREATE DATABASE wardstate");
    c.psql(
        "wardstate",
        "REVOKE CREATE ON DATABASE wardstate FROM PUBLIC; \
         CREATE SCHEMA ward AUTHORIZATION ward",
    );
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: n\nsteps:\n  - id: x\n    run: \"true\"\n",
    );
    // Read commands still find no state there, and create nothing.
    let read = ward(&s, &c).args(["status"]).run();
    assert_eq!(read.code, 5, "{}", read.stderr);
    assert_eq!(
        c.psql(
            "wardstate",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'ward'"
        ),
        "0"
    );
    let run = ward(&s, &c).args(["run", "p.yml"]).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(c.psql("wardstate", "SELECT count(*) FROM ward.runs"), "1");
}

/// A schema `ward` of another program (tables, no version table) and a
/// schema of a newer ward: refused in words, nothing changed.
#[test]
fn a_foreign_or_newer_ward_schema_is_refused_and_left_alone() {
    let c = cluster();
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: n\nsteps:\n  - id: x\n    run: \"true\"\n",
    );
    c.psql(
        "wardstate",
        "SET ROLE ward; CREATE SCHEMA ward; CREATE TABLE ward.runs (id int); \
         CREATE TABLE ward.schema_version (version BIGINT NOT NULL)",
    );
    // An empty version table beside another program's tables.
    let run = ward(&s, &c).args(["run", "p.yml"]).run();
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr.contains("holds tables ward did not make"),
        "{}",
        run.stderr
    );
    assert_eq!(
        c.psql(
            "wardstate",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'ward'"
        ),
        "2",
        "{}",
        run.stderr
    );
    assert_eq!(
        c.psql("wardstate", "SELECT count(*) FROM ward.schema_version"),
        "0"
    );
    // A newer ward's schema.
    c.psql("wardstate", "DROP SCHEMA ward CASCADE");
    ward(&s, &c).args(["run", "p.yml"]).run().expect_code(0);
    c.psql("wardstate", "UPDATE ward.schema_version SET version = 99");
    for args in [vec!["run", "p.yml"], vec!["status"], vec!["runs"]] {
        let out = ward(&s, &c).args(&args).run();
        assert_ne!(out.code, 0, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("99"), "{args:?}: {}", out.stderr);
    }
    assert_eq!(c.psql("wardstate", "SELECT count(*) FROM ward.runs"), "1");
    assert_eq!(
        c.psql("wardstate", "SELECT version FROM ward.schema_version"),
        "99"
    );
}

/// A read-only role (`SELECT` only, in a read-only transaction by
/// default): every read command works.
#[test]
fn read_commands_work_for_a_read_only_role() {
    let c = cluster();
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: n\nsteps:\n  - id: x\n    run: echo out\n  \
         - id: each\n    needs: [x]\n    for_each: { lines: ab.txt }\n    run: echo {{ item }}\n",
    );
    s.write("ab.txt", "a\nb\n");
    ward(&s, &c).args(["run", "p.yml"]).run().expect_code(0);
    read_only_role(&c);
    let before = c.psql("wardstate", "SELECT count(*), max(seq) FROM ward.events");
    let reader = |args: &[&str]| as_reader(&s, &c).args(args).run();
    for args in [
        vec!["status", "--json"],
        vec!["status"],
        vec!["runs"],
        vec!["runs", "--json"],
        vec!["log", "last", "x"],
        vec!["items", "last", "--json"],
    ] {
        let out = reader(&args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }
    assert_eq!(
        c.psql("wardstate", "SELECT count(*), max(seq) FROM ward.events"),
        before
    );
}

/// A role `reader` (password `readerpw`) that may read ward's tables
/// and whose transactions are read-only.
fn read_only_role(c: &Cluster) {
    c.psql(
        "postgres",
        "CREATE ROLE reader LOGIN PASSWORD 'readerpw'; \
         ALTER ROLE reader SET default_transaction_read_only = on",
    );
    c.psql(
        "wardstate",
        "GRANT USAGE ON SCHEMA ward TO reader; GRANT SELECT ON ALL TABLES IN SCHEMA ward TO reader",
    );
}

/// `ward` in `s` on the state as the role of [`read_only_role`].
fn as_reader(s: &Scratch, c: &Cluster) -> crate::harness::Ward {
    s.ward()
        .env(
            "WARD_STATE",
            &format!("postgres://reader@127.0.0.1:{}/wardstate", c.port),
        )
        .env("PGPASSWORD", "readerpw")
        .env("WARD_STATE_FOLDER", &local(s).display().to_string())
}

/// PostgreSQL stopped for longer than the reconnect budget while a step
/// runs: ward stops with the state error's exit code, its `when: always`
/// step still runs, the password never shows; once PostgreSQL is back,
/// `ward resume` finishes without redoing what was recorded done.
#[test]
fn postgresql_down_past_the_reconnect_budget_then_resume() {
    let c = cluster();
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: outage\nsteps:\n  \
         - id: stop\n    run: echo stop >> journal\n  \
         - id: work\n    needs: [stop]\n    run: echo work >> journal; touch work.started; \
           while [ ! -f release ]; do sleep 0.05; done\n  \
         - id: start\n    after: [stop, work]\n    when: always\n    run: echo start >> journal\n",
    );
    let child = ward(&s, &c).args(["run", "p.yml"]).spawn();
    assert!(
        crate::harness::wait_for(30, || s.path().join("work.started").exists()),
        "work runs"
    );
    // `stop`'s success is committed (the scheduler may start `work` just
    // before that commit).
    assert!(
        crate::harness::wait_for(30, || {
            let st = ward(&s, &c).args(["status", "--json"]).run();
            st.code == 0 && crate::harness::status_step(&st.json(), "stop")["state"] == "succeeded"
        }),
        "stop recorded"
    );
    c.stop_immediately();
    s.write("release", "");
    let t0 = std::time::Instant::now();
    let out = child.wait_with_output().expect("wait");
    let took = t0.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!(
        "ward ended after {took:?}: {:?}\n{stderr}",
        out.status.code()
    );
    assert!(!stderr.contains(SECRET), "{stderr}");
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        s.read("journal").contains("start\n"),
        "the finalizer ran: {}",
        s.read("journal")
    );
    c.start_again();
    // Recorded: `stop` done, `work` running (its end not recorded).
    assert_eq!(
        c.psql(
            "wardstate",
            "SELECT step_id, state FROM ward.steps ORDER BY step_id"
        ),
        "start|pending\nstop|succeeded\nwork|running"
    );
    let resumed = ward(&s, &c).args(["resume", "--last"]).run();
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    // The finalizer ran after ward lost its state, so its window (`stop`,
    // `work`) runs again and is closed again (docs/cli.md, `resume`).
    assert_eq!(s.read("journal"), "stop\nwork\nstart\nstop\nwork\nstart\n");
    let st = ward(&s, &c)
        .args(["status", "--json"])
        .run()
        .expect_code(0)
        .json();
    assert_eq!(st["state"], "succeeded", "{st}");
}

/// Another host takes the run lock (here: the row rewritten, as a taker
/// whose clock saw the lease expire would) while a step of the holder
/// runs: the holder must not go on working under a lock it lost. Its
/// running step is stopped (not left to finish beside the new holder's
/// run), nothing more is recorded, and it exits non-zero naming the lock.
#[test]
fn a_holder_that_loses_its_lease_stops_its_running_step() {
    let c = cluster();
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: held\nlock: shared-lock\nsteps:\n  \
         - id: hold\n    run: echo hold >> journal; sleep 6; echo hold-end >> journal\n  \
         - id: after\n    needs: [hold]\n    run: echo after >> journal\n",
    );
    let child = ward(&s, &c)
        .args(["run", "p.yml"])
        .env("WARD_TEST_PG_LEASE_MS", "1200")
        .spawn();
    assert!(
        crate::harness::wait_for(30, || s.read("journal").contains("hold")),
        "holding"
    );
    c.psql(
        "wardstate",
        "UPDATE ward.leases SET run_id = 'other-run', host = 'host-b', pid = 1, \
         token = token + 1, expires_at = now() + interval '1 hour'",
    );
    let t0 = std::time::Instant::now();
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!(
        "ended after {:?}: {:?}\n{stderr}",
        t0.elapsed(),
        out.status.code()
    );
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("shared-lock"), "{stderr}");
    assert!(
        stderr.contains("other-run"),
        "the new holder is named: {stderr}"
    );
    let journal = s.read("journal");
    assert!(!journal.contains("after"), "{journal}");
    assert!(
        !journal.contains("hold-end"),
        "the step went on under a lost lock: {journal}"
    );
}

/// A password with `@`, `/`, `:` and `%` in the address itself (raw and
/// percent-encoded forms), and a wrong one: never in any output, the
/// local folder, or a `run:` step's command line.
#[test]
fn an_odd_password_in_the_address_never_shows() {
    let c = Cluster::start();
    let pw = "p@ss/w:rd%Z-odd";
    c.psql(
        "postgres",
        &format!("CREATE ROLE ward LOGIN PASSWORD '{pw}'"),
    );
    c.psql("postgres", "CREATE DATABASE wardstate OWNER ward");
    password_auth(&c);
    let encoded = "p%40ss%2Fw%3Ard%25Z-odd";
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: odd\nsteps:\n  - id: x\n    run: ps -eo args > ps.txt; echo out\n  \
         - id: bad\n    needs: [x]\n    run: exit 1\n",
    );
    let url = format!("postgres://ward:{encoded}@127.0.0.1:{}/wardstate", c.port);
    let wrong = format!(
        "postgres://ward:WRONG-{encoded}@127.0.0.1:{}/wardstate",
        c.port
    );
    let folder = local(&s).display().to_string();
    let w = |url: &str, args: &[&str]| {
        s.ward()
            .env("WARD_STATE_FOLDER", &folder)
            .arg(args[0])
            .arg("--state")
            .arg(url)
            .args(&args[1..])
            .run()
    };
    let mut shown = Vec::new();
    let run = w(&url, &["run", "p.yml"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    shown.push(run);
    for args in [
        vec!["status", "--json"],
        vec!["status"],
        vec!["runs", "--json"],
        vec!["log", "last", "x"],
        vec!["items", "last"],
    ] {
        shown.push(w(&url, &args));
    }
    let bad = w(&wrong, &["status"]);
    assert_eq!(bad.code, 4, "{}", bad.stderr);
    assert!(bad.stderr.contains("password"), "{}", bad.stderr);
    shown.push(bad);
    let mut files = Vec::new();
    crate::pg_store::all_files(&local(&s), &mut files);
    let ps = s.read("ps.txt");
    for secret in [pw, encoded, "WRONG-", "w:rd"] {
        for out in &shown {
            assert!(!out.stdout.contains(secret), "{secret}: {}", out.stdout);
            assert!(!out.stderr.contains(secret), "{secret}: {}", out.stderr);
        }
        for (path, text) in &files {
            assert!(!text.contains(secret), "{secret} in {}", path.display());
        }
        // ward's own argv holds it (documented); a step's must not.
        for line in ps.lines().filter(|l| !l.contains("target/debug/ward")) {
            assert!(!line.contains(secret), "{secret} in ps: {line}");
        }
    }
}

/// TCP connections of every role but the superuser check the password
/// (the test cluster trusts everyone otherwise, so a wrong password would
/// pass); psql, over the socket, still gets in.
fn password_auth(c: &Cluster) {
    let hba = "local all all trust\nhost all postgres 127.0.0.1/32 trust\n\
               host all all 127.0.0.1/32 scram-sha-256\n";
    std::fs::write(c.data().join("pg_hba.conf"), hba).expect("pg_hba.conf");
    c.psql("postgres", "SELECT pg_reload_conf()");
}

/// Four wards of one playbook started at once as four hosts (each its own
/// boot id and local folder): exactly one runs, each other exits 3 naming
/// the holder's run.
#[test]
fn four_hosts_starting_at_once_run_exactly_one() {
    let c = cluster();
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: raced\nlock: shared-lock\nsteps:\n  \
         - id: x\n    run: echo \"$WARD_RUN_ID\" >> journal; sleep 2\n",
    );
    // The database exists before the race (the migration race is tested
    // elsewhere).
    s.write(
        "warm.yml",
        "ward: 1\nname: warm\nsteps:\n  - id: x\n    run: \"true\"\n",
    );
    ward(&s, &c).args(["run", "warm.yml"]).run().expect_code(0);
    let children: Vec<_> = (0..4)
        .map(|i| {
            ward(&s, &c)
                .env("WARD_BOOT_ID", &format!("boot-{i}"))
                .env(
                    "WARD_STATE_FOLDER",
                    &s.path().join(format!("host{i}")).display().to_string(),
                )
                .args(["run", "p.yml"])
                .spawn()
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect();
    let codes: Vec<_> = outs.iter().map(|o| o.status.code()).collect();
    assert_eq!(
        codes.iter().filter(|c| **c == Some(0)).count(),
        1,
        "{codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| **c == Some(3)).count(),
        3,
        "{codes:?}"
    );
    let journal = s.read("journal");
    assert_eq!(journal.lines().count(), 1, "{journal}");
    let winner = journal.trim();
    for o in outs.iter().filter(|o| o.status.code() == Some(3)) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&format!("run {winner}")), "{err}");
    }
    assert_eq!(
        c.psql(
            "wardstate",
            "SELECT count(*) FROM ward.runs WHERE playbook_name = 'raced'"
        ),
        "1"
    );
}

/// A fan-out of 500 items on PostgreSQL: each item recorded once, and
/// `ward status` counts them.
#[test]
fn a_fan_out_of_500_items_is_recorded_once_each() {
    let c = cluster();
    let s = Scratch::new();
    let keys: Vec<String> = (0..500).map(|i| format!("item-{i:03}")).collect();
    s.write("keys.txt", &(keys.join("\n") + "\n"));
    s.write(
        "p.yml",
        "ward: 1\nname: wide\nsteps:\n  \
         - id: each\n    for_each: { lines: keys.txt }\n    run: echo {{ item | quote }} >> journal\n",
    );
    let t0 = std::time::Instant::now();
    let run = ward(&s, &c).args(["run", "p.yml"]).run();
    let took = t0.elapsed();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("500 items on PostgreSQL: {took:?} (load average {load})");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(s.read("journal").lines().count(), 500);
    assert_eq!(
        c.psql(
            "wardstate",
            "SELECT count(*), count(DISTINCT item_key), sum(attempts) FROM ward.items WHERE state = 'succeeded'"
        ),
        "500|500|500"
    );
    let st = ward(&s, &c)
        .args(["status", "--json"])
        .run()
        .expect_code(0)
        .json();
    assert_eq!(st["state"], "succeeded", "{st}");
    let text = ward(&s, &c).args(["status"]).run().expect_code(0);
    assert!(text.stdout.contains("500"), "{}", text.stdout);
}

/// `kill -9` of ward while it commits item after item, then `ward
/// resume`: every item ends recorded once, and no item recorded succeeded
/// before the kill runs again.
#[test]
fn a_kill_9_among_item_commits_then_resume_redoes_no_recorded_item() {
    let c = cluster();
    let s = Scratch::new();
    let keys: Vec<String> = (0..300).map(|i| format!("k{i:03}")).collect();
    s.write("keys.txt", &(keys.join("\n") + "\n"));
    s.write(
        "p.yml",
        "ward: 1\nname: killed\nsteps:\n  \
         - id: each\n    for_each: { lines: keys.txt }\n    run: echo {{ item | quote }} >> journal\n  \
         - id: last\n    needs: [each]\n    run: echo last >> journal\n",
    );
    let mut child = ward(&s, &c).args(["run", "p.yml"]).spawn();
    assert!(
        crate::harness::wait_for(60, || s.read("journal").lines().count() >= 120),
        "items run"
    );
    child.kill().expect("kill -9");
    let _ = child.wait();
    let done: Vec<String> = c
        .psql(
            "wardstate",
            "SELECT item_key FROM ward.items WHERE state = 'succeeded' ORDER BY item_key",
        )
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(!done.is_empty());
    let resumed = ward(&s, &c).args(["resume", "--last"]).run();
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let journal = s.read("journal");
    for key in &done {
        let n = journal.lines().filter(|l| l == key).count();
        assert_eq!(n, 1, "{key} recorded done before the kill ran {n} times");
    }
    for key in &keys {
        let n = journal.lines().filter(|l| l == key).count();
        assert!((1..=2).contains(&n), "{key} ran {n} times");
    }
    assert_eq!(
        c.psql(
            "wardstate",
            "SELECT count(*), count(*) FILTER (WHERE state = 'succeeded') FROM ward.items"
        ),
        "300|300"
    );
    assert_eq!(
        c.psql("wardstate", "SELECT state FROM ward.runs"),
        "succeeded"
    );
}

/// Two containers of one machine share its boot id and may share its
/// host name (`--uts=host`, a pod on the host's network), but not their
/// pids: a ward in another pid namespace must not take a live holder's
/// lock because that pid number is free in its own namespace.
#[test]
fn a_ward_in_another_pid_namespace_does_not_take_a_live_holders_lock() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: unshare --pid needs root");
        return;
    }
    let c = cluster();
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: held\nlock: shared-lock\nsteps:\n  \
         - id: hold\n    run: echo hold >> journal; sleep 30\n",
    );
    let mut first = ward(&s, &c)
        .env("WARD_BOOT_ID", "one-machine")
        .args(["run", "p.yml"])
        .spawn();
    assert!(
        crate::harness::wait_for(30, || s.read("journal").contains("hold")),
        "holding"
    );
    let second = s
        .ward_via(&["unshare", "--pid", "--fork", "--mount-proc"])
        .env("WARD_STATE", &address(&c))
        .env("PGPASSWORD", SECRET)
        .env(
            "WARD_STATE_FOLDER",
            &s.path().join("container-b").display().to_string(),
        )
        .env("WARD_BOOT_ID", "one-machine")
        .args(["run", "p.yml"])
        .run();
    first.kill().expect("kill");
    let _ = first.wait();
    assert_eq!(second.code, 3, "{}", second.stderr);
    assert_eq!(s.read("journal"), "hold\n");
}

/// A run left `running` by a `kill -9`, read by a read-only role: the
/// read commands say so without trying to record anything (nor does a
/// `ward pause` that finds nothing to pause), and no password shows.
#[test]
fn a_read_only_role_reads_a_crashed_run_and_is_refused_writes() {
    let c = cluster();
    let s = Scratch::new();
    let keys: String = ('a'..='t').map(|k| format!("{k}\n")).collect();
    s.write("keys.txt", &keys);
    s.write(
        "p.yml",
        "ward: 1\nname: n\nsteps:\n  - id: x\n    run: echo x >> journal\n  \
         - id: each\n    needs: [x]\n    for_each: { lines: keys.txt }\n    \
           run: echo {{ item }} >> journal; sleep 30\n",
    );
    let mut child = ward(&s, &c).args(["run", "p.yml"]).spawn();
    assert!(crate::harness::wait_for(30, || s
        .read("journal")
        .contains("a")));
    child.kill().expect("kill -9");
    let _ = child.wait();
    read_only_role(&c);
    let before = c.psql(
        "wardstate",
        "SELECT count(*), max(seq), (SELECT string_agg(state, ',') FROM ward.runs) FROM ward.events",
    );
    let reader = |args: &[&str]| as_reader(&s, &c).args(args).run();
    for args in [
        vec!["status", "--json"],
        vec!["status"],
        vec!["runs"],
        vec!["log", "last", "x"],
    ] {
        let out = reader(&args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }
    let pause = reader(&["pause", "last", "t"]);
    assert_ne!(pause.code, 0, "{}", pause.stdout);
    assert!(!pause.stderr.contains("readerpw"), "{}", pause.stderr);
    eprintln!("pause as reader: {} {}", pause.code, pause.stderr);
    assert_eq!(
        c.psql(
            "wardstate",
            "SELECT count(*), max(seq), (SELECT string_agg(state, ',') FROM ward.runs) FROM ward.events",
        ),
        before
    );
}

/// Other programs' `ward.schema_version` tables: a text column, and a
/// version row without ward's tables. Refused (or failed) in words,
/// nothing changed, nothing created.
#[test]
fn odd_version_tables_are_refused_and_left_alone() {
    let c = cluster();
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: n\nsteps:\n  - id: x\n    run: \"true\"\n",
    );
    c.psql(
        "wardstate",
        "SET ROLE ward; CREATE SCHEMA ward; \
         CREATE TABLE ward.schema_version (version TEXT); \
         INSERT INTO ward.schema_version VALUES ('v2')",
    );
    let tables = || {
        c.psql(
            "wardstate",
            "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'ward'",
        )
    };
    for args in [vec!["run", "p.yml"], vec!["status"]] {
        let out = ward(&s, &c).args(&args).run();
        eprintln!("{args:?} text version: {} {}", out.code, out.stderr);
        assert_eq!(out.code, 4, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains("schema_version"), "{}", out.stderr);
    }
    assert_eq!(tables(), "schema_version");
    c.psql(
        "wardstate",
        "DROP TABLE ward.schema_version; \
         CREATE TABLE ward.schema_version (version BIGINT NOT NULL); \
         INSERT INTO ward.schema_version VALUES (6); ALTER TABLE ward.schema_version OWNER TO ward",
    );
    for args in [vec!["run", "p.yml"], vec!["status"]] {
        let out = ward(&s, &c).args(&args).run();
        eprintln!("{args:?} version 6, no tables: {} {}", out.code, out.stderr);
        assert_ne!(out.code, 0, "{args:?}: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    }
    assert_eq!(tables(), "schema_version");
}

/// A NUL byte in an item's line: PostgreSQL's text cannot hold one. The
/// run must not lose its state over it (as it would if the INSERT failed):
/// either the playbook refuses the line before anything runs, or the item
/// is stored and read back.
#[test]
fn an_item_key_with_a_nul_byte_does_not_lose_the_state() {
    let c = cluster();
    let s = Scratch::new();
    std::fs::write(s.path().join("keys.txt"), b"a\nb\0c\n").expect("write");
    s.write(
        "p.yml",
        "ward: 1\nname: nul\nsteps:\n  \
         - id: each\n    for_each: { lines: keys.txt }\n    run: echo item >> journal\n",
    );
    let run = ward(&s, &c).args(["run", "p.yml"]).run();
    eprintln!("NUL item: {} {}", run.code, run.stderr);
    assert!(
        !run.stderr.contains("could not be recorded"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("0x00"), "{}", run.stderr);
    // The item cannot start (no NUL in an argument), so the run failed,
    // and that is recorded.
    assert_eq!(run.code, 10, "{}", run.stderr);
    assert_eq!(c.psql("wardstate", "SELECT state FROM ward.runs"), "failed");
    assert_eq!(
        c.psql(
            "wardstate",
            "SELECT count(*) FROM ward.items WHERE item_key = 'b' || chr(65533) || 'c'"
        ),
        "1"
    );
}
