//! Property test of the YAML and playbook front end: random documents and
//! mutations of the shipped playbooks and the fixtures go through what
//! `ward validate` and `ward plan` run (load, parse, validate, plan,
//! diagnostics), in-process. No input may panic or take longer than its
//! budget (issue 10, "Proof").
//!
//! The run is time-boxed: `WARD_FUZZ_SECS` (default 20) for the whole test,
//! `WARD_FUZZ_INPUT_SECS` (default 5) per input. The budget is far above
//! what any input needs and far below a hang: the slowest legitimate input,
//! an alias bomb stopped at the 1,000,000-node limit, takes about 0.8 s in
//! a debug build, and CI shares two cores with other builds. The seed is printed, and
//! `WARD_FUZZ_SEED` replays it; a failing input is also written to
//! `target/fuzz-failures/` so it can be fed to `ward validate` directly.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ward::diagnostic::Diagnostics;
use ward::report::{Style, render_human, render_json_file};
use ward::source::SourceFile;
use ward::template::RunFacts;

use crate::harness::repo_path;

fn env_secs(name: &str, default: f64) -> Duration {
    let secs = std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(default);
    Duration::from_secs_f64(secs)
}

/// Every playbook-like file the project ships or tests with.
fn seed_files() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml")
                && let Ok(text) = std::fs::read_to_string(&path)
            {
                out.push(text);
            }
        }
    }
    let mut out = Vec::new();
    for dir in ["playbooks", "examples", "tests/fixtures"] {
        walk(&repo_path(dir), &mut out);
    }
    assert!(out.len() >= 10, "seed playbooks found: {}", out.len());
    out
}

/// Scalars that YAML, the decoders and the templates may each read differently.
const ODD_SCALARS: &[&str] = &[
    "~",
    "null",
    "Null",
    "''",
    "\"\"",
    "yes",
    "off",
    ".inf",
    "-.inf",
    ".nan",
    "0x1F",
    "0o17",
    "0b101",
    "-0",
    "+12",
    "1e999",
    "-1e999",
    "99999999999999999999999999999999999999",
    "-9223372036854775809",
    "18446744073709551616",
    "4294967296",
    "1.7976931348623157e309",
    "0.0000000000000000000000001",
    "12:30:45",
    "2026-13-45",
    "9999999999h",
    "0s",
    "-5m",
    "1h99999999999999999999m",
    "!!binary aGVsbG8=",
    "!!str 12",
    "!!int abc",
    "!!float x",
    "!!map {}",
    "!custom x",
    "&anchor value",
    "*undefined",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"\\U0010FFFF\"",
    "\"\\x\"",
    "'it''s'",
    "|\n  block\n  text",
    ">-\n  folded",
    "|-9\n x",
    "? complex\n: key",
    "[a, [b, [c, {d: e}]]]",
    "{a: 1, a: 2}",
    "{ ? x }",
    "[,]",
    "{{ x }}",
    "\"{{ x }}\"",
    "\"{{ ward.date }}\"",
    "\"{% if true %}a{% endif %}\"",
    "\"{{ undefined.deep.attr }}\"",
    "\"{{ 1/0 }}\"",
    "\"{{ 'a' * 3 }}\"",
    "\"{{ x | nosuchfilter }}\"",
    "\"{{ 2 ** 200 }}\"",
    "\"{{ -9223372036854775808 // -1 }}\"",
    "\"{{ (-170141183460469231731687303715884105727 - 1) | abs }}\"",
    "\"{{ 1e308 * 10 }}\"",
    "\"{{ [1] * 9999999999 }}\"",
    "\"{{ 'abc'[::-1] }}\"",
    "\"{{ range(5) | list }}\"",
    // Work and memory bombs: the template budget must stop them in time.
    "\"{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}\"",
    "\"{{ 'a' * 100000000 }}\"",
    "\"{{ v1 }}{{ v0 }}\"",
    "\"{{ v0 | quote }}\"",
    "\"{{ ward }}\"",
    "\"{{ v0[0] }}\"",
    "\"{{ {'a': [1, none]} }}\"",
    "\"{{\"",
    "\"{% for %}\"",
    "\"{# open\"",
    "\u{1F600}",
    "\u{202E}abc",
    "\u{FEFF}",
    "\u{0085}",
    "\u{2028}",
    "a\tb",
    "\t",
    "-",
    "--",
    "---",
    "...",
    "%YAML 1.1",
    "#",
    "@",
    "`",
    "|",
    ">",
    "!",
    "&",
    "*",
];

/// Keys the playbook format knows, to build near-valid documents.
const KEYS: &[&str] = &[
    "ward",
    "name",
    "vars",
    "defaults",
    "steps",
    "id",
    "run",
    "cmd",
    "action",
    "with",
    "needs",
    "after",
    "when",
    "if",
    "env",
    "timeout",
    "retry",
    "compensate",
    "creates",
    "ok_codes",
    "attempts",
    "delay",
    "backoff",
    "max_parallel",
    "src",
    "dest",
    "dir",
    "keep_last",
    "unit",
    "stop",
    "start",
    "wait_gone",
    "db",
    "compress",
    "level",
    "mode",
    "filters",
    "args",
    "description",
    "secrets",
];

const ACTIONS: &[&str] = &[
    "rsync",
    "pg.dumpall",
    "pg.restore",
    "pg.query",
    "pg.snapshot",
    "pg.dump",
    "service.stop",
    "service.start",
    "snapshot.hardlink",
    "rotate",
    "verify",
    "nosuch",
];

/// Step bodies that are valid with a plain value in `{v}`.
const BODIES: &[&str] = &[
    "    run: echo {v}\n",
    "    cmd: [echo, {v}]\n",
    "    action: rsync\n    with: { src: {v}, dest: out }\n",
    "    action: rsync\n    with: { src: in, dest: {v}, mode: filter, filters: [\"+ /a/***\", \"- *\"] }\n",
    "    action: pg.dumpall\n    with: { dest: {v}, compress: zstd, level: 5 }\n",
    "    action: pg.restore\n    with: { src: {v}, db: { dbname: \"host=h dbname=d\" } }\n",
    "    action: pg.query\n    with: { sql: {v}, save: rows.json }\n",
    "    action: pg.snapshot\n    with: { databases: [{v}] }\n",
    "    needs: [s0]\n    action: pg.dump\n    with: { snapshot: s0, dest: {v} }\n",
    "    action: service.stop\n    with: { unit: {v}, wait_gone: [a, b], timeout: 5m }\n",
    "    action: service.start\n    with: { start: [{v}, --daemon], wait_up: x }\n",
    "    action: snapshot.hardlink\n    with: { src: current, dir: {v} }\n",
    "    action: rotate\n    with: { dir: {v}, keep_last: 3 }\n",
    "    action: verify\n    with: { path: {v} }\n",
    "    run: |\n      echo {v}\n    when: always\n    timeout: 1m\n    retry: { attempts: 3, delay: 1s }\n",
];

struct Gen {
    rng: fastrand::Rng,
    seeds: Vec<String>,
}

impl Gen {
    fn seed(&mut self) -> String {
        self.seeds[self.rng.usize(..self.seeds.len())].clone()
    }

    /// A parameter value: mostly one that fits, else something odd.
    fn value(&mut self) -> String {
        match self.rng.u8(..6) {
            0 => "\"{{ v0 }}\"".to_owned(),
            1 => format!("\"{{{{ v{} }}}}/x\"", self.rng.u8(..5)),
            2 | 3 => ["backup", "/srv/data", "current", "db.sql.gz", "fossology"]
                [self.rng.usize(..5)]
            .to_owned(),
            _ => self.scalar(),
        }
    }

    fn scalar(&mut self) -> String {
        match self.rng.u8(..6) {
            0 => ODD_SCALARS[self.rng.usize(..ODD_SCALARS.len())].to_owned(),
            1 => self.rng.i64(..).to_string(),
            2 => format!("{}", self.rng.f64() * 10f64.powi(self.rng.i32(-300..300))),
            3 => (0..self.rng.usize(0..12))
                .map(|_| self.rng.char(..))
                .collect::<String>()
                .replace(['\n', '\r'], " "),
            4 => format!("{}s", self.rng.u64(..)),
            _ => KEYS[self.rng.usize(..KEYS.len())].to_owned(),
        }
    }

    /// A random document shaped like a playbook (often nearly valid).
    fn playbook(&mut self) -> String {
        let mut out = String::new();
        if self.rng.u8(..8) != 0 {
            out.push_str("ward: 1\n");
        }
        out.push_str(&format!(
            "name: {}\n",
            if self.rng.bool() {
                "fuzz".to_owned()
            } else {
                self.scalar()
            }
        ));
        out.push_str("vars:\n  v0: x\n");
        for i in 1..5 {
            // Earlier vars only, so templates among them do not loop.
            let value = match self.rng.u8(..3) {
                0 => format!("\"{{{{ v{} }}}}/y\"", self.rng.usize(..i)),
                1 => self.scalar(),
                _ => "plain".to_owned(),
            };
            out.push_str(&format!("  v{i}: {value}\n"));
        }
        out.push_str("steps:\n");
        let n = self.rng.usize(1..8);
        for i in 0..n {
            out.push_str(&format!("  - id: s{i}\n"));
            if self.rng.u8(..10) == 0 {
                // Any action with any key.
                let action = ACTIONS[self.rng.usize(..ACTIONS.len())];
                let key = KEYS[self.rng.usize(..KEYS.len())];
                let value = self.scalar();
                out.push_str(&format!(
                    "    action: {action}\n    with: {{ {key}: {value} }}\n"
                ));
            } else {
                let value = self.value();
                let body = BODIES[self.rng.usize(..BODIES.len())].replace("{v}", &value);
                out.push_str(&body);
            }
            if self.rng.bool() {
                let extra = [
                    "    when: always\n",
                    "    timeout: 30s\n",
                    "    env: { A: \"{{ v1 }}\" }\n",
                    "    creates: \"{{ v2 }}\"\n",
                    "    ok_codes: [0, 1]\n",
                    "    if: \"v0 == 'x'\"\n",
                ][self.rng.usize(..6)];
                out.push_str(extra);
            }
            if i > 0 && self.rng.bool() {
                out.push_str(&format!("    needs: [s{}]\n", self.rng.usize(0..i)));
            }
            if self.rng.u8(..8) == 0 {
                // A key that may be unknown or repeated, with an odd value.
                let key = KEYS[self.rng.usize(..KEYS.len())];
                out.push_str(&format!("    {key}: {}\n", self.scalar()));
            }
        }
        out
    }

    fn char_boundary(&mut self, text: &str) -> usize {
        let mut at = self.rng.usize(0..=text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        at
    }

    fn line_starts(text: &str) -> Vec<usize> {
        std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .filter(|i| *i <= text.len())
            .collect()
    }

    /// One mutation of `text`.
    fn mutate(&mut self, text: String) -> String {
        let lines = Self::line_starts(&text);
        let line_at = |rng: &mut fastrand::Rng| lines[rng.usize(..lines.len())];
        match self.rng.u8(..14) {
            // Byte flips (kept UTF-8: the front end only ever sees text).
            0 => {
                let mut bytes = text.into_bytes();
                for _ in 0..self.rng.usize(1..8) {
                    if bytes.is_empty() {
                        break;
                    }
                    let i = self.rng.usize(..bytes.len());
                    bytes[i] ^= 1 << self.rng.u8(..8);
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
            // Truncation.
            1 => {
                let at = self.char_boundary(&text);
                text[..at].to_owned()
            }
            // Splice with another seed.
            2 => {
                let other = self.seed();
                let a = self.char_boundary(&text);
                let b = self.char_boundary(&other);
                format!("{}{}", &text[..a], &other[b..])
            }
            // A duplicated line (duplicate keys, steps, ids).
            3 => {
                let start = line_at(&mut self.rng);
                let end = text[start..]
                    .find('\n')
                    .map_or(text.len(), |i| start + i + 1);
                let line = text[start..end].to_owned();
                let at = line_at(&mut self.rng);
                let mut out = text;
                out.insert_str(at, &line);
                if !line.ends_with('\n') {
                    out.insert(at + line.len(), '\n');
                }
                out
            }
            // Deep nesting, flow or block.
            4 => {
                let depth = if self.rng.u8(..8) == 0 {
                    self.rng.usize(100..20_000)
                } else {
                    self.rng.usize(1..80)
                };
                let at = line_at(&mut self.rng);
                let nested = if self.rng.bool() {
                    format!("deep: {}x{}\n", "[".repeat(depth), "]".repeat(depth))
                } else {
                    let mut s = String::new();
                    for d in 0..depth.min(2000) {
                        s.push_str(&" ".repeat(d));
                        s.push_str(&format!("k{d}:\n"));
                    }
                    s
                };
                let mut out = text;
                out.insert_str(at, &nested);
                out
            }
            // Anchors, aliases and merge keys.
            5 => {
                let name = format!("a{}", self.rng.u8(..4));
                let mut out = text;
                let at = line_at(&mut self.rng);
                let piece = match self.rng.u8(..5) {
                    0 => format!("x: &{name} {{ a: 1, b: [1, 2] }}\n"),
                    1 => format!("y: *{name}\n"),
                    2 => format!("<<: *{name}\n"),
                    3 => format!("- &{name} [*{name}]\n"),
                    _ => format!("z: &{name} [*{name}, *{name}, *{name}]\n"),
                };
                out.insert_str(at.min(out.len()), &piece);
                out
            }
            // An odd scalar in place of a value.
            6 | 7 => {
                let scalar = self.scalar();
                match text.match_indices(": ").map(|(i, _)| i).collect::<Vec<_>>() {
                    spots if !spots.is_empty() => {
                        let at = spots[self.rng.usize(..spots.len())] + 2;
                        let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
                        format!("{}{scalar}{}", &text[..at], &text[end..])
                    }
                    _ => format!("{text}\nk: {scalar}\n"),
                }
            }
            // Unicode, tabs, CR, BOM, NUL at random places.
            8 => {
                let mut out = text;
                for _ in 0..self.rng.usize(1..5) {
                    let at = self.char_boundary(&out);
                    let piece = match self.rng.u8(..9) {
                        0 => "\t".to_owned(),
                        1 => "\r".to_owned(),
                        2 => "\r\n".to_owned(),
                        3 => "\u{FEFF}".to_owned(),
                        4 => "\0".to_owned(),
                        5 => "\u{1F600}".to_owned(),
                        6 => "\u{0301}".to_owned(),
                        7 => "\u{10FFFF}".to_owned(),
                        _ => self.rng.char(..).to_string(),
                    };
                    out.insert_str(at, &piece);
                }
                out
            }
            // Re-indent a line (tabs or spaces).
            9 => {
                let at = line_at(&mut self.rng);
                let indent = if self.rng.bool() {
                    "\t".to_owned()
                } else {
                    " ".repeat(self.rng.usize(1..9))
                };
                let mut out = text;
                out.insert_str(at, &indent);
                out
            }
            // Delete a line.
            10 => {
                let start = line_at(&mut self.rng);
                let end = text[start..]
                    .find('\n')
                    .map_or(text.len(), |i| start + i + 1);
                format!("{}{}", &text[..start], &text[end..])
            }
            // Several documents, directives, tags.
            11 => {
                let piece = [
                    "---\n",
                    "...\n",
                    "%YAML 1.2\n---\n",
                    "--- !tag\n",
                    "%TAG ! x\n",
                ][self.rng.usize(..5)];
                let at = line_at(&mut self.rng);
                let mut out = text;
                out.insert_str(at, piece);
                out
            }
            // A long line or many steps.
            12 => {
                let mut out = text;
                if self.rng.bool() {
                    out.push_str(&format!(
                        "long: {}\n",
                        "x".repeat(self.rng.usize(1..200_000))
                    ));
                } else {
                    out.push_str("steps:\n");
                    for i in 0..self.rng.usize(1..2000) {
                        out.push_str(&format!(
                            "  - {{ id: m{i}, run: 'true', needs: [m{}] }}\n",
                            i / 2
                        ));
                    }
                }
                out
            }
            // Swap two lines.
            _ => {
                let mut all: Vec<&str> = text.split_inclusive('\n').collect();
                if all.len() > 1 {
                    let a = self.rng.usize(..all.len());
                    let b = self.rng.usize(..all.len());
                    all.swap(a, b);
                }
                all.concat()
            }
        }
    }

    fn input(&mut self) -> (String, Vec<String>) {
        let mut text = if self.rng.bool() {
            self.playbook()
        } else {
            self.seed()
        };
        // Often none or one mutation, so that many inputs get as far as
        // validation and planning; sometimes several.
        for _ in 0..[0, 1, 1, 2, 3][self.rng.usize(..5)] {
            text = self.mutate(text);
        }
        let vars = (0..self.rng.usize(0..3))
            .map(|i| {
                let name = if self.rng.u8(..4) == 0 {
                    self.scalar()
                } else {
                    format!("v{i}")
                };
                let value = if self.rng.bool() {
                    self.value()
                } else {
                    self.scalar()
                };
                format!("{name}={value}")
            })
            .collect();
        (text, vars)
    }
}

/// What `ward validate` and `ward plan` do with a file's text, in-process.
/// Returns how far the input got: 0 nowhere, 1 parsed, 2 planned.
fn exercise(dir: &Path, text: String, vars: &[String], raw: bool) -> usize {
    let path = dir.join("fuzz.yml");
    let source = SourceFile::new(&path, text);
    if raw {
        // The raw tree as JSON (what `ward schema --check` style tools read).
        let (root, _) = ward::yaml::load(source.text(), ward::yaml::Limits::default());
        if let Some(root) = &root {
            let _ = ward::yaml::from_node::<serde_json::Value>(root);
        }
    }
    // Bad `--var`s are a usage error before reading the file; the file is
    // still worth reading without them.
    let overrides = ward::cli::vars::parse(vars).unwrap_or_default();
    let mut diags = Diagnostics::default();
    let now = chrono::NaiveDate::from_ymd_opt(2026, 11, 23)
        .and_then(|d| d.and_hms_opt(2, 0, 0))
        .expect("date");
    let parsed = ward::parse::parse(source.clone(), &mut diags);
    let mut reached = usize::from(parsed.is_some());
    let plan = parsed
        .map(|playbook| {
            ward::validate::validate(
                playbook,
                &overrides,
                RunFacts::new(now, "fuzz", &path),
                &mut diags,
            )
        })
        .and_then(|validated| ward::plan::build(validated, &mut diags));
    let diags = diags.into_sorted();
    let mut sink = std::io::sink();
    render_human(&mut sink, Some(&source), "fuzz.yml", &diags, Style::plain()).expect("render");
    let _ = render_json_file(Some(&source), "fuzz.yml", &diags);
    if let Some(v) = plan {
        ward::report::plan_text(&mut sink, &v, Style::plain()).expect("plan text");
        ward::report::plan_json(&mut sink, &v).expect("plan json");
        ward::report::plan_dot(&mut sink, &v).expect("plan dot");
        ward::report::plan_mermaid(&mut sink, &v).expect("plan mermaid");
        reached = 2;
    }
    reached
}

/// Keeps a failing input for `ward validate`, and says where.
fn keep(text: &str, vars: &[String], what: &str, seed: u64, n: u64) -> String {
    let dir = repo_path("target/fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join(format!("{seed}-{n}.yml"));
    let _ = std::fs::write(&file, text);
    format!(
        "{what} on input {n} of seed {seed} (replay: WARD_FUZZ_SEED={seed}); input kept in {} \
         (vars: {vars:?}; replay it alone: WARD_FUZZ_FILE={} WARD_FUZZ_VARS=... \
         cargo test --test integration fuzz_replay -- --nocapture)",
        file.display(),
        file.display()
    )
}

/// Replays one kept input: `WARD_FUZZ_FILE=target/fuzz-failures/S-N.yml
/// cargo test --test integration fuzz_replay -- --nocapture`.
#[test]
fn fuzz_replay() {
    let Ok(file) = std::env::var("WARD_FUZZ_FILE") else {
        return;
    };
    let text = std::fs::read_to_string(&file).expect("WARD_FUZZ_FILE is readable");
    let vars: Vec<String> = std::env::var("WARD_FUZZ_VARS")
        .map(|v| v.split('\n').map(str::to_owned).collect())
        .unwrap_or_default();
    let dir = tempfile::tempdir().expect("tempdir");
    let start = Instant::now();
    let reached = exercise(dir.path(), text, &vars, true);
    eprintln!("fuzz replay: reached {reached} in {:?}", start.elapsed());
}

#[test]
fn front_end_survives_random_and_mutated_playbooks() {
    let total = env_secs("WARD_FUZZ_SECS", 20.0);
    let per_input = env_secs("WARD_FUZZ_INPUT_SECS", 5.0);
    let seed = std::env::var("WARD_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!(
        "fuzz: seed {seed} (WARD_FUZZ_SEED={seed} replays), {total:?} in all, {per_input:?} per input"
    );
    let mut generator = Gen {
        rng: fastrand::Rng::with_seed(seed),
        seeds: seed_files(),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let dir: Arc<Path> = Arc::from(dir.path());
    let start = Instant::now();
    let mut n = 0u64;
    let mut reached = [0u64; 3];
    while start.elapsed() < total {
        n += 1;
        let (text, vars) = generator.input();
        let (tx, rx) = mpsc::channel();
        let (t, v, d) = (text.clone(), vars.clone(), dir.clone());
        let raw = n.is_multiple_of(4);
        std::thread::Builder::new()
            .name(format!("fuzz-{n}"))
            .stack_size(8 << 20)
            .spawn(move || {
                let outcome = catch_unwind(AssertUnwindSafe(|| exercise(&d, t, &v, raw)));
                let _ = tx.send(outcome.ok());
            })
            .expect("spawn");
        match rx.recv_timeout(per_input) {
            Ok(Some(depth)) => reached[depth] += 1,
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("{}", keep(&text, &vars, "panic", seed, n))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                "{}",
                keep(
                    &text,
                    &vars,
                    &format!("no answer within {per_input:?}"),
                    seed,
                    n
                )
            ),
        }
    }
    eprintln!(
        "fuzz: {n} inputs in {:?}, no panic, none over budget; {} refused early, {} parsed but invalid, {} planned",
        start.elapsed(),
        reached[0],
        reached[1],
        reached[2]
    );
}
