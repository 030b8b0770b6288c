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

/// FOSSology's `uploadtree` (core-schema.dat): rows live in `uploadtree_a`
/// (`INHERITS uploadtree`) or in a per-upload `uploadtree_<upload_pk>`
/// named by `upload.uploadtree_tablename`. Directories have pfile_fk 0.
/// `IF NOT EXISTS`: the shared schema fixture may grow these tables too.
const UPLOADTREE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS uploadtree (
    uploadtree_pk serial PRIMARY KEY,
    parent integer,
    realparent integer,
    upload_fk integer NOT NULL,
    pfile_fk integer,
    ufile_mode integer,
    lft integer NOT NULL,
    rgt integer,
    ufile_name text
);
CREATE TABLE IF NOT EXISTS uploadtree_a () INHERITS (uploadtree);
CREATE TABLE IF NOT EXISTS uploadtree_2 () INHERITS (uploadtree);
";

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
        cluster.psql("fossology", UPLOADTREE_SCHEMA);

        // Three uploads: each archive in gold/ (hard-linked into files/), two
        // unpacked files each in files/, licenses, logs. Upload 3's nomos job
        // was running at the backup point. Upload `u` belongs to user 100+u
        // and group 200+u (its upload job carries both, as JobAddUpload
        // queues it); its tree is in `uploadtree_a`, upload 2's in its own
        // `uploadtree_2` (as ununpack makes for big archives).
        let mut sql = String::new();
        for u in 1..=3u32 {
            let tree = if u == 2 {
                "uploadtree_2"
            } else {
                "uploadtree_a"
            };
            let mut items = String::new();
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
                std::fs::write(p, &item).expect("item");
                // Under the upload's one folder; lft/rgt nest as adj2nest numbers them.
                items.push_str(&format!(
                    "INSERT INTO pfile (pfile_md5, pfile_sha1, pfile_size) VALUES (upper('{md5}'), upper('{sha1}'), {len});\n\
                     INSERT INTO {tree} (parent, realparent, upload_fk, pfile_fk, ufile_mode, lft, rgt, ufile_name) \
                     SELECT uploadtree_pk, uploadtree_pk, {u}, currval('pfile_pfile_pk_seq'), 33188, {lft}, {lft} + 1, 'item-{i}.txt' \
                     FROM {tree} WHERE upload_fk = {u} AND ufile_mode = 536888320;\n",
                    md5 = &item_name[41..73],
                    sha1 = &item_name[..40],
                    len = item.len(),
                    lft = 2 * i + 1,
                ));
            }
            let sha1 = &name[..40];
            let md5 = &name[41..73];
            sql.push_str(&format!(
                "INSERT INTO pfile (pfile_md5, pfile_sha1, pfile_size) VALUES (upper('{md5}'), upper('{sha1}'), {len});\n\
                 INSERT INTO upload (upload_filename, user_fk, upload_mode, pfile_fk, uploadtree_tablename) VALUES ('upload-{u}.tar.gz', 100 + {u}, 104, currval('pfile_pfile_pk_seq'), '{tree}');\n\
                 INSERT INTO {tree} (upload_fk, pfile_fk, ufile_mode, lft, rgt, ufile_name) VALUES ({u}, currval('pfile_pfile_pk_seq'), 536904704, 1, 8, 'upload-{u}.tar.gz');\n\
                 INSERT INTO {tree} (parent, realparent, upload_fk, pfile_fk, ufile_mode, lft, rgt, ufile_name) \
                 SELECT uploadtree_pk, uploadtree_pk, {u}, 0, 536888320, 2, 7, 'upload-{u}' FROM {tree} WHERE upload_fk = {u} AND parent IS NULL;\n\
                 {items}\
                 INSERT INTO ununpack_ars (upload_fk, ars_success) VALUES ({u}, true);\n\
                 INSERT INTO job (job_queued, job_name, job_upload_fk, job_user_fk, job_group_fk) VALUES (now(), 'upload-{u}.tar.gz', {u}, 100 + {u}, 200 + {u});\n\
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

    /// True once the scheduler runs, waiting up to 10 s: `--daemon` returns
    /// before the daemon it starts has written its pid file, and on a busy
    /// machine ward can end in between.
    pub fn scheduler_up(&self) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.scheduler_running() {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        true
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
            // A restore's marker, this system's own (not /var/lib/ward's);
            // not in `ward-work`, whose trust tests change.
            format!(
                "restore_marker={}",
                self.root
                    .join("ward-marker")
                    .join("restore-in-progress")
                    .display()
            ),
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
                    let sum = ward::fs::manifest::sha256_file(&p).expect("hash");
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

/// For the reunpack tests: helpers that shape the jobs and files of the
/// test system.
impl FoSystem {
    /// Adds upload 4, a URL upload whose download was still running: no
    /// pfile and no gold archive yet, its wget_agent row started and not
    /// finished, ununpack and nomos pending behind it (as JobAddUpload and
    /// the agents' plugins queue them). Returns the wget_agent row's jq_pk.
    pub fn add_download_in_progress(&self) -> String {
        self.cluster.psql(
            "fossology",
            "INSERT INTO upload (upload_pk, upload_filename, user_fk, upload_mode) VALUES (4, 'x.tar.gz', 104, 4);\
             SELECT setval('upload_upload_pk_seq', 4);\
             INSERT INTO job (job_queued, job_name, job_upload_fk, job_user_fk, job_group_fk) VALUES (now(), 'x.tar.gz', 4, 104, 204);\
             INSERT INTO jobqueue (jq_job_fk, jq_type, jq_args, jq_starttime, jq_endtext, jq_schedinfo) VALUES (currval('job_job_pk_seq'), 'wget_agent', '4', now(), 'Started', 'localhost.4242');\
             INSERT INTO jobqueue (jq_job_fk, jq_type, jq_args) VALUES (currval('job_job_pk_seq'), 'ununpack', '4');\
             INSERT INTO jobdepends VALUES (currval('jobqueue_jq_pk_seq'), currval('jobqueue_jq_pk_seq') - 1);\
             INSERT INTO jobqueue (jq_job_fk, jq_type, jq_args) VALUES (currval('job_job_pk_seq'), 'nomos', '4');\
             INSERT INTO jobdepends VALUES (currval('jobqueue_jq_pk_seq'), currval('jobqueue_jq_pk_seq') - 1);",
        );
        self.cluster.psql(
            "fossology",
            "SELECT q.jq_pk FROM jobqueue q JOIN job j ON j.job_pk = q.jq_job_fk WHERE j.job_upload_fk = 4 AND q.jq_type = 'wget_agent'",
        )
    }

    /// The path in files/ of every unpacked file of `upload` that has
    /// content (uploadtree rows with a pfile, the archive included).
    pub fn unpacked_files(&self, upload: u32) -> Vec<PathBuf> {
        let names = self.cluster.psql(
            "fossology",
            &format!(
                "SELECT lower(p.pfile_sha1 || '.' || p.pfile_md5 || '.' || p.pfile_size) FROM uploadtree t \
                 JOIN pfile p ON p.pfile_pk = t.pfile_fk WHERE t.upload_fk = {upload} AND t.pfile_fk <> 0 ORDER BY t.lft"
            ),
        );
        names
            .lines()
            .map(|n| self.repo.join(repo_path("files", n.trim())))
            .collect()
    }
}

/// Db.conf's password in the test system: it must never reach ward's state.
pub const DB_CONF_PASSWORD: &str = "fossy-db-conf-pw-7f3e";

impl FoSystem {
    /// Writes FOSSology's own configuration for this system into `etc`:
    /// fossology.conf (`path` is the repository's parent, the single
    /// repository host is the repository folder's name, depth `depth`) and
    /// Db.conf (database `fossology`, with a password).
    pub fn write_conf(&self, etc: &Path, depth: u32) -> PathBuf {
        std::fs::create_dir_all(etc).expect("mkdir etc");
        let path = self.repo.parent().expect("repository parent");
        let host = self
            .repo
            .file_name()
            .expect("repository name")
            .to_string_lossy()
            .into_owned();
        let conf = etc.join("fossology.conf");
        std::fs::write(
            &conf,
            format!(
                "; FOSSology configuration (as install/defconf/fossology.conf.in)\n\
                 [FOSSOLOGY]\nport = 24693\naddress = localhost\ndepth = {depth}\n\
                 path = {}\n\n[HOSTS]\n{host} = localhost {} 10\n\n\
                 [REPOSITORY]\n{host}[] = * 00 ff\n\n[DIRECTORIES]\nPROJECTUSER=fossy\n",
                path.display(),
                etc.display()
            ),
        )
        .expect("fossology.conf");
        std::fs::write(
            etc.join("Db.conf"),
            format!(
                "dbname=fossology;\nhost=localhost;\nuser=fossy;\npassword={DB_CONF_PASSWORD};\n"
            ),
        )
        .expect("Db.conf");
        conf
    }

    /// `--var` arguments for the playbooks that read FOSSology's configuration
    /// from `etc` (no `repo`): as `vars`, plus `fossology_conf`,
    /// `fossology_db_conf` and `work_dir`.
    pub fn conf_vars(&self, backup_root: &Path, etc: &Path) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let given = self.vars(backup_root);
        for pair in given.chunks(2) {
            if pair.len() == 2 && !pair[1].starts_with("repo=") {
                out.extend(pair.iter().cloned());
            }
        }
        for v in [
            format!("fossology_conf={}", etc.join("fossology.conf").display()),
            format!("fossology_db_conf={}", etc.join("Db.conf").display()),
            format!("work_dir={}", self.root.join("ward-work").display()),
        ] {
            out.push("--var".to_owned());
            out.push(v);
        }
        out
    }

    /// A shell command that creates and starts an empty cluster where this
    /// system's cluster was (same data folder, port and socket), as initdb +
    /// pg_ctl do on a server without Debian's wrappers.
    pub fn create_cluster_command(&self) -> String {
        let bin = self.cluster.bin().display().to_string();
        let data = self.cluster.data().display().to_string();
        let log = self
            .cluster
            .data()
            .with_file_name("server-recreated.log")
            .display()
            .to_string();
        format!(
            "runuser -u postgres -- '{bin}/initdb' -U postgres --auth=trust -E UTF8 --no-sync -D '{data}' && \
             runuser -u postgres -- '{bin}/pg_ctl' -w -t 60 -D '{data}' -l '{log}' \
             -o '-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off' start",
            self.cluster.port,
            self.cluster.socket.display()
        )
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

/// A second FOSSology instance's scheduler and agent on the same host:
/// the same process names as the first one's, from another folder (so
/// another command line), optionally as another user.
pub struct Foreign {
    pub dir: PathBuf,
    pub scheduler: PathBuf,
}

impl FoSystem {
    /// Starts the foreign instance (as `user` through `runuser` when given)
    /// and waits until its scheduler and agent run. Its folder is outside
    /// the test's scratch folder so that another user can run its files.
    pub fn start_foreign(&self, user: Option<&str>) -> Foreign {
        let dir = std::env::temp_dir().join(format!(
            "ward-foreign-{}-{:04x}",
            std::process::id(),
            fastrand::u16(..)
        ));
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir foreign");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // The scheduler writes its pid and events beside itself.
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let scheduler = bin.join(&self.scheduler_name);
        std::fs::copy(&self.scheduler, &scheduler).expect("foreign scheduler");
        std::fs::copy("/bin/sleep", bin.join(&self.agent_name)).expect("foreign agent");
        let mut start = match user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(&scheduler);
                c
            }
            None => Command::new(&scheduler),
        };
        assert!(
            start
                .arg("--daemon")
                .status()
                .expect("start foreign")
                .success()
        );
        let foreign = Foreign { dir, scheduler };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while foreign.agent_pid().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(foreign.agent_pid().is_some(), "foreign agent did not start");
        foreign
    }
}

impl Foreign {
    /// The scheduler's pid, from its pid file.
    pub fn scheduler_pid(&self) -> Option<String> {
        std::fs::read_to_string(self.scheduler.with_extension("pid"))
            .ok()
            .map(|p| p.trim().to_owned())
    }

    /// The agent's pid: the live process whose argv[0] is this instance's agent.
    pub fn agent_pid(&self) -> Option<String> {
        let agent_prefix = format!("{}/", self.dir.join("bin").display());
        let scheduler = self.scheduler.display().to_string();
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let argv0 = String::from_utf8_lossy(cmd.split(|b| *b == 0).next()?).into_owned();
            (argv0.starts_with(&agent_prefix) && argv0 != scheduler).then(|| pid.to_string())
        })
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        let _ = Command::new(&self.scheduler).arg("--kill").status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// For the repair tests: a system whose grown files carry their true names.
impl FoSystem {
    /// Like `grow`, but each of the `files` unpacked files is named by its
    /// content as FOSSology names it (`<sha1>.<md5>.<size>`, which `grow`
    /// only imitates), so the repair can check it against its name. Sizes
    /// as `grow`'s (100 to 4,099 bytes); `rows` more jobqueue rows.
    pub fn grow_named(&self, files: usize, rows: usize) {
        let tmp = self.root.join("grow-named");
        std::fs::create_dir_all(&tmp).expect("mkdir");
        for i in 0..files {
            let size = 100 + i % 4000;
            let mut body = format!("grown file {i}\n")
                .repeat(size / 12 + 1)
                .into_bytes();
            body.truncate(size);
            std::fs::write(tmp.join(i.to_string()), body).expect("write");
        }
        // Two processes for every file: sha1sum and md5sum over all of them.
        let sums = |tool: &str| -> BTreeMap<String, String> {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("ls | xargs {tool}"))
                .current_dir(&tmp)
                .output()
                .expect("digest");
            assert!(out.status.success(), "{tool} failed");
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| l.split_once("  "))
                .map(|(sum, name)| (name.to_owned(), sum.to_owned()))
                .collect()
        };
        let (sha1, md5) = (sums("sha1sum"), sums("md5sum"));
        for i in 0..files {
            let key = i.to_string();
            let name = format!("{}.{}.{}", sha1[&key], md5[&key], 100 + i % 4000);
            let p = self.repo.join(repo_path("files", &name));
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::rename(tmp.join(&key), p).expect("rename");
        }
        std::fs::remove_dir(&tmp).expect("rmdir");
        self.grow(0, rows);
    }
}

/// For the backup benchmark: agents that take their time to exit, as
/// FOSSology's agents finish their current item after the init script's
/// stop. Opt-in ([`FoSystem::linger_agents`]); without it the stand-in's
/// agents die at once on `--kill`.
impl FoSystem {
    /// Replaces the scheduler stand-in with one that runs `agents` agents and
    /// whose `--kill` works like FOSSology's init script stop: it sends
    /// SIGTERM to the scheduler and its agents and returns at once. Agent
    /// `i` exits the number of seconds in field `i` of the `.linger` file
    /// after the signal (see [`FoSystem::set_agent_exit`]; 0 until then).
    /// The scheduler is restarted; it keeps its name, pid and events files.
    pub fn linger_agents(&self, agents: usize) {
        let _ = Command::new(&self.scheduler).arg("--kill").status();
        let bin = self.scheduler.parent().expect("bin folder");
        // The agents are copies of bash, so that their name is still the
        // agent's name (comm and argv[0]) while they run their exit trap.
        let agent = bin.join(&self.agent_name);
        std::fs::remove_file(&agent).expect("remove the old agent binary");
        std::fs::copy("/bin/bash", &agent).expect("agent binary");
        std::fs::write(
            bin.join("agent-body.sh"),
            "# One agent (run by the agent's bash copy): busy until SIGTERM, then\n\
             # it finishes its current item (field $1 of the file $2, in seconds).\n\
             i=\"$1\"\nlinger=\"$2\"\n\
             trap 'sleep \"$(cut -d \" \" -f \"$i\" \"$linger\")\"; exit 0' TERM\n\
             sleep 3600 &\nwait $!\n",
        )
        .expect("agent body");
        std::fs::write(
            &self.scheduler,
            format!(
                r#"#!/bin/bash
# Stand-in for fo_scheduler with {agents} agents that take their time to exit:
# --kill sends SIGTERM to the scheduler and its agents and returns at once
# (like FOSSology's init script stop); the agents linger (see agent-body.sh).
# Both --run and --kill append "up|down <unix ns>" to $me.events.
here=$(cd "$(dirname "$0")" && pwd)
me=$(basename "$0")
case "${{1:-}}" in
  --daemon)
    setsid "$0" --run < /dev/null > /dev/null 2>&1 &
    exit 0 ;;
  --run)
    echo "up $(date +%s%N)" >> "$here/$me.events"
    echo $$ > "$here/$me.pid"
    for i in $(seq 1 {agents}); do
      "$here/{agent}" "$here/agent-body.sh" "$i" "$here/$me.linger" &
    done
    while true; do sleep 0.2; done ;;
  --kill)
    [ -f "$here/$me.pid" ] || exit 0
    echo "down $(date +%s%N)" >> "$here/$me.events"
    kill -TERM -- "-$(cat "$here/$me.pid")" 2> /dev/null
    rm -f "$here/$me.pid"
    exit 0 ;;
esac
exit 2
"#,
                agent = self.agent_name,
            ),
        )
        .expect("scheduler script");
        self.set_agent_exit(&vec![std::time::Duration::ZERO; agents]);
        self.start_scheduler();
        self.wait_agents(agents);
    }

    /// How long each agent takes to exit after the next stop.
    pub fn set_agent_exit(&self, delays: &[std::time::Duration]) {
        let fields: Vec<String> = delays
            .iter()
            .map(|d| format!("{:.3}", d.as_secs_f64()))
            .collect();
        std::fs::write(
            self.scheduler.with_extension("linger"),
            fields.join(" ") + "\n",
        )
        .expect("linger file");
    }

    /// How many live processes are named like the scheduler or the agent:
    /// zombies do not count (the agents outlive the scheduler, their parent,
    /// and this machine's init reaps orphans only every second or so).
    pub fn count_running(&self) -> (usize, usize) {
        let mut n = (0, 0);
        for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // `pid (comm) state ...`; comm may hold spaces and parentheses.
            let (Some((head, rest)), Some(open)) = (stat.rsplit_once(')'), stat.find('(')) else {
                continue;
            };
            if rest.trim_start().starts_with(['Z', 'X']) {
                continue;
            }
            let comm = &head[open + 1..];
            if comm == self.scheduler_name {
                n.0 += 1;
            } else if comm == self.agent_name {
                n.1 += 1;
            }
        }
        n
    }

    /// Waits (up to 10 s) until the scheduler runs with `agents` agents.
    pub fn wait_agents(&self, agents: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !(self.scheduler_running() && self.count_running().1 == agents) {
            assert!(
                std::time::Instant::now() < deadline,
                "the scheduler did not start its {agents} agents"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// A day's work for the benchmark: `files` new unpacked files (named
    /// after `day`, so every day adds different ones) and `rows` new
    /// jobqueue rows.
    pub fn day_of_work(&self, day: &str, files: usize, rows: usize) {
        for i in 0..files {
            // Named as in `grow` (a digest spread over the hashed folders).
            let size = 100 + i % 4000;
            let digest: String = <sha2::Sha256 as sha2::Digest>::digest(format!("{day} {i}"))
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let name = format!("{}.{}.{size}", &digest[..40], &digest[32..64]);
            let p = self.path_of("files", &name);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, vec![b'd'; size]).expect("write");
        }
        self.cluster.psql(
            "fossology",
            &format!(
                "INSERT INTO jobqueue (jq_job_fk, jq_type, jq_args, jq_starttime, jq_endtime, jq_end_bits, jq_log) \
                 SELECT 1, 'nomos', g::text, now(), now(), 1, repeat(md5('{day}' || g), 4) FROM generate_series(1, {rows}) g"
            ),
        );
    }
}
