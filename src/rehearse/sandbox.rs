//! The sandbox of a rehearsal: a private folder with the restore's target
//! folders, and a throwaway PostgreSQL cluster that listens on loopback
//! only, with its socket inside the sandbox. Torn down when dropped (unless
//! kept), so every way out of a rehearsal (an error, a signal, a panic)
//! stops the cluster and removes the folders.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a sandbox could not be made.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SandboxError(pub String);

fn err(what: impl Into<String>) -> SandboxError {
    SandboxError(what.into())
}

/// A rehearsal's sandbox.
#[derive(Debug)]
pub struct Sandbox {
    /// The private folder (0700) everything else lives in (as root, the
    /// cluster's own folder is apart, see [`Cluster::dir`]).
    pub root: PathBuf,
    /// Each target variable and its fresh folder.
    pub targets: Vec<(String, PathBuf)>,
    /// The cluster, when the playbook names PostgreSQL variables.
    pub cluster: Option<Cluster>,
    /// Leave everything in place at the end (`--keep`).
    pub keep: bool,
    torn_down: bool,
}

/// The sandbox's PostgreSQL cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The server programs (`/usr/lib/postgresql/<major>/bin`).
    pub bin: PathBuf,
    /// The folder holding `data/`, `sock/` and `server.log`.
    pub dir: PathBuf,
    /// The socket folder (what `host` is set to).
    pub socket: PathBuf,
    /// The TCP port (loopback only; the socket file is named after it too).
    pub port: u16,
    /// True when the server runs as `postgres` (ward runs as root).
    pub as_postgres: bool,
    /// The cluster's folder is apart from the sandbox (as root), so it is
    /// removed on its own.
    apart: bool,
}

impl Cluster {
    /// The data folder.
    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's log.
    pub fn log(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn tool(&self, name: &str) -> Command {
        tool(&self.bin, name, self.as_postgres)
    }

    /// `psql` on the sandbox's socket as the superuser, on `db`, reading
    /// the SQL from stdin; unaligned tuples only, stops at the first error.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        use std::io::Write;
        let mut child = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-w", "-q", "-v", "ON_ERROR_STOP=1"])
            .env("PGHOST", &self.socket)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", "postgres")
            .env("PGDATABASE", db)
            .env_remove("PGPASSWORD")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start psql: {e}"))?;
        let fed = child
            .stdin
            .take()
            .map(|mut stdin| stdin.write_all(sql.as_bytes()));
        let out = child.wait_with_output().map_err(|e| format!("psql: {e}"))?;
        if let Some(Err(e)) = fed {
            return Err(format!("cannot send the query to psql: {e}"));
        }
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn tool(bin: &Path, name: &str, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(name));
        c
    } else {
        Command::new(bin.join(name))
    }
}

/// The newest PostgreSQL server programs installed (Debian's layout).
fn server_bin() -> Result<PathBuf, SandboxError> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            err(format!(
                "no PostgreSQL server is installed (/usr/lib/postgresql: {e}); a rehearsal \
                 restores into a cluster of its own: install the server package (Debian: \
                 postgresql)"
            ))
        })?
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b).ok_or_else(|| {
        err(
            "no PostgreSQL server programs under /usr/lib/postgresql/*/bin (initdb, pg_ctl): \
             install the server package (Debian: postgresql)",
        )
    })
}

fn run(cmd: &mut Command, what: &str) -> Result<(), SandboxError> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| err(format!("{what} does not start: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(err(format!(
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}

/// Makes `path` as a new folder with `mode`; an existing one is refused
/// (it could have been planted by someone else).
fn make_new_dir(path: &Path, mode: u32) -> Result<(), SandboxError> {
    std::fs::create_dir(path).map_err(|e| {
        err(format!(
            "cannot create the sandbox folder {}: {e}",
            path.display()
        ))
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| err(format!("cannot set the mode of {}: {e}", path.display())))
}

/// A port nobody listens on at 127.0.0.1 right now.
fn free_port() -> Result<u16, SandboxError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| err(format!("cannot find a free loopback port: {e}")))
}

/// A value in postgresql.conf's quoting.
fn conf_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

impl Sandbox {
    /// Makes the sandbox `<parent>/<name>` (0700; `parent` must be a
    /// private folder of the user, checked by the caller), a fresh folder
    /// per target, and, if `postgres`, a cluster.
    pub fn create(
        parent: &Path,
        name: &str,
        targets: &[String],
        postgres: bool,
        keep: bool,
    ) -> Result<Sandbox, SandboxError> {
        let root = parent.join(name);
        make_new_dir(&root, 0o700)?;
        let mut sandbox = Sandbox {
            root,
            targets: Vec::new(),
            cluster: None,
            keep,
            torn_down: false,
        };
        let folders = sandbox.root.join("targets");
        make_new_dir(&folders, 0o700)?;
        for t in targets {
            let dir = folders.join(t);
            make_new_dir(&dir, 0o700)?;
            sandbox.targets.push((t.clone(), dir));
        }
        sandbox.write_owner(None)?;
        if postgres {
            sandbox.cluster = Some(sandbox.start_cluster(name)?);
        }
        Ok(sandbox)
    }

    /// Records who owns the sandbox (this process: pid and start time) and
    /// where its cluster is, so that a later rehearsal can tell a sandbox
    /// left by a ward that was killed (SIGKILL, a crash, a power cut) from
    /// one in use, and clean it ([`sweep`]).
    fn write_owner(&self, cluster: Option<&Path>) -> Result<(), SandboxError> {
        let me = std::process::id();
        let mut text = format!("pid {me}\nstart {}\n", start_time(me).unwrap_or_default());
        if let Some(c) = cluster {
            text.push_str(&format!("cluster {}\n", c.display()));
        }
        crate::fs::write_atomic(&self.root.join(OWNER), text.as_bytes(), 0o600)
            .map_err(|e| err(format!("cannot write the sandbox's owner file: {e}")))
    }

    fn start_cluster(&self, name: &str) -> Result<Cluster, SandboxError> {
        let bin = server_bin()?;
        let as_postgres = is_root();
        // initdb and the server refuse to run as root: as root they run as
        // `postgres`, which cannot enter root's private state folder. Their
        // folder is then a new one in the temp folder, made by mkdir (which
        // never takes over an existing one; the sticky bit keeps others
        // from renaming it) and handed to `postgres` at once.
        let (dir, apart) = if as_postgres {
            let dir =
                std::env::temp_dir().join(format!("ward-{name}-pg-{:08x}", fastrand::u32(..)));
            make_new_dir(&dir, 0o700)?;
            run(
                Command::new("chown").arg("postgres:postgres").arg(&dir),
                "chown postgres",
            )
            .inspect_err(|_| {
                let _ = std::fs::remove_dir(&dir);
            })?;
            (dir, true)
        } else {
            let dir = self.root.join("pg");
            make_new_dir(&dir, 0o700)?;
            (dir, false)
        };
        let socket = dir.join("sock");
        let mut cluster = Cluster {
            bin,
            dir,
            socket,
            port: 0,
            as_postgres,
            apart,
        };
        // From here on, teardown knows the cluster's folder (a failure
        // below still removes it).
        let result = |cluster: &mut Cluster| {
            // `mkdir` is not a server program: use the system one.
            let mut mk = if as_postgres {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--", "mkdir", "-m", "700"])
                    .arg(&cluster.socket);
                c
            } else {
                let mut c = Command::new("mkdir");
                c.args(["-m", "700"]).arg(&cluster.socket);
                c
            };
            run(&mut mk, "mkdir (the socket folder)")?;
            run(
                cluster
                    .tool("initdb")
                    .args([
                        "-U",
                        "postgres",
                        "--auth-local=trust",
                        "--auth-host=reject",
                        "-E",
                        "UTF8",
                        "--no-sync",
                        "-D",
                    ])
                    .arg(cluster.data()),
                "initdb",
            )?;
            // Fenced: TCP only on loopback (and refused by pg_hba), trust
            // only over the socket inside the sandbox.
            let hba = "# ward rehearsal: only the sandbox's socket, no TCP\nlocal all all trust\n";
            std::fs::write(cluster.data().join("pg_hba.conf"), hba)
                .map_err(|e| err(format!("cannot write pg_hba.conf: {e}")))?;
            let mut last = None;
            for _ in 0..3 {
                let port = free_port()?;
                let conf = format!(
                    "\n# ward rehearsal\nlisten_addresses = '127.0.0.1'\nport = {port}\n\
                     unix_socket_directories = {}\nfsync = off\n",
                    conf_quote(&cluster.socket.display().to_string())
                );
                std::fs::write(cluster.data().join("postgresql.auto.conf"), conf)
                    .map_err(|e| err(format!("cannot write postgresql.auto.conf: {e}")))?;
                let started = run(
                    cluster
                        .tool("pg_ctl")
                        .args(["-w", "-t", "120", "-D"])
                        .arg(cluster.data())
                        .arg("-l")
                        .arg(cluster.log())
                        .arg("start"),
                    "pg_ctl start",
                );
                match started {
                    Ok(()) => {
                        cluster.port = port;
                        return Ok(());
                    }
                    // The port may have been taken between the look and the start.
                    Err(e) => last = Some(e),
                }
            }
            let log = std::fs::read_to_string(cluster.log()).unwrap_or_default();
            Err(err(format!(
                "{}; the server's log ends with: {}",
                last.map(|e| e.0).unwrap_or_default(),
                log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
            )))
        };
        // Recorded before the server is started, so that a ward killed
        // while it starts still leaves a sweepable trail.
        let result = self
            .write_owner(Some(&cluster.dir))
            .and_then(|()| result(&mut cluster));
        match result {
            Ok(()) => Ok(cluster),
            Err(e) => {
                let _ = stop_cluster(&cluster);
                let _ = remove_cluster_dir(&cluster);
                Err(e)
            }
        }
    }

    /// The folder of target `var`.
    pub fn target(&self, var: &str) -> Option<&Path> {
        self.targets
            .iter()
            .find(|(t, _)| t == var)
            .map(|(_, p)| p.as_path())
    }

    /// Stops the cluster and removes every folder, unless kept. Returns
    /// what could not be cleaned up (empty when all went).
    pub fn tear_down(&mut self) -> Vec<String> {
        if self.torn_down {
            return Vec::new();
        }
        self.torn_down = true;
        let mut problems = Vec::new();
        if let Some(c) = &self.cluster {
            if let Err(e) = stop_cluster(c) {
                problems.push(e.0);
            }
            if !self.keep
                && let Err(e) = remove_cluster_dir(c)
            {
                problems.push(e.0);
            }
        }
        if self.keep {
            // Kept on purpose: not a leftover for [`sweep`].
            let _ = std::fs::remove_file(self.root.join(OWNER));
        }
        if !self.keep
            && let Err(e) = std::fs::remove_dir_all(&self.root)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            problems.push(format!("cannot remove {}: {e}", self.root.display()));
        }
        problems
    }
}

/// `pg_ctl stop -m fast`; a server that is not running is fine.
fn stop_cluster(c: &Cluster) -> Result<(), SandboxError> {
    if !c.data().join("postmaster.pid").exists() {
        return Ok(());
    }
    run(
        c.tool("pg_ctl")
            .args(["-w", "-t", "120", "-m", "fast", "-D"])
            .arg(c.data())
            .arg("stop"),
        "pg_ctl stop",
    )
}

fn remove_cluster_dir(c: &Cluster) -> Result<(), SandboxError> {
    if !c.apart {
        return Ok(());
    }
    match std::fs::remove_dir_all(&c.dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(err(format!("cannot remove {}: {e}", c.dir.display())))
        }
        _ => Ok(()),
    }
}

/// The file in a sandbox naming the ward that owns it.
const OWNER: &str = "ward-owner";

/// A process's start time (field 22 of `/proc/<pid>/stat`), which tells
/// a live owner from another process that got its pid later.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name (field 2) may hold spaces and parentheses: count from the last `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Cleans the sandboxes in `parent` that a rehearsal left behind when its
/// ward was killed before it could tear down (SIGKILL, a crash): their
/// owner file names a process that is gone. Their cluster is stopped
/// (`pg_ctl stop -m immediate`) and their folders removed. Sandboxes in
/// use and kept ones (`--keep`, no owner file) are left alone. Returns
/// one line per sandbox cleaned or that could not be.
pub fn sweep(parent: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(parent) else {
        return out;
    };
    for e in entries.flatten() {
        let root = e.path();
        // Only real folders: a symlink planted here is not followed.
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(OWNER)) else {
            continue;
        };
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix(' '))
                .map(str::to_owned)
        };
        let Some(pid) = field("pid").and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let start = field("start").and_then(|s| s.parse::<u64>().ok());
        let alive = match start_time(pid) {
            Some(now) => start.is_none_or(|s| s == now),
            None => false,
        };
        if alive {
            continue;
        }
        let mut problems = Vec::new();
        if let Some(dir) = field("cluster").map(PathBuf::from) {
            let apart = !dir.starts_with(&root);
            // The cluster's folder apart (as root) sits in the temp folder:
            // only a real folder named as ward names them is touched.
            let plausible = !apart
                || (dir
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("ward-") && n.contains("-pg-"))
                    && std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()));
            if plausible {
                let as_postgres = is_root() && apart;
                if dir.join("data/postmaster.pid").exists()
                    && let Ok(bin) = server_bin()
                {
                    let stopped = run(
                        tool(&bin, "pg_ctl", as_postgres)
                            .args(["-w", "-t", "60", "-m", "immediate", "-D"])
                            .arg(dir.join("data"))
                            .arg("stop"),
                        "pg_ctl stop",
                    );
                    if let Err(e) = stopped {
                        problems.push(e.0);
                    }
                }
                if apart
                    && let Err(e) = std::fs::remove_dir_all(&dir)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    problems.push(format!("cannot remove {}: {e}", dir.display()));
                }
            }
        }
        if problems.is_empty()
            && let Err(e) = std::fs::remove_dir_all(&root)
        {
            problems.push(format!("cannot remove {}: {e}", root.display()));
        }
        out.push(if problems.is_empty() {
            format!(
                "removed the sandbox {} left by a rehearsal whose ward (pid {pid}) is gone",
                root.display()
            )
        } else {
            format!(
                "the sandbox {} left by a rehearsal whose ward (pid {pid}) is gone could not \
                 be cleaned: {}",
                root.display(),
                problems.join("; ")
            )
        });
    }
    out
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for p in self.tear_down() {
            eprintln!("warning: rehearsal sandbox: {p}");
        }
    }
}
