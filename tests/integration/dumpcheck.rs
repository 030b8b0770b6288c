//! Dumps checked to their last line (issue 16): real dumps of a real
//! PostgreSQL cluster, damaged the ways disks and copies damage them,
//! recompressed with the real gzip and zstd, snapshotted and verified by
//! the `verify` step and by `ward verify SET`; each failure names the dump
//! and the offset where it breaks.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use sha2::Digest;

use crate::harness::{SNAP_AND_VERIFY, Scratch};
use crate::pg_cluster::Cluster;

/// `program args` with `input` on stdin; its stdout.
fn filter(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("output");
    writer.join().expect("join").expect("write");
    assert!(out.status.success(), "{program} {args:?}");
    out.stdout
}

/// Replaces a file (a new inode: earlier snapshots keep their hard link).
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-test");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// Puts `bytes` in place of the dump; with `side`, its side file records
/// their sha256 and size (as if the damage came before it was written), so
/// that only reading the dump can tell.
fn put_dump(s: &Scratch, bytes: &[u8], side: bool) {
    let dump = s.path().join("current/db/all.sql.gz");
    replace(&dump, bytes);
    if side {
        let side_path = s.path().join("current/db/all.sql.gz.ward.json");
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&side_path).expect("side")).expect("json");
        let sum: String = sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        v["sha256"] = sum.into();
        v["size"] = bytes.len().into();
        replace(&side_path, v.to_string().as_bytes());
    }
}

/// Snapshot + verify step, then `ward verify` of the snapshot: both fail
/// (or both pass with `None`), each naming every part of `want`.
fn snapshot_and_verify(s: &Scratch, want: Option<&[&str]>) {
    let run = s.ward().args(["run", "snap.yml"]).run();
    let cli = s.ward().args(["verify", "snaps/latest"]).run();
    match want {
        None => {
            assert_eq!(run.code, 0, "step: {}\n{}", run.stdout, run.stderr);
            assert_eq!(cli.code, 0, "cli: {}\n{}", cli.stdout, cli.stderr);
            assert!(
                cli.stdout.contains("1 dump(s) whole to their last line"),
                "{}",
                cli.stdout
            );
        }
        Some(parts) => {
            assert_eq!(run.code, 1, "step: {}\n{}", run.stdout, run.stderr);
            assert_eq!(cli.code, 1, "cli: {}\n{}", cli.stdout, cli.stderr);
            for part in parts.iter().chain(&["db/all.sql.gz: "]) {
                assert!(
                    run.stderr.contains(part),
                    "step lacks {part:?}:\n{}",
                    run.stderr
                );
                assert!(
                    cli.stdout.contains(part),
                    "cli lacks {part:?}:\n{}",
                    cli.stdout
                );
            }
        }
    }
}

#[test]
fn damaged_dumps_fail_verify_with_their_offset_and_whole_ones_pass() {
    let c = Cluster::start();
    c.psql("postgres", "CREATE DATABASE shop");
    c.psql(
        "shop",
        "CREATE TABLE items (id serial PRIMARY KEY, name text); \
         INSERT INTO items (name) SELECT md5(g::text) FROM generate_series(1, 40000) g; \
         CREATE TABLE empty_one (x int); ANALYZE",
    );
    let s = Scratch::new();
    s.write(
        "dump.yml",
        &format!(
            "ward: 1\nname: dump\nsteps:\n  - id: dump\n    action: pg.dumpall\n    with: {{ db: {}, dest: current/db/all.sql.gz }}\n",
            c.conn()
        ),
    );
    s.write("snap.yml", SNAP_AND_VERIFY);
    s.ward().args(["run", "dump.yml"]).run().expect_code(0);

    // The side file records the databases and their tables' row estimates.
    let side: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.path().join("current/db/all.sql.gz.ward.json")).expect("side"),
    )
    .expect("json");
    let dbs = side["databases"].as_array().expect("databases");
    let names: Vec<&str> = dbs.iter().filter_map(|d| d["name"].as_str()).collect();
    assert_eq!(names, ["template1", "postgres", "shop"], "{side}");
    let shop = &dbs[2]["row_estimates"];
    assert_eq!(shop["public.items"], 40000, "{side}");
    assert_eq!(shop["public.empty_one"], 0, "{side}");
    assert!(side["raw_bytes"].as_u64().expect("raw") > 40000 * 32);

    // A whole dump passes.
    snapshot_and_verify(&s, None);
    let good = std::fs::read(s.path().join("current/db/all.sql.gz")).expect("dump");
    let sql = filter("gzip", &["-dc"], &good);
    let gz = |data: &[u8]| filter("gzip", &["-c", "-6"], data);

    // Complete in two gzip members (as pgzip and `cat a.gz b.gz` make it).
    let mut multi = gz(&sql[..sql.len() / 3]);
    multi.extend(gz(&sql[sql.len() / 3..]));
    put_dump(&s, &multi, true);
    snapshot_and_verify(&s, None);

    // gzip cut in half: truncated, at the end of what is there.
    let cut = &good[..good.len() / 2];
    put_dump(&s, cut, true);
    snapshot_and_verify(
        &s,
        Some(&[
            "truncated at byte",
            &format!("(byte {} of the compressed file)", cut.len()),
            "the file was cut short",
            "run the dump again",
        ]),
    );

    // zstd (the real zstd) cut short.
    let zst = filter("zstd", &["-c", "-q", "--check"], &sql);
    let cut = &zst[..zst.len() * 2 / 3];
    put_dump(&s, cut, true);
    snapshot_and_verify(
        &s,
        Some(&[
            "truncated at byte",
            &format!("(byte {} of the compressed file)", cut.len()),
            "zstd",
        ]),
    );

    // The last line missing, compressed again validly.
    let tail = b"-- PostgreSQL database cluster dump complete";
    let at = sql
        .windows(tail.len())
        .rposition(|w| w == tail)
        .expect("pg_dumpall's last line");
    let short = gz(&sql[..at]);
    put_dump(&s, &short, true);
    snapshot_and_verify(
        &s,
        Some(&[
            &format!("incomplete at byte {at} of its SQL"),
            &format!("(byte {} of the compressed file)", short.len()),
            "without pg_dumpall's completion line",
        ]),
    );

    // Bytes damaged in the middle of the gzip data.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid..mid + 200] {
        *b = !*b;
    }
    put_dump(&s, &bad, true);
    snapshot_and_verify(&s, Some(&["corrupt at byte", "of the compressed file)"]));

    // Damaged after its side file was written: the changed hash and where
    // the dump breaks are both reported.
    put_dump(&s, &good[..good.len() - 100], false);
    snapshot_and_verify(&s, Some(&["truncated at byte"]));
    let run = s.ward().args(["verify", "snaps/latest"]).run();
    assert!(run.stdout.contains("db/all.sql.gz"), "{}", run.stdout);

    // `ward verify --json` gives each dump's outcome.
    let json = s
        .ward()
        .args(["verify", "--json", "snaps/latest"])
        .run()
        .expect_code(1)
        .json();
    let d = &json["dumps"][0];
    assert_eq!(d["path"], "db/all.sql.gz", "{json}");
    assert_eq!(d["result"], "damaged", "{json}");
    assert_eq!(d["problem"], "truncated", "{json}");
    assert_eq!(d["compressed_offset"], good.len() - 100, "{json}");
}

#[test]
fn a_point_dump_is_checked_and_records_its_row_estimates() {
    let c = Cluster::start();
    c.psql("postgres", "CREATE DATABASE shop");
    c.psql(
        "shop",
        "CREATE TABLE items (id int); INSERT INTO items SELECT generate_series(1, 1234); ANALYZE",
    );
    let s = Scratch::new();
    s.write(
        "dump.yml",
        &format!(
            "ward: 1\nname: point\nsteps:\n  - id: point\n    action: pg.snapshot\n    with: {{ db: {0} }}\n  - id: dump\n    needs: [point]\n    action: pg.dump\n    with: {{ db: {0}, snapshot: point, dest: current/db/all.sql.zst, compress: zstd }}\n",
            c.conn()
        ),
    );
    s.write("snap.yml", SNAP_AND_VERIFY);
    s.ward().args(["run", "dump.yml"]).run().expect_code(0);
    let side: serde_json::Value = serde_json::from_slice(
        &std::fs::read(s.path().join("current/db/all.sql.zst.ward.json")).expect("side"),
    )
    .expect("json");
    let shop = side["databases"]
        .as_array()
        .expect("databases")
        .iter()
        .find(|d| d["name"] == "shop")
        .unwrap_or_else(|| panic!("no shop: {side}"));
    assert_eq!(shop["row_estimates"]["public.items"], 1234, "{side}");
    s.ward().args(["run", "snap.yml"]).run().expect_code(0);
    let json = s
        .ward()
        .args(["verify", "--json", "snaps/latest"])
        .run()
        .expect_code(0)
        .json();
    let d = &json["dumps"][0];
    assert_eq!(d["result"], "complete", "{json}");
    assert_eq!(d["kind"], "ward_point", "{json}");
    assert_eq!(d["compression"], "zstd", "{json}");
    // template1, postgres and shop: each part ended by pg_dump's last line.
    assert_eq!(d["databases"], 3, "{json}");
}
