//! The PostgreSQL actions against real servers: Debian's `postgresql`
//! package, a fresh cluster per test in a temp folder, on a free loopback
//! port and a private socket folder. A missing server is a failure, not a skip.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Scratch, wait_for};

/// A running PostgreSQL cluster, stopped on drop.
pub struct Cluster {
    _dir: tempfile::TempDir,
    data: PathBuf,
    pub socket: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (apt-get install postgresql); .ci/run installs it")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn as_postgres(bin: &Path, tool: &str) -> Command {
    if rustix_is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

fn rustix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Cluster {
    pub fn start() -> Cluster {
        let bin = pg_bin();
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let socket = dir.path().join("sock");
        std::fs::create_dir_all(&socket).expect("mkdir");
        if rustix_is_root() {
            // initdb refuses to run as root; the cluster belongs to `postgres`.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .expect("chown");
            assert!(ok.success());
        }
        let out = as_postgres(&bin, "initdb")
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            socket.display()
        );
        let out = as_postgres(&bin, "pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(&data)
            .args(["-o", &opts, "-l"])
            .arg(dir.path().join("server.log"))
            .arg("start")
            .output()
            .expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Cluster {
            _dir: dir,
            data,
            socket,
            port,
            bin,
        }
    }

    /// Runs SQL with psql as the superuser; returns the output (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-h",
            ])
            .arg(&self.socket)
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The `db:` mapping for playbooks.
    pub fn conn(&self) -> String {
        format!(
            "{{ host: \"{}\", port: {}, user: postgres }}",
            self.socket.display(),
            self.port
        )
    }

    /// Stops the server at once (as a crash would).
    pub fn stop_immediately(&self) {
        let _ = as_postgres(&self.bin, "pg_ctl")
            .args(["-w", "-D"])
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin, "pg_ctl")
            .args(["-w", "-D"])
            .arg(&self.data)
            .args(["-m", "fast", "stop"])
            .output();
    }
}

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
        run.stderr.contains("already has databases shop"),
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
