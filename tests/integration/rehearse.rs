//! `ward rehearse`: a backup made by a real ward run (rsync,
//! snapshot.hardlink, pg.dumpall against a real cluster), then its restore
//! playbook rehearsed into a sandbox, and production proven untouched.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::harness::{Scratch, repo_path, wait_for};
use crate::pg_cluster::Cluster;

const BACKUP: &str = "\
ward: 1
name: bk
vars: { pg_host: x, pg_port: 5432 }
steps:
  - id: copy
    action: rsync
    with: { src: data, dest: backup/current/files }
  - id: dump
    needs: [copy]
    action: pg.dumpall
    with: { dest: backup/current/db/all.sql.gz, min_bytes: 10, db: { host: \"{{ pg_host }}\", port: \"{{ pg_port }}\", user: postgres } }
  - id: snapshot
    needs: [dump]
    action: snapshot.hardlink
    with: { src: backup/current, dir: backup/snaps, hash: all }
";

/// A restore playbook: production values point at the test's production
/// folder and cluster, so a rehearsal that leaked would change them.
fn restore(extra_step: &str) -> String {
    format!(
        "\
ward: 1
name: restore
vars:
  from: backup/snaps/latest
  dest: prod/files
  pg_host: x
  pg_port: 5432
  pg_user: postgres
  check_first: true
steps:
  - id: verify-snapshot
    if: \"{{{{ check_first }}}}\"
    action: verify
    with: {{ path: \"{{{{ from }}}}\" }}
  - id: stop-app
    after: [verify-snapshot]
    action: service.stop
    with: {{ stop: [/bin/false], wait_gone: no-such-process-here }}
  - id: restore-db
    needs: [stop-app]
    action: pg.restore
    with: {{ src: \"{{{{ from }}}}/db/all.sql.gz\", db: {{ host: \"{{{{ pg_host }}}}\", port: \"{{{{ pg_port }}}}\", user: \"{{{{ pg_user }}}}\" }} }}
  - id: restore-files
    needs: [stop-app]
    action: rsync
    with: {{ src: \"{{{{ from }}}}/files\", dest: \"{{{{ dest }}}}\" }}
{extra_step}  - id: start-app
    needs: [restore-db, restore-files]
    action: service.start
    with: {{ start: [/bin/true] }}
rehearse:
  targets: [dest]
  postgres: {{ host: pg_host, port: pg_port, user: pg_user }}
  checks:
    - {{ name: items restored, sql: \"SELECT count(*) FROM items\", db: app, expect: \"3\" }}
    - {{ exists: a.txt, target: dest }}
"
    )
}

struct Setup {
    s: Scratch,
    prod: Cluster,
}

/// Source files, the production cluster with a database, a backup of both
/// made by `ward run`, and the production copy of the files.
fn setup() -> Setup {
    let s = Scratch::new();
    let prod = Cluster::start();
    prod.psql("postgres", "CREATE DATABASE app");
    prod.psql(
        "app",
        "CREATE TABLE items (n int); INSERT INTO items VALUES (1), (2), (3); \
         CREATE TABLE empty (n int)",
    );
    s.write("data/a.txt", "alpha\n");
    s.write("data/sub/b.txt", &"beta\n".repeat(100));
    s.write("backup.yml", BACKUP);
    s.ward()
        .args(["run", "backup.yml", "--var"])
        .arg(format!("pg_host={}", prod.socket.display()))
        .arg("--var")
        .arg(format!("pg_port={}", prod.port))
        .run()
        .expect_code(0);
    // Production as it is now: its own files.
    s.write("prod/files/a.txt", "alpha\n");
    s.write("prod/files/own.txt", "production only\n");
    Setup { s, prod }
}

impl Setup {
    fn write_restore(&self, extra_step: &str) {
        let text = restore(extra_step)
            .replace(
                "pg_host: x",
                &format!("pg_host: {}", self.prod.socket.display()),
            )
            .replace("pg_port: 5432", &format!("pg_port: {}", self.prod.port));
        self.s.write("restore.yml", &text);
    }

    /// Every file and folder of the test folder but the state: path, type,
    /// mode, size, mtime and content.
    fn checksum(&self) -> String {
        let mut h = Sha256::new();
        walk(self.s.path(), self.s.path(), &mut h);
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn prod_dump(&self) -> String {
        let out = Command::new("pg_dumpall")
            .args(["-U", "postgres", "-h"])
            .arg(&self.prod.socket)
            .args(["-p", &self.prod.port.to_string()])
            .output()
            .expect("pg_dumpall");
        assert!(out.status.success());
        // `\restrict` lines carry a fresh random key in every dump.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn walk(root: &Path, dir: &Path, h: &mut Sha256) {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    for p in names {
        let rel = p.strip_prefix(root).expect("below");
        if rel == Path::new("state") {
            continue;
        }
        let m = std::fs::symlink_metadata(&p).expect("stat");
        h.update(format!(
            "{}\0{:o}\0{}\0{}.{}\0",
            rel.display(),
            m.mode(),
            m.len(),
            m.mtime(),
            m.mtime_nsec()
        ));
        if m.is_dir() {
            walk(root, &p, h);
        } else if m.is_file() {
            h.update(std::fs::read(&p).expect("read"));
        }
    }
}

/// Processes whose command line mentions `text`.
fn processes_mentioning(text: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(text).then_some(cmd)
        })
        .collect()
}

fn sandbox_parent(s: &Scratch) -> PathBuf {
    s.path().join("state/rehearse")
}

#[test]
fn rehearsal_restores_into_a_sandbox_checks_and_leaves_production_alone() {
    let t = setup();
    t.write_restore("");
    let before = (t.checksum(), t.prod_dump());
    let out =
        t.s.ward()
            .args(["rehearse", "restore.yml", "--json"])
            .run()
            .expect_code(0);
    let j = out.json();
    assert_eq!(j["ok"], true, "{j}");
    assert_eq!(j["run"], "succeeded", "{j}");
    let checks: BTreeMap<String, String> = j["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").to_owned(),
                c["verdict"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        checks.get("files restored by `restore-files` match the snapshot"),
        Some(&"passed".to_owned()),
        "{j}"
    );
    assert_eq!(
        checks.get("row counts of `restore-db` match its dump"),
        Some(&"passed".to_owned()),
        "{j}"
    );
    assert_eq!(
        checks.get("items restored"),
        Some(&"passed".to_owned()),
        "{j}"
    );
    assert_eq!(
        checks.get("a.txt exists in dest"),
        Some(&"passed".to_owned()),
        "{j}"
    );
    assert_eq!(checks.len(), 4, "{j}");
    // Fenced: both service steps, and verify runs read-only.
    let fenced: Vec<&str> = j["fenced"]
        .as_array()
        .expect("fenced")
        .iter()
        .filter_map(|f| f["step"].as_str())
        .collect();
    assert_eq!(fenced, ["verify-snapshot", "stop-app", "start-app"], "{j}");
    // Torn down: the folder is gone, no server of it is left.
    let sandbox = j["sandbox"].as_str().expect("sandbox").to_owned();
    assert!(!Path::new(&sandbox).exists(), "{sandbox} left behind");
    assert_eq!(
        std::fs::read_dir(sandbox_parent(&t.s))
            .expect("rehearse/")
            .count(),
        0
    );
    let name = Path::new(&sandbox)
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_owned();
    assert!(
        processes_mentioning(&format!("ward-{name}-pg")).is_empty()
            && processes_mentioning(&sandbox).is_empty(),
        "a sandbox server is still running"
    );
    // Production untouched: files (with times and modes), backup, cluster.
    assert_eq!((t.checksum(), t.prod_dump()), before);
    // Recorded like a run, under the rehearsal's own lock.
    let status = t.s.status(None);
    assert_eq!(status["state"], "succeeded", "{status}");
    let text = status.to_string();
    assert!(
        text.contains(".rehearse"),
        "lock not the rehearsal's: {status}"
    );
}

#[test]
fn rehearsal_writes_nothing_outside_its_sandbox_even_when_it_could_not() {
    let t = setup();
    t.write_restore("");
    // Production folders, source and backup read-only for everybody, root
    // included: a private mount namespace with read-only bind mounts.
    let ro: Vec<String> = ["prod", "backup", "data"]
        .iter()
        .map(|d| t.s.path().join(d).display().to_string())
        .collect();
    let script = ro
        .iter()
        .map(|d| format!("mount --bind {d} {d} && mount -o remount,ro,bind {d} {d} && "))
        .collect::<String>()
        + "exec \"$0\" \"$@\"";
    // The mounts hold inside the namespace: a write there fails.
    let probe = Command::new("unshare")
        .args(["-m", "--", "sh", "-c"])
        .arg(&script)
        .args(["touch", &format!("{}/files/probe", ro[0])])
        .status()
        .expect("unshare");
    assert!(!probe.success(), "read-only mounts do not hold");
    let out =
        t.s.ward_via(&["unshare", "-m", "--", "sh", "-c", &script])
            .args(["rehearse", "restore.yml"])
            .run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("rehearsal passed"), "{}", out.stdout);
}

#[test]
fn a_corrupted_snapshot_file_fails_the_rehearsal_naming_it() {
    let t = setup();
    t.write_restore("");
    // Same size, other content: only the content hash can tell.
    let file = t.s.path().join("backup/snaps/latest/files/sub/b.txt");
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[3] ^= 1;
    std::fs::write(&file, bytes).expect("corrupt");
    // Without the playbook's own verify first, the restore copies the damage
    // and the check of the restored files names the file.
    let out =
        t.s.ward()
            .args(["rehearse", "restore.yml", "--var", "check_first=false"])
            .run()
            .expect_code(1);
    assert!(
        out.stdout.contains("failed") && out.stdout.contains("sub/b.txt"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("1 check(s) failed"), "{}", out.stdout);
    // The checks are recorded with the run: its report is the evidence.
    let report =
        t.s.ward()
            .args(["report", "last", "--format", "md"])
            .run()
            .expect_code(0);
    assert!(
        report.stdout.contains("rehearsal in sandbox")
            && report.stdout.contains("rehearsal-check")
            && report.stdout.contains("sub/b.txt"),
        "{}",
        report.stdout
    );
    // With it, the run stops at the snapshot's verify, which names it too;
    // `--report` writes the report of the failed rehearsal.
    let out =
        t.s.ward()
            .args(["rehearse", "restore.yml", "--report", "failed.html"])
            .run()
            .expect_code(1);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("sub/b.txt"), "{all}");
    assert!(all.contains("the restore failed"), "{all}");
    let html = t.s.read("failed.html");
    assert!(
        html.contains("rehearsal in sandbox") && html.contains("sub/b.txt"),
        "{html}"
    );
}

#[test]
fn a_truncated_dump_fails_the_rehearsal_with_the_reason() {
    let t = setup();
    t.write_restore("");
    let dump = t.s.path().join("backup/snaps/latest/db/all.sql.gz");
    let bytes = std::fs::read(&dump).expect("read");
    std::fs::write(&dump, &bytes[..bytes.len() / 2]).expect("truncate");
    let out =
        t.s.ward()
            .args(["rehearse", "restore.yml", "--var", "check_first=false"])
            .run()
            .expect_code(1);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(all.contains("restore-db"), "{all}");
    assert!(all.contains("the restore failed"), "{all}");
    let status = t.s.status(None);
    let step = crate::harness::status_step(&status, "restore-db");
    assert_eq!(step["state"], "failed", "{step}");
    assert!(!sandbox_parent(&t.s).read_dir().expect("dir").any(|_| true));
    // Its sandbox is gone and its steps would not be fenced: not resumed.
    let out = t.s.ward().args(["resume", "--last"]).run().expect_code(2);
    assert!(out.stderr.contains("was a rehearsal"), "{}", out.stderr);
}

/// Starts a rehearsal (sandbox under `box/`) whose last step sleeps
/// `secs` once the restore is done, and waits until it sleeps: the child,
/// the sandbox parent and the sandbox cluster's folder.
fn lingering_rehearsal(t: &Setup, secs: u32) -> (std::process::Child, PathBuf, PathBuf) {
    t.write_restore(&format!(
        "  - id: linger\n    needs: [restore-db]\n    run: echo \"{{{{ pg_host }}}}\" > \"{{{{ dest }}}}/../host.txt\"; sleep {secs}\n"
    ));
    let parent = t.s.path().join("box");
    let child =
        t.s.ward()
            .args(["rehearse", "restore.yml", "--sandbox"])
            .arg(&parent)
            .spawn();
    let host_file = || -> Option<PathBuf> {
        let dir = std::fs::read_dir(&parent).ok()?.flatten().next()?.path();
        let f = dir.join("targets/host.txt");
        std::fs::read_to_string(&f)
            .ok()
            .filter(|t| t.ends_with('\n'))
            .map(|_| f)
    };
    assert!(
        wait_for(120, || host_file().is_some()),
        "the rehearsal never got to `linger`"
    );
    let socket = std::fs::read_to_string(host_file().expect("host")).expect("read");
    let pg_dir = Path::new(socket.trim())
        .parent()
        .expect("pg dir")
        .to_owned();
    (child, parent, pg_dir)
}

#[test]
fn sigterm_mid_rehearsal_tears_the_sandbox_down() {
    let t = setup();
    let (child, parent, pg_dir) = lingering_rehearsal(&t, 60);
    assert!(!processes_mentioning(&pg_dir.display().to_string()).is_empty());
    let pid = child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_dir(&parent).expect("box").count(), 0);
    assert!(!pg_dir.exists(), "{} left behind", pg_dir.display());
    assert!(
        processes_mentioning(&pg_dir.display().to_string()).is_empty(),
        "the sandbox's server still runs"
    );
}

#[test]
fn a_target_given_on_the_command_line_is_refused() {
    let s = Scratch::new();
    s.write("restore.yml", &restore(""));
    let out = s
        .ward()
        .args(["rehearse", "restore.yml", "--var", "dest=/somewhere"])
        .run()
        .expect_code(2);
    assert!(
        out.stderr.contains("set by the rehearsal's sandbox"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_playbook_without_rehearse_is_refused() {
    let s = Scratch::new();
    s.write(
        "p.yml",
        "ward: 1\nname: p\nsteps:\n  - id: a\n    run: \"true\"\n",
    );
    let out = s.ward().args(["rehearse", "p.yml"]).run().expect_code(2);
    assert!(
        out.stderr.contains("no `rehearse:` section"),
        "{}",
        out.stderr
    );
    let _ = repo_path("");
}

/// A FOSSology backup of the test system made by a shipped backup
/// playbook, then its restore playbook rehearsed while FOSSology keeps
/// running; returns the rehearsal's JSON.
fn rehearse_fossology(backup: &str, restore: &str) -> serde_json::Value {
    use crate::system::FoSystem;
    let s = Scratch::new();
    let sys = FoSystem::build(&s.path().join("fo"));
    sys.grow(16, 0);
    let playbook = |name: &str| repo_path(&format!("playbooks/fossology/{name}"));
    let vars = sys.vars(&s.path().join("backup"));
    s.ward()
        .arg("run")
        .arg(playbook(backup))
        .args(&vars)
        .run()
        .expect_code(0);
    let (counts, files) = (sys.counts(), sys.listing(None));
    // The sandbox sets these itself (and refuses them on the command line).
    let sandboxed = ["repo=", "pg_host=", "pg_port=", "pg_user=", "report_dir="];
    let kept: Vec<String> = vars
        .chunks(2)
        .filter(|pair| !sandboxed.iter().any(|p| pair[1].starts_with(p)))
        .flatten()
        .cloned()
        .collect();
    let out = s
        .ward()
        .arg("rehearse")
        .arg(playbook(restore))
        .args(&kept)
        .args(["--snapshot", "latest", "--json"])
        .run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let j = out.json();
    // `--snapshot` chose the snapshot, as for `ward run`, and it is recorded.
    let run_id = j["run_id"].as_str().expect("run id");
    let chosen = crate::guided::events(&s, run_id, "snapshot-chosen");
    assert!(
        chosen.len() == 1 && chosen[0].starts_with("restoring "),
        "{chosen:?}"
    );
    let checks = j["checks"].as_array().expect("checks");
    assert!(checks.iter().all(|c| c["verdict"] == "passed"), "{j}");
    let fenced: Vec<&str> = j["fenced"]
        .as_array()
        .expect("fenced")
        .iter()
        .filter_map(|f| f["step"].as_str())
        .collect();
    assert_eq!(
        fenced,
        ["verify-snapshot", "stop-scheduler", "start-scheduler"],
        "{j}"
    );
    // Production went on as if nothing happened: never stopped, same data,
    // no reunpack report where production keeps it.
    assert!(sys.scheduler_up(), "the scheduler was stopped");
    assert_eq!(sys.counts(), counts);
    assert_eq!(sys.listing(None), files);
    assert!(!sys.root.join("reports").exists());
    assert!(!Path::new(j["sandbox"].as_str().expect("sandbox")).exists());
    j
}

#[test]
fn fossology_full_restore_rehearsed_end_to_end() {
    let j = rehearse_fossology("backup-full.yml", "restore-full.yml");
    let names: Vec<&str> = j["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "row counts of `restore-db` match its dump",
            "files restored by `restore-repository` match the snapshot",
            "the restored repository has its gold tree"
        ],
        "{j}"
    );
}

#[test]
fn fossology_gold_restore_rehearsed_end_to_end() {
    let j = rehearse_fossology("backup-gold.yml", "restore-gold.yml");
    let names: Vec<&str> = j["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    // No row counts: the requeue step adds jobs by design.
    assert_eq!(
        names,
        [
            "files restored by `restore-gold` match the snapshot",
            "the restored repository has its gold tree"
        ],
        "{j}"
    );
}

#[test]
fn keep_leaves_the_sandbox_with_its_cluster_stopped() {
    let t = setup();
    t.write_restore("");
    let parent = t.s.path().join("box");
    let out =
        t.s.ward()
            .args(["rehearse", "restore.yml", "--keep", "--json", "--sandbox"])
            .arg(&parent)
            .run()
            .expect_code(0);
    let j = out.json();
    assert_eq!(j["kept"], true, "{j}");
    let sandbox = PathBuf::from(j["sandbox"].as_str().expect("sandbox"));
    assert!(sandbox.starts_with(&parent), "{j}");
    assert!(sandbox.join("targets/dest/sub/b.txt").is_file(), "{j}");
    let cluster = j["cluster_dir"]
        .as_str()
        .map_or_else(|| sandbox.join("pg"), PathBuf::from);
    assert!(cluster.join("data/PG_VERSION").is_file(), "{j}");
    assert!(
        processes_mentioning(&cluster.display().to_string()).is_empty(),
        "the kept cluster still runs"
    );
    std::fs::remove_dir_all(&cluster).expect("clean up");
}

#[test]
fn a_step_that_would_write_outside_the_sandbox_refuses_the_rehearsal_before_anything_runs() {
    let t = setup();
    // A var the playbook forgot in `rehearse.targets`, a literal path, a
    // query on the production cluster and an unfenced shell step.
    let extra = format!(
        "  - id: copy-other\n    needs: [stop-app]\n    action: rsync\n    \
         with: {{ src: \"{{{{ from }}}}/files\", dest: \"{{{{ other_dest }}}}/x\" }}\n  \
         - id: copy-literal\n    needs: [stop-app]\n    action: rsync\n    \
         with: {{ src: \"{{{{ from }}}}/files\", dest: prod/literal }}\n  \
         - id: prod-query\n    needs: [stop-app]\n    action: pg.query\n    \
         with: {{ sql: \"DELETE FROM items\", db: {{ host: \"{}\", port: {}, user: postgres, dbname: app }} }}\n  \
         - id: shell\n    needs: [stop-app]\n    run: \"touch prod/shell-ran\"\n",
        t.prod.socket.display(),
        t.prod.port
    );
    t.write_restore(&extra);
    let text = std::fs::read_to_string(t.s.path().join("restore.yml")).expect("read");
    t.s.write(
        "restore.yml",
        &text.replace(
            "  check_first: true\n",
            "  check_first: true\n  other_dest: prod/other\n",
        ),
    );
    let before = (t.checksum(), t.prod_dump());
    let out =
        t.s.ward()
            .args(["rehearse", "restore.yml"])
            .run()
            .expect_code(2);
    for want in [
        "nothing was run",
        "step `copy-other`",
        "add `other_dest` to `rehearse.targets`",
        "step `copy-literal`",
        "prod/literal, which is outside the sandbox",
        "step `prod-query`",
        "not to the sandbox's cluster",
        "step `shell` is a run:/cmd: step and is NOT fenced",
    ] {
        assert!(out.stderr.contains(want), "{want}\n{}", out.stderr);
    }
    assert!(
        !out.stderr.contains("step `restore-files`"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("step `restore-db`"), "{}", out.stderr);
    assert_eq!((t.checksum(), t.prod_dump()), before, "production changed");
    // The sandbox was made and is gone again.
    let left: Vec<_> = std::fs::read_dir(sandbox_parent(&t.s))
        .expect("rehearse/")
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_sandbox_left_by_a_killed_ward_is_cleaned_by_the_next_rehearsal() {
    let t = setup();
    let (child, parent, pg_dir) = lingering_rehearsal(&t, 20);
    let servers = || -> Vec<String> {
        processes_mentioning(&pg_dir.display().to_string())
            .into_iter()
            .filter(|c| c.contains("bin/postgres"))
            .collect()
    };
    assert!(!servers().is_empty());
    // SIGKILL: no teardown can run; the server and the folders stay.
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .expect("kill");
    let _ = child.wait_with_output().expect("wait");
    assert!(!servers().is_empty(), "the server should outlive a SIGKILL");
    assert_eq!(std::fs::read_dir(&parent).expect("box").count(), 1);
    // The next rehearsal in the same folder finds the owner gone and cleans.
    t.write_restore("");
    let out =
        t.s.ward()
            .args(["rehearse", "restore.yml", "--sandbox"])
            .arg(&parent)
            .run();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("left by a rehearsal whose ward (pid"),
        "{}",
        out.stderr
    );
    assert!(servers().is_empty(), "the leftover server still runs");
    assert!(!pg_dir.exists(), "{} left behind", pg_dir.display());
    assert_eq!(std::fs::read_dir(&parent).expect("box").count(), 0);
}

#[test]
fn a_sandbox_folder_in_production_or_under_another_users_folder_is_refused_and_an_existing_one_left_as_it_was()
 {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    s.write("restore.yml", &restore(""));
    s.write("prod/files/a.txt", "alpha\n");
    // Inside the production folder of target `dest`, also through a link.
    std::os::unix::fs::symlink(s.path().join("prod"), s.path().join("via-link")).expect("link");
    for dir in ["prod/files/box", "via-link/files/box"] {
        let out = s
            .ward()
            .args(["rehearse", "restore.yml", "--sandbox", dir])
            .run()
            .expect_code(2);
        assert!(
            out.stderr.contains("inside the production folder") && out.stderr.contains("`dest`"),
            "{dir}: {}",
            out.stderr
        );
    }
    assert!(!s.path().join("prod/files/box").exists());
    // Under a folder another user owns: it could swap the sandbox for a link.
    let theirs = s.path().join("theirs");
    std::fs::create_dir(&theirs).expect("mkdir");
    Command::new("chown")
        .args(["nobody"])
        .arg(&theirs)
        .status()
        .expect("chown");
    let out = s
        .ward()
        .args(["rehearse", "restore.yml", "--sandbox"])
        .arg(theirs.join("box"))
        .run()
        .expect_code(2);
    assert!(
        out.stderr.contains("belongs to another user"),
        "{}",
        out.stderr
    );
    assert!(!theirs.join("box").exists());
    // An existing folder of one's own (0755) is used, never chmod'ed.
    let mine = s.path().join("shared-box");
    std::fs::create_dir(&mine).expect("mkdir");
    std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let _ = s
        .ward()
        .args(["rehearse", "restore.yml", "--sandbox"])
        .arg(&mine)
        .run();
    let mode = std::fs::metadata(&mine).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o755);
    assert_eq!(std::fs::read_dir(&mine).expect("list").count(), 0);
}
