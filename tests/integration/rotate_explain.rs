//! `rotate` explains itself: the run's log, `ward plan` and `ward probe`
//! give each snapshot's decision with every rule that keeps it (or what
//! each rule said of a deleted one), and the bytes deleting it frees.
//! Real snapshots made by real runs on faked days.

use crate::harness::{Scratch, snapshot_names};

/// snapshot -> verify `latest` -> rotate, with every kind of rule.
const NIGHTLY: &str = "\
ward: 1
name: nightly
steps:
  - id: snapshot
    action: snapshot.hardlink
    with: { src: current, dir: snaps }
  - id: verify
    needs: [snapshot]
    action: verify
    with: { path: snaps/latest }
  - id: rotate
    needs: [verify]
    action: rotate
    with: { dir: snaps, keep_last: 1, keep_daily: 2, keep_weekly: 2, keep_within: 14d }
";

const MIB: usize = 1024 * 1024;

/// The line of `text` that starts with snapshot `name` (a table row).
fn row<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .map(str::trim_start)
        .map(|l| l.strip_prefix("now").map_or(l, str::trim_start))
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no row for {name} in:\n{text}"))
}

#[test]
fn the_log_plan_and_probe_give_each_snapshot_its_rules_and_unique_bytes() {
    let s = Scratch::new();
    s.write("current/shared.txt", "in every snapshot\n");
    std::fs::write(s.path().join("current/big.bin"), vec![5u8; MIB]).expect("big");
    s.write("p.yml", NIGHTLY);
    let night = |day: &str| {
        s.ward()
            .args(["run", "p.yml"])
            .env("WARD_NOW", &format!("{day}T02:00:00"))
            .run()
            .expect_code(0);
    };
    // Tuesday of ISO week 43: the only snapshot that holds big.bin.
    night("2026-10-20");
    std::fs::remove_file(s.path().join("current/big.bin")).expect("rm big");
    night("2026-10-27");
    night("2026-11-02");
    let snaps = s.path().join("snaps");
    assert_eq!(
        snapshot_names(&snaps),
        ["2026-10-20", "2026-10-27", "2026-11-02"],
        "keep_within 14d kept them all so far"
    );
    // A snapshot that never finished: kept, not counted.
    s.write("snaps/2026-10-30/half", "no manifest");

    // The plan of the last night: the folder as it is now.
    let plan = s
        .ward()
        .args(["plan", "p.yml"])
        .env("WARD_NOW", "2026-11-03T02:00:00")
        .run()
        .expect_code(0)
        .stdout;
    assert!(
        plan.contains("would keep 2 verified snapshot(s) and delete 1; 1 not counted"),
        "{plan}"
    );
    let oldest = row(&plan, "2026-10-20");
    assert!(
        oldest.contains("delete")
            && oldest.contains("1.0 MB")
            && oldest.contains("keep_within 14d: it is 14d2h old"),
        "{plan}"
    );
    let newest = row(&plan, "2026-11-02");
    assert!(
        newest.contains("keep ")
            && newest.contains(" 0 B ")
            && newest.contains("keep_last 1 (#1)")
            && newest.contains("keep_daily 2 (2026-11-02)")
            && newest.contains("keep_weekly 2 (2026-W45)")
            && newest.contains("target of `latest`"),
        "{plan}"
    );
    assert!(row(&plan, "2026-10-27").contains(" 0 B "), "{plan}");
    assert!(row(&plan, "2026-10-30").contains("keep*"), "{plan}");

    night("2026-11-03");
    assert_eq!(
        snapshot_names(&snaps),
        ["2026-10-27", "2026-10-30", "2026-11-02", "2026-11-03"]
    );
    let log = s
        .ward()
        .args(["log", "last", "rotate"])
        .run()
        .expect_code(0)
        .stdout;
    let r = |name| row(&log, name).to_owned();
    assert!(
        r("2026-11-03").contains("keep")
            && r("2026-11-03").contains(
                "keep_last 1 (#1); keep_daily 2 (2026-11-03); keep_weekly 2 (2026-W45); \
                 keep_within 14d (age 2h); target of `latest`"
            ),
        "{log}"
    );
    assert!(
        r("2026-11-02").contains("keep_daily 2 (2026-11-02); keep_within 14d (age 1d2h)"),
        "{log}"
    );
    assert!(
        r("2026-10-27").contains("keep_weekly 2 (2026-W44); keep_within 14d (age 7d2h)"),
        "{log}"
    );
    assert!(
        r("2026-10-30").contains("keep*")
            && r("2026-10-30").contains("not counted: incomplete (no manifest)"),
        "{log}"
    );
    let gone = r("2026-10-20");
    assert!(
        gone.contains("delete")
            && gone.contains("keep_last 1: it is #4")
            && gone.contains("keep_daily 2: 2026-10-20 is older than the 2 newest days")
            && gone.contains("keep_weekly 2: 2026-W43 is older than the 2 newest weeks")
            && gone.contains("keep_within 14d: it is 14d2h old"),
        "{log}"
    );
    // Counted by the deletion itself: said before it starts and, with
    // the figure, once it is done.
    let deleting = log.find("deleting ").expect("deleting line");
    let deleted = log.find("2026-10-20 (freed 1.0 MB)").expect("deleted line");
    assert!(
        log[deleting..]
            .lines()
            .next()
            .unwrap_or("")
            .ends_with("2026-10-20"),
        "{log}"
    );
    assert!(deleting < deleted, "{log}");
    assert!(
        log[..deleted]
            .lines()
            .last()
            .unwrap_or("")
            .contains("deleted "),
        "{log}"
    );

    // The details: every snapshot, typed reasons, the bytes freed.
    let json = s
        .ward()
        .args(["log", "last", "rotate", "--json"])
        .run()
        .expect_code(0)
        .json();
    let details = &json["attempts"][0]["details"];
    assert_eq!(
        details["deleted"],
        serde_json::json!(["2026-10-20"]),
        "{details}"
    );
    let snapshots = details["snapshots"].as_array().expect("snapshots");
    assert_eq!(snapshots.len(), 5, "{details}");
    let of = |name: &str| {
        snapshots
            .iter()
            .find(|x| x["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {details}"))
    };
    let deleted = of("2026-10-20");
    assert_eq!(deleted["decision"], "delete");
    // big.bin, and nothing else: shared.txt has names in every snapshot
    // and in `current`.
    assert_eq!(deleted["unique_bytes"], MIB as u64, "{deleted}");
    assert_eq!(of("2026-11-03")["reasons"][0]["rule"], "keep_last");
    assert_eq!(of("2026-11-03")["reasons"][2]["week"], "2026-W45");
    assert_eq!(of("2026-10-30")["decision"], "not_counted");
    assert_eq!(of("2026-10-30")["reasons"][0]["rule"], "incomplete");
    assert_eq!(details["freed_bytes"], MIB as u64);

    // `ward probe` counts every snapshot: all shared now, so nothing unique.
    let probe = s
        .ward()
        .args(["probe", "p.yml"])
        .env("WARD_NOW", "2026-11-03T03:00:00")
        .run()
        .stdout;
    for name in ["2026-10-27", "2026-11-02", "2026-11-03"] {
        assert!(
            probe
                .lines()
                .any(|l| l.contains(&format!("snapshot {name}")) && l.contains("unique 0 B")),
            "{probe}"
        );
    }
    assert!(
        probe.lines().any(|l| l.contains("snapshot 2026-10-30")
            && l.contains("not counted: incomplete")
            && l.contains("unique 11 B")),
        "{probe}"
    );
}
