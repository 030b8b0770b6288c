//! `workers:` steps red-teamed on a real PostgreSQL, with real processes:
//! the run's ward stopped under running workers (its workers stop their
//! items, a resume offers them again); a worker frozen (SIGSTOP) past its
//! lease and woken (it records nothing, says so, exits 4); a playbook
//! changed on disk (the worker refuses the step, on standard error); and
//! 2,000 items over three workers (each claimed and recorded exactly once,
//! no claim taken from a live worker).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::harness::{Scratch, wait_for};
use crate::pg_store::{cluster, ward};
use crate::workers::{
    claims, finish, item_states, offered, playbook, short_lease_run, short_lease_worker,
};

fn kill(sig: &str, pid: u32) {
    let _ = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

/// Waits for the (only) offer of `run` to be open (again).
fn open_again(c: &crate::pg_cluster::Cluster, run: &str) {
    assert!(
        wait_for(30, || c
            .psql(
                "wardstate",
                &format!(
                    "SELECT count(*) FROM ward.offers o JOIN ward.runs r ON r.id = o.run_id \
                     WHERE o.run_id = '{run}' AND o.state = 'open' AND r.state = 'running'"
                ),
            )
            .trim()
            == "1"),
        "the offer opens again"
    );
}

fn marks(s: &Scratch) -> usize {
    std::fs::read_dir(s.path().join("done"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn a_stopped_run_stops_its_workers_items_and_a_resume_offers_them_again() {
    let c = cluster();
    let s = Scratch::new();
    playbook(&s, 6, "8", "    workers: true\n");
    let run = ward(&s, &c).args(["run", "p.yml"]).spawn();
    let id = offered(&s, &c);
    let worker = ward(&s, &c)
        .env("WARD_KILL_GRACE", "2s")
        .args(["worker", "--run", &id])
        .spawn();
    assert!(
        wait_for(30, || claims(&c, &id)
            .iter()
            .filter(|r| r.3 == "claimed")
            .count()
            == 3),
        "the worker claims three items"
    );
    let stopped_at = Instant::now();
    kill("TERM", run.id());
    let (code, err) = finish(run, 20);
    assert_eq!(code, Some(143), "the run's ward stops: {err}");
    assert!(stopped_at.elapsed() < Duration::from_secs(5), "promptly");
    // The worker stops the items (they sleep 8s): none runs to its end,
    // each is recorded pending again, and the worker ends with the run.
    let (code, err) = finish(worker, 20);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        stopped_at.elapsed() < Duration::from_secs(7),
        "the worker stopped its items rather than running them to their end: {err}"
    );
    assert_eq!(marks(&s), 0, "no item ran to its end: {err}");
    let items = ward(&s, &c)
        .args(["items", &id, "--json"])
        .run()
        .expect_code(0)
        .json();
    let said = items
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|i| i["message"] == "stopped because the run's ward stopped")
                .count()
        })
        .unwrap_or(0);
    assert_eq!(said, 3, "{items}");
    let states = item_states(&s, &c, &id);
    assert!(
        states.values().all(|st| st == "pending"),
        "{states:?} {:?}",
        claims(&c, &id)
    );

    // A resume offers them again; a new worker runs them all, once each.
    let resume = ward(&s, &c).args(["resume", &id]).spawn();
    open_again(&c, &id);
    let worker = ward(&s, &c).args(["worker", "--run", &id]).spawn();
    let (code, err) = finish(resume, 90);
    assert_eq!(code, Some(0), "the resume ends well: {err}");
    let (code, err) = finish(worker, 30);
    assert_eq!(code, Some(0), "{err}");
    let states = item_states(&s, &c, &id);
    assert!(states.values().all(|st| st == "succeeded"), "{states:?}");
    for i in 1..=6 {
        assert_eq!(s.read(&format!("done/i{i:02}")).lines().count(), 1);
    }
}

#[test]
fn a_frozen_worker_past_its_lease_records_nothing_and_its_items_run_once() {
    let c = cluster();
    let s = Scratch::new();
    playbook(&s, 4, "6", "    workers: true\n");
    let (run, id) = short_lease_run(&s, &c);
    let worker = || short_lease_worker(&s, &c, &id);
    let frozen = worker();
    let frozen_pid = frozen.id();
    let mine = format!(":{frozen_pid}:");
    assert!(
        wait_for(30, || claims(&c, &id)
            .iter()
            .filter(|r| r.1.contains(&mine))
            .count()
            == 3),
        "the worker claims three items"
    );
    kill("STOP", frozen_pid);
    let other = worker();
    // Its claims run out; the other worker takes them (stopping what the
    // frozen one's items still run on this host first).
    assert!(
        wait_for(30, || claims(&c, &id)
            .iter()
            .filter(|r| r.3 == "expired")
            .count()
            == 3),
        "the frozen worker's claims run out: {:?}",
        claims(&c, &id)
    );
    kill("CONT", frozen_pid);
    let (code, err) = finish(frozen, 30);
    assert_eq!(code, Some(4), "a worker that lost its lease: {err}");
    let (code, run_err) = finish(run, 90);
    assert_eq!(code, Some(0), "{run_err}");
    let (code, other_err) = finish(other, 30);
    assert_eq!(code, Some(0), "{other_err}");
    let rows = claims(&c, &id);
    let states = item_states(&s, &c, &id);
    assert!(
        states.values().all(|st| st == "succeeded"),
        "{states:?} {rows:?}"
    );
    // An item may have run to its end while its worker was frozen (its
    // end then not recorded) and run again: never twice at once (its lock
    // would have failed it).
    for i in 1..=4 {
        assert!(
            !s.read(&format!("done/i{i:02}")).is_empty(),
            "item i{i:02} ran: {rows:?}\nfrozen: {err}\nother: {other_err}"
        );
    }
    assert!(
        err.contains("lease of worker") && err.contains("ends not recorded"),
        "the frozen worker says what happened to it: {err}"
    );
    assert!(
        !rows
            .iter()
            .any(|r| r.1.contains(&mine) && r.3 == "released"),
        "the frozen worker recorded nothing: {rows:?}"
    );
    let released = rows.iter().filter(|r| r.3 == "released").count();
    assert_eq!(released, 4, "{rows:?}");
}

#[test]
fn a_changed_playbook_is_refused_by_the_worker_and_many_items_run_once() {
    let c = cluster();
    let s = Scratch::new();
    let n = 2000;
    playbook(&s, n, "0", "    workers: true\n");
    let p = s
        .read("p.yml")
        .replace("max_parallel: 3", "max_parallel: 8");
    s.write("p.yml", &p);
    let run = ward(&s, &c).args(["run", "p.yml"]).spawn();
    let id = offered(&s, &c);
    // The playbook changes on disk: a worker refuses the step, says why,
    // and runs nothing.
    let original = s.read("p.yml");
    s.write("p.yml", &original.replace("sleep 0", "sleep 1"));
    let refusing = ward(&s, &c).args(["worker", "--run", &id]).spawn();
    std::thread::sleep(Duration::from_secs(3));
    let claimed = claims(&c, &id).len();
    kill("TERM", refusing.id());
    let (code, err) = finish(refusing, 20);
    assert_eq!(claimed, 0, "nothing claimed: {err}");
    assert_eq!(code, Some(143), "{err}");
    assert!(err.contains("differ here"), "{err}");
    s.write("p.yml", &original);
    let workers: Vec<_> = (0..3)
        .map(|_| ward(&s, &c).args(["worker", "--run", &id]).spawn())
        .collect();
    let (code, err) = finish(run, 500);
    let mut errs = String::new();
    for w in workers {
        let (wcode, werr) = finish(w, 30);
        errs.push_str(&format!("{wcode:?}: {werr}\n"));
    }
    let rows = claims(&c, &id);
    let failed: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r.4 == "failed")
        .map(|r| r.0.as_str())
        .collect();
    let of_failed: Vec<_> = rows
        .iter()
        .filter(|r| failed.contains(r.0.as_str()))
        .collect();
    assert_eq!(code, Some(0), "{err}\n{errs}\n{of_failed:?}");
    assert!(
        !errs.contains("None") && !errs.contains("Some(4)"),
        "{errs}"
    );
    let mut released = BTreeMap::new();
    for r in rows.iter().filter(|r| r.3 == "released") {
        *released.entry(r.0.clone()).or_insert(0) += 1;
        assert_eq!(r.4, "succeeded", "{r:?}");
    }
    assert_eq!(released.len(), n);
    assert!(released.values().all(|&k| k == 1));
    let mut claimed = BTreeMap::new();
    for r in rows.iter().filter(|r| r.3 == "claimed") {
        *claimed.entry(r.0.as_str()).or_insert(0) += 1;
    }
    let twice: Vec<_> = rows
        .iter()
        .filter(|r| claimed.get(r.0.as_str()).is_some_and(|&k| k > 1))
        .collect();
    assert!(
        twice.is_empty(),
        "claimed more than once: {twice:?}\n{errs}"
    );
    // No worker lost its lease: no claim ran out, no end went unrecorded
    // (a claim committed by one worker while another's statement ran was
    // once taken again by the latter, as if it had expired).
    let odd: Vec<_> = rows
        .iter()
        .filter(|r| r.3 == "expired" || r.3 == "lost")
        .collect();
    assert!(odd.is_empty(), "{odd:?}\n{errs}");
    assert_eq!(marks(&s), n);
}

/// `copy` hands 8 items to workers (two at once); item `i01` exits 3,
/// the others sleep 2s. `extra` is added to the step, `other` to the
/// playbook's steps.
fn failing_playbook(s: &Scratch, extra: &str, other: &str) {
    let items: String = (1..=8).map(|i| format!("i{i:02}\n")).collect();
    s.write("items.txt", &items);
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: fleet\nsteps:\n  \
             - id: copy\n    for_each: {{ lines: items.txt }}\n    max_parallel: 2\n    \
             workers: true\n{extra}    \
             run: |\n      if [ \"{{{{ item }}}}\" = i01 ]; then exit 3; fi\n      \
             sleep 2\n      touch \"{{{{ item }}}}.done\"\n  \
             - id: after\n    needs: [copy]\n    run: touch after\n{other}"
        ),
    );
}

#[test]
fn max_failed_closes_the_offer_and_the_run_ends_with_10() {
    let c = cluster();
    let s = Scratch::new();
    failing_playbook(&s, "    max_failed: 0\n", "");
    let run = ward(&s, &c).args(["run", "p.yml"]).spawn();
    let id = offered(&s, &c);
    let worker = ward(&s, &c).args(["worker", "--run", &id]).spawn();
    let (code, err) = finish(run, 60);
    assert_eq!(code, Some(10), "{err}");
    let (code, werr) = finish(worker, 30);
    assert_eq!(code, Some(0), "{werr}");
    let states = item_states(&s, &c, &id);
    assert_eq!(states["i01"], "failed", "{states:?}");
    assert!(
        !states.values().any(|st| st == "running"),
        "nothing left running: {states:?}"
    );
    assert!(
        states.values().any(|st| st == "pending"),
        "items not started stay pending: {states:?}"
    );
    // The item that ran beside i01 ran to its end and was recorded.
    for (k, st) in &states {
        assert_eq!(
            st == "succeeded",
            s.path().join(format!("{k}.done")).exists()
        );
    }
    assert!(!s.path().join("after").exists());
}

#[test]
fn a_failure_elsewhere_skips_the_pending_items_of_a_workers_step() {
    let c = cluster();
    let s = Scratch::new();
    failing_playbook(&s, "", "  - id: boom\n    run: sleep 1.5; exit 1\n");
    let p = s.read("p.yml").replace("exit 3", "sleep 2");
    s.write("p.yml", &p);
    let run = ward(&s, &c).args(["run", "p.yml"]).spawn();
    let id = offered(&s, &c);
    let worker = ward(&s, &c).args(["worker", "--run", &id]).spawn();
    let (code, err) = finish(run, 60);
    assert_eq!(code, Some(1), "{err}");
    let (code, werr) = finish(worker, 30);
    assert_eq!(code, Some(0), "{werr}");
    let states = item_states(&s, &c, &id);
    assert!(
        !states.values().any(|st| st == "running" || st == "pending"),
        "running items ended, pending ones skipped: {states:?}"
    );
    assert!(states.values().any(|st| st == "skipped"), "{states:?}");
    for (k, st) in &states {
        assert_eq!(
            st == "succeeded",
            s.path().join(format!("{k}.done")).exists()
        );
    }
}

#[test]
fn a_worker_without_the_runs_secret_refuses_its_step_and_one_with_it_runs() {
    let c = cluster();
    let s = Scratch::new();
    s.write("items.txt", "a\nb\n");
    s.write(
        "p.yml",
        "ward: 1\nname: fleet\nvars:\n  db_password: changeme\nsteps:\n  \
         - id: copy\n    for_each: { lines: items.txt }\n    workers: true\n    \
         env: { PGPASSWORD: \"{{ db_password }}\" }\n    \
         run: printf %s \"$PGPASSWORD\" > \"{{ item }}.pw\"\n",
    );
    let run = ward(&s, &c)
        .args(["run", "p.yml", "--var", "db_password=S3cr3t-xyz"])
        .spawn();
    let id = offered(&s, &c);
    for vars in [&[][..], &["--var", "db_password=wrong"][..]] {
        let refusing = ward(&s, &c)
            .args(["worker", "--run", &id])
            .args(vars)
            .spawn();
        std::thread::sleep(Duration::from_secs(2));
        let claimed = claims(&c, &id).len();
        kill("TERM", refusing.id());
        let (code, err) = finish(refusing, 20);
        assert_eq!(code, Some(143), "{err}");
        assert_eq!(claimed, 0, "{vars:?}: nothing claimed: {err}");
        // Missing: named; another value: the step's fingerprint differs.
        let why = if vars.is_empty() {
            "db_password"
        } else {
            "`copy` changed"
        };
        assert!(err.contains(why), "{vars:?}: {err}");
    }
    let worker = ward(&s, &c)
        .args(["worker", "--run", &id, "--var", "db_password=S3cr3t-xyz"])
        .spawn();
    let (code, err) = finish(run, 60);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = finish(worker, 30);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(s.read("a.pw"), "S3cr3t-xyz");
}

#[test]
fn a_worker_serving_any_run_takes_a_resumed_steps_new_attempt() {
    let c = cluster();
    let s = Scratch::new();
    s.write("items.txt", "a\nb\n");
    std::fs::create_dir_all(s.path().join("att")).expect("att");
    // A worker without `--run` outlives the stopped run: it stops the
    // first attempt's items, and runs them again in the resumed attempt
    // (its plan read again, `WARD_ATTEMPT` the new one).
    s.write(
        "p.yml",
        "ward: 1\nname: fleet\nsteps:\n  \
         - id: copy\n    for_each: { lines: items.txt }\n    max_parallel: 2\n    \
         workers: true\n    \
         run: |\n      echo \"$WARD_ATTEMPT\" >> \"att/{{ item }}\"\n      \
         if [ \"$WARD_ATTEMPT\" = 1 ]; then trap '' TERM; sleep 6; fi\n",
    );
    let run = ward(&s, &c).args(["run", "p.yml"]).spawn();
    let id = offered(&s, &c);
    let worker = ward(&s, &c)
        .env("WARD_KILL_GRACE", "4s")
        .args(["worker"])
        .spawn();
    assert!(
        wait_for(30, || s.path().join("att/b").exists()
            && s.path().join("att/a").exists()),
        "both items run"
    );
    kill("TERM", run.id());
    let (code, err) = finish(run, 20);
    assert_eq!(code, Some(143), "{err}");
    let (code, err) = ward(&s, &c)
        .args(["resume", &id])
        .spawn()
        .wait_with_output()
        .map(|o| {
            (
                o.status.code(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .expect("resume");
    kill("TERM", worker.id());
    let (_, werr) = finish(worker, 30);
    assert_eq!(code, Some(0), "{err}\n{werr}");
    for k in ["a", "b"] {
        let lines = s.read(&format!("att/{k}"));
        assert_eq!(
            lines.lines().last(),
            Some("2"),
            "item {k} ran in the resumed attempt: {lines:?}\n{werr}"
        );
    }
}

/// Two SIGTERMs to a worker whose items ignore SIGTERM: the first stops
/// claiming and asks them to stop, the second kills them at once (not
/// after the 60 s grace); they are recorded pending, and another worker
/// then runs them all.
#[test]
fn a_second_sigterm_kills_a_workers_stubborn_items_at_once() {
    let c = cluster();
    let s = Scratch::new();
    s.write("items.txt", "a\nb\n");
    s.write(
        "p.yml",
        "ward: 1\nname: stubborn\nsteps:\n  - id: each\n    for_each: { lines: items.txt }\n    \
         workers: true\n    run: |\n      \
         if [ ! -e second ]; then trap 'echo {{ item }} >> terms' TERM; \
         while true; do sleep 0.1; done; fi\n      echo {{ item }} >> done\n",
    );
    let run = ward(&s, &c).args(["run", "p.yml"]).spawn();
    let id = offered(&s, &c);
    let worker = ward(&s, &c)
        .env("WARD_KILL_GRACE", "60s")
        .args(["worker", "--run", &id])
        .spawn();
    assert!(
        wait_for(30, || claims(&c, &id).len() == 2),
        "both items claimed"
    );
    std::thread::sleep(Duration::from_millis(300));
    kill("TERM", worker.id());
    assert!(
        wait_for(10, || s.read("terms").lines().count() == 2),
        "asked to stop"
    );
    let started = Instant::now();
    kill("TERM", worker.id());
    let (code, err) = finish(worker, 30);
    assert_eq!(code, Some(143), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "killed at once, not after the grace: {:?}",
        started.elapsed()
    );
    let states = item_states(&s, &c, &id);
    assert!(states.values().all(|st| st == "pending"), "{states:?}");
    // Another worker runs them (the stubborn branch is off now).
    s.write("second", "");
    let other = ward(&s, &c).args(["worker", "--run", &id]).spawn();
    let (code, err) = finish(run, 60);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = finish(other, 30);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(s.read("done").lines().count(), 2);
}
