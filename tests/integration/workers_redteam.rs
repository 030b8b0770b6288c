//! `workers:` steps red-teamed on a real PostgreSQL, with real processes:
//! the run's ward stopped under running workers (its workers stop their
//! items, a resume offers them again).

use std::time::{Duration, Instant};

use crate::harness::{Scratch, wait_for};
use crate::pg_store::{cluster, ward};
use crate::workers::{claims, finish, item_states, offered, playbook};

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
