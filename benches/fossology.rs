//! Benchmark: `backup-full.yml` on the FOSSology test system against the
//! plain shell script an operator would write from the design (stop, dump,
//! rsync, cp -al, start), side by side in one run: wall time, and how long
//! the scheduler is down.
//!
//! `cargo bench --bench fossology`. Targets: ≤ 0.8x the script's wall time
//! and ≤ 0.7x its scheduler downtime.

use std::process::Command;
use std::time::{Duration, Instant};

#[allow(dead_code)]
#[path = "../tests/support/pg_cluster.rs"]
mod pg_cluster;
#[allow(dead_code)]
#[path = "../tests/support/fossology.rs"]
mod system;

const ROUNDS: usize = 3;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms_of(v: &serde_json::Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn main() {
    let dir = tempfile::Builder::new()
        .prefix("ward-bench-fossology")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir");
    let sys = system::FoSystem::build(&dir.path().join("fo"));
    println!("growing the test system: 30,000 unpacked files, 400,000 jobqueue rows");
    sys.grow(30_000, 400_000);
    let script = dir.path().join("backup.sh");
    let s = sys.scheduler.display();
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\nset -e -o pipefail\nb=\"$1\"\nday=\"$2\"\nmkdir -p \"$b/current/db\" \"$b/snapshots\"\n\
             date +%s%N > \"$b/stopped\"\n\"{s}\" --kill\n\
             pg_dumpall -w -h {sock} -p {port} -U postgres | gzip > \"$b/current/db/pg_dumpall.sql.gz\"\n\
             rsync -a --delete {repo}/ \"$b/current/repository/\"\n\
             \"{s}\" --daemon\ndate +%s%N > \"$b/started\"\n\
             cp -al \"$b/current\" \"$b/snapshots/$day\"\n",
            sock = sys.cluster.socket.display(),
            port = sys.cluster.port,
            repo = sys.repo.display(),
        ),
    )
    .expect("script");
    // Each round: a first night (full copy) and a later night (after a day's
    // work: 500 new unpacked files, 50,000 new jobqueue rows), both timed.
    let mut first = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut later = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for night in 0..2 {
            let day = format!("2026-11-{:02}", round * 2 + night + 1);
            let b = dir.path().join(format!("sh-{round}"));
            let start = Instant::now();
            let ok = Command::new("bash")
                .arg(&script)
                .arg(&b)
                .arg(&day)
                .status()
                .expect("script");
            let sh_wall = start.elapsed();
            assert!(ok.success());
            let read = |f: &str| {
                std::fs::read_to_string(b.join(f))
                    .expect("stamp")
                    .trim()
                    .parse::<u128>()
                    .expect("ns")
            };
            let sh_down = Duration::from_nanos((read("started") - read("stopped")) as u64);

            let wb = dir.path().join(format!("ward-{round}"));
            let state = dir.path().join(format!("state-{round}/ward.db"));
            let start = Instant::now();
            let out = Command::new(env!("CARGO_BIN_EXE_ward"))
                .arg("run")
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/playbooks/fossology/backup-full.yml"
                ))
                .args(sys.vars(&wb))
                .env("WARD_STATE", &state)
                .env("WARD_NOW", format!("{day}T02:00:00"))
                .output()
                .expect("ward");
            let ward_wall = start.elapsed();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let status = Command::new(env!("CARGO_BIN_EXE_ward"))
                .args(["status", "--json"])
                .env("WARD_STATE", &state)
                .output()
                .expect("status");
            let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
            let step = |id: &str| {
                v["steps"]
                    .as_array()
                    .and_then(|s| s.iter().find(|x| x["id"] == id).cloned())
                    .expect("step")
            };
            let down = ms_of(&step("start-scheduler")["finished_at"])
                - ms_of(&step("stop-scheduler")["started_at"]);
            if round == 0 {
                println!("  night {}: ward steps (ms):", night + 1);
                for st in v["steps"].as_array().expect("steps") {
                    println!(
                        "    {:<24} {:>6}",
                        st["id"].as_str().unwrap_or(""),
                        st["duration_ms"]
                    );
                }
            }
            let bucket = if night == 0 { &mut first } else { &mut later };
            bucket.0.push(sh_wall);
            bucket.1.push(sh_down);
            bucket.2.push(ward_wall);
            bucket.3.push(Duration::from_millis(down.max(0) as u64));
            if night == 0 {
                sys.grow(500, 50_000);
            }
        }
    }
    for (label, (sw, sd, ww, wd)) in [("first night", first), ("later night", later)] {
        let (sw, sd, ww, wd) = (median(sw), median(sd), median(ww), median(wd));
        println!(
            "backup-full, {label}: ward {:.2} s (scheduler down {:.2} s) | shell script {:.2} s (down {:.2} s) | wall {:.2}x, downtime {:.2}x",
            ww.as_secs_f64(),
            wd.as_secs_f64(),
            sw.as_secs_f64(),
            sd.as_secs_f64(),
            ww.as_secs_f64() / sw.as_secs_f64(),
            wd.as_secs_f64() / sd.as_secs_f64()
        );
    }
}
