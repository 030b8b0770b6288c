//! Benchmark: running trivial steps with durable checkpoints, against bash.
//!
//! `cargo bench --bench run_steps`. Side by side in one process, rounds
//! interleaved (ward, bash, ward, bash, ...) because this machine is noisy;
//! medians reported. Figures go into docs/PERFORMANCE.md.
//!
//! - 100 `cmd: [/bin/true]` steps in a chain vs a bash loop running /bin/true 100 times (target ≤ 1.5×)
//! - 1,000 independent steps with max_parallel 2: wall time and steps/s
//! - peak RSS of ward during the 100-step run (target < 40 MB)

use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const ROUNDS: usize = 9;

fn chain(n: usize) -> String {
    let mut s = format!("ward: 1\nname: chain{n}\nsteps:\n");
    for i in 0..n {
        let _ = writeln!(s, "  - id: s{i}");
        if i > 0 {
            let _ = writeln!(s, "    needs: [s{}]", i - 1);
        }
        s.push_str("    cmd: [/bin/true]\n");
    }
    s
}

fn independent(n: usize, parallel: usize) -> String {
    let mut s = format!("ward: 1\nname: wide{n}\nmax_parallel: {parallel}\nsteps:\n");
    for i in 0..n {
        let _ = write!(s, "  - id: s{i}\n    cmd: [/bin/true]\n");
    }
    s
}

/// Runs a command, returning wall time and the child's peak RSS in KiB.
fn measure(cmd: &mut Command) -> (Duration, i64) {
    let start = Instant::now();
    let child = cmd.spawn().expect("spawn");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `usage` is a plain C struct that wait4 fills in; the pid is our child's.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = start.elapsed();
    assert_eq!(rc, pid, "wait4");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "command failed: {cmd:?}"
    );
    std::mem::forget(child);
    (elapsed, usage.ru_maxrss)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ward(playbook: &Path, state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ward"));
    c.arg("run")
        .arg(playbook)
        .arg("--state")
        .arg(state)
        .arg("--quiet");
    c.process_group(0);
    c
}

fn main() {
    // Under target/: the same file system as the checkout, away from /tmp churn.
    let dir = tempfile::Builder::new()
        .prefix("ward-bench")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("tempdir");
    let chain_pb = dir.path().join("chain100.yml");
    std::fs::write(&chain_pb, chain(100)).expect("write");
    let wide_pb = dir.path().join("wide1000.yml");
    std::fs::write(&wide_pb, independent(1000, 2)).expect("write");
    let script = dir.path().join("true100.sh");
    std::fs::write(&script, "for i in $(seq 100); do /bin/true; done\n").expect("write");
    let script_wide = dir.path().join("true1000-p2.sh");
    std::fs::write(&script_wide, "seq 1000 | xargs -P 2 -I{} /bin/true\n").expect("write");
    println!("state and logs in {}", dir.path().display());

    let mut ward_times = Vec::new();
    let mut bash_times = Vec::new();
    let mut rss = Vec::new();
    for round in 0..ROUNDS {
        let state = dir.path().join(format!("state-chain-{round}/ward.db"));
        let (t, kib) = measure(&mut ward(&chain_pb, &state));
        ward_times.push(t);
        rss.push(kib);
        let (t, _) = measure(Command::new("bash").arg(&script));
        bash_times.push(t);
    }
    let (w, b) = (median(ward_times), median(bash_times));
    println!(
        "100-step chain: ward {:.1} ms, bash {:.1} ms, ratio {:.2}x (median of {ROUNDS}, interleaved)",
        w.as_secs_f64() * 1e3,
        b.as_secs_f64() * 1e3,
        w.as_secs_f64() / b.as_secs_f64()
    );
    println!(
        "peak RSS of ward during the 100-step run: {:.1} MiB (max of {ROUNDS} runs)",
        *rss.iter().max().unwrap_or(&0) as f64 / 1024.0
    );

    let mut ward_times = Vec::new();
    let mut xargs_times = Vec::new();
    for round in 0..3 {
        let state = dir.path().join(format!("state-wide-{round}/ward.db"));
        ward_times.push(measure(&mut ward(&wide_pb, &state)).0);
        xargs_times.push(measure(Command::new("bash").arg(&script_wide)).0);
    }
    let (w, x) = (median(ward_times), median(xargs_times));
    println!(
        "1,000 independent steps, max_parallel 2: ward {:.2} s ({:.0} steps/s); xargs -P 2 /bin/true {:.2} s",
        w.as_secs_f64(),
        1000.0 / w.as_secs_f64(),
        x.as_secs_f64()
    );
}
