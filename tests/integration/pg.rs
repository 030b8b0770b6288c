//! The PostgreSQL actions against real servers: Debian's `postgresql`
//! package, a fresh cluster per test in a temp folder, on a free loopback
//! port and a private socket folder. A missing server is a failure, not a skip.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::harness::{Scratch, Tmpfs, wait_for};

use crate::pg_cluster::Cluster;

fn fill(c: &Cluster) {
    c.psql("postgres", "CREATE DATABASE shop");
    c.psql("postgres", "CREATE ROLE clerk LOGIN");
    c.psql(
        "shop",
        "CREATE TABLE items (id serial PRIMARY KEY, name text, country text); \
         INSERT INTO items (name, country) SELECT 'item ' || g, 'NO' FROM generate_series(1, 5000) g; \
         CREATE TABLE notes (body text); INSERT INTO notes VALUES ('tab\tand ''quote'''), (NULL); \
         GRANT SELECT ON items TO clerk;",
    );
}

fn counts(c: &Cluster) -> (String, String, String) {
    (
        c.psql("shop", "SELECT count(*) FROM items"),
        c.psql("shop", "SELECT count(*) FROM notes"),
        c.psql(
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'clerk'",
        ),
    )
}

#[test]
fn dump_and_restore_round_trip_into_a_fresh_cluster() {
    let source = Cluster::start();
    fill(&source);
    let target = Cluster::start();
    let s = Scratch::new();
    for (compress, ext) in [("gzip", "gz"), ("pgzip", "gz"), ("zstd", "zst")] {
        s.write(
            "dump.yml",
            &format!(
                "ward: 1\nname: dump-{compress}\nsteps:\n  - id: dump\n    action: pg.dumpall\n    with: {{ db: {}, dest: backup/all.sql.{ext}, compress: {compress}, args: [--clean, --if-exists] }}\n",
                source.conn()
            ),
        );
        s.ward().args(["run", "dump.yml"]).run().expect_code(0);
        let dump = s.path().join(format!("backup/all.sql.{ext}"));
        let meta = std::fs::metadata(&dump).expect("dump exists");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "dump is private");
        let side: serde_json::Value = serde_json::from_slice(
            &std::fs::read(s.path().join(format!("backup/all.sql.{ext}.ward.json")))
                .expect("side file"),
        )
        .expect("json");
        assert_eq!(side["size"], meta.len());
        assert!(
            side["server_version"]
                .as_str()
                .expect("version")
                .starts_with(char::is_numeric),
            "{side}"
        );
        let sum = String::from_utf8(
            Command::new("sha256sum")
                .arg(&dump)
                .output()
                .expect("sha256sum")
                .stdout,
        )
        .expect("utf8");
        assert_eq!(side["sha256"].as_str(), sum.split_whitespace().next());
    }
    // Restore the last (zstd) into the fresh cluster.
    s.write(
        "restore.yml",
        &format!(
            "ward: 1\nname: restore\nsteps:\n  - id: restore\n    action: pg.restore\n    with: {{ db: {}, src: backup/all.sql.zst }}\n",
            target.conn()
        ),
    );
    s.ward().args(["run", "restore.yml"]).run().expect_code(0);
    assert_eq!(counts(&target), counts(&source));
    assert_eq!(
        target.psql("shop", "SELECT body FROM notes WHERE body IS NOT NULL"),
        "tab\tand 'quote'"
    );
    // A second restore finds the databases and refuses without `force`.
    let run = s.ward().args(["run", "restore.yml"]).run().expect_code(1);
    assert!(
        run.stderr.contains("already has databases shop")
            && run.stderr.contains("`force: true` in the step's `with:`"),
        "{}",
        run.stderr
    );
    // Taken from a playbook variable, the message names the `--var` to give.
    s.write(
        "restore-var.yml",
        &format!(
            "ward: 1\nname: restorev\nvars:\n  replace_existing_db: false\nsteps:\n  - id: restore\n    action: pg.restore\n    with: {{ db: {}, src: backup/all.sql.gz, force: \"{{{{ replace_existing_db }}}}\" }}\n",
            target.conn()
        ),
    );
    let run = s
        .ward()
        .args(["run", "restore-var.yml"])
        .run()
        .expect_code(1);
    assert!(
        run.stderr
            .contains("run again with `--var replace_existing_db=true`"),
        "{}",
        run.stderr
    );
    s.write(
        "restore-force.yml",
        &format!(
            "ward: 1\nname: restoref\nsteps:\n  - id: restore\n    action: pg.restore\n    with: {{ db: {}, src: backup/all.sql.gz, force: true }}\n",
            target.conn()
        ),
    );
    s.ward()
        .args(["run", "restore-force.yml"])
        .run()
        .expect_code(0);
    assert_eq!(counts(&target), counts(&source));
}

#[test]
fn dump_failing_midway_leaves_no_file() {
    let c = Cluster::start();
    fill(&c);
    c.psql("postgres", "CREATE DATABASE zzz");
    c.psql(
        "zzz",
        "CREATE TABLE held (x int); INSERT INTO held VALUES (1)",
    );
    // Hold a lock on the last database: pg_dump waits on it with output already written.
    let mut holder = Command::new(c.bin().join("psql"))
        .args(["-X", "-U", "postgres", "-h"])
        .arg(&c.socket)
        .args([
            "-p",
            &c.port.to_string(),
            "-d",
            "zzz",
            "-c",
            "BEGIN; LOCK TABLE held IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120);",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("psql");
    assert!(wait_for(10, || c.psql(
        "postgres",
        "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND relation IS NOT NULL"
    ) != "0"));
    let s = Scratch::new();
    s.write(
        "dump.yml",
        &format!("ward: 1\nname: dump\nsteps:\n  - id: dump\n    action: pg.dumpall\n    with: {{ db: {}, dest: backup/all.sql.gz }}\n", c.conn()),
    );
    let child = s.ward().args(["run", "dump.yml"]).spawn();
    let backup = s.path().join("backup");
    // Wait until the dump is waiting on the lock, then stop the server under it.
    assert!(wait_for(20, || c.psql(
        "postgres",
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    ) != "0"));
    assert!(
        std::fs::read_dir(&backup)
            .map(|d| d.count() > 0)
            .unwrap_or(false),
        "temp file exists while dumping"
    );
    c.stop_immediately();
    let out = child.wait_with_output().expect("ward");
    let _ = holder.kill();
    let _ = holder.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("pg_dumpall failed"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&backup)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "no final file and no temp file: {left:?}");
}

#[test]
fn too_small_dump_fails_and_query_saves_rows() {
    let c = Cluster::start();
    fill(&c);
    let s = Scratch::new();
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: q\nsteps:\n  - id: dump\n    action: pg.dumpall\n    with: {{ db: {conn}, dest: small.sql.gz, min_bytes: 100000000 }}\n  - id: query\n    action: pg.query\n    with:\n      db: {{ host: \"{sock}\", port: {port}, user: postgres, dbname: shop }}\n      sql: \"UPDATE items SET country = 'SE' WHERE id <= 3 RETURNING id, country, NULL::text AS nothing\"\n      save: out/rows.json\n",
            conn = c.conn(),
            sock = c.socket.display(),
            port = c.port
        ),
    );
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(1);
    assert!(
        run.stderr.contains("less than min_bytes 100000000"),
        "{}",
        run.stderr
    );
    assert!(!s.path().join("small.sql.gz").exists());
    let rows: serde_json::Value =
        serde_json::from_str(&s.read("out/rows.json")).expect("rows json");
    let mut ids: Vec<&str> = rows
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    ids.sort();
    assert_eq!(ids, ["1", "2", "3"]);
    assert_eq!(rows[0]["country"], "SE");
    assert_eq!(rows[0]["nothing"], serde_json::Value::Null);
    assert_eq!(
        c.psql("shop", "SELECT count(*) FROM items WHERE country = 'SE'"),
        "3"
    );
}

/// ward as root against Debian's default local authentication (peer on the
/// socket): with no map from root to `postgres` it fails with the server's
/// reason; with `root -> postgres` in pg_ident.conf (docs/fossology.md,
/// "Running as root with peer authentication") dump, restore and query
/// work with no password anywhere.
#[test]
fn peer_authentication_on_the_local_socket_as_root() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root (ward as root, the cluster as postgres)");
        return;
    }
    let c = Cluster::start();
    fill(&c);
    let s = Scratch::new();
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: peer\nsteps:\n  - id: dump\n    action: pg.dumpall\n    with: {{ db: {conn}, dest: all.sql.gz, args: [--clean, --if-exists] }}\n  - id: restore\n    needs: [dump]\n    action: pg.restore\n    with: {{ db: {conn}, src: all.sql.gz, force: true }}\n  - id: count\n    needs: [restore]\n    action: pg.query\n    with:\n      db: {{ host: \"{sock}\", port: {port}, user: postgres, dbname: shop }}\n      sql: \"SELECT count(*) AS n FROM items\"\n      save: out/count.json\n",
            conn = c.conn(),
            sock = c.socket.display(),
            port = c.port
        ),
    );
    c.peer_only(&["postgres"]);
    let run = s.ward().args(["run", "p.yml"]).run().expect_code(1);
    assert!(
        run.stderr.contains("Peer authentication failed"),
        "{}",
        run.stderr
    );
    c.peer_only(&["postgres", "root"]);
    s.ward().args(["run", "p.yml"]).run().expect_code(0);
    let rows: serde_json::Value =
        serde_json::from_str(&s.read("out/count.json")).expect("count json");
    assert_eq!(rows[0]["n"], "5000");
}

/// A program that records its argv and PGPASSWORD, then runs the real tool.
fn recording_wrapper(s: &Scratch, name: &str, real: &std::path::Path) -> String {
    let path = s.write(
        name,
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" >> \"$(dirname \"$0\")/{name}.argv\"\nprintf '%s' \"$PGPASSWORD\" > \"$(dirname \"$0\")/{name}.pw\"\nexec {} \"$@\"\n",
            real.display()
        ),
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.display().to_string()
}

#[test]
fn connection_string_password_goes_to_the_environment_not_argv() {
    let c = Cluster::start();
    let s = Scratch::new();
    let dumpall = recording_wrapper(&s, "dumpall", &c.bin().join("pg_dumpall"));
    let psql = recording_wrapper(&s, "psql", &c.bin().join("psql"));
    let conninfo = format!(
        "host={} port={} user=postgres dbname=postgres password='se kret'",
        c.socket.display(),
        c.port
    );
    s.write(
        "p.yml",
        &format!(
            "ward: 1\nname: conninfo\nvars:\n  conn: x\nsteps:\n  - id: dump\n    action: pg.dumpall\n    with: {{ db: {{ dbname: \"{{{{ conn }}}}\" }}, dest: all.sql, compress: none, min_bytes: 0, program: {dumpall} }}\n  - id: restore\n    needs: [dump]\n    action: pg.restore\n    with: {{ db: {{ dbname: \"{{{{ conn }}}}\" }}, src: all.sql, force: true, program: {psql} }}\n"
        ),
    );
    s.ward()
        .args(["run", "p.yml", "--var"])
        .arg(format!("conn={conninfo}"))
        .run()
        .expect_code(0);
    for tool in ["dumpall", "psql"] {
        let argv = s.read(&format!("{tool}.argv"));
        assert!(!argv.is_empty(), "{tool} ran");
        assert!(!argv.contains("kret"), "{tool} argv: {argv}");
        assert!(!argv.contains("host="), "{tool} argv: {argv}");
        assert_eq!(s.read(&format!("{tool}.pw")), "se kret", "{tool}");
    }
    let logs = std::fs::read_dir(s.path().join("state/logs"))
        .expect("logs")
        .flatten()
        .flat_map(|run| std::fs::read_dir(run.path()).expect("run logs").flatten())
        .map(|f| std::fs::read_to_string(f.path()).unwrap_or_default())
        .collect::<String>();
    assert!(logs.contains("running:"), "{logs}");
    assert!(!logs.contains("kret"), "the password is not logged: {logs}");
}

#[test]
fn connection_values_that_are_options_are_refused() {
    let s = Scratch::new();
    for (action, extra) in [
        ("pg.dumpall", "dest: all.sql.gz"),
        ("pg.restore", "src: all.sql.gz"),
        ("pg.query", "sql: SELECT 1"),
    ] {
        for key in ["host", "user", "dbname"] {
            s.write(
                "p.yml",
                &format!(
                    "ward: 1\nname: inj\nvars:\n  v: x\nsteps:\n  - id: s\n    action: {action}\n    with:\n      db: {{ {key}: \"{{{{ v }}}}\" }}\n      {extra}\n"
                ),
            );
            let run = s
                .ward()
                .args(["run", "p.yml", "--var", "v=--help"])
                .run()
                .expect_code(2);
            assert!(
                run.stderr.contains(&format!("`db.{key}` starts with `-`")),
                "{action} {key}: {}",
                run.stderr
            );
            assert!(run.stderr.contains("p.yml:9:11"), "{}", run.stderr);
        }
    }
    // A connection string that does not parse is refused where it is written.
    s.write(
        "p.yml",
        "ward: 1\nname: inj\nsteps:\n  - id: s\n    action: pg.query\n    with:\n      db: { dbname: \"host=h password='open\" }\n      sql: SELECT 1\n",
    );
    let run = s.ward().args(["validate", "p.yml"]).run().expect_code(2);
    assert!(
        run.stderr
            .contains("unterminated quoted value of `password`"),
        "{}",
        run.stderr
    );
    // A connection string in pg_dumpall's own arguments would put a password on argv.
    s.write(
        "p.yml",
        "ward: 1\nname: inj\nsteps:\n  - id: s\n    action: pg.dumpall\n    with:\n      dest: all.sql.gz\n      args: [\"--dbname=postgresql://u:pw@h/db\"]\n",
    );
    let run = s.ward().args(["validate", "p.yml"]).run().expect_code(2);
    assert!(
        run.stderr.contains("`--dbname` is not allowed in `args`"),
        "{}",
        run.stderr
    );
}

fn names_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn dump_on_a_full_disk_names_the_file_and_the_cause() {
    let c = Cluster::start();
    // About 6 MB of SQL that compresses poorly: more than the 1 MB disk holds.
    c.psql("postgres", "CREATE DATABASE big");
    c.psql(
        "big",
        "CREATE TABLE t AS SELECT md5(g::text) || md5((g * 7)::text) AS a FROM generate_series(1, 90000) g",
    );
    let s = Scratch::new();
    let disk = s.path().join("disk");
    let _mount = Tmpfs::mount(&disk, "size=1m,mode=0755");
    std::fs::write(disk.join("keep.txt"), "already here\n").expect("keep");
    for (compress, ext) in [
        ("gzip", "gz"),
        ("pgzip", "pgz"),
        ("zstd", "zst"),
        ("none", "sql"),
    ] {
        let dest = disk.join(format!("all.{ext}"));
        s.write(
            "dump.yml",
            &format!(
                "ward: 1\nname: full-{compress}\nsteps:\n  - id: dump\n    action: pg.dumpall\n    with: {{ db: {}, dest: \"{}\", compress: {compress} }}\n",
                c.conn(),
                dest.display()
            ),
        );
        let run = s.ward().args(["run", "dump.yml"]).run().expect_code(1);
        let message = run
            .stderr
            .lines()
            .find(|l| l.contains("dump failed"))
            .unwrap_or_else(|| panic!("{compress}: no failure line: {}", run.stderr));
        assert!(
            message.contains("No space left on device"),
            "{compress}: {message}"
        );
        assert!(
            message.contains(&dest.display().to_string()),
            "{compress}: names the file: {message}"
        );
        assert!(
            !message.contains("pg_dumpall failed"),
            "{compress}: the disk, not the dump's broken pipe: {message}"
        );
        assert_eq!(
            names_in(&disk),
            ["keep.txt"],
            "{compress}: nothing left behind"
        );
    }
    // pg.query's result file on a disk with no room left at all.
    let mut filler = std::fs::File::create(disk.join("filler")).expect("filler");
    let block = vec![7u8; 64 * 1024];
    while std::io::Write::write_all(&mut filler, &block).is_ok() {}
    drop(filler);
    let rows = disk.join("rows.json");
    s.write(
        "query.yml",
        &format!(
            "ward: 1\nname: full-query\nsteps:\n  - id: q\n    action: pg.query\n    with: {{ db: {}, sql: \"SELECT a FROM t LIMIT 500\", save: \"{}\" }}\n",
            c.conn().replace("user: postgres", "user: postgres, dbname: big"),
            rows.display()
        ),
    );
    let run = s.ward().args(["run", "query.yml"]).run().expect_code(1);
    assert!(
        run.stderr.contains(&format!(
            "cannot write {}: No space left on device",
            rows.display()
        )),
        "{}",
        run.stderr
    );
    assert_eq!(names_in(&disk), ["filler", "keep.txt"]);
}
