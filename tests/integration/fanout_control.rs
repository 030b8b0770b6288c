//! Steering a fan-out: `priority:` (the order items start in), `ward
//! pause|unpause|retry` from a second process while the run goes on or
//! before a resume, and `max_failed:` (no new item past a bound).

use crate::harness::{Scratch, wait_for};

/// `ward items last --json`: (key, state, attempts) per item.
fn items(s: &Scratch) -> Vec<(String, String, u64)> {
    let json = s
        .ward()
        .args(["items", "last", "--json"])
        .run()
        .expect_code(0)
        .json();
    json.as_array()
        .expect("a list of items")
        .iter()
        .map(|i| {
            (
                i["key"].as_str().expect("key").to_owned(),
                i["state"].as_str().expect("state").to_owned(),
                i["attempts"].as_u64().expect("attempts"),
            )
        })
        .collect()
}

/// An item's state, or "" (also before the run recorded anything).
fn state_of(s: &Scratch, key: &str) -> String {
    item_state(s.ward(), key)
}

/// An item's state of the last run as `ward` (on any state) lists it, or
/// "" (also before the run recorded anything).
pub(crate) fn item_state(ward: crate::harness::Ward, key: &str) -> String {
    let run = ward.args(["items", "last", "--json"]).run();
    if run.code != 0 {
        return String::new();
    }
    run.json()
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["key"] == key)
        .and_then(|i| i["state"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// The lines of a file the items append to, in order.
fn lines(s: &Scratch, name: &str) -> Vec<String> {
    std::fs::read_to_string(s.path().join(name))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn items_start_by_priority_highest_first_ties_in_list_order() {
    let s = Scratch::new();
    // blocks + files * 3: ann 10, bob 31, cy 10, dee 7, eve 31.
    s.write(
        "p.yml",
        "ward: 1\nname: prio\nvars:\n  users:\n    \
           - { name: ann, blocks: 4, files: 2 }\n    - { name: bob, blocks: 1, files: 10 }\n    \
           - { name: cy, blocks: 10, files: 0 }\n    - { name: dee, blocks: 7, files: 0 }\n    \
           - { name: eve, blocks: 28, files: 1 }\nsteps:\n  \
         - id: migrate\n    for_each: \"{{ users }}\"\n    key: \"{{ item.name }}\"\n    \
           priority: \"{{ item.blocks + item.files * 3 }}\"\n    max_parallel: 1\n    \
           run: echo {{ item.name }} >> order\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert_eq!(lines(&s, "order"), ["bob", "eve", "ann", "cy", "dee"]);
}

#[test]
fn a_priority_that_is_no_number_names_the_item_and_the_step() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: prio\nvars:\n  users: [{ name: ann, size: 3 }, { name: bob, size: big }]\n\
         steps:\n  - id: migrate\n    for_each: \"{{ users }}\"\n    key: \"{{ item.name }}\"\n    \
           priority: \"{{ item.size }}\"\n    run: echo {{ item.name }}\n",
    );
    let out = s.ward().args(["validate", "p.yml"]).run().expect_code(2);
    assert!(
        out.stderr
            .contains("`priority` of step `migrate` gives `big` for item `bob`, not a number"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("p.yml:9:"), "{}", out.stderr);
    // A `lines:` list is checked when the step starts: it fails before
    // any item runs.
    s.write("users.txt", "3\nx\n");
    s.write(
        "q.yml",
        "ward: 1\nname: prio\nsteps:\n  - id: each\n    for_each: { lines: users.txt }\n    \
           priority: \"{{ item }}\"\n    run: echo {{ item }} >> ran\n",
    );
    let out = s.ward().args(["run", "q.yml"]).run().expect_code(1);
    assert!(
        out.stderr.contains("gives `x` for item `x`, not a number"),
        "{}",
        out.stderr
    );
    assert!(lines(&s, "ran").is_empty());
}

/// Items that append their key to `journal`; `a` first waits for `go`.
const WAIT_FOR_GO: &str = "ward: 1\nname: ctl\nsteps:\n  \
     - id: each\n    for_each: [a, b, c, d]\n    max_parallel: 1\n    \
       run: |\n      if [ {{ item }} = a ]; then touch a-started; \
       while [ ! -e go ]; do sleep 0.05; done; fi\n      echo {{ item }} >> journal\n";

#[test]
fn a_pause_from_another_process_holds_an_item_back_until_unpause_and_resume() {
    let s = Scratch::new();
    s.write("p.yml", WAIT_FOR_GO);
    let run = s.ward().args(["run", "p.yml"]).spawn();
    assert!(wait_for(20, || s.path().join("a-started").exists()));
    // While `a` runs (and holds the run's lock): pause `c`; `a` itself is
    // running, so it is refused, with exit 1, and `c` is still paused.
    let out = s
        .ward()
        .args(["pause", "last", "c", "a"])
        .run()
        .expect_code(1);
    assert!(
        out.stdout.contains("paused item `c` of step `each`"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("not paused: item `a` of step `each` is running"),
        "{}",
        out.stderr
    );
    assert_eq!(state_of(&s, "c"), "paused");
    // Pausing it again is no change and no error.
    let out = s.ward().args(["pause", "last", "c"]).run().expect_code(0);
    assert!(out.stdout.contains("already paused"), "{}", out.stdout);
    std::fs::write(s.path().join("go"), "").expect("go");
    let ended = run.wait_with_output().expect("ward ends");
    // Only paused items are left: the step fails, exit 10.
    assert_eq!(
        ended.status.code(),
        Some(10),
        "{}{}{:?}",
        String::from_utf8_lossy(&ended.stdout),
        String::from_utf8_lossy(&ended.stderr),
        items(&s)
    );
    assert_eq!(lines(&s, "journal"), ["a", "b", "d"]);
    assert_eq!(state_of(&s, "c"), "paused");
    assert_eq!(s.step_states()["each"], "failed");
    let listed = s.ward().args(["items", "last"]).run().expect_code(0);
    assert!(listed.stdout.contains("paused"), "{}", listed.stdout);
    // A resume while it is still paused runs nothing and says so again.
    let out = s.ward().args(["resume", "last"]).run().expect_code(10);
    assert!(out.stderr.contains("paused"), "{}", out.stderr);
    assert_eq!(lines(&s, "journal"), ["a", "b", "d"]);
    s.ward().args(["unpause", "last", "c"]).run().expect_code(0);
    assert_eq!(state_of(&s, "c"), "pending");
    s.ward().args(["resume", "last"]).run().expect_code(0);
    assert_eq!(lines(&s, "journal"), ["a", "b", "d", "c"]);
    assert!(
        items(&s)
            .iter()
            .all(|(_, st, n)| st == "succeeded" && *n == 1)
    );
}

#[test]
fn retry_of_a_failed_item_keeps_its_attempts_and_resume_runs_it() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: ctl\nsteps:\n  - id: each\n    for_each: [x, y]\n    \
           run: |\n      if [ {{ item }} = y ] && [ ! -e fixed ]; then exit 3; fi\n      \
           echo {{ item }} >> journal\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(10);
    // Unknown run or item: exit 2, nothing changed.
    let out = s.ward().args(["retry", "nope", "y"]).run().expect_code(2);
    assert!(out.stderr.contains("no run `nope`"), "{}", out.stderr);
    let out = s
        .ward()
        .args(["retry", "last", "y", "zz"])
        .run()
        .expect_code(2);
    assert!(out.stderr.contains("no item `zz` in run"), "{}", out.stderr);
    assert_eq!(state_of(&s, "y"), "failed");
    // A succeeded item is not retried.
    let out = s.ward().args(["retry", "last", "x"]).run().expect_code(1);
    assert!(out.stderr.contains("never runs again"), "{}", out.stderr);
    s.write("fixed", "");
    let out = s
        .ward()
        .args(["retry", "last", "--all-failed"])
        .run()
        .expect_code(0);
    assert!(
        out.stdout.contains("retried item `y` of step `each`"),
        "{}",
        out.stdout
    );
    assert_eq!(state_of(&s, "y"), "pending");
    s.ward().args(["resume", "last"]).run().expect_code(0);
    assert_eq!(lines(&s, "journal"), ["x", "y"]);
    let all = items(&s);
    assert!(
        all.contains(&("y".to_owned(), "succeeded".to_owned(), 2)),
        "{all:?}"
    );
    assert!(
        all.contains(&("x".to_owned(), "succeeded".to_owned(), 1)),
        "{all:?}"
    );
}

#[test]
fn a_retry_while_the_step_still_runs_is_picked_up_by_the_running_ward() {
    let s = Scratch::new();
    // `f` fails until `fixed` exists; `slow` keeps the step running until
    // `go` exists.
    s.write(
        "p.yml",
        "ward: 1\nname: ctl\nsteps:\n  - id: each\n    for_each: [f, slow]\n    \
           max_parallel: 2\n    run: |\n      if [ {{ item }} = f ] && [ ! -e fixed ]; then \
           exit 3; fi\n      if [ {{ item }} = slow ]; then while [ ! -e go ]; do sleep 0.05; \
           done; fi\n      echo {{ item }} >> journal\n",
    );
    let mut run = s.ward().args(["run", "p.yml"]).spawn();
    assert!(wait_for(20, || state_of(&s, "f") == "failed"));
    s.write("fixed", "");
    s.ward().args(["retry", "last", "f"]).run().expect_code(0);
    // The running ward starts it again while `slow` still runs.
    assert!(
        wait_for(20, || lines(&s, "journal") == ["f"]),
        "{:?}",
        items(&s)
    );
    std::fs::write(s.path().join("go"), "").expect("go");
    assert_eq!(run.wait().expect("ward ends").code(), Some(0));
    let all = items(&s);
    assert!(
        all.contains(&("f".to_owned(), "succeeded".to_owned(), 2)),
        "{all:?}"
    );
}

#[test]
fn max_failed_stops_claiming_items_past_its_bound_and_leaves_the_rest_pending() {
    for bound in ["2", "20%"] {
        let s = Scratch::new();
        // Ten items, one at a time; each fails until `fixed` exists.
        s.write(
            "p.yml",
            &format!(
                "ward: 1\nname: mf\nsteps:\n  - id: each\n    \
                 for_each: [i1, i2, i3, i4, i5, i6, i7, i8, i9, i10]\n    max_parallel: 1\n    \
                 max_failed: \"{bound}\"\n    run: |\n      echo {{{{ item }}}} >> started\n      \
                 [ -e fixed ]\n  - id: after\n    needs: [each]\n    run: echo after >> started\n"
            ),
        );
        let out = s.ward().args(["run", "p.yml"]).run().expect_code(10);
        // 2 (20% of 10) failures are allowed: the third stops the step.
        assert_eq!(lines(&s, "started"), ["i1", "i2", "i3"], "{bound}");
        assert!(
            out.stderr.contains(&format!(
                "3 items failed, more than `max_failed: {bound}` allows (2 of 10); 7 items were \
                 not started"
            )),
            "{}",
            out.stderr
        );
        let all = items(&s);
        assert_eq!(all.iter().filter(|(_, st, _)| st == "failed").count(), 3);
        assert_eq!(all.iter().filter(|(_, st, _)| st == "pending").count(), 7);
        assert_eq!(s.step_states()["after"], "skipped");
        // Fixed: a resume runs the failed items and the rest.
        s.write("fixed", "");
        s.ward().args(["resume", "last"]).run().expect_code(0);
        assert_eq!(lines(&s, "started").len(), 3 + 10 + 1);
        assert!(items(&s).iter().all(|(_, st, _)| st == "succeeded"));
    }
}

#[test]
fn a_bad_max_failed_or_priority_is_reported_with_its_place() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: bad\nsteps:\n  \
         - id: a\n    for_each: [x]\n    max_failed: 120%\n    run: echo {{ item }}\n  \
         - id: b\n    for_each: [x]\n    max_failed: lots\n    run: echo {{ item }}\n  \
         - id: c\n    for_each: [x]\n    max_failed: -1\n    run: echo {{ item }}\n  \
         - id: d\n    max_failed: 3\n    run: echo d\n  \
         - id: e\n    for_each: [x]\n    priority: \"\"\n    run: echo {{ item }}\n",
    );
    let out = s.ward().args(["validate", "p.yml"]).run().expect_code(2);
    let text = format!("{}{}", out.stdout, out.stderr);
    for (place, words) in [
        (
            "p.yml:6:17",
            "`max_failed` in step `a` must be a number of items",
        ),
        (
            "p.yml:10:17",
            "`max_failed` in step `b` must be a number of items",
        ),
        (
            "p.yml:14:17",
            "`max_failed` in step `c` must be a number of items",
        ),
        (
            "p.yml:17:5",
            "`max_failed` in step `d` has no `for_each` to apply to",
        ),
        ("p.yml:21:15", "`priority` in step `e` is empty"),
    ] {
        assert!(text.contains(place), "no {place} in:\n{text}");
        assert!(text.contains(words), "no `{words}` in:\n{text}");
    }
}

#[test]
fn a_key_in_two_steps_needs_step() {
    let s = Scratch::new();
    // `one` fails; `two` (a `when: always` step after it) runs anyway;
    // both have an item `k`.
    s.write(
        "p.yml",
        "ward: 1\nname: two\nsteps:\n  - id: one\n    for_each: [k]\n    \
           run: '[ -e fixed ]'\n  - id: two\n    after: [one]\n    for_each: [k, m]\n    \
           when: always\n    run: echo {{ item }} >> journal\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(10);
    let out = s.ward().args(["retry", "last", "k"]).run().expect_code(2);
    assert!(
        out.stderr
            .contains("item `k` is in steps `one`, `two` of run")
            && out.stderr.contains("--step STEP"),
        "{}",
        out.stderr
    );
    s.ward()
        .args(["retry", "last", "k", "--step", "one"])
        .run()
        .expect_code(0);
    s.write("fixed", "");
    s.ward().args(["resume", "last"]).run().expect_code(0);
    let one = s
        .ward()
        .args(["items", "last", "--step", "one", "--json"])
        .run()
        .expect_code(0)
        .json();
    assert_eq!(one[0]["state"], "succeeded");
    assert_eq!(one[0]["attempts"], 2);
}
