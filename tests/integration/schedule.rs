//! `schedule:`, `jitter:`, `timezone:` and the commands that read them:
//! `ward next`, `ward cron` (with Debian's real `crontab`, in a private
//! mount namespace so the real user's crontab is never touched) and
//! `ward systemd print` (checked with the real `systemd-analyze` where it
//! is installed).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::{Scratch, Ward};

fn playbook(s: &Scratch, name: &str, keys: &str) -> PathBuf {
    s.write(
        &format!("{name}.yml"),
        &format!("ward: 1\nname: {name}\n{keys}\nsteps:\n  - id: a\n    run: echo a\n"),
    )
}

/// `ward` in `zone` at the local time `now`.
fn ward_at(s: &Scratch, zone: &str, now: &str) -> Ward {
    s.ward().env("TZ", zone).env("WARD_NOW", now)
}

#[test]
fn next_shows_local_times_with_offsets_and_the_moved_slot() {
    let s = Scratch::new();
    let p = playbook(
        &s,
        "nightly",
        "schedule: \"30 2 * * *\"\njitter: 20m\ntimezone: Europe/Berlin",
    );
    let run = ward_at(&s, "Europe/Berlin", "2026-03-27T12:00:00")
        .args(["next", "-n", "3"])
        .arg(&p)
        .run()
        .expect_code(0);
    assert_eq!(
        run.stdout,
        "nightly: `30 2 * * *` in Europe/Berlin, each up to 20m later (jitter)\n\
         \x20 Sat 2026-03-28 02:30 +01:00 Europe/Berlin\n\
         \x20 Sun 2026-03-29 03:00 +02:00 Europe/Berlin  (02:30 did not happen that day: the clocks went forward)\n\
         \x20 Mon 2026-03-30 02:30 +02:00 Europe/Berlin\n"
    );
}

#[test]
fn next_json_in_new_york_across_fall_back() {
    let s = Scratch::new();
    let p = playbook(&s, "hourly", "schedule: \"0 * * * *\"");
    // No `timezone:`: the system's zone (TZ here); WARD_NOW is a local time in it.
    let doc = ward_at(&s, "America/New_York", "2026-11-01T00:30:00")
        .args(["next", "--json", "-n", "4"])
        .arg(&p)
        .run()
        .expect_code(0)
        .json();
    assert_eq!(doc["timezone"], "America/New_York");
    assert_eq!(doc["jitter"], serde_json::Value::Null);
    let at: Vec<&str> = doc["next"]
        .as_array()
        .expect("list")
        .iter()
        .map(|f| f["at"].as_str().expect("at"))
        .collect();
    assert_eq!(
        at,
        [
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T01:00:00-05:00",
            "2026-11-01T02:00:00-05:00",
            "2026-11-01T03:00:00-05:00"
        ],
        "a wildcard job follows the wall clock: 01:00 twice"
    );
    let fixed = playbook(&s, "fixed", "schedule: \"30 1 * * *\"");
    let doc = ward_at(&s, "America/New_York", "2026-11-01T00:30:00")
        .args(["next", "--json", "-n", "2"])
        .arg(&fixed)
        .run()
        .expect_code(0)
        .json();
    assert_eq!(doc["next"][0]["at"], "2026-11-01T01:30:00-04:00");
    assert_eq!(
        doc["next"][1]["at"], "2026-11-02T01:30:00-05:00",
        "once, not twice"
    );
    assert_eq!(doc["next"][1]["offset"], "-05:00");
}

#[test]
fn next_refuses_a_playbook_without_a_schedule_or_with_a_bad_one() {
    let s = Scratch::new();
    let p = playbook(&s, "plain", "");
    let run = s.ward().arg("next").arg(&p).run().expect_code(2);
    assert!(run.stderr.contains("has no `schedule:`"), "{}", run.stderr);
    let p = playbook(&s, "bad", "schedule: \"0 30 2 * * *\"");
    let run = s.ward().arg("next").arg(&p).run().expect_code(2);
    assert!(
        run.stderr.contains("bad.yml:3:23") && run.stderr.contains("5 time fields"),
        "{}",
        run.stderr
    );
}

#[test]
fn schedule_errors_point_at_the_field() {
    let s = Scratch::new();
    for (schedule, col, end, text) in [
        ("\"30 25 * * *\"", 15, 17, "out of range for the hour field"),
        ("'*/15 * 31 feb *'", 19, 21, "never fires"),
        ("15 2 * * mon-fro", 24, 27, "not a day of the week"),
        ("\"5/10 * * * *\"", 12, 16, "a step needs a range"),
        ("\"@reboot\"", 12, 19, "@reboot"),
        ("\"0 0 * * 1 2027\"", 22, 26, "5 time fields"),
    ] {
        let p = playbook(&s, "p", &format!("schedule: {schedule}"));
        let doc = s
            .ward()
            .args(["validate", "--format", "json"])
            .arg(&p)
            .run()
            .expect_code(2)
            .json();
        let d = &doc["files"][0]["diagnostics"][0];
        assert_eq!(d["code"], "invalid-schedule", "{schedule}: {d}");
        assert_eq!(
            (
                d["line"].as_u64(),
                d["column"].as_u64(),
                d["end_column"].as_u64()
            ),
            (Some(3), Some(col), Some(end)),
            "{schedule}: {d}"
        );
        assert!(
            d["message"].as_str().unwrap_or("").contains(text),
            "{schedule}: {d}"
        );
    }
}

/// A folder bind-mounted over cron's spool in a private mount namespace
/// for each command: Debian's real `crontab` reads and writes there, and
/// the real crontab of the user running the tests is never touched.
struct Spool {
    dir: tempfile::TempDir,
}

const SPOOL: &str = "/var/spool/cron/crontabs";
const BIND: &str = "mount --bind \"$0\" /var/spool/cron/crontabs && exec \"$@\"";

impl Spool {
    /// `None` (with the reason printed) where it cannot be done here.
    fn new() -> Option<Spool> {
        let skip = |why: &str| {
            eprintln!("skipped: {why}");
            None
        };
        if !rustix::process::geteuid().is_root() {
            return skip("needs root for a private mount over cron's spool");
        }
        if !Path::new(SPOOL).is_dir() || Command::new("crontab").arg("-h").output().is_err() {
            return skip("Debian's `cron` package (crontab) is not installed");
        }
        let spool = Spool {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        let probe = spool.command(&["true"]).output();
        if !probe.is_ok_and(|o| o.status.success()) {
            return skip("unshare --mount with a bind mount is not available here");
        }
        Some(spool)
    }

    fn wrapper(&self) -> Vec<String> {
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            BIND,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([self.dir.path().display().to_string()])
        .collect()
    }

    fn command(&self, argv: &[&str]) -> Command {
        let w = self.wrapper();
        let mut cmd = Command::new(&w[0]);
        cmd.args(&w[1..]).args(argv);
        cmd
    }

    /// `crontab -l` in the private spool ("" for no crontab).
    fn list(&self) -> String {
        let out = self
            .command(&["crontab", "-l"])
            .output()
            .expect("crontab -l");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `crontab -` with `text`.
    fn set(&self, text: &str) {
        use std::io::Write;
        let mut child = self
            .command(&["crontab", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("crontab -");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
        assert!(child.wait().expect("wait").success(), "crontab - accepted");
    }

    fn ward(&self, s: &Scratch) -> Ward {
        let w = self.wrapper();
        let refs: Vec<&str> = w.iter().map(String::as_str).collect();
        s.ward_via(&refs).env("TZ", "UTC")
    }
}

#[test]
fn cron_install_list_reinstall_remove_keeps_foreign_lines() {
    let Some(spool) = Spool::new() else { return };
    let s = Scratch::new();
    let a = playbook(&s, "alpha", "schedule: \"30 2 * * mon-fri\"");
    let b = playbook(&s, "beta", "schedule: \"@hourly\"");
    let a_path = std::fs::canonicalize(&a).expect("a").display().to_string();
    let b_path = std::fs::canonicalize(&b).expect("b").display().to_string();
    let ward_bin = env!("CARGO_BIN_EXE_ward");

    // No crontab yet is an empty one.
    let run = spool.ward(&s).args(["cron", "list"]).run().expect_code(0);
    assert_eq!(run.stdout, "");

    let foreign = "MAILTO=ops@example.invalid\n# nightly mail\n5 4 * * * echo foreign % kept\n";
    spool.set(foreign);

    // `print` changes nothing.
    let run = spool
        .ward(&s)
        .args(["cron", "print"])
        .arg(&a)
        .run()
        .expect_code(0);
    let a_line = format!("30 2 * * 1-5 {ward_bin} run --if-due {a_path}");
    assert_eq!(
        run.stdout,
        format!(
            "# BEGIN ward (managed by `ward cron`; edit with ward cron install/remove)\n\
             # ward playbook: {a_path}\n{a_line}\n# END ward\n"
        )
    );
    assert_eq!(spool.list(), foreign);

    spool
        .ward(&s)
        .args(["cron", "install"])
        .arg(&a)
        .arg(&b)
        .run()
        .expect_code(0);
    let b_line = format!("0 * * * * {ward_bin} run --if-due {b_path}");
    let installed = spool.list();
    assert_eq!(
        installed,
        format!(
            "{foreign}# BEGIN ward (managed by `ward cron`; edit with ward cron install/remove)\n\
             # ward playbook: {a_path}\n{a_line}\n# ward playbook: {b_path}\n{b_line}\n# END ward\n"
        )
    );

    // `list --json` and `print --json`: one object per line; `install
    // --json` is a usage error that changes nothing.
    let listed = spool
        .ward(&s)
        .args(["cron", "list", "--json"])
        .run()
        .expect_code(0)
        .json();
    assert_eq!(
        listed,
        serde_json::json!([
            { "playbook": a_path, "line": a_line },
            { "playbook": b_path, "line": b_line },
        ])
    );
    let printed = spool
        .ward(&s)
        .args(["cron", "print", "--json"])
        .arg(&b)
        .run()
        .expect_code(0)
        .json();
    assert_eq!(
        printed,
        serde_json::json!([{ "playbook": b_path, "line": b_line }])
    );
    spool
        .ward(&s)
        .args(["cron", "install", "--json"])
        .arg(&a)
        .run()
        .expect_code(2);
    assert_eq!(spool.list(), installed);

    // Installing again changes nothing.
    let run = spool
        .ward(&s)
        .args(["cron", "install"])
        .arg(&a)
        .run()
        .expect_code(0);
    assert!(run.stdout.starts_with("unchanged: "), "{}", run.stdout);
    assert_eq!(spool.list(), installed);

    // A new schedule and a state replace alpha's line in place; beta's stays.
    playbook(&s, "alpha", "schedule: \"15 3 * * *\"");
    let state = s.path().join("st").join("ward.db");
    let run = spool
        .ward(&s)
        .args(["cron", "install"])
        .arg(&a)
        .arg("--state")
        .arg(&state)
        .run()
        .expect_code(0);
    assert!(run.stdout.starts_with("replaced: "), "{}", run.stdout);
    let a_line2 = format!(
        "15 3 * * * {ward_bin} run --if-due {a_path} --state {}",
        state.display()
    );
    let listed = spool.list();
    assert!(listed.starts_with(foreign), "{listed}");
    assert!(
        listed.contains(&format!(
            "{a_path}\n{a_line2}\n# ward playbook: {b_path}\n{b_line}\n"
        )),
        "{listed}"
    );
    assert!(!listed.contains(&a_line), "{listed}");

    let run = spool.ward(&s).args(["cron", "list"]).run().expect_code(0);
    assert_eq!(
        run.stdout,
        format!("{a_path}\n  {a_line2}\n{b_path}\n  {b_line}\n")
    );

    // Remove one, then the rest: the block goes, the foreign lines stay.
    spool
        .ward(&s)
        .args(["cron", "remove"])
        .arg(&a)
        .run()
        .expect_code(0);
    let listed = spool.list();
    assert!(
        !listed.contains(&a_path) && listed.contains(&b_line),
        "{listed}"
    );
    let run = spool.ward(&s).args(["cron", "remove"]).run().expect_code(0);
    assert_eq!(run.stdout, format!("removed: {b_path}\n"));
    assert_eq!(spool.list(), foreign);
}

#[test]
fn cron_refuses_what_cron_would_run_at_other_times_and_broken_blocks() {
    let Some(spool) = Spool::new() else { return };
    let s = Scratch::new();
    // cron reads lines in /etc/localtime's zone (whatever TZ says here).
    let p = playbook(
        &s,
        "far",
        "schedule: \"30 2 * * *\"\ntimezone: Pacific/Chatham",
    );
    let run = spool
        .ward(&s)
        .args(["cron", "install"])
        .arg(&p)
        .run()
        .expect_code(2);
    assert!(run.stderr.contains("ward systemd print"), "{}", run.stderr);
    assert_eq!(spool.list(), "");
    // The cron daemon's own zone is fine, also under another name of it.
    let local = std::fs::read_link("/etc/localtime").ok().and_then(|t| {
        let t = t.to_string_lossy().into_owned();
        t.split_once("zoneinfo/").map(|(_, name)| name.to_owned())
    });
    let p = match local.as_deref() {
        Some("Etc/UTC") => playbook(&s, "utc", "schedule: \"30 2 * * *\"\ntimezone: UTC"),
        Some(name) => playbook(
            &s,
            "here",
            &format!("schedule: \"30 2 * * *\"\ntimezone: {name}"),
        ),
        None => playbook(&s, "here", "schedule: \"30 2 * * *\""),
    };
    spool
        .ward(&s)
        .args(["cron", "install"])
        .arg(&p)
        .run()
        .expect_code(0);

    spool.set("# BEGIN ward (someone's edit)\n1 1 * * * x\n");
    let run = spool
        .ward(&s)
        .args(["cron", "install"])
        .arg(&p)
        .run()
        .expect_code(1);
    assert!(run.stderr.contains("no `# END ward`"), "{}", run.stderr);
    assert_eq!(spool.list(), "# BEGIN ward (someone's edit)\n1 1 * * * x\n");
}

#[test]
fn systemd_print_writes_a_service_and_a_timer() {
    let s = Scratch::new();
    let p = playbook(
        &s,
        "nightly",
        "schedule: \"30 2 1,15 * fri\"\njitter: 20m\ntimezone: Europe/Berlin",
    );
    let path = std::fs::canonicalize(&p).expect("p").display().to_string();
    let run = s
        .ward()
        .args(["systemd", "print"])
        .arg(&p)
        .run()
        .expect_code(0);
    assert_eq!(
        run.stdout,
        format!(
            "# ward-nightly.service\n[Unit]\nDescription=ward playbook nightly\n\n\
             [Service]\nType=oneshot\nExecStart={} run --if-due --no-jitter {path}\n\n\
             # ward-nightly.timer\n[Unit]\n\
             Description=Run ward playbook nightly on its schedule (30 2 1,15 * fri)\n\n\
             [Timer]\nOnCalendar=Fri *-*-* 02:30:00 Europe/Berlin\n\
             OnCalendar=*-*-01,15 02:30:00 Europe/Berlin\n\
             Persistent=true\nRandomizedDelaySec=20m\n\n[Install]\nWantedBy=timers.target\n",
            env!("CARGO_BIN_EXE_ward")
        )
    );
    let p = playbook(&s, "plain", "");
    s.ward()
        .args(["systemd", "print"])
        .arg(&p)
        .run()
        .expect_code(2);
}

/// systemd's own reading of the OnCalendar= lines ward writes fires when
/// `ward next` says (in UTC, where neither has a clock change to handle).
#[test]
fn systemd_fires_when_ward_next_says() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let s = Scratch::new();
    for expr in [
        "*/15 * * * *",
        "5 1-10/3 * jan-mar 0,5-7",
        "0 0 1,15 * fri",
        "0 0 */10 * mon",
        "0 0 29 2 *",
        "@weekly",
        "59 23 31 * *",
    ] {
        let p = playbook(&s, "p", &format!("schedule: \"{expr}\""));
        let doc = ward_at(&s, "UTC", "2026-01-01T00:00:00")
            .args(["next", "--json", "-n", "6"])
            .arg(&p)
            .run()
            .expect_code(0)
            .json();
        let ours: Vec<i64> = doc["next"]
            .as_array()
            .expect("list")
            .iter()
            .map(|f| crate::harness::json_ms(&f["at"]) / 1000)
            .collect();
        let timer = s
            .ward()
            .args(["systemd", "print"])
            .arg(&p)
            .run()
            .expect_code(0);
        let calendars: Vec<&str> = timer
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("OnCalendar="))
            .collect();
        let mut theirs: Vec<i64> = Vec::new();
        for c in calendars {
            let out = Command::new("systemd-analyze")
                .args([
                    "calendar",
                    "--iterations=6",
                    "--base-time=2026-01-01 00:00:00 UTC",
                    c,
                ])
                .env("TZ", "UTC")
                .output()
                .expect("systemd-analyze");
            assert!(
                out.status.success(),
                "{c}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let line = line.trim();
                let Some((_, when)) = line
                    .strip_prefix("Next elapse:")
                    .map(|w| ("", w))
                    .or_else(|| line.strip_prefix("Iter. #").and_then(|r| r.split_once(':')))
                else {
                    continue;
                };
                // "Sat 2026-03-28 01:05:00 UTC"
                let stamp = when.trim().split_once(' ').map_or("", |(_, r)| r);
                let stamp = stamp.trim_end_matches(" UTC").replace(' ', "T");
                let ts: jiff::civil::DateTime = stamp.parse().expect("a time");
                theirs.push(
                    ts.to_zoned_datetime(jiff::tz::TimeZone::UTC)
                        .expect("utc")
                        .timestamp()
                        .as_second(),
                );
            }
        }
        theirs.sort_unstable();
        theirs.dedup();
        theirs.truncate(6);
        assert_eq!(ours, theirs, "`{expr}`: ward next vs systemd-analyze");
    }
}

/// Without `timezone:`, a shell whose TZ is not cron's zone gets a note:
/// the line is right (ward under cron reads cron's zone), `ward next` here is not.
#[test]
fn cron_print_notes_a_shell_zone_that_is_not_crons() {
    let s = Scratch::new();
    let p = playbook(&s, "plain", "schedule: \"30 2 * * *\"");
    let here = std::fs::read_link("/etc/localtime").unwrap_or_default();
    let shell_zone = if here.ends_with("Pacific/Chatham") {
        "Europe/Berlin"
    } else {
        "Pacific/Chatham"
    };
    let run = s
        .ward()
        .env("TZ", shell_zone)
        .args(["cron", "print"])
        .arg(&p)
        .run()
        .expect_code(0);
    assert!(
        run.stderr.contains("note: this shell's zone"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("\n30 2 * * * "), "{}", run.stdout);
}

/// A PostgreSQL `--state` stays an address in the entry (never made into a
/// path), and one holding a password is refused without showing it.
#[test]
fn a_postgres_state_stays_an_address_and_a_password_in_it_is_refused() {
    let Some(spool) = Spool::new() else { return };
    let s = Scratch::new();
    let a = playbook(&s, "alpha", "schedule: \"30 2 * * *\"");
    let run = spool
        .ward(&s)
        .args([
            "cron",
            "print",
            "--state",
            "postgres://ward@127.0.0.1:5999/wardstate",
        ])
        .arg(&a)
        .run()
        .expect_code(0);
    assert!(
        run.stdout
            .contains(" --state postgres://ward@127.0.0.1:5999/wardstate\n"),
        "{}",
        run.stdout
    );
    for cmd in [["cron", "print"], ["systemd", "print"]] {
        let run = spool
            .ward(&s)
            .args(cmd)
            .args([
                "--state",
                "postgres://ward:TOPSECRET@127.0.0.1:5999/wardstate",
            ])
            .arg(&a)
            .run()
            .expect_code(2);
        assert!(run.stderr.contains("holds a password"), "{}", run.stderr);
        assert!(
            !run.stderr.contains("TOPSECRET") && !run.stdout.contains("TOPSECRET"),
            "{}{}",
            run.stdout,
            run.stderr
        );
    }
}
