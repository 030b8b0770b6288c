//! A throwaway PostgreSQL cluster for tests and benchmarks: Debian's
//! `postgresql` package, initdb in a temp folder, a free loopback port and a
//! private socket folder; stopped on drop. Shared through `#[path]`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

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
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Runs `cmd` to its end and fails the test, with its stderr, unless it
/// succeeded.
pub fn run_ok(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Cluster {
    pub fn start() -> Cluster {
        let bin = pg_bin();
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let socket = dir.path().join("sock");
        std::fs::create_dir_all(&socket).expect("mkdir");
        if is_root() {
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
        run_ok(
            as_postgres(&bin, "initdb")
                .args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "-D",
                ])
                .arg(&data),
            "initdb",
        );
        let cluster = Cluster {
            data,
            socket,
            port: free_port(),
            bin,
            _dir: dir,
        };
        cluster.serve(&cluster._dir.path().join("server.log"));
        cluster
    }

    /// Starts the server (on the cluster's port and socket folder, loopback
    /// only), logging to `log`, and waits until it takes connections.
    fn serve(&self, log: &Path) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.socket.display()
        );
        run_ok(
            as_postgres(&self.bin, "pg_ctl")
                .args(["-w", "-t", "60", "-D"])
                .arg(&self.data)
                .args(["-o", &opts, "-l"])
                .arg(log)
                .arg("start"),
            "pg_ctl start",
        );
    }

    /// Starts the server again after [`Cluster::stop_immediately`], on the
    /// same port and socket folder.
    pub fn start_again(&self) {
        self.serve(&self.data.join("restart.log"));
    }

    /// Runs SQL with psql as the superuser; returns the output (unaligned, tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = run_ok(
            Command::new(self.bin.join("psql"))
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
                .args(["-p", &self.port.to_string(), "-d", db, "-c", sql]),
            &format!("psql {sql}"),
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

    /// Switches local (socket) connections to peer authentication, as
    /// Debian's default `pg_hba.conf` has them, with the user-name map
    /// `ward` holding `OS-user -> postgres` for each of `os_users`; TCP
    /// connections are refused. Reloads the server.
    pub fn peer_only(&self, os_users: &[&str]) {
        let hba = "local all all peer map=ward\n";
        std::fs::write(self.data.join("pg_hba.conf"), hba).expect("pg_hba.conf");
        let ident: String = os_users
            .iter()
            .map(|u| format!("ward {u} postgres\n"))
            .collect();
        std::fs::write(self.data.join("pg_ident.conf"), ident).expect("pg_ident.conf");
        run_ok(
            as_postgres(&self.bin, "pg_ctl")
                .args(["-w", "-D"])
                .arg(&self.data)
                .arg("reload"),
            "pg_ctl reload",
        );
        // The reload is asynchronous: wait until the new rules answer.
        for _ in 0..100 {
            let ok = as_postgres(&self.bin, "psql")
                .args(["-X", "-A", "-t", "-U", "postgres", "-h"])
                .arg(&self.socket)
                .args([
                    "-p",
                    &self.port.to_string(),
                    "-d",
                    "postgres",
                    "-c",
                    "SELECT 1",
                ])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
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

    /// The cluster's data folder (tests remove it to lose the cluster).
    pub fn data(&self) -> &Path {
        &self.data
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
