//! `workers:` steps and `ward worker` against a real PostgreSQL (a fresh
//! cluster per test), each worker a separate process: three workers share
//! a step and one is killed with SIGKILL mid-item (its items are claimed
//! again once its lease ran out, each item succeeds exactly once in the
//! record and never runs twice at once); tags and priority; PostgreSQL
//! restarted under running workers; a local state refused.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Child;
use std::time::Duration;

use crate::harness::{Scratch, wait_for};
use crate::pg_cluster::Cluster;
use crate::pg_store::{cluster, ward};

/// The claims of `run`, as rows `(item, worker, attempt, kind, state)`.
pub(crate) fn claims(c: &Cluster, run: &str) -> Vec<(String, String, u32, String, String)> {
    c.psql(
        "wardstate",
        &format!(
            "SELECT item_key || '|' || worker || '|' || attempt || '|' || kind || '|' || \
             coalesce(state, '') FROM ward.claims WHERE run_id = '{run}' ORDER BY seq"
        ),
    )
    .lines()
    .filter(|l| !l.trim().is_empty())
    .map(|l| {
        let f: Vec<&str> = l.trim().split('|').collect();
        (
            f[0].to_owned(),
            f[1].to_owned(),
            f[2].parse().unwrap_or(0),
            f[3].to_owned(),
            f[4].to_owned(),
        )
    })
    .collect()
}

/// A lease short enough that a dead or frozen worker's claims run out
/// soon in a test (not shorter: a worker gives up after half of it without
/// a renewal, which a loaded CI machine must not reach).
const SHORT_LEASE: (&str, &str) = ("WARD_TEST_PG_LEASE_MS", "5000");

/// `ward run p.yml` with the short lease, once it opened its offer; its id.
pub(crate) fn short_lease_run(s: &Scratch, c: &Cluster) -> (Child, String) {
    let run = ward(s, c)
        .env(SHORT_LEASE.0, SHORT_LEASE.1)
        .args(["run", "p.yml"])
        .spawn();
    (run, offered(s, c))
}

/// `ward worker --run id` with the short lease and a 2 s kill grace.
pub(crate) fn short_lease_worker(s: &Scratch, c: &Cluster, id: &str) -> Child {
    ward(s, c)
        .env(SHORT_LEASE.0, SHORT_LEASE.1)
        .env("WARD_KILL_GRACE", "2s")
        .args(["worker", "--run", id])
        .spawn()
}

/// Waits for the run (the only one) to open its step's offer; its id.
pub(crate) fn offered(s: &Scratch, c: &Cluster) -> String {
    let mut id = String::new();
    assert!(
        wait_for(30, || {
            let runs = ward(s, c).args(["runs", "--json"]).run();
            if runs.code != 0 {
                return false;
            }
            id = runs.json()[0]["id"].as_str().unwrap_or_default().to_owned();
            !id.is_empty()
                && c.psql(
                    "wardstate",
                    &format!("SELECT count(*) FROM ward.offers WHERE run_id = '{id}'"),
                )
                .trim()
                    == "1"
        }),
        "the run opens its offer"
    );
    id
}

pub(crate) fn item_states(s: &Scratch, c: &Cluster, run: &str) -> BTreeMap<String, String> {
    let items = ward(s, c)
        .args(["items", run, "--json"])
        .run()
        .expect_code(0)
        .json();
    items
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    (
                        i["key"].as_str().unwrap_or("").to_owned(),
                        i["state"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits for `child` at most `secs`; its exit code.
pub(crate) fn finish(child: Child, secs: u64) -> (Option<i32>, String) {
    let pid = child.id();
    let guard = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(secs));
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    });
    let out = child.wait_with_output().expect("wait");
    drop(guard);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A playbook whose step `copy` hands `n` items to workers; each item
/// takes a lock folder (so two attempts at once would fail: `mkdir`
/// refuses), sleeps `secs`, and writes its mark. A stopped attempt gives
/// the lock back (its trap) before it ends.
pub(crate) fn playbook(s: &Scratch, n: usize, secs: &str, extra: &str) {
    let items: String = (1..=n).map(|i| format!("i{i:02}\n")).collect();
    s.write("items.txt", &items);
    std::fs::create_dir_all(s.path().join("locks")).expect("locks");
    std::fs::create_dir_all(s.path().join("done")).expect("done");
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: fleet\nsteps:\n  \
             - id: copy\n    for_each: {{ lines: items.txt }}\n    max_parallel: 3\n{extra}    \
             run: |\n      mkdir locks/{{{{ item }}}} || exit 99\n      \
             trap 'rmdir locks/{{{{ item }}}}; exit 143' TERM\n      \
             sleep {secs} & wait $!\n      \
             echo \"$WARD_ITEM_KEY\" >> done/{{{{ item }}}}\n      \
             rmdir locks/{{{{ item }}}}\n  \
             - id: after\n    needs: [copy]\n    run: ls done | wc -l > counted\n"
        ),
    );
}

#[test]
fn three_workers_share_a_step_and_a_killed_ones_items_are_claimed_again() {
    let c = cluster();
    let s = Scratch::new();
    // Items outlast the lease: the killed worker's items still run (its
    // children live on) when another worker claims them, which stops them
    // first (same host), so that no item runs twice at once.
    playbook(&s, 12, "8", "    workers: true\n");
    let p = s
        .read("p.yml")
        .replace("max_parallel: 3", "max_parallel: 6");
    s.write("p.yml", &p);
    let (run, id) = short_lease_run(&s, &c);
    let worker = || short_lease_worker(&s, &c, &id);
    // The doomed worker claims first, and is killed mid-item; the two
    // others then have room (6 each) for the rest and, once its lease ran
    // out, for its items, which its children still run.
    let doomed = worker();
    let doomed_pid = doomed.id().to_string();
    assert!(
        wait_for(30, || claims(&c, &id)
            .iter()
            .any(|cl| cl.1.contains(&format!(":{doomed_pid}:")))),
        "the doomed worker claims items"
    );
    std::thread::sleep(Duration::from_millis(500));
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &doomed_pid])
        .status();
    let (code, err) = finish(doomed, 10);
    assert_eq!(code, None, "killed: {err}");
    let (a, b) = (worker(), worker());

    let (code, err) = finish(run, 120);
    assert_eq!(code, Some(0), "the run ends well: {err}");
    for w in [a, b] {
        let (code, err) = finish(w, 30);
        assert_eq!(code, Some(0), "a worker ends with its run: {err}");
    }

    // Every item succeeded, exactly once in the record, and ran to its
    // end exactly once (its mark written once).
    let states = item_states(&s, &c, &id);
    assert_eq!(states.len(), 12);
    assert!(states.values().all(|st| st == "succeeded"), "{states:?}");
    for i in 1..=12 {
        let mark = s.read(&format!("done/i{i:02}"));
        assert_eq!(
            mark.lines().count(),
            1,
            "item i{i:02} ran to its end once: {:?}",
            claims(&c, &id)
        );
    }
    assert_eq!(
        s.read("counted").trim(),
        "12",
        "`after` ran after all items"
    );
    let rows = claims(&c, &id);
    let released: Vec<_> = rows
        .iter()
        .filter(|r| r.3 == "released" && r.4 == "succeeded")
        .collect();
    assert_eq!(
        released.len(),
        12,
        "one success recorded per item: {rows:?}"
    );
    let keys: BTreeSet<&str> = released.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(keys.len(), 12);
    // The doomed worker's running items expired and were claimed again by
    // another worker, with their attempt counted.
    let expired: Vec<_> = rows.iter().filter(|r| r.3 == "expired").collect();
    assert!(!expired.is_empty(), "its claims ran out: {rows:?}");
    for e in &expired {
        assert!(e.1.contains(&format!(":{doomed_pid}:")), "{e:?}");
        let again = rows
            .iter()
            .find(|r| r.0 == e.0 && r.3 == "claimed" && r.2 == e.2 + 1)
            .unwrap_or_else(|| panic!("claimed again: {e:?} in {rows:?}"));
        assert!(!again.1.contains(&format!(":{doomed_pid}:")), "{again:?}");
    }
    // Three workers took part, each recorded with host and pid.
    let workers: BTreeSet<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(workers.len(), 3, "{workers:?}");
}

#[test]
fn tags_choose_the_workers_and_priority_orders_the_claims() {
    let c = cluster();
    let s = Scratch::new();
    playbook(
        &s,
        6,
        "0.1",
        "    workers: { tags: [lustre] }\n    key: \"{{ item }}\"\n    \
         priority: \"{{ item[1:] | int }}\"\n",
    );
    let run = ward(&s, &c).args(["run", "p.yml"]).spawn();
    let id = offered(&s, &c);
    // Without the tag: nothing is claimed.
    let untagged = ward(&s, &c).args(["worker", "--run", &id]).spawn();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        claims(&c, &id).is_empty(),
        "an untagged worker claims nothing"
    );
    // One at a time, so that the claims show the order.
    let tagged = ward(&s, &c)
        .args([
            "worker",
            "--run",
            &id,
            "--tag",
            "lustre",
            "--max-parallel",
            "1",
        ])
        .spawn();
    let (code, err) = finish(run, 60);
    assert_eq!(code, Some(0), "{err}");
    for w in [tagged, untagged] {
        let (code, err) = finish(w, 30);
        assert_eq!(code, Some(0), "{err}");
    }
    let order: Vec<String> = claims(&c, &id)
        .into_iter()
        .filter(|r| r.3 == "claimed")
        .map(|r| r.0)
        .collect();
    assert_eq!(order, ["i06", "i05", "i04", "i03", "i02", "i01"]);
    // `ward items` names the worker (host:pid) of each item.
    let items = ward(&s, &c).args(["items", &id]).run().expect_code(0);
    let worker = claims(&c, &id)[0]
        .1
        .rsplit_once(':')
        .map(|(w, _)| w.to_owned());
    assert!(items.stdout.contains("WORKER"), "{}", items.stdout);
    assert!(
        worker.is_some_and(|w| items.stdout.contains(&w)),
        "{}",
        items.stdout
    );
}

#[test]
fn workers_go_on_when_postgresql_restarts_under_them() {
    let c = cluster();
    let s = Scratch::new();
    playbook(&s, 30, "0.3", "    workers: true\n");
    let run = ward(&s, &c).args(["run", "p.yml"]).spawn();
    let id = offered(&s, &c);
    let workers: Vec<Child> = (0..2)
        .map(|_| ward(&s, &c).args(["worker", "--run", &id]).spawn())
        .collect();
    assert!(
        wait_for(30, || std::fs::read_dir(s.path().join("done"))
            .map(|d| d.count() >= 5)
            .unwrap_or(false)),
        "items run"
    );
    c.stop_immediately();
    std::thread::sleep(Duration::from_millis(800));
    c.start_again();
    let (code, err) = finish(run, 120);
    assert_eq!(code, Some(0), "{err}");
    for w in workers {
        let (code, err) = finish(w, 30);
        assert_eq!(code, Some(0), "{err}");
    }
    let states = item_states(&s, &c, &id);
    assert_eq!(states.len(), 30);
    assert!(states.values().all(|st| st == "succeeded"), "{states:?}");
    for i in 1..=30 {
        // An item whose end was not recorded when the server went away
        // may run again, never at once with itself (its lock).
        let mark = s.read(&format!("done/i{i:02}"));
        assert!(!mark.is_empty(), "item i{i:02} ran");
    }
}

#[test]
fn a_local_state_refuses_workers_before_anything_runs() {
    let s = Scratch::new();
    playbook(&s, 2, "0", "    workers: true\n");
    let out = s.ward().args(["run", "p.yml"]).run().expect_code(2);
    assert!(
        out.stderr
            .contains("step `copy` hands its items to `ward worker`s"),
        "{}",
        out.stderr
    );
    assert!(!s.path().join("done/i01").exists());
    let out = s.ward().args(["worker"]).run().expect_code(2);
    assert!(out.stderr.contains("shared state"), "{}", out.stderr);
}

#[test]
fn a_worker_mails_each_item_it_ran_through_the_real_server() {
    let out_dir = Scratch::new();
    let out = out_dir.path().join("mails");
    let Some(server) = crate::notify::smtp_server(&out, &[]) else {
        return;
    };
    let c = cluster();
    let s = Scratch::new();
    s.write("users.txt", "alice\nbob\ncarol\n");
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: homes\nnotify:\n  email:\n    to: ops@example.org\n    \
             from: ward@example.org\n    host: 127.0.0.1\n    port: {}\n    tls: none\n    \
             timeout: 2s\n    on: [skipped]\nsteps:\n  - id: migrate\n    \
             for_each: {{ lines: users.txt }}\n    workers: true\n    \
             run: test {{{{ item }}}} != bob\n    on_item:\n      on: [succeeded, failed]\n      \
             email:\n        to: \"{{{{ item }}}}@example.org\"\n        \
             subject: \"{{{{ item }}}}: {{{{ item_state }}}}\"\n",
            server.port
        ),
    );
    let run = ward(&s, &c).args(["run", "p.yml"]).spawn();
    let id = offered(&s, &c);
    let worker = ward(&s, &c).args(["worker", "--run", &id]).spawn();
    let (code, err) = finish(run, 60);
    assert_eq!(code, Some(10), "bob failed: {err}");
    let (code, err) = finish(worker, 60);
    assert_eq!(code, Some(0), "{err}");
    let mut got: Vec<(String, String)> = crate::notify::mails(&out)
        .iter()
        .map(|m| {
            (
                m["rcpt_tos"][0].as_str().unwrap_or("").to_owned(),
                crate::notify::Mail::parse(m).header("subject"),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (
                "alice@example.org".to_owned(),
                "alice: succeeded".to_owned()
            ),
            ("bob@example.org".to_owned(), "bob: failed".to_owned()),
            (
                "carol@example.org".to_owned(),
                "carol: succeeded".to_owned()
            ),
        ]
    );
}
