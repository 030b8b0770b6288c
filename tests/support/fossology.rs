//! A small FOSSology-like system built for the end-to-end tests: a real
//! PostgreSQL cluster with the part of FOSSology's schema that backup and
//! restore touch, a repository laid out like FOSSology's (hashed paths
//! under gold/, files/, license/, logs/; each upload's archive hard-linked
//! from gold into files, as wget_agent does), and a scheduler stand-in that
//! runs an "agent" process and is started and stopped by commands.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::pg_cluster::Cluster;

/// The test system.
pub struct FoSystem {
    pub cluster: Cluster,
    pub root: PathBuf,
    pub repo: PathBuf,
    pub scheduler: PathBuf,
    pub scheduler_name: String,
    pub agent_name: String,
}

fn digest(tool: &str, bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new(tool)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("digest tool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bytes)
        .expect("write");
    let out = child.wait_with_output().expect("digest");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// `<type>/<aa>/<bb>/<cc>/<sha1>.<md5>.<size>` (fo_RepMkPath, depth 3, lower case).
fn repo_path(kind: &str, name: &str) -> String {
    format!(
        "{kind}/{}/{}/{}/{name}",
        &name[0..2],
        &name[2..4],
        &name[4..6]
    )
}

impl FoSystem {
    /// Builds the system under `root` and starts its scheduler.
    pub fn build(root: &Path) -> FoSystem {
        let cluster = Cluster::start();
        let repo = root.join("srv/fossology/repository");
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        // Unique names: tests run in parallel and `wait_gone` looks at every process.
        let tag = format!("{:04x}", fastrand::u16(..));
        let scheduler_name = format!("fo_sched_{tag}");
        let agent_name = format!("nomos_{tag}");
        std::fs::copy("/bin/sleep", bin.join(&agent_name)).expect("agent binary");
        let scheduler = bin.join(&scheduler_name);
        std::fs::write(
            &scheduler,
            format!(
                r#"#!/bin/bash
# Stand-in for fo_scheduler: --daemon starts it with one busy agent,
# --kill stops the scheduler and its agents at once (like `fo_scheduler --kill`).
# Both append "down|up <unix ns>" to $me.events (the benchmark's downtime).
here=$(cd "$(dirname "$0")" && pwd)
me=$(basename "$0")
case "${{1:-}}" in
  --daemon)
    setsid "$0" --run < /dev/null > /dev/null 2>&1 &
    exit 0 ;;
  --run)
    echo "up $(date +%s%N)" >> "$here/$me.events"
    echo $$ > "$here/$me.pid"
    "$here/{agent_name}" 3600 &
    while true; do sleep 0.2; done ;;
  --kill)
    [ -f "$here/$me.pid" ] || exit 0
    echo "down $(date +%s%N)" >> "$here/$me.events"
    kill -KILL -- "-$(cat "$here/$me.pid")" 2> /dev/null
    rm -f "$here/$me.pid"
    exit 0 ;;
esac
exit 2
"#
            ),
        )
        .expect("scheduler script");
        std::fs::set_permissions(&scheduler, std::fs::Permissions::from_mode(0o755))
            .expect("chmod");

        cluster.psql("postgres", "CREATE DATABASE fossology");
        let schema = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fossology/schema.sql"),
        )
        .expect("schema");
        cluster.psql("fossology", &schema);

        // Three uploads: each archive in gold/ (hard-linked into files/), two
        // unpacked files each in files/, licenses, logs. Upload 3's nomos job
        // was running at the backup point.
        let mut sql = String::new();
        for u in 1..=3u32 {
            let archive = format!("upload {u} archive ")
                .repeat(200 * u as usize)
                .into_bytes();
            let name = format!(
                "{}.{}.{}",
                digest("sha1sum", &archive),
                digest("md5sum", &archive),
                archive.len()
            );
            for kind in ["gold", "files"] {
                let p = repo.join(repo_path(kind, &name));
                std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                if kind == "gold" {
                    std::fs::write(&p, &archive).expect("gold");
                } else {
                    std::fs::hard_link(repo.join(repo_path("gold", &name)), &p).expect("link");
                }
            }
            for i in 1..=2 {
                let item = format!("upload {u} item {i}\n").into_bytes();
                let item_name = format!(
                    "{}.{}.{}",
                    digest("sha1sum", &item),
                    digest("md5sum", &item),
                    item.len()
                );
                let p = repo.join(repo_path("files", &item_name));
                std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                std::fs::write(p, item).expect("item");
            }
            let sha1 = &name[..40];
            let md5 = &name[41..73];
            sql.push_str(&format!(
                "INSERT INTO pfile (pfile_md5, pfile_sha1, pfile_size) VALUES (upper('{md5}'), upper('{sha1}'), {len});\n\
                 INSERT INTO upload (upload_filename, upload_mode, pfile_fk) VALUES ('upload-{u}.tar.gz', 104, currval('pfile_pfile_pk_seq'));\n\
                 INSERT INTO ununpack_ars (upload_fk, ars_success) VALUES ({u}, true);\n\
                 INSERT INTO job (job_queued, job_name, job_upload_fk) VALUES (now(), 'upload-{u}.tar.gz', {u});\n\
                 INSERT INTO jobqueue (jq_job_fk, jq_type, jq_args, jq_starttime, jq_endtime, jq_end_bits) VALUES (currval('job_job_pk_seq'), 'ununpack', '{u}', now(), now(), 1);\n\
                 INSERT INTO jobqueue (jq_job_fk, jq_type, jq_args, jq_starttime, jq_endtime, jq_end_bits) VALUES (currval('job_job_pk_seq'), 'nomos', '{u}', now(), {end}, {bits});\n\
                 INSERT INTO jobdepends VALUES (currval('jobqueue_jq_pk_seq'), currval('jobqueue_jq_pk_seq') - 1);\n",
                len = archive.len(),
                end = if u == 3 { "NULL" } else { "now()" },
                bits = if u == 3 { 0 } else { 1 },
            ));
        }
        cluster.psql("fossology", &sql);
        for (kind, name, body) in [
            ("license", "0a1b2c3d.lic.10", "MIT License"),
            ("logs", "000001", "agent log"),
        ] {
            let p = repo.join(format!("{kind}/00/00/00/{name}"));
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, body).expect("write");
        }
        let sys = FoSystem {
            cluster,
            root: root.to_path_buf(),
            repo,
            scheduler,
            scheduler_name,
            agent_name,
        };
        sys.start_scheduler();
        sys
    }

    /// Makes the system bigger, for benchmarks: `files` more unpacked files
    /// and `rows` more jobqueue rows.
    pub fn grow(&self, files: usize, rows: usize) {
        for i in 0..files {
            // Named like FOSSology's: sha1.md5.size of the content, so the
            // files spread over the hashed folders as they do on a real server.
            let size = 100 + i % 4000;
            let digest: String = <sha2::Sha256 as sha2::Digest>::digest(format!("grow {i}"))
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let name = format!("{}.{}.{size}", &digest[..40], &digest[32..64]);
            let p = self.repo.join(repo_path("files", &name));
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, vec![b'u'; size]).expect("write");
        }
        self.cluster.psql(
            "fossology",
            &format!(
                "INSERT INTO jobqueue (jq_job_fk, jq_type, jq_args, jq_starttime, jq_endtime, jq_end_bits, jq_log) \
                 SELECT 1, 'nomos', g::text, now(), now(), 1, repeat(md5(g::text), 4) FROM generate_series(1, {rows}) g"
            ),
        );
    }

    pub fn start_scheduler(&self) {
        assert!(
            Command::new(&self.scheduler)
                .arg("--daemon")
                .status()
                .expect("start")
                .success()
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.scheduler_running() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(self.scheduler_running(), "scheduler did not start");
    }

    /// How long the scheduler was last down, as the stand-in itself saw it
    /// (from its last `--kill` to the start that followed).
    pub fn last_downtime(&self) -> Option<std::time::Duration> {
        let events = std::fs::read_to_string(self.scheduler.with_extension("events")).ok()?;
        let mut down = None;
        let mut last = None;
        for line in events.lines() {
            match line.split_once(' ') {
                Some(("down", ns)) => down = ns.trim().parse::<u64>().ok(),
                Some(("up", ns)) => {
                    if let (Some(d), Ok(u)) = (down, ns.trim().parse::<u64>()) {
                        last = Some(std::time::Duration::from_nanos(u.saturating_sub(d)));
                    }
                }
                _ => {}
            }
        }
        last
    }

    pub fn scheduler_running(&self) -> bool {
        std::fs::read_to_string(self.scheduler.with_extension("pid"))
            .ok()
            .map(|pid| pid.trim().to_owned())
            .is_some_and(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|st| {
                        st.rsplit_once(')')
                            .map(|(_, r)| !r.trim_start().starts_with('Z'))
                    })
                    .unwrap_or(false)
            })
    }

    /// `--var` arguments pointing the FOSSology playbooks at this system.
    pub fn vars(&self, backup_root: &Path) -> Vec<String> {
        let s = self.scheduler.display();
        [
            format!("repo={}", self.repo.display()),
            format!("backup_root={}", backup_root.display()),
            format!("pg_host={}", self.cluster.socket.display()),
            format!("pg_port={}", self.cluster.port),
            "pg_user=postgres".to_owned(),
            format!("scheduler_stop=[\"{s}\", --kill]"),
            format!("scheduler_start=[\"{s}\", --daemon]"),
            format!("scheduler_process={}", self.scheduler_name),
            format!("agents=[{}, {}]", self.scheduler_name, self.agent_name),
            format!("report_dir={}", self.root.join("reports").display()),
        ]
        .into_iter()
        .flat_map(|v| ["--var".to_owned(), v])
        .collect()
    }

    /// Row counts of every table the procedure touches.
    pub fn counts(&self) -> BTreeMap<String, String> {
        [
            "pfile",
            "upload",
            "job",
            "jobqueue",
            "jobdepends",
            "ununpack_ars",
            "ars_master",
        ]
        .iter()
        .map(|t| {
            (
                t.to_string(),
                self.cluster
                    .psql("fossology", &format!("SELECT count(*) FROM {t}")),
            )
        })
        .collect()
    }

    /// Every file of the repository with the sha256 of its content and its link count.
    pub fn listing(&self, top: Option<&str>) -> BTreeMap<String, (String, u64)> {
        let mut out = BTreeMap::new();
        let start = top.map_or(self.repo.clone(), |t| self.repo.join(t));
        let mut stack = vec![start];
        while let Some(d) = stack.pop() {
            let Ok(read) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in read.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let meta = std::fs::metadata(&p).expect("meta");
                    let rel = p
                        .strip_prefix(&self.repo)
                        .expect("prefix")
                        .display()
                        .to_string();
                    let sum = ward::action::manifest::sha256_file(&p).expect("hash");
                    out.insert(rel, (sum, meta.nlink()));
                }
            }
        }
        out
    }
}

impl Drop for FoSystem {
    fn drop(&mut self) {
        let _ = Command::new(&self.scheduler).arg("--kill").status();
    }
}

// Helpers of the repository repair tests (tests/integration/fossology_repair.rs).

/// FOSSology's repository name of `bytes`: `<sha1>.<md5>.<size>`, lower case.
pub fn content_name(bytes: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        digest("sha1sum", bytes),
        digest("md5sum", bytes),
        bytes.len()
    )
}

/// SQL that records the repository file `name` in `pfile` (once).
fn pfile_sql(name: &str) -> String {
    let (sha1, rest) = name.split_at(40);
    let (md5, size) = rest[1..].split_at(32);
    let size = &size[1..];
    format!(
        "INSERT INTO pfile (pfile_md5, pfile_sha1, pfile_size) SELECT upper('{md5}'), upper('{sha1}'), {size} \
         WHERE NOT EXISTS (SELECT 1 FROM pfile WHERE pfile_md5 = upper('{md5}') AND pfile_sha1 = upper('{sha1}') AND pfile_size = {size});\n"
    )
}

/// SQL: the pfile_pk of the repository file `name`.
fn pfile_pk_sql(name: &str) -> String {
    format!(
        "(SELECT pfile_pk FROM pfile WHERE lower(pfile_sha1 || '.' || pfile_md5 || '.' || pfile_size) = '{name}')"
    )
}

impl FoSystem {
    /// Where the repository keeps `name` of `kind` (`gold`, `files`).
    pub fn path_of(&self, kind: &str, name: &str) -> PathBuf {
        self.repo.join(repo_path(kind, name))
    }

    /// The repository name of upload `u`'s archive.
    pub fn archive_of(&self, u: u32) -> String {
        self.cluster.psql(
            "fossology",
            &format!(
                "SELECT lower(pfile_sha1 || '.' || pfile_md5 || '.' || pfile_size) FROM pfile JOIN upload ON pfile_fk = pfile_pk WHERE upload_pk = {u}"
            ),
        )
    }

    /// Gives the system FOSSology's `uploadtree` (rows in `uploadtree_a`)
    /// and records there, with their pfile rows, the archive and unpacked
    /// items that `build` wrote for uploads 1-3 (skipped for an upload that
    /// already has rows).
    pub fn record_unpacked_items(&self) {
        let mut sql = String::from(
            "CREATE TABLE IF NOT EXISTS uploadtree (uploadtree_pk serial PRIMARY KEY, parent integer, realparent integer, \
             upload_fk integer NOT NULL, pfile_fk integer NOT NULL, ufile_mode integer NOT NULL, lft integer NOT NULL, rgt integer, ufile_name text NOT NULL);\n\
             CREATE TABLE IF NOT EXISTS uploadtree_a () INHERITS (uploadtree);\n",
        );
        for u in 1..=3u32 {
            let items: Vec<String> = (1..=2)
                .map(|i| content_name(format!("upload {u} item {i}\n").as_bytes()))
                .collect();
            sql.push_str(&format!(
                "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM uploadtree_a WHERE upload_fk = {u}) THEN\n{} END IF; END $$;\n",
                self.uploadtree_sql(u, &self.archive_of(u), &items)
            ));
        }
        self.cluster.psql("fossology", &sql);
    }

    /// SQL: pfile rows for `items` and the uploadtree rows of upload `u`
    /// (archive, a folder, the items).
    fn uploadtree_sql(&self, u: u32, archive: &str, items: &[String]) -> String {
        let mut sql = String::new();
        for item in items {
            sql.push_str(&pfile_sql(item));
        }
        let n = items.len() as i64;
        sql.push_str(&format!(
            "INSERT INTO uploadtree_a (upload_fk, pfile_fk, ufile_mode, lft, rgt, ufile_name) VALUES ({u}, {}, 536904704, 1, {}, 'upload-{u}.tar.gz');\n\
             INSERT INTO uploadtree_a (parent, upload_fk, pfile_fk, ufile_mode, lft, rgt, ufile_name) VALUES (currval('uploadtree_uploadtree_pk_seq'), {u}, 0, 536888320, 2, {}, 'src');\n",
            pfile_pk_sql(archive),
            2 * n + 4,
            2 * n + 3
        ));
        for (i, item) in items.iter().enumerate() {
            sql.push_str(&format!(
                "INSERT INTO uploadtree_a (parent, upload_fk, pfile_fk, ufile_mode, lft, rgt, ufile_name) VALUES \
                 ((SELECT uploadtree_pk FROM uploadtree_a WHERE upload_fk = {u} AND ufile_name = 'src'), {u}, {}, 32768, {}, {}, 'item{i}');\n",
                pfile_pk_sql(item),
                2 * i + 3,
                2 * i + 4
            ));
        }
        sql
    }

    /// Adds an upload as wget_agent and ununpack leave it (archive in gold/
    /// hard-linked into files/, `items` unpacked into files/, its rows), owned
    /// by user `user` and group `group`, with a nomos job still pending.
    /// Returns the upload's id and the names of its archive and items.
    pub fn add_upload(
        &self,
        tag: &str,
        items: &[&str],
        user: u32,
        group: u32,
    ) -> (u32, String, Vec<String>) {
        let archive = format!("archive {tag} ").repeat(300).into_bytes();
        let name = content_name(&archive);
        let gold = self.path_of("gold", &name);
        std::fs::create_dir_all(gold.parent().expect("parent")).expect("mkdir");
        std::fs::write(&gold, &archive).expect("gold");
        let files = self.path_of("files", &name);
        std::fs::create_dir_all(files.parent().expect("parent")).expect("mkdir");
        std::fs::hard_link(&gold, &files).expect("link");
        let item_names: Vec<String> = items
            .iter()
            .map(|body| {
                let item = content_name(body.as_bytes());
                let p = self.path_of("files", &item);
                std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                std::fs::write(p, body).expect("item");
                item
            })
            .collect();
        let u: u32 = self
            .cluster
            .psql(
                "fossology",
                &format!(
                    "{}INSERT INTO upload (upload_filename, user_fk, upload_mode, pfile_fk) VALUES ('{tag}.tar.gz', {user}, 104, {}) RETURNING upload_pk",
                    pfile_sql(&name),
                    pfile_pk_sql(&name)
                ),
            )
            .lines()
            .find_map(|l| l.trim().parse().ok())
            .expect("upload_pk");
        self.cluster.psql(
            "fossology",
            &format!(
                "{}INSERT INTO ununpack_ars (upload_fk, ars_success) VALUES ({u}, true);\n\
                 INSERT INTO job (job_queued, job_name, job_upload_fk, job_user_fk, job_group_fk) VALUES (now(), '{tag}.tar.gz', {u}, {user}, {group});\n\
                 INSERT INTO jobqueue (jq_job_fk, jq_type, jq_args, jq_starttime, jq_endtime, jq_end_bits) VALUES (currval('job_job_pk_seq'), 'ununpack', '{u}', now(), now(), 1);\n\
                 INSERT INTO jobqueue (jq_job_fk, jq_type, jq_args) VALUES (currval('job_job_pk_seq'), 'nomos', '{u}');\n\
                 INSERT INTO jobdepends VALUES (currval('jobqueue_jq_pk_seq'), currval('jobqueue_jq_pk_seq') - 1);\n",
                self.uploadtree_sql(u, &name, &item_names)
            ),
        );
        (u, name, item_names)
    }
}
