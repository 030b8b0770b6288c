//! Steering a fan-out: `priority:` (the order items start in), `ward
//! pause|unpause|retry` from a second process while the run goes on or
//! before a resume, and `max_failed:` (no new item past a bound).

use crate::harness::Scratch;

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
