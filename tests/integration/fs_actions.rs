//! rsync, snapshot.hardlink, verify, rotate and service.stop/start, for
//! real: real rsync, real files, real processes.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::harness::{Scratch, wait_for};

/// A FOSSology-like repository: gold/, files/ (one file hard-linked from
/// gold, as wget_agent does), license/ and logs/.
fn make_repo(root: &Path) {
    for (dir, name, body) in [
        (
            "gold/ab/cd/ef",
            "abcdef01.aa11.100",
            "gold archive".repeat(50),
        ),
        (
            "files/ab/cd/ef",
            "unpacked-1.bb22.20",
            "unpacked file".to_owned(),
        ),
        (
            "files/12/34/56",
            "unpacked-2.cc33.30",
            "another unpacked file".to_owned(),
        ),
        (
            "license/00/11/22",
            "licenseref.dd44.10",
            "MIT text".to_owned(),
        ),
        ("logs/00/00/01", "000001", "agent log".to_owned()),
    ] {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
        std::fs::write(root.join(dir).join(name), body).expect("write");
    }
    std::fs::hard_link(
        root.join("gold/ab/cd/ef/abcdef01.aa11.100"),
        root.join("files/ab/cd/ef/abcdef01.aa11.100"),
    )
    .expect("hard link");
}

fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read").flatten() {
            if e.file_type().expect("type").is_dir() {
                stack.push(e.path());
            } else {
                out.push(
                    e.path()
                        .strip_prefix(root)
                        .expect("prefix")
                        .display()
                        .to_string(),
                );
            }
        }
    }
    out.sort();
    out
}

#[test]
fn rsync_full_keeps_hard_links_through_backup_and_restore() {
    let s = Scratch::new();
    make_repo(&s.path().join("repo"));
    s.write(
        "p.yml",
        "ward: 1\nname: rs\nsteps:\n  - id: backup\n    action: rsync\n    with: { src: repo, dest: backup/current/repository }\n  - id: restore\n    needs: [backup]\n    action: rsync\n    with: { src: backup/current/repository, dest: restored }\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    for tree in ["backup/current/repository", "restored"] {
        let gold = std::fs::metadata(s.path().join(tree).join("gold/ab/cd/ef/abcdef01.aa11.100"))
            .expect("gold");
        let files = std::fs::metadata(s.path().join(tree).join("files/ab/cd/ef/abcdef01.aa11.100"))
            .expect("files");
        assert_eq!(
            gold.ino(),
            files.ino(),
            "{tree}: gold and files share the inode"
        );
        assert_eq!(gold.nlink(), 2, "{tree}");
    }
    assert_eq!(
        files_under(&s.path().join("repo")),
        files_under(&s.path().join("restored"))
    );
    let status = s.status(None);
    let stats = &status["steps"][0]["attempt_list"][0]["details"];
    assert_eq!(stats["files_transferred"], 5, "{stats}");
}

#[test]
fn rsync_gold_only_copies_gold_and_license() {
    let s = Scratch::new();
    make_repo(&s.path().join("repo"));
    s.write(
        "p.yml",
        "ward: 1\nname: gold\nsteps:\n  - id: backup\n    action: rsync\n    with: { src: repo, dest: backup, mode: gold-only }\n",
    );
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert_eq!(
        files_under(&s.path().join("backup")),
        [
            "gold/ab/cd/ef/abcdef01.aa11.100",
            "license/00/11/22/licenseref.dd44.10"
        ]
    );
}

#[test]
fn rsync_exit_23_fails_and_24_warns_unless_told_to_fail() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path().join("src")).expect("mkdir");
    s.write("src/present", "x");
    s.write("list.txt", "present\nmissing\n");
    s.write(
        "p23.yml",
        "ward: 1\nname: r23\nsteps:\n  - id: sync\n    action: rsync\n    with: { src: src, dest: dst, args: [--files-from=list.txt] }\n",
    );
    let run = s.ward().args(["run", "p23.yml"]).run().expect_code(1);
    assert!(
        run.stderr
            .contains("exit code 23 (partial transfer due to error)"),
        "{}",
        run.stderr
    );

    // Exit 24: a file vanishes while a slowed-down transfer runs.
    let big = s.path().join("big");
    std::fs::create_dir_all(&big).expect("mkdir");
    for i in 0..200 {
        std::fs::write(big.join(format!("f{i:03}")), vec![b'x'; 16 * 1024]).expect("write");
    }
    let body = "action: rsync\n    with: { src: big, dest: out, args: [--no-inc-recursive, --bwlimit=1500] }";
    s.write(
        "p24.yml",
        &format!("ward: 1\nname: r24\nsteps:\n  - id: sync\n    {body}\n"),
    );
    // Once the first file arrived, the whole file list exists (--no-inc-recursive):
    // deleting the last file then makes it vanish mid-transfer.
    let first_arrived = || wait_for(30, || s.path().join("out/f000").exists());
    let child = s.ward().args(["run", "p24.yml"]).spawn();
    assert!(first_arrived());
    std::fs::remove_file(big.join("f199")).expect("vanish");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("vanished during the transfer"), "{stderr}");

    std::fs::write(big.join("f199"), vec![b'x'; 16 * 1024]).expect("write");
    s.write(
        "p24f.yml",
        &format!(
            "ward: 1\nname: r24f\nsteps:\n  - id: sync\n    {}, vanished: fail }}\n",
            body.trim_end_matches(" }")
        ),
    );
    std::fs::remove_dir_all(s.path().join("out")).expect("rm");
    let child = s.ward().args(["run", "p24f.yml"]).spawn();
    assert!(first_arrived());
    std::fs::remove_file(big.join("f199")).expect("vanish");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const SNAPSHOT: &str = "\
ward: 1
name: snap
vars:
  keep: 3
steps:
  - id: copy
    action: rsync
    with: { src: data, dest: backup/current }
  - id: snapshot
    needs: [copy]
    action: snapshot.hardlink
    with: { src: backup/current, dir: backup/snapshots, hash: all }
  - id: verify
    needs: [snapshot]
    action: verify
    with: { path: backup/snapshots/latest }
  - id: rotate
    needs: [verify]
    action: rotate
    with: { dir: backup/snapshots, keep_daily: \"{{ keep }}\", min_keep: 2 }
";

fn make_data(root: &Path) {
    std::fs::create_dir_all(root.join("sub dir/deeper")).expect("mkdir");
    std::fs::write(root.join("sub dir/deeper/file.txt"), "hello").expect("write");
    std::fs::write(root.join("odd\tname é"), "odd").expect("write");
    std::os::unix::fs::symlink("sub dir/deeper/file.txt", root.join("link")).expect("symlink");
    std::os::unix::fs::symlink("/nonexistent/target", root.join("dangling")).expect("symlink");
    let fifo = root.join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
}

#[test]
fn snapshot_verify_rotate_over_days_keeps_old_snapshots_isolated() {
    let s = Scratch::new();
    make_data(&s.path().join("data"));
    s.write("p.yml", SNAPSHOT);
    for day in 1..=6 {
        let now = format!("2026-11-{day:02}T02:00:00");
        s.write("data/day.txt", &format!("day {day}\n"));
        // Distinct mtimes, as on real nights (rsync's quick check compares size and mtime).
        let f = std::fs::File::options()
            .write(true)
            .open(s.path().join("data/day.txt"))
            .expect("open");
        f.set_modified(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_790_000_000 + day * 86_400),
        )
        .expect("mtime");
        let run = s.ward().args(["run", "p.yml"]).env("WARD_NOW", &now).run();
        assert_eq!(run.code, 0, "day {day}: {}", run.stderr);
    }
    let snaps = s.path().join("backup/snapshots");
    let names = crate::harness::snapshot_names(&snaps);
    assert_eq!(names, ["2026-11-04", "2026-11-05", "2026-11-06"]);
    assert_eq!(
        std::fs::read_link(snaps.join("latest"))
            .expect("latest")
            .display()
            .to_string(),
        "2026-11-06"
    );
    // Older snapshots keep their own content although `current` moved on.
    assert_eq!(
        std::fs::read_to_string(snaps.join("2026-11-04/day.txt")).expect("day"),
        "day 4\n"
    );
    // Unchanged files share one inode across snapshots.
    let a = std::fs::metadata(snaps.join("2026-11-04/sub dir/deeper/file.txt")).expect("a");
    let b = std::fs::metadata(snaps.join("2026-11-06/sub dir/deeper/file.txt")).expect("b");
    assert_eq!(a.ino(), b.ino());
    assert!(
        std::fs::symlink_metadata(snaps.join("2026-11-06/fifo"))
            .expect("fifo")
            .file_type()
            .is_fifo_like()
    );
    // The CLI agrees, and catches damage.
    s.ward()
        .args(["verify"])
        .arg(snaps.join("latest"))
        .run()
        .expect_code(0);
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}

impl FifoLike for std::fs::FileType {
    fn is_fifo_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_fifo()
    }
}

/// `ward verify --json SET`, which must find differences (exit 1).
fn verify_failing(s: &Scratch, set: &Path) -> serde_json::Value {
    s.ward()
        .args(["verify", "--json"])
        .arg(set)
        .run()
        .expect_code(1)
        .json()
}

/// `ward verify --json`'s mismatches as "kind path" lines, in its order.
fn mismatches(v: &serde_json::Value) -> Vec<String> {
    v["mismatches"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    format!(
                        "{} {}",
                        m["kind"].as_str().unwrap_or(""),
                        m["path"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn verify_catches_flipped_byte_truncation_deletion_and_corrupt_manifest() {
    let s = Scratch::new();
    make_data(&s.path().join("data"));
    s.write("big.bin", "");
    std::fs::write(s.path().join("data/blob"), vec![7u8; 100_000]).expect("blob");
    s.write("p.yml", SNAPSHOT);
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let set = s.path().join("backup/snapshots/2026-11-23");
    let check = |expect: &str| {
        let v = verify_failing(&s, &set);
        assert_eq!(v["ok"], false);
        let found = mismatches(&v);
        assert!(
            found.iter().any(|f| f == expect),
            "expected {expect:?} in {found:?} / {v}"
        );
    };
    // Snapshots are hard links: break the link first so `data/` stays intact.
    let blob = set.join("blob");
    let mut bytes = std::fs::read(&blob).expect("read");
    let mtime = std::fs::metadata(&blob)
        .and_then(|m| m.modified())
        .expect("mtime");
    std::fs::remove_file(&blob).expect("unlink");
    bytes[50_000] ^= 1;
    std::fs::write(&blob, &bytes).expect("flip");
    check("changed blob");
    bytes[50_000] ^= 1;
    std::fs::remove_file(&blob).expect("unlink");
    std::fs::write(&blob, &bytes[..1000]).expect("truncate");
    check("truncated blob");
    std::fs::remove_file(&blob).expect("unlink");
    check("missing blob");
    std::fs::write(&blob, &bytes).expect("restore");
    // The manifest records the mtime too: a restored copy has it back.
    std::fs::File::options()
        .write(true)
        .open(&blob)
        .and_then(|f| f.set_modified(mtime))
        .expect("set mtime");
    s.ward().args(["verify"]).arg(&set).run().expect_code(0);
    s.write("backup/snapshots/2026-11-23/new-file", "surprise");
    check("extra new-file");
    std::fs::remove_file(set.join("new-file")).expect("rm");
    // The manifest lives next to the snapshot, not inside it.
    assert!(!set.join("manifest.json").exists());
    let manifest = s.path().join("backup/snapshots/.2026-11-23.manifest.json");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    assert!(text.contains("\"size\":5,"), "{text}");
    std::fs::write(&manifest, text.replacen("\"size\":5,", "\"size\":6,", 1)).expect("corrupt");
    let run = s.ward().args(["verify"]).arg(&set).run().expect_code(1);
    assert!(
        run.stderr
            .contains("is corrupt: its checksum does not match"),
        "{}",
        run.stderr
    );
    std::fs::write(&manifest, "{ not json").expect("corrupt");
    let run = s.ward().args(["verify"]).arg(&set).run().expect_code(1);
    assert!(run.stderr.contains("is corrupt"), "{}", run.stderr);
}

#[test]
fn snapshot_redoes_a_leftover_partial_and_is_idempotent_when_done() {
    let s = Scratch::new();
    make_data(&s.path().join("data"));
    std::fs::create_dir_all(s.path().join("backup/snapshots/2026-11-23.partial/junk"))
        .expect("partial");
    s.write(
        "backup/snapshots/2026-11-23.partial/junk/half",
        "half-linked",
    );
    s.write("p.yml", SNAPSHOT);
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let snaps = s.path().join("backup/snapshots");
    assert!(!snaps.join("2026-11-23.partial").exists());
    assert!(!snaps.join("2026-11-23/junk").exists());
    // Same day again, a new run: a new snapshot under the next suffix.
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    assert!(snaps.join("2026-11-23.2").is_dir());
    let plan = s.ward().args(["plan", "p.yml"]).run().expect_code(0).stdout;
    assert!(plan.contains("would keep 2 verified snapshot(s)"), "{plan}");
}

#[test]
fn service_stop_waits_until_processes_are_gone_and_reports_leftovers() {
    let s = Scratch::new();
    let name = format!("wagent{}", std::process::id() % 100_000);
    let agent = s.path().join(&name);
    std::fs::copy("/bin/sleep", &agent).expect("copy sleep");
    let mut a = std::process::Command::new(&agent)
        .arg("300")
        .spawn()
        .expect("agent");
    let mut b = std::process::Command::new(&agent)
        .arg("300")
        .spawn()
        .expect("agent");
    let pa = a.id();
    s.write(
        "stop.yml",
        &format!(
            "ward: 1\nname: stop\nsteps:\n  - id: stop\n    action: service.stop\n    with: {{ stop: [kill, \"{pa}\"], wait_gone: [{name}], timeout: 1s }}\n"
        ),
    );
    let run = s.ward().args(["run", "stop.yml"]).run().expect_code(1);
    assert!(
        run.stderr
            .contains(&format!("still running after 1s: {name} (pid {})", b.id())),
        "{}",
        run.stderr
    );
    a.wait().expect("reap a");
    let pb = b.id();
    s.write(
        "stop2.yml",
        &format!(
            "ward: 1\nname: stop2\nsteps:\n  - id: stop\n    action: service.stop\n    with: {{ stop: [kill, \"{pb}\"], wait_gone: {name}, timeout: 10s }}\n"
        ),
    );
    // Reap b in the background so it does not linger as a zombie.
    let reaper = std::thread::spawn(move || b.wait());
    s.ward().args(["run", "stop2.yml"]).run().expect_code(0);
    reaper.join().expect("join").expect("reap b");

    s.write(
        "start.yml",
        &format!(
            "ward: 1\nname: start\nsteps:\n  - id: start\n    action: service.start\n    with: {{ start: [sh, -c, \"{} 300 > /dev/null 2>&1 &\"], wait_up: {name}, timeout: 5s }}\n  - id: stop\n    needs: [start]\n    action: service.stop\n    with: {{ stop: [pkill, -x, {name}], wait_gone: {name}, timeout: 10s }}\n",
            agent.display()
        ),
    );
    s.ward().args(["run", "start.yml"]).run().expect_code(0);
    assert!(wait_for(5, || std::process::Command::new("pgrep")
        .args(["-x", &name])
        .status()
        .map(|st| !st.success())
        .unwrap_or(true)));
    s.write(
        "never.yml",
        "ward: 1\nname: never\nsteps:\n  - id: start\n    action: service.start\n    with: { start: [\"true\"], wait_up: no-such-daemon, timeout: 500ms }\n",
    );
    let run = s.ward().args(["run", "never.yml"]).run().expect_code(1);
    assert!(
        run.stderr
            .contains("process `no-such-daemon` is not running 500ms after `true`"),
        "{}",
        run.stderr
    );
}

#[test]
fn base_incremental_snapshots_link_only_changes_verify_rotate_and_restore() {
    let s = Scratch::new();
    let data = s.path().join("data");
    std::fs::create_dir_all(data.join("dir")).expect("mkdir");
    let set_file = |rel: &str, body: &str, day: u64| {
        s.write(&format!("data/{rel}"), body);
        let f = std::fs::File::options()
            .write(true)
            .open(data.join(rel))
            .expect("open");
        f.set_modified(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_790_000_000 + day * 86_400),
        )
        .expect("mtime");
    };
    set_file("dir/a", "a on day 1", 1);
    set_file("dir/b", "b, deleted on day 2", 1);
    set_file("same", "never changes", 1);
    s.write(
        "p.yml",
        "ward: 1\nname: inc\nsteps:\n  - id: copy\n    action: rsync\n    with: { src: data, dest: current }\n  - id: snapshot\n    needs: [copy]\n    action: snapshot.hardlink\n    with: { src: current, dir: snaps, strategy: base-incremental, cycle: 3, hash: all }\n  - id: verify\n    needs: [snapshot]\n    action: verify\n    with: { path: snaps/latest }\n  - id: rotate\n    needs: [verify]\n    action: rotate\n    with: { dir: snaps, keep_daily: 2, min_keep: 1 }\n",
    );
    let night = |day: u64| {
        let run = s
            .ward()
            .args(["run", "p.yml"])
            .env("WARD_NOW", &format!("2026-11-{day:02}T02:00:00"))
            .run();
        assert_eq!(run.code, 0, "day {day}: {}", run.stderr);
    };
    night(1);
    set_file("dir/a", "a changed on day 2", 2);
    std::fs::remove_file(data.join("dir/b")).expect("rm");
    set_file("c", "new on day 2", 2);
    night(2);
    let snaps = s.path().join("snaps");
    let day2 = snaps.join("2026-11-02");
    // Only new and changed files are in the incremental snapshot.
    let mut linked = files_under(&day2);
    linked.retain(|f| f != "manifest.json");
    assert_eq!(linked, ["c", "dir/a"]);
    assert_eq!(
        std::fs::read_to_string(snaps.join(".2026-11-02.base")).expect("marker"),
        "2026-11-01"
    );
    s.ward().args(["verify"]).arg(&day2).run().expect_code(0);
    // Restoring from the incremental snapshot gives the tree of day 2.
    s.write(
        "restore.yml",
        "ward: 1\nname: rest\nsteps:\n  - id: restore\n    action: rsync\n    with: { src: snaps/2026-11-02, dest: restored }\n",
    );
    s.ward().args(["run", "restore.yml"]).run().expect_code(0);
    let mut restored = files_under(&s.path().join("restored"));
    restored.retain(|f| f != "manifest.json");
    assert_eq!(restored, ["c", "dir/a", "same"]);
    assert_eq!(s.read("restored/dir/a"), "a changed on day 2");
    assert!(
        !snaps
            .read_dir()
            .expect("read")
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains(".view-"))
    );
    // Day 4: the base is 3 days old, so a new base; rotation keeps day 2's base.
    night(4);
    assert!(!snaps.join(".2026-11-04.base").exists(), "day 4 is a base");
    let names = crate::harness::snapshot_names(&snaps);
    assert_eq!(names, ["2026-11-01", "2026-11-02", "2026-11-04"]);
    // A damaged base makes its incremental snapshot fail verification.
    std::fs::remove_file(snaps.join("2026-11-01/same")).expect("rm");
    let run = s.ward().args(["verify"]).arg(&day2).run().expect_code(1);
    assert!(
        run.stdout.contains("missing") && run.stdout.contains("same"),
        "{}",
        run.stdout
    );
}

#[test]
fn verify_reports_every_kind_of_difference_in_manifest_order_then_extras() {
    let s = Scratch::new();
    make_data(&s.path().join("data"));
    std::fs::create_dir_all(s.path().join("data/gone/inner")).expect("mkdir");
    std::fs::write(s.path().join("data/gone/inner/a.txt"), "a").expect("write");
    std::fs::write(s.path().join("data/becomes-dir"), "file").expect("write");
    std::fs::write(s.path().join("data/mode.txt"), "mode").expect("write");
    s.write("p.yml", SNAPSHOT);
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let set = s.path().join("backup/snapshots/2026-11-23");
    // Snapshots share inodes with `current`: replace, never write in place.
    std::fs::remove_dir_all(set.join("gone")).expect("rm gone");
    std::fs::remove_file(set.join("becomes-dir")).expect("rm file");
    std::fs::create_dir(set.join("becomes-dir")).expect("mkdir");
    std::fs::write(set.join("becomes-dir/inside"), "x").expect("write");
    std::fs::remove_file(set.join("link")).expect("rm link");
    std::os::unix::fs::symlink("elsewhere", set.join("link")).expect("symlink");
    std::fs::remove_file(set.join("mode.txt")).expect("rm");
    std::fs::write(set.join("mode.txt"), "mode").expect("write");
    std::fs::set_permissions(
        set.join("mode.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    std::fs::create_dir_all(set.join("new dir/deep")).expect("mkdir");
    std::fs::write(set.join("new dir/deep/x"), "x").expect("write");
    std::fs::write(set.join("sub dir/extra.txt"), "x").expect("write");
    let v = verify_failing(&s, &set);
    let found = mismatches(&v);
    // Manifest order is path order; what is inside a folder found where a
    // file was is extra; a new folder is reported, not entered.
    assert_eq!(
        found,
        [
            "changed becomes-dir",
            "missing gone",
            "missing gone/inner",
            "missing gone/inner/a.txt",
            "changed link",
            "changed mode.txt",
            "extra becomes-dir/inside",
            "extra new dir",
            "extra sub dir/extra.txt",
        ],
        "{v}"
    );
}
