//! State databases written by older wards (tests/fixtures/state/, one per
//! schema version) still open with this one: read commands refuse to
//! upgrade them and say how, `ward resume` and `ward run` upgrade them, and
//! the old runs then read as they were recorded.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::harness::{Scratch, repo_path, status_step};

/// A fixture database and the runs recorded in it.
struct Fixture {
    file: &'static str,
    version: i64,
    /// Run with `--var greeting=hi`, every step succeeded.
    succeeded: &'static str,
    /// The later run, failed at `gate` (no `go` file).
    failed: &'static str,
}

const FIXTURES: &[Fixture] = &[
    Fixture {
        file: "v1.db",
        version: 1,
        succeeded: "20261202-011252-cb5b",
        failed: "20261202-011252-95a8",
    },
    Fixture {
        file: "v2.db",
        version: 2,
        succeeded: "20261202-011252-3548",
        failed: "20261202-011252-ae3b",
    },
    Fixture {
        file: "v3.db",
        version: 3,
        succeeded: "20261202-063844-9f8f",
        failed: "20261202-063844-63cc",
    },
    Fixture {
        file: "v4.db",
        version: 4,
        succeeded: "20261202-074934-99ca",
        failed: "20261202-074935-4ecb",
    },
    Fixture {
        file: "v5.db",
        version: 5,
        succeeded: "20261202-123333-dcfc",
        failed: "20261202-123333-50b9",
    },
    Fixture {
        file: "v6.db",
        version: 6,
        succeeded: "20261203-101956-5f7b8a53",
        failed: "20261203-101956-25d732e6",
    },
    Fixture {
        file: "v7.db",
        version: 7,
        succeeded: "20261203-160805-5425dd1f",
        failed: "20261203-160805-0eb38a0a",
    },
];

fn user_version(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("sqlite");
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("user_version")
}

/// The schema version this ward writes, read off a database it made.
fn current_version() -> i64 {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: fresh\nsteps:\n  - id: a\n    run: 'true'\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    user_version(&s.state())
}

/// A scratch folder holding a private copy of the fixture database, with
/// the fixture playbook beside it and the runs pointing at that copy.
fn scratch_with(fixture: &Fixture) -> Scratch {
    let s = Scratch::new();
    let playbook = s.write(
        "p.yml",
        &std::fs::read_to_string(repo_path("tests/fixtures/state/p.yml")).expect("p.yml"),
    );
    let dir = s.state().parent().expect("state folder").to_path_buf();
    std::fs::create_dir(&dir).expect("state folder");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::copy(
        repo_path(&format!("tests/fixtures/state/{}", fixture.file)),
        s.state(),
    )
    .expect("copy fixture");
    std::fs::set_permissions(s.state(), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let canonical = std::fs::canonicalize(&playbook).expect("canonical path");
    let conn = rusqlite::Connection::open(s.state()).expect("sqlite");
    conn.execute(
        "UPDATE runs SET playbook_path = ?1",
        [canonical.display().to_string()],
    )
    .expect("relocate the playbook");
    drop(conn);
    assert_eq!(
        user_version(&s.state()),
        fixture.version,
        "{}",
        fixture.file
    );
    s
}

/// Read commands on an older database: refused, untouched, with the way out.
fn assert_read_commands_refuse(s: &Scratch, fixture: &Fixture) {
    let before = std::fs::read(s.state()).expect("read db");
    for args in [&["runs"][..], &["status"][..], &["log", "last"][..]] {
        let run = s.ward().args(args).run();
        assert_eq!(run.code, 4, "{} {args:?}: {}", fixture.file, run.stderr);
        assert!(
            run.stderr.contains("older than this ward's")
                && run.stderr.contains("run `ward run` or `ward resume` once"),
            "{} {args:?}: {}",
            fixture.file,
            run.stderr
        );
        assert_eq!(
            std::fs::read(s.state()).expect("read db"),
            before,
            "{} {args:?} changed the database",
            fixture.file
        );
    }
}

/// The fixture's succeeded run, as recorded by the old ward.
fn assert_old_success_reads_back(s: &Scratch, fixture: &Fixture) {
    let status = s.status(Some(fixture.succeeded));
    assert_eq!(status["id"], fixture.succeeded, "{}", fixture.file);
    assert_eq!(status["playbook_name"], "fixture");
    assert_eq!(status["state"], "succeeded");
    assert_eq!(status["resumes"], 0);
    let ids: Vec<&str> = status["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|x| x["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        ["first", "gate", "after", "always"],
        "{}",
        fixture.file
    );
    for id in ids {
        let step = status_step(&status, id);
        assert_eq!(step["state"], "succeeded", "{} {id}", fixture.file);
        assert_eq!(step["attempts"], 1, "{} {id}", fixture.file);
        assert_eq!(step["exit_code"], 0, "{} {id}", fixture.file);
        assert_eq!(step["attempt_list"][0]["outcome"], "succeeded");
    }
    let text = s
        .ward()
        .args(["status", fixture.succeeded])
        .run()
        .expect_code(0);
    assert!(
        text.stdout
            .contains(&format!("run {}  fixture  succeeded", fixture.succeeded)),
        "{}",
        text.stdout
    );
}

/// The fixture's failed run before anything resumed it.
fn assert_old_failure_reads_back(s: &Scratch, fixture: &Fixture) {
    let status = s.status(Some(fixture.failed));
    assert_eq!(status["state"], "failed", "{}", fixture.file);
    let states: Vec<(&str, &str)> = status["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|x| {
            (
                x["id"].as_str().expect("id"),
                x["state"].as_str().expect("state"),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("first", "succeeded"),
            ("gate", "failed"),
            ("after", "skipped"),
            ("always", "succeeded")
        ],
        "{}",
        fixture.file
    );
    assert_eq!(status_step(&status, "gate")["exit_code"], 1);
}

fn run_ids(s: &Scratch) -> Vec<String> {
    let runs = s
        .ward()
        .args(["runs", "--json"])
        .run()
        .expect_code(0)
        .json();
    let mut ids: Vec<String> = runs
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn every_schema_version_has_a_fixture() {
    let current = current_version();
    let versions: Vec<i64> = FIXTURES.iter().map(|f| f.version).collect();
    let wanted: Vec<i64> = (1..=current).collect();
    assert_eq!(
        versions, wanted,
        "this ward writes schema version {current}: add a fixture database for each version \
         (tests/fixtures/state/README.md says how)"
    );
}

#[test]
fn resume_upgrades_an_older_database_and_finishes_its_run() {
    let current = current_version();
    for fixture in FIXTURES {
        let s = scratch_with(fixture);
        if fixture.version < current {
            assert_read_commands_refuse(&s, fixture);
        } else {
            assert_old_failure_reads_back(&s, fixture);
        }
        s.write("go", "");
        s.ward().args(["resume", "--last"]).run().expect_code(0);
        assert_eq!(user_version(&s.state()), current, "{}", fixture.file);
        let resumed = s.status(Some(fixture.failed));
        assert_eq!(resumed["state"], "succeeded", "{}", fixture.file);
        assert_eq!(resumed["resumes"], 1, "{}", fixture.file);
        assert_eq!(status_step(&resumed, "after")["state"], "succeeded");
        let journal = s.read("journal");
        assert!(
            journal.contains("after\n") && journal.ends_with("always\n"),
            "{}: {journal}",
            fixture.file
        );
        assert_old_success_reads_back(&s, fixture);
        let mut recorded = [fixture.succeeded, fixture.failed];
        recorded.sort();
        assert_eq!(run_ids(&s), recorded, "{}", fixture.file);
    }
}

#[test]
fn a_new_run_upgrades_an_older_database_and_leaves_the_old_runs_as_they_were() {
    let current = current_version();
    for fixture in FIXTURES {
        let s = scratch_with(fixture);
        if fixture.version < current {
            assert_read_commands_refuse(&s, fixture);
        }
        s.write("go", "");
        s.ward().args(["run", "p.yml"]).run().expect_code(0);
        assert_eq!(user_version(&s.state()), current, "{}", fixture.file);
        assert_old_failure_reads_back(&s, fixture);
        assert_old_success_reads_back(&s, fixture);
        let ids = run_ids(&s);
        assert_eq!(ids.len(), 3, "{}: {ids:?}", fixture.file);
        assert!(
            ids.contains(&fixture.succeeded.to_owned()) && ids.contains(&fixture.failed.to_owned())
        );
        // The last run is the new one, and it is the one `status` shows.
        let last = s.status(None);
        assert!(
            last["id"] != fixture.succeeded && last["id"] != fixture.failed,
            "{}",
            fixture.file
        );
        assert_eq!(last["state"], "succeeded");
    }
}
