//! Benchmarks of the built-in actions against the shell commands they
//! replace, side by side in one run (rounds interleaved; medians).
//!
//! `cargo bench --bench actions` (needs rsync and PostgreSQL, as the tests do).
//! Figures go into docs/PERFORMANCE.md. `WARD_BENCH_ROTATE_ONLY=1 cargo
//! bench --bench actions snapshot` times only the rotation;
//! `WARD_BENCH_SMALL_FOLDERS=1` makes the tree 2,000 folders of 50 files
//! instead of 400 of 250.
//!
//! - snapshot.hardlink of ~100,000 files / ~600 MB vs `cp -al` and `rsync -a --link-dest`
//! - rotate deleting one such snapshot vs `rm -rf`
//! - pg.dumpall (gzip, and parallel gzip) vs `pg_dumpall | gzip > f` on a pgbench -s 20 database
//! - `cargo bench --bench actions hash`: the nightly snapshot of an unchanged
//!   tree with `hash: all` (hashes carried from the previous manifest) vs
//!   `hash: sample`, and a first snapshot's hashing vs `sha256sum` and `cat`
//!   over the same files on two threads. `WARD_BENCH_HASH_FILES=N` sets the
//!   tree's size (default 100,000 files of 0-12 KiB).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

// Shared with the tests; the benchmark uses only part of it.
#[allow(dead_code)]
#[path = "../tests/support/pg_cluster.rs"]
mod pg_cluster;

const ROUNDS: usize = 3;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn time(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let out = cmd.output().expect("command runs");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn ward(dir: &Path, playbook: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ward"));
    c.current_dir(dir)
        .args(["run", "--quiet", playbook])
        .env("WARD_STATE", dir.join("state/ward.db"));
    c
}

/// ~100,000 files in 400 folders (20 of 20), sizes 0-12 KiB (about 600 MB);
/// with `WARD_BENCH_SMALL_FOLDERS` set, 2,000 folders (40 of 50) of 50 files.
fn make_tree(root: &Path) {
    let small = std::env::var_os("WARD_BENCH_SMALL_FOLDERS").is_some();
    let (folders, per, files) = if small {
        (2000, 50, 50)
    } else {
        (400, 20, 250)
    };
    let mut rng = fastrand::Rng::with_seed(7);
    let block = vec![b'w'; 12 * 1024];
    for d in 0..folders {
        let dir = root.join(format!("{:02x}/{:02x}", d / per, d % per));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..files {
            let len = rng.usize(0..12 * 1024);
            std::fs::write(dir.join(format!("file{f:03}.dat")), &block[..len]).expect("write");
        }
    }
}

fn rm(path: &Path) {
    let _ = Command::new("rm").arg("-rf").arg(path).status();
}

fn snapshots(base: &Path) {
    let tree = base.join("current");
    println!("generating ~100,000 files (~600 MB) in {}", tree.display());
    make_tree(&tree);
    let _ = Command::new("sync").status();
    std::fs::write(
        base.join("snap.yml"),
        "ward: 1\nname: snap\nsteps:\n  - id: snap\n    action: snapshot.hardlink\n    with: { src: current, dir: snaps, name: s, latest: latest }\n",
    )
    .expect("write");
    if std::env::var_os("WARD_BENCH_ROTATE_ONLY").is_none() {
        link_copies(base, &tree);
    }
    rotation(base, &tree);
}

/// snapshot.hardlink vs `cp -al` and `rsync --link-dest`.
fn link_copies(base: &Path, tree: &Path) {
    let (mut cp, mut rs, mut wd) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        rm(&base.join("cp"));
        cp.push(time(
            Command::new("cp").arg("-al").arg(tree).arg(base.join("cp")),
        ));
        rm(&base.join("cp"));
        rm(&base.join("snaps"));
        rm(&base.join("state"));
        wd.push(time(&mut ward(base, "snap.yml")));
        rm(&base.join("rs"));
        rs.push(time(
            Command::new("rsync")
                .arg("-a")
                .arg(format!("--link-dest={}", tree.display()))
                .arg(format!("{}/", tree.display()))
                .arg(base.join("rs")),
        ));
        rm(&base.join("rs"));
    }
    let (cp, rs, wd) = (median(cp), median(rs), median(wd));
    println!(
        "snapshot.hardlink {} | cp -al {} | rsync --link-dest {} | ward/cp {:.2}x | rsync/ward {:.1}x",
        secs(wd),
        secs(cp),
        secs(rs),
        wd.as_secs_f64() / cp.as_secs_f64(),
        rs.as_secs_f64() / wd.as_secs_f64()
    );
}

/// Rotation: delete one snapshot (complete and verified) vs rm -rf of a copy.
fn rotation(base: &Path, tree: &Path) {
    std::fs::write(
        base.join("rotate.yml"),
        "ward: 1\nname: rot\nsteps:\n  - id: rotate\n    action: rotate\n    with: { dir: snaps, keep_last: 1, min_keep: 1 }\n",
    )
    .expect("write");
    let (mut rmt, mut rot) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let snaps = base.join("snaps");
        rm(&snaps);
        std::fs::create_dir_all(&snaps).expect("mkdir");
        for name in ["2026-01-01", "2026-01-02"] {
            assert!(
                Command::new("cp")
                    .arg("-al")
                    .arg(tree)
                    .arg(snaps.join(name))
                    .status()
                    .expect("cp")
                    .success()
            );
            // Marks it complete: ward keeps a snapshot's manifest beside it.
            std::fs::write(snaps.join(format!(".{name}.manifest.json")), "{}").expect("manifest");
            // A verify that passed (the old marker form, still read as passed).
            std::fs::write(
                snaps.join(format!(".{name}.verified")),
                r#"{"verified_at":"2026-01-01T00:00:00","run_id":"bench","manifest_checksum":"","hashes":false}"#,
            )
            .expect("marker");
        }
        assert!(
            Command::new("cp")
                .arg("-al")
                .arg(tree)
                .arg(base.join("victim"))
                .status()
                .expect("cp")
                .success()
        );
        let _ = Command::new("sync").status();
        rmt.push(time(Command::new("rm").arg("-rf").arg(base.join("victim"))));
        rm(&base.join("state"));
        rot.push(time(&mut ward(base, "rotate.yml")));
        assert!(!snaps.join("2026-01-01").exists());
    }
    let (rmt, rot) = (median(rmt), median(rot));
    println!(
        "rotate (delete one snapshot) {} | rm -rf {} | ward/rm {:.2}x",
        secs(rot),
        secs(rmt),
        rot.as_secs_f64() / rmt.as_secs_f64()
    );
    rm(&base.join("snaps"));
}

fn dumps(base: &Path) {
    let cluster = pg_cluster::Cluster::start();
    println!("creating a pgbench -s 20 database");
    pg_cluster::run_ok(
        Command::new(cluster.bin().join("pgbench"))
            .args(["-i", "-s", "20", "-q", "-U", "postgres", "-h"])
            .arg(&cluster.socket)
            .args(["-p", &cluster.port.to_string(), "postgres"]),
        "pgbench -i",
    );
    let conn = format!(
        "-h {} -p {} -U postgres",
        cluster.socket.display(),
        cluster.port
    );
    for (name, compress) in [("gz", "gzip"), ("pgz", "pgzip")] {
        std::fs::write(
            base.join(format!("dump-{name}.yml")),
            format!(
                "ward: 1\nname: dump{name}\nsteps:\n  - id: dump\n    action: pg.dumpall\n    with: {{ db: {}, dest: out/ward-{name}.sql.gz, compress: {compress} }}\n",
                cluster.conn()
            ),
        )
        .expect("write");
    }
    let (mut sh, mut gz, mut pgz) = (Vec::new(), Vec::new(), Vec::new());
    std::fs::create_dir_all(base.join("out")).expect("mkdir");
    for _ in 0..ROUNDS {
        sh.push(time(Command::new("bash").arg("-c").arg(format!(
            "set -o pipefail; pg_dumpall -w {conn} | gzip > {0}/out/shell.sql.gz && sync {0}/out/shell.sql.gz",
            base.display()
        ))));
        rm(&base.join("state"));
        gz.push(time(&mut ward(base, "dump-gz.yml")));
        rm(&base.join("state"));
        pgz.push(time(&mut ward(base, "dump-pgz.yml")));
    }
    let size = std::fs::metadata(base.join("out/shell.sql.gz"))
        .map(|m| m.len())
        .unwrap_or(0);
    let (sh, gz, pgz) = (median(sh), median(gz), median(pgz));
    println!(
        "pg.dumpall gzip {} | pgzip {} | pg_dumpall | gzip {} ({:.0} MiB compressed) | gzip {:.2}x, pgzip {:.2}x",
        secs(gz),
        secs(pgz),
        secs(sh),
        size as f64 / (1 << 20) as f64,
        gz.as_secs_f64() / sh.as_secs_f64(),
        pgz.as_secs_f64() / sh.as_secs_f64()
    );
}

fn main() {
    let dir = tempfile::Builder::new()
        .prefix("ward-bench-actions")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir");
    let base: PathBuf = dir.path().to_path_buf();
    // `cargo bench` passes `--bench`; a plain word picks one part.
    let only = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_default();
    if only.is_empty() || only == "snapshot" {
        snapshots(&base);
    }
    if only.is_empty() || only == "dump" {
        dumps(&base);
    }
    if only.is_empty() || only == "hash" {
        hashing(&base);
    }
}

/// `n` files of 0-12 KiB, 250 to a folder.
fn make_tree_of(root: &Path, n: usize) {
    let mut rng = fastrand::Rng::with_seed(11);
    let block: Vec<u8> = (0..12 * 1024).map(|i| (i % 251) as u8).collect();
    for i in 0..n {
        let dir = root.join(format!("{:02x}/{:02x}", i / 250 / 20, i / 250 % 20));
        if i % 250 == 0 {
            std::fs::create_dir_all(&dir).expect("mkdir");
        }
        let len = rng.usize(0..12 * 1024);
        std::fs::write(dir.join(format!("file{:03}.dat", i % 250)), &block[..len]).expect("write");
    }
}

/// The snapshot step's details of the last run in the state at `state`.
fn snapshot_details(dir: &Path, state: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ward"))
        .current_dir(dir)
        .args(["status", "--json"])
        .env("WARD_STATE", state)
        .output()
        .expect("ward status");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    status["steps"][0]["attempt_list"][0]["details"].clone()
}

/// `hash: all` with carried hashes vs `hash: sample` on an unchanged tree,
/// and a first snapshot's hashing vs sha256sum and cat (two threads).
/// Rounds are interleaved; snapshots are never deleted between rounds
/// (deleting one would move the ctime of every file in it, and the next
/// snapshot would read them all: see docs/design.md).
fn hashing(base: &Path) {
    let n: usize = std::env::var("WARD_BENCH_HASH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = base.join("hash");
    let tree = dir.join("current");
    println!("generating {n} files in {}", tree.display());
    make_tree_of(&tree, n);
    // Each series snapshots its own copy (other inodes): a snapshot of the
    // same tree by another series would link, and a deletion unlink, its
    // files, which moves their ctimes and makes the next `all` read them.
    for copy in ["current-sample", "current-first"] {
        assert!(
            Command::new("cp")
                .arg("-a")
                .arg(&tree)
                .arg(dir.join(copy))
                .status()
                .expect("cp")
                .success()
        );
    }
    let _ = Command::new("sync").status();
    let playbook = |name: &str, src: &str, snaps: &str, hash: &str| {
        std::fs::write(
            dir.join(name),
            format!(
                "ward: 1\nname: {hash}\nsteps:\n  - id: snap\n    action: snapshot.hardlink\n    with: {{ src: {src}, dir: {snaps}, hash: {hash}, threads: 2 }}\n"
            ),
        )
        .expect("write");
    };
    playbook("all.yml", "current", "snaps-all", "all");
    playbook("sample.yml", "current-sample", "snaps-sample", "sample");
    playbook("first.yml", "current-first", "snaps-first", "all");
    let run = |yml: &str, state: &Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ward"));
        c.current_dir(&dir)
            .args(["run", "--quiet", yml])
            .env("WARD_STATE", state);
        time(&mut c)
    };
    // The first snapshot of each series: everything is read.
    let (all_state, sample_state) = (dir.join("state-all/w.db"), dir.join("state-sample/w.db"));
    run("all.yml", &all_state);
    run("sample.yml", &sample_state);
    let list = dir.join("files.list");
    assert!(
        Command::new("bash")
            .arg("-c")
            .arg(format!(
                "cd {} && find current-first -type f -print0 > {}",
                dir.display(),
                list.display()
            ))
            .status()
            .expect("find")
            .success()
    );
    let xargs = |tool: &str| {
        let mut c = Command::new("bash");
        c.arg("-c").arg(format!(
            "cd {} && xargs -0 -P 2 -n 1000 {tool} < {} > /dev/null",
            dir.display(),
            list.display()
        ));
        c
    };
    let (mut all, mut sample, mut first, mut sha, mut cat) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut carried = Vec::new();
    for round in 0..ROUNDS {
        all.push(run("all.yml", &all_state));
        let d = snapshot_details(&dir, &all_state);
        carried.push((
            d["hashed_read"].as_u64().unwrap_or(0),
            d["hashed_carried"].as_u64().unwrap_or(0),
        ));
        sample.push(run("sample.yml", &sample_state));
        // A first snapshot: nothing to carry (a new folder and state each round).
        rm(&dir.join("snaps-first"));
        first.push(run(
            "first.yml",
            &dir.join(format!("state-first-{round}/w.db")),
        ));
        sha.push(time(&mut xargs("sha256sum")));
        cat.push(time(&mut xargs("cat")));
    }
    let (all, sample, first, sha, cat) = (
        median(all),
        median(sample),
        median(first),
        median(sha),
        median(cat),
    );
    println!(
        "nightly snapshot, unchanged tree of {n} files: hash: all {} | hash: sample {} | all/sample {:.2}x | read/carried per round {carried:?}",
        secs(all),
        secs(sample),
        all.as_secs_f64() / sample.as_secs_f64()
    );
    println!(
        "first snapshot (link + hash every file, 2 threads) {} | sha256sum -P2 {} | cat -P2 {} | ward/sha256sum {:.2}x (page cache warm)",
        secs(first),
        secs(sha),
        secs(cat),
        first.as_secs_f64() / sha.as_secs_f64()
    );
}
