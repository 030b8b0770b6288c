//! The PostgreSQL state store (`--state postgres://...`) against a real
//! server (Debian's `postgresql`, a fresh cluster per test): runs recorded
//! and read back by every read command, a `kill -9` and its resume, the
//! run lock as a lease row (refused with the holder named, taken after a
//! killed holder's lease expires), two wards migrating an empty database
//! at once, and a password that never shows.

use std::path::PathBuf;

use crate::harness::{Scratch, Ward, wait_for};
use crate::pg_cluster::Cluster;

/// The password of the state's role; must never be shown anywhere.
pub(crate) const SECRET: &str = "hunter2-PGSTATE-SECRET";

/// A cluster with a role `ward` (password [`SECRET`]) owning an empty
/// database `wardstate`.
pub(crate) fn cluster() -> Cluster {
    let c = Cluster::start();
    c.psql(
        "postgres",
        &format!("CREATE ROLE ward LOGIN PASSWORD '{SECRET}'"),
    );
    c.psql("postgres", "CREATE DATABASE wardstate OWNER ward");
    c
}

/// The state's address, without its password (that comes from `PGPASSWORD`).
pub(crate) fn address(c: &Cluster) -> String {
    format!("postgres://ward@127.0.0.1:{}/wardstate", c.port)
}

/// The local folder of the state in this scratch folder.
pub(crate) fn local(s: &Scratch) -> PathBuf {
    s.path().join("local")
}

/// `ward` in `s` on the PostgreSQL state.
pub(crate) fn ward(s: &Scratch, c: &Cluster) -> Ward {
    s.ward()
        .env("WARD_STATE", &address(c))
        .env("PGPASSWORD", SECRET)
        .env("WARD_STATE_FOLDER", &local(s).display().to_string())
}

fn status(s: &Scratch, c: &Cluster) -> serde_json::Value {
    ward(s, c)
        .args(["status", "--json"])
        .run()
        .expect_code(0)
        .json()
}

fn step_state(status: &serde_json::Value, id: &str) -> String {
    status["steps"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == id))
        .and_then(|x| x["state"].as_str())
        .unwrap_or("")
        .to_owned()
}

/// Every file under `dir`, as text (lossy).
pub(crate) fn all_files(dir: &std::path::Path, out: &mut Vec<(PathBuf, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            all_files(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
}

#[test]
fn a_run_is_recorded_in_postgres_and_every_read_command_reads_it() {
    let c = cluster();
    let s = Scratch::new();
    s.write("users.txt", "alice\nbob\ncarol\n");
    s.write(
        "p.yml",
        "ward: 1\nname: shared\nsteps:\n  \
         - id: first\n    run: echo first >> journal\n  \
         - id: each\n    needs: [first]\n    for_each: { lines: users.txt }\n    \
           run: echo {{ item | quote }} >> journal\n  \
         - id: last\n    needs: [each]\n    run: echo last-output\n",
    );
    let run = ward(&s, &c).args(["run", "p.yml"]).run().expect_code(0);
    let mut shown = vec![run.stdout.clone(), run.stderr.clone()];
    let st = status(&s, &c);
    assert_eq!(st["state"], "succeeded", "{st}");
    for id in ["first", "each", "last"] {
        assert_eq!(step_state(&st, id), "succeeded", "{st}");
    }
    let runs = ward(&s, &c)
        .args(["runs", "--json"])
        .run()
        .expect_code(0)
        .json();
    assert_eq!(runs.as_array().map(Vec::len), Some(1), "{runs}");
    let items = ward(&s, &c)
        .args(["items", "last", "--json"])
        .run()
        .expect_code(0)
        .json();
    let keys: Vec<&str> = items
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["key"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(keys, ["alice", "bob", "carol"], "{items}");
    let log = ward(&s, &c)
        .args(["log", "last", "last"])
        .run()
        .expect_code(0);
    assert!(log.stdout.contains("last-output"), "{}", log.stdout);
    shown.extend([log.stdout, log.stderr]);
    let text = ward(&s, &c).args(["status"]).run().expect_code(0);
    shown.extend([text.stdout, text.stderr]);
    // What PostgreSQL holds: the rows, in ward's own schema.
    assert_eq!(
        c.psql("wardstate", "SELECT version FROM ward.schema_version"),
        "7"
    );
    assert_eq!(
        c.psql("wardstate", "SELECT state FROM ward.runs"),
        "succeeded"
    );
    assert_eq!(c.psql("wardstate", "SELECT count(*) FROM ward.items"), "3");
    assert_eq!(
        c.psql(
            "wardstate",
            "SELECT name, expires_at <= now() FROM ward.leases"
        ),
        "shared|t",
        "the lease is released at the end"
    );
    // Logs stay in the local folder; nothing there, nor any output, holds
    // the password.
    assert!(local(&s).join("logs").is_dir());
    let mut files = Vec::new();
    all_files(&local(&s), &mut files);
    assert!(!files.is_empty());
    for (path, text) in &files {
        assert!(!text.contains(SECRET), "{}", path.display());
    }
    for text in &shown {
        assert!(!text.contains(SECRET), "{text}");
    }
    // Pruning reads and deletes in PostgreSQL (nothing is old enough here).
    let prune = ward(&s, &c).args(["prune", "--json"]).run().expect_code(0);
    assert!(!prune.stdout.contains(SECRET));
    assert_eq!(c.psql("wardstate", "SELECT count(*) FROM ward.runs"), "1");
    // A password in a `--state` address: warned about, never shown (here
    // in the error of a database that does not exist).
    let url = format!("postgres://ward:{SECRET}@127.0.0.1:{}/nosuchdb", c.port);
    let missing = ward(&s, &c).args(["status", "--state", &url]).run();
    assert_eq!(missing.code, 4, "{}", missing.stderr);
    assert!(
        missing.stderr.contains("holds a password"),
        "{}",
        missing.stderr
    );
    assert!(missing.stderr.contains("nosuchdb"), "{}", missing.stderr);
    assert!(!missing.stderr.contains(SECRET), "{}", missing.stderr);
    assert!(!missing.stdout.contains(SECRET), "{}", missing.stdout);
}

#[test]
fn read_commands_on_an_empty_database_create_nothing() {
    let c = cluster();
    let s = Scratch::new();
    let read = ward(&s, &c).args(["status"]).run();
    assert_eq!(read.code, 5, "{}", read.stderr);
    assert_eq!(
        c.psql(
            "wardstate",
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'ward'"
        ),
        "0"
    );
}

#[test]
fn a_kill_9_mid_run_then_resume_finishes_without_redoing_finished_steps() {
    let c = cluster();
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: crashy\nsteps:\n  \
         - id: a\n    run: echo a >> journal\n  \
         - id: b\n    needs: [a]\n    run: echo b >> journal; if [ ! -e again ]; then touch again; sleep 60; fi\n  \
         - id: c\n    needs: [b]\n    run: echo c >> journal\n",
    );
    let mut child = ward(&s, &c).args(["run", "p.yml"]).spawn();
    // b runs (it sleeps) and a's success is recorded (the scheduler may
    // start b just before that commit).
    assert!(
        wait_for(30, || s.read("journal").contains("b\n")
            && step_state(&status(&s, &c), "a") == "succeeded"),
        "b started"
    );
    child.kill().expect("kill -9");
    let _ = child.wait();
    let st = status(&s, &c);
    assert_eq!(st["state"], "running", "{st}");
    assert_eq!(step_state(&st, "a"), "succeeded");
    // The dead ward's lease: same host and boot, pid gone, so free at once.
    let resumed = ward(&s, &c).args(["resume", "--last"]).run();
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let st = status(&s, &c);
    assert_eq!(st["state"], "succeeded", "{st}");
    assert_eq!(s.read("journal"), "a\nb\nb\nc\n", "a ran once, b again");
}

/// Starts `p.yml` (its step `hold` sleeps) and waits until it holds the
/// lock and runs.
fn holder(s: &Scratch, c: &Cluster, boot: &str) -> std::process::Child {
    let child = ward(s, c)
        .args(["run", "p.yml"])
        .env("WARD_BOOT_ID", boot)
        .env("WARD_TEST_PG_LEASE_MS", "1500")
        .spawn();
    assert!(
        wait_for(30, || s.read("journal").contains("hold")),
        "holding"
    );
    child
}

const HOLD: &str = "ward: 1\nname: held\nlock: shared-lock\nsteps:\n  \
     - id: hold\n    run: echo hold >> journal; sleep 60\n";

#[test]
fn a_second_ward_is_refused_with_the_holder_named() {
    let c = cluster();
    let s = Scratch::new();
    s.write("p.yml", HOLD);
    let mut first = holder(&s, &c, "boot-1");
    let pid = first.id();
    // Longer than the lease: the heartbeat keeps it.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let second = ward(&s, &c)
        .args(["run", "p.yml"])
        .env("WARD_BOOT_ID", "boot-1")
        .run();
    assert_eq!(second.code, 3, "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains("another run holds the lock `shared-lock`: run "),
        "{}",
        second.stderr
    );
    assert!(
        second.stderr.contains(&format!("(pid {pid} on ")),
        "{}",
        second.stderr
    );
    first.kill().expect("kill");
    let _ = first.wait();
}

#[test]
fn a_lease_left_by_a_sigkilled_holder_of_another_host_is_taken_once_expired() {
    let c = cluster();
    let s = Scratch::new();
    s.write("p.yml", HOLD);
    let mut first = holder(&s, &c, "boot-of-host-a");
    first.kill().expect("kill -9");
    let _ = first.wait();
    // Another boot cannot tell whether the pid is alive: it waits for the
    // lease to expire.
    let early = ward(&s, &c)
        .args(["run", "p.yml"])
        .env("WARD_BOOT_ID", "boot-of-host-b")
        .run();
    assert_eq!(early.code, 3, "{}", early.stderr);
    std::thread::sleep(std::time::Duration::from_millis(1700));
    s.write("p.yml", &HOLD.replace("; sleep 60", ""));
    let late = ward(&s, &c)
        .args(["run", "p.yml"])
        .env("WARD_BOOT_ID", "boot-of-host-b")
        .run();
    assert_eq!(late.code, 0, "{}", late.stderr);
    // The dead run was found and recorded crashed.
    let runs = ward(&s, &c)
        .args(["runs", "--json"])
        .run()
        .expect_code(0)
        .json();
    let states: Vec<&str> = runs
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["state"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(states, ["succeeded", "crashed"], "{runs}");
}

#[test]
fn a_holder_whose_lease_was_taken_over_records_nothing_more() {
    let c = cluster();
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: held\nlock: shared-lock\nsteps:\n  \
         - id: hold\n    run: echo hold >> journal; sleep 4\n  \
         - id: after\n    needs: [hold]\n    run: echo after >> journal\n",
    );
    let first = holder(&s, &c, "boot-of-host-a");
    let pid = rustix::process::Pid::from_child(&first);
    // Frozen (as a host cut off would be): no heartbeat.
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("stop");
    std::thread::sleep(std::time::Duration::from_millis(1800));
    s.write("q.yml", "ward: 1\nname: taker\nlock: shared-lock\nsteps:\n  - id: x\n    run: echo taker >> journal\n");
    ward(&s, &c)
        .args(["run", "q.yml"])
        .env("WARD_BOOT_ID", "boot-of-host-b")
        .run()
        .expect_code(0);
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).expect("cont");
    let out = first.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("shared-lock"), "{stderr}");
    assert!(
        !s.read("journal").contains("after"),
        "{}",
        s.read("journal")
    );
}

#[test]
fn two_wards_on_an_empty_database_migrate_it_once() {
    let c = cluster();
    let s = Scratch::new();
    for name in ["one", "two"] {
        s.write(
            &format!("{name}.yml"),
            &format!("ward: 1\nname: {name}\nsteps:\n  - id: x\n    run: echo {name}\n"),
        );
    }
    let children: Vec<_> = ["one", "two"]
        .iter()
        .map(|n| ward(&s, &c).args(["run", &format!("{n}.yml")]).spawn())
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        c.psql(
            "wardstate",
            "SELECT count(*), max(version) FROM ward.schema_version"
        ),
        "1|7"
    );
    assert_eq!(c.psql("wardstate", "SELECT count(*) FROM ward.runs"), "2");
}

/// Restarts the cluster's server at once (as a crash and a restart would),
/// on the same port and socket folder.
fn restart(c: &Cluster) {
    c.stop_immediately();
    std::thread::sleep(std::time::Duration::from_millis(500));
    c.start_again();
}

#[test]
fn a_run_goes_on_when_postgresql_restarts_under_it() {
    let c = cluster();
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: restarted\nsteps:\n  \
         - id: a\n    run: echo a >> journal\n  \
         - id: b\n    needs: [a]\n    run: echo b >> journal; sleep 3\n  \
         - id: c\n    needs: [b]\n    run: echo c >> journal\n",
    );
    let child = ward(&s, &c).args(["run", "p.yml"]).spawn();
    assert!(wait_for(30, || s.read("journal").contains("b\n")), "b runs");
    restart(&c);
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(s.read("journal"), "a\nb\nc\n");
    let st = status(&s, &c);
    assert_eq!(st["state"], "succeeded", "{st}");
}

/// Makes a certificate authority and a server certificate for `localhost`
/// only (not `127.0.0.1`) in `dir`; returns the authority's PEM file.
fn certificates(dir: &std::path::Path, ca: &str) -> PathBuf {
    let sh = |script: &str| {
        crate::pg_cluster::run_ok(
            std::process::Command::new("sh")
                .args(["-ec", script])
                .current_dir(dir),
            script,
        )
    };
    sh(&format!(
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout {ca}.key -out {ca}.pem -days 2 \
         -subj /CN={ca} 2>/dev/null"
    ));
    sh(&format!(
        "openssl req -newkey rsa:2048 -nodes -keyout server-{ca}.key -out server.csr \
         -subj /CN=localhost 2>/dev/null; \
         printf 'subjectAltName=DNS:localhost\\nbasicConstraints=CA:FALSE\\n' > ext; \
         openssl x509 -req -in server.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial \
         -out server-{ca}.crt -days 2 -extfile ext 2>/dev/null"
    ));
    dir.join(format!("{ca}.pem"))
}

#[test]
fn tls_to_the_state_is_checked_as_sslmode_says() {
    let c = cluster();
    let s = Scratch::new();
    let certs = tempfile::tempdir().expect("tempdir");
    let ca = certificates(certs.path(), "ward-ca");
    let other_ca = certificates(certs.path(), "other-ca");
    // The server: its certificate, TLS on, plain TCP refused.
    for (from, to) in [
        ("server-ward-ca.crt", "server.crt"),
        ("server-ward-ca.key", "server.key"),
    ] {
        let dest = c.data().join(to);
        std::fs::copy(certs.path().join(from), &dest).expect("copy");
        crate::pg_cluster::run_ok(
            std::process::Command::new("chown")
                .arg("postgres:postgres")
                .arg(&dest),
            "chown",
        );
        crate::harness::chmod(&dest, 0o600);
    }
    std::fs::write(
        c.data().join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
    )
    .expect("pg_hba.conf");
    c.psql("postgres", "ALTER SYSTEM SET ssl = on");
    c.psql("postgres", "SELECT pg_reload_conf()");
    assert!(
        wait_for(10, || c.psql("postgres", "SHOW ssl") == "on"),
        "ssl on"
    );
    s.write(
        "p.yml",
        "ward: 1\nname: tls\nsteps:\n  - id: a\n    run: echo a\n",
    );
    let at =
        |host: &str, query: &str| format!("postgres://ward@{host}:{}/wardstate?{query}", c.port);
    let roots = |pem: &PathBuf| format!("sslrootcert={}", pem.display());
    let run = |address: String| {
        ward(&s, &c)
            .args(["run", "p.yml"])
            .env("WARD_STATE", &address)
            .run()
    };
    // Plain TCP is refused by the server: what works below is TLS.
    let plain = run(at("127.0.0.1", "sslmode=disable"));
    assert_eq!(plain.code, 4, "{}", plain.stderr);
    for ok in [
        at("localhost", &format!("sslmode=verify-full&{}", roots(&ca))),
        at("127.0.0.1", &format!("sslmode=verify-ca&{}", roots(&ca))),
        at("127.0.0.1", "sslmode=require"),
    ] {
        let r = run(ok.clone());
        assert_eq!(r.code, 0, "{ok}: {}", r.stderr);
    }
    // The certificate names `localhost`, not the address; another
    // authority signed nothing here.
    for (bad, why) in [
        (
            at("127.0.0.1", &format!("sslmode=verify-full&{}", roots(&ca))),
            "",
        ),
        (
            at(
                "localhost",
                &format!("sslmode=verify-ca&{}", roots(&other_ca)),
            ),
            "",
        ),
    ] {
        let r = run(bad.clone());
        assert_eq!(r.code, 4, "{bad}: {}", r.stderr);
        assert!(r.stderr.contains("cannot connect"), "{why}{}", r.stderr);
    }
    let runs = ward(&s, &c)
        .args(["runs", "--json"])
        .env(
            "WARD_STATE",
            &at("localhost", &format!("sslmode=verify-full&{}", roots(&ca))),
        )
        .run()
        .expect_code(0)
        .json();
    assert_eq!(runs.as_array().map(Vec::len), Some(3), "{runs}");
}

/// `ward pause` and `ward retry` from other processes reach a ward running
/// on PostgreSQL while its fan-out step goes on: the paused item does not
/// run, the retried one runs again in the same run, each recorded once.
#[test]
fn pause_and_retry_from_other_processes_reach_the_running_ward_on_postgres() {
    let c = cluster();
    let s = Scratch::new();
    // One at a time, in list order: `f` fails until `fixed` exists, then
    // `slow` holds the step until `go` exists, with `p` still pending.
    s.write(
        "p.yml",
        "ward: 1\nname: ctl\nsteps:\n  - id: each\n    for_each: [f, slow, p]\n    \
         max_parallel: 1\n    run: |\n      if [ {{ item }} = f ] && [ ! -e fixed ]; then \
         exit 3; fi\n      if [ {{ item }} = slow ]; then while [ ! -e go ]; do sleep 0.05; \
         done; fi\n      echo {{ item }} >> journal\n",
    );
    let state = |key: &str| crate::fanout_control::item_state(ward(&s, &c), key);
    let journal = || std::fs::read_to_string(s.path().join("journal")).unwrap_or_default();
    let mut run = ward(&s, &c).args(["run", "p.yml"]).spawn();
    assert!(wait_for(20, || state("slow") == "running"));
    assert_eq!(state("f"), "failed");
    ward(&s, &c)
        .args(["pause", "last", "p"])
        .run()
        .expect_code(0);
    s.write("fixed", "");
    ward(&s, &c)
        .args(["retry", "last", "f"])
        .run()
        .expect_code(0);
    std::fs::write(s.path().join("go"), "").expect("go");
    // The running ward ran `f` again after `slow` and left `p` alone: only
    // the paused item is left, exit 10.
    assert_eq!(run.wait().expect("ward ends").code(), Some(10));
    assert_eq!(journal(), "slow\nf\n");
    assert_eq!(state("f"), "succeeded");
    assert_eq!(state("p"), "paused");
}
