//! README.md's first hour, run as the README writes it: the quickstart
//! command, then the failure and `ward resume --last` demo, each code block
//! taken from README.md and run by `sh` in a scratch copy of the repository
//! (the playbook's folder is relative to the playbook, so the copy keeps
//! every file it makes inside the scratch folder). The only change to the
//! text is `cargo run --release --`, which becomes this build's `ward`;
//! `WARD_STATE` points at a private state folder in the scratch folder.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::harness::{Scratch, json_ms, repo_path, status_step};

/// The `sh` code blocks of README.md, in order.
fn readme_sh_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_path("README.md")).expect("README.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match current.as_mut() {
            None if line.trim_end() == "```sh" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_end() == "```" => blocks.push(current.take().expect("block")),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(current.is_none(), "README.md: a ```sh block is not closed");
    blocks
}

/// The one README block that contains `needle`.
fn block_with(needle: &str) -> String {
    let found: Vec<String> = readme_sh_blocks()
        .into_iter()
        .filter(|b| b.contains(needle))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one ```sh block in README.md with `{needle}`, found {found:?}"
    );
    found.into_iter().next().expect("one block")
}

/// A README block with `cargo run --release --` replaced by this build's ward.
fn as_built(block: &str) -> String {
    assert!(
        block.contains("cargo run --release -- "),
        "README block does not run ward through cargo: {block}"
    );
    let ward = env!("CARGO_BIN_EXE_ward");
    assert!(!ward.contains('\''), "ward's path has a quote: {ward}");
    block.replace("cargo run --release -- ", &format!("'{ward}' "))
}

/// What `sh -c` of a README block did.
struct Shell {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs a README block with `sh` in the scratch copy of the repository.
fn sh(s: &Scratch, block: &str) -> Shell {
    let out = Command::new("sh")
        .arg("-c")
        .arg(as_built(block))
        .current_dir(s.path())
        .env("WARD_STATE", s.state())
        .env("WARD_NOW", "2026-11-23T02:00:00")
        .env("NO_COLOR", "1")
        .output()
        .expect("run sh");
    Shell {
        code: out.status.code().expect("sh ended by a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A scratch folder laid out like the repository for the quickstart:
/// `examples/quickstart.yml` and a private state folder.
fn scratch_checkout() -> Scratch {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("examples")).expect("examples/");
    std::fs::copy(
        repo_path("examples/quickstart.yml"),
        s.path().join("examples/quickstart.yml"),
    )
    .expect("copy the quickstart");
    let state = s.state();
    let state_dir = state.parent().expect("state folder");
    std::fs::create_dir_all(state_dir).expect("state folder");
    std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(0o700))
        .expect("private state folder");
    s
}

fn link_target(path: &Path) -> String {
    std::fs::read_link(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .display()
        .to_string()
}

#[test]
fn readme_quickstart_then_failure_and_resume() {
    let s = scratch_checkout();
    let snapshots = s.path().join("target/quickstart/backup/snapshots");

    // The first command: a clean backup.
    let first = sh(
        &s,
        &block_with("run examples/quickstart.yml --progress && cargo run --release -- status"),
    );
    assert_eq!(
        first.code, 0,
        "quickstart failed\n--- stdout\n{}\n--- stderr\n{}",
        first.stdout, first.stderr
    );
    let status = s.status(None);
    assert_eq!(status["state"], "succeeded", "{status}");
    let ids: Vec<&str> = status["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|step| step["id"].as_str().expect("id"))
        .collect();
    for id in &ids {
        assert_eq!(status_step(&status, id)["state"], "succeeded", "{id}");
    }
    // The two branches ran side by side: each started before the other ended.
    let copy = status_step(&status, "copy-documents");
    let export = status_step(&status, "export-settings");
    let at = |step: &serde_json::Value, key: &str| json_ms(&step[key]);
    assert!(
        at(&copy, "started_at") <= at(&export, "finished_at")
            && at(&export, "started_at") <= at(&copy, "finished_at"),
        "the copy and the export did not overlap: {copy} {export}"
    );
    // `ward status` (the command's second half) printed the run.
    assert!(
        first.stdout.contains("quickstart  succeeded"),
        "{}",
        first.stdout
    );
    // The snapshot, its manifest and its verified marker; `latest` points at it.
    assert!(snapshots.join("2026-11-23/documents/numbers.txt").is_file());
    assert!(snapshots.join("2026-11-23/settings.tar.gz").is_file());
    assert!(snapshots.join(".2026-11-23.manifest.json").is_file());
    assert!(snapshots.join(".2026-11-23.verified").is_file());
    assert_eq!(link_target(&snapshots.join("latest")), "2026-11-23");
    s.ward()
        .arg("verify")
        .arg(snapshots.join("latest"))
        .run()
        .expect_code(0);
    // The snapshot shares the copy's files (hard links), not copies of them.
    let linked = |rel: &str| std::fs::metadata(s.path().join(rel)).expect(rel).ino();
    assert_eq!(
        linked("target/quickstart/backup/current/documents/numbers.txt"),
        linked("target/quickstart/backup/snapshots/2026-11-23/documents/numbers.txt")
    );
    // The work folder is private.
    let mode = std::fs::metadata(s.path().join("target/quickstart"))
        .expect("work folder")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "work folder mode {mode:o}");

    // The failure and the resume, as one block.
    let demo = sh(&s, &block_with("resume --last"));
    assert_eq!(
        demo.code, 0,
        "the demo's last command failed\n--- stdout\n{}\n--- stderr\n{}",
        demo.stdout, demo.stderr
    );
    let (before, after) = demo
        .stdout
        .split_once("resuming run ")
        .unwrap_or_else(|| panic!("no resume in the output:\n{}", demo.stdout));
    // The run failed with exit 1, at the export, for the lock.
    assert_eq!(before.trim(), "exit 1", "{}", demo.stdout);
    assert!(
        demo.stderr.contains("export-settings failed")
            && demo.stderr.contains("the app holds settings.lock"),
        "{}",
        demo.stderr
    );
    // The resume ran the export and what waited for it, not the copy.
    assert!(
        after.contains("3 of 7 steps already done"),
        "{}",
        demo.stdout
    );
    for ran in [
        "export-settings (attempt 2)",
        "snapshot",
        "verify",
        "rotate",
    ] {
        assert!(
            after.contains(&format!("▶ {ran}\n")),
            "{ran} did not run:\n{after}"
        );
    }
    for skipped in ["private-folder", "make-sample-app", "copy-documents"] {
        assert!(
            !after.contains(&format!("▶ {skipped}")),
            "{skipped} ran again:\n{after}"
        );
    }
    let status = s.status(None);
    assert_eq!(status["state"], "succeeded", "{status}");
    assert_eq!(status["resumes"], 1, "{status}");
    assert_eq!(status_step(&status, "copy-documents")["attempts"], 1);
    assert_eq!(status_step(&status, "export-settings")["attempts"], 2);
    assert_eq!(
        status_step(&status, "export-settings")["attempt_list"][0]["exit_code"],
        1
    );
    // A second backup the same day: `<date>.2`, verified, and `latest`.
    assert_eq!(link_target(&snapshots.join("latest")), "2026-11-23.2");
    assert!(snapshots.join(".2026-11-23.2.verified").is_file());
    assert!(snapshots.join("2026-11-23").is_dir(), "rotate kept both");
    s.ward()
        .arg("verify")
        .arg(snapshots.join("latest"))
        .run()
        .expect_code(0);
}

/// The README's test command is scripts/test, and CI runs that same script.
#[test]
fn readme_test_command_is_the_script_ci_runs() {
    assert_eq!(block_with("scripts/test").trim(), "scripts/test");
    let mode = std::fs::metadata(repo_path("scripts/test"))
        .expect("scripts/test")
        .permissions()
        .mode();
    assert!(mode & 0o111 != 0, "scripts/test is not executable");
    let ci = std::fs::read_to_string(repo_path(".ci/run")).expect(".ci/run");
    assert!(
        ci.lines().any(|l| l.trim() == "scripts/test"),
        ".ci/run does not run scripts/test:\n{ci}"
    );
}

/// The quickstart's first step refuses a work folder that other users can
/// write, or one reached through a symbolic link, before anything is made
/// in it: someone who made it first could swap what is backed up.
#[test]
fn quickstart_refuses_a_work_folder_others_could_change() {
    let s = scratch_checkout();
    let open = s.path().join("open");
    std::fs::create_dir(&open).expect("open folder");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let run = s
        .ward()
        .args(["run", "examples/quickstart.yml", "--var"])
        .arg(format!("work={}", open.display()))
        .run()
        .expect_code(1);
    assert!(
        run.stderr.contains("other users can write it"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_dir(&open).expect("read").count(),
        0,
        "something was made in the open folder"
    );

    let elsewhere = s.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("folder");
    let link = s.path().join("link");
    std::os::unix::fs::symlink(&elsewhere, &link).expect("symlink");
    let run = s
        .ward()
        .args(["run", "examples/quickstart.yml", "--var"])
        .arg(format!("work={}", link.display()))
        .run()
        .expect_code(1);
    assert!(
        run.stderr.contains("not a folder of yours"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_dir(&elsewhere).expect("read").count(), 0);

    // A private folder inside one that others can change (not sticky, as
    // /tmp is): they could rename it away and put their own in its place.
    let inside = open.join("qs");
    let run = s
        .ward()
        .args(["run", "examples/quickstart.yml", "--var"])
        .arg(format!("work={}", inside.display()))
        .run()
        .expect_code(1);
    assert!(
        run.stderr.contains(&format!(
            "{}, a folder above it, is not yours or root's, or others can change it",
            open.display()
        )),
        "{}",
        run.stderr
    );
    assert!(!inside.join("app").exists(), "the sample was made");

    // The same folder, sticky: what is yours in it stays yours.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    s.ward()
        .args(["run", "examples/quickstart.yml", "--var"])
        .arg(format!("work={}", inside.display()))
        .run()
        .expect_code(0);
    assert!(inside.join("backup/snapshots/latest").exists());
}
