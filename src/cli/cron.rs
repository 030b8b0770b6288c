//! `ward cron install|list|remove|print [PLAYBOOK...]`: one marked block
//! in the invoking user's crontab, read with `crontab -l` and written with
//! `crontab -`; every line outside the block is written back as it was.
//!
//! The block holds, per playbook, a comment naming the playbook file and
//! its crontab line:
//!
//! ```text
//! # BEGIN ward (managed by `ward cron`; edit with ward cron install/remove)
//! # ward playbook: /srv/backup/nightly.yml
//! 30 2 * * * /usr/local/bin/ward run --if-due /srv/backup/nightly.yml
//! # END ward
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::next::{Scheduled, load};
use super::{CronAction, CronArgs};
use crate::error::{WardError, exit};
use crate::report::Style;

/// The first line of ward's block.
pub(super) const BEGIN: &str =
    "# BEGIN ward (managed by `ward cron`; edit with ward cron install/remove)";
/// The last line of ward's block.
pub(super) const END: &str = "# END ward";
const BEGIN_PREFIX: &str = "# BEGIN ward";
const ENTRY_PREFIX: &str = "# ward playbook: ";

/// One playbook's line in the block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    /// The playbook file (absolute).
    pub playbook: String,
    /// The crontab line.
    pub line: String,
}

/// A crontab split around ward's block.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Crontab {
    before: Vec<String>,
    entries: Vec<Entry>,
    after: Vec<String>,
    /// Lines inside the block that are not ward's (dropped when written).
    stray: Vec<String>,
}

impl Crontab {
    /// Splits `text` (as `crontab -l` prints it); an error for a block that
    /// is not closed or appears twice, which ward will not guess about.
    pub fn parse(text: &str) -> Result<Crontab, String> {
        let lines: Vec<&str> = text.lines().collect();
        let is_begin = |l: &&str| l.trim_end().starts_with(BEGIN_PREFIX);
        let is_end = |l: &&str| l.trim_end() == END;
        let begins: Vec<usize> = (0..lines.len()).filter(|i| is_begin(&lines[*i])).collect();
        let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let Some(&begin) = begins.first() else {
            if let Some(i) = (0..lines.len()).find(|i| is_end(&lines[*i])) {
                return Err(format!(
                    "the crontab has `{END}` on line {} but no `{BEGIN_PREFIX}` before it",
                    i + 1
                ));
            }
            return Ok(Crontab {
                before: own(&lines),
                entries: Vec::new(),
                after: Vec::new(),
                stray: Vec::new(),
            });
        };
        if begins.len() > 1 {
            return Err(format!(
                "the crontab has more than one ward block (lines {} and {})",
                begins[0] + 1,
                begins[1] + 1
            ));
        }
        let Some(end) = (begin + 1..lines.len()).find(|i| is_end(&lines[*i])) else {
            return Err(format!(
                "the crontab has `{BEGIN_PREFIX}` on line {} but no `{END}` after it",
                begin + 1
            ));
        };
        let mut entries = Vec::new();
        let mut stray = Vec::new();
        let mut i = begin + 1;
        while i < end {
            let line = lines[i];
            match line.strip_prefix(ENTRY_PREFIX) {
                Some(path) if i + 1 < end && !lines[i + 1].starts_with('#') => {
                    entries.push(Entry {
                        playbook: path.to_owned(),
                        line: lines[i + 1].to_owned(),
                    });
                    i += 2;
                }
                _ => {
                    if !line.trim().is_empty() {
                        stray.push(line.to_owned());
                    }
                    i += 1;
                }
            }
        }
        Ok(Crontab {
            before: own(&lines[..begin]),
            entries,
            after: own(&lines[end + 1..]),
            stray,
        })
    }

    /// The whole crontab again: the lines around the block as they were,
    /// the block only if it has entries.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for l in &self.before {
            out.push_str(l);
            out.push('\n');
        }
        out.push_str(&block(&self.entries));
        for l in &self.after {
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    /// Adds `entry`, or replaces the entry of the same playbook in place.
    /// Returns the line it replaced, if any.
    pub fn upsert(&mut self, entry: Entry) -> Option<String> {
        match self
            .entries
            .iter_mut()
            .find(|e| e.playbook == entry.playbook)
        {
            Some(e) => Some(std::mem::replace(e, entry).line),
            None => {
                self.entries.push(entry);
                None
            }
        }
    }

    /// Removes the entry of `playbook`; true if there was one.
    pub fn remove(&mut self, playbook: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.playbook != playbook);
        self.entries.len() != before
    }
}

/// The block for `entries` (empty text for none).
pub(super) fn block(entries: &[Entry]) -> String {
    if entries.is_empty() {
        return String::new();
    }
    let mut out = format!("{BEGIN}\n");
    for e in entries {
        out.push_str(&format!("{ENTRY_PREFIX}{}\n{}\n", e.playbook, e.line));
    }
    out.push_str(END);
    out.push('\n');
    out
}

/// `s` for a crontab command: quoted for /bin/sh, `%` escaped (cron turns
/// an unescaped `%` into a new line).
fn cron_word(s: &str) -> String {
    crate::shell::quote(s).replace('%', "\\%")
}

/// Text ward writes into a crontab or unit file: one line, no control characters.
pub(super) fn one_line<'a>(what: &str, text: &'a str) -> Result<&'a str, WardError> {
    if text.chars().any(char::is_control) {
        return Err(WardError::Usage(format!(
            "{what} `{}` contains a line break or control character; cron and systemd \
             cannot run it: rename it",
            text.escape_debug()
        )));
    }
    Ok(text)
}

/// This ward binary, absolute: what the crontab line runs.
pub(super) fn ward_binary() -> Result<PathBuf, WardError> {
    std::env::current_exe()
        .map_err(|e| WardError::Internal(format!("cannot tell where this ward binary is: {e}")))
}

/// `--state`, absolute (cron runs in the home folder).
pub(super) fn absolute_state(state: Option<&Path>) -> Result<Option<PathBuf>, WardError> {
    let Some(s) = state else {
        return Ok(None);
    };
    match crate::state::parse_location(s.as_os_str()) {
        // An address stays an address (made absolute it would name an
        // SQLite file `./postgres:/...`); one holding a password is
        // refused, since the entry is written where other tools and users
        // read it.
        Ok(crate::state::Location::Postgres(address)) => {
            if crate::state::address_has_password(&address) {
                return Err(WardError::Usage(format!(
                    "--state {}: the address holds a password, which would be written into the \
                     entry in the clear; give the address without it and keep the password in \
                     the passfile (~/.pgpass) of the user the entry runs as",
                    crate::state::shown_location(s)
                )));
            }
            Ok(Some(PathBuf::from(address)))
        }
        Ok(crate::state::Location::Sqlite(_)) => std::path::absolute(s)
            .map(Some)
            .map_err(|e| WardError::Usage(format!("--state {}: {e}", s.display()))),
        Err(e) => Err(WardError::Usage(e.to_string())),
    }
}

/// The crontab entry of a scheduled playbook.
fn entry(s: &Scheduled, state: Option<&Path>) -> Result<Entry, WardError> {
    let zone = s.schedule.zone();
    let cron_zone = crate::schedule::Zone::of_cron_daemon();
    if !zone.same_rules_as(&cron_zone, jiff::Timestamp::now()) {
        if zone.is_explicit() {
            return Err(WardError::Usage(format!(
                "{}: `timezone: {}` differs from the zone cron runs in ({}, /etc/localtime), \
                 and cron reads crontab lines in that zone: the line would not fire when \
                 `ward next` says. Use `ward systemd print` (a timer takes a zone), or remove \
                 `timezone:`",
                s.path.display(),
                zone.name(),
                cron_zone.name()
            )));
        }
        // No `timezone:`: under cron, ward reads the schedule in cron's
        // zone too, so the line is right; only this shell's view differs.
        eprintln!(
            "note: this shell's zone ({}, from TZ) is not the one cron runs in ({}); \
             `ward next` shows cron's times with TZ={}",
            zone.name(),
            cron_zone.name(),
            cron_zone.name()
        );
    }
    let ward = ward_binary()?;
    let ward = one_line("the ward binary's path", &ward.to_string_lossy())?.to_owned();
    let playbook = one_line("the playbook's path", &s.path.to_string_lossy())?.to_owned();
    // `--if-due`: a second ward started by the same line (a slot while
    // the first still runs, a copy of the line that fires more often)
    // runs only if the slot has no successful run yet.
    let mut line = format!(
        "{} {} run --if-due {}",
        s.schedule.expr().crontab_fields(),
        cron_word(&ward),
        cron_word(&playbook)
    );
    if let Some(state) = state {
        let state = one_line("the --state path", &state.to_string_lossy())?.to_owned();
        line.push_str(&format!(" --state {}", cron_word(&state)));
    }
    Ok(Entry { playbook, line })
}

/// `crontab -l`; "no crontab for USER" is an empty crontab.
fn read_crontab() -> Result<String, WardError> {
    let out = Command::new("crontab")
        .arg("-l")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| WardError::Crontab(format!("cannot run `crontab -l`: {e}")))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stderr.trim_start().starts_with("no crontab for") {
            return Ok(String::new());
        }
        return Err(WardError::Crontab(format!(
            "`crontab -l` failed ({}): {}",
            out.status,
            stderr.trim()
        )));
    }
    String::from_utf8(out.stdout)
        .map_err(|_| WardError::Crontab("`crontab -l` printed text that is not UTF-8".into()))
}

/// `crontab -` with `text` on its standard input.
fn write_crontab(text: &str) -> Result<(), WardError> {
    let mut child = Command::new("crontab")
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| WardError::Crontab(format!("cannot run `crontab -`: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| WardError::Crontab(format!("cannot write to `crontab -`: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| WardError::Crontab(format!("`crontab -` failed: {e}")))?;
    if !out.status.success() {
        return Err(WardError::Crontab(format!(
            "`crontab -` refused the new crontab ({}): {}; nothing was changed",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

fn current() -> Result<(String, Crontab), WardError> {
    let text = read_crontab()?;
    let crontab = Crontab::parse(&text).map_err(|e| {
        WardError::Crontab(format!(
            "{e}; ward changes nothing until it is fixed (`crontab -e`)"
        ))
    })?;
    Ok((text, crontab))
}

/// The playbook path as entries name it: resolved when the file exists,
/// else made absolute (to remove the line of a playbook deleted since).
fn entry_path(file: &Path) -> String {
    std::fs::canonicalize(file)
        .or_else(|_| std::path::absolute(file))
        .unwrap_or_else(|_| file.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

/// Loads every playbook and makes its entry; `Err(code)` after the first
/// playbook that is invalid or has no schedule (all are reported).
fn entries(args: &CronArgs) -> Result<Result<Vec<Entry>, i32>, WardError> {
    let state = absolute_state(args.state.as_deref())?;
    if state.is_none() && std::env::var_os("WARD_STATE").is_some() {
        eprintln!(
            "note: WARD_STATE is set here, but cron jobs do not see it; pass --state to \
             write it into the line"
        );
    }
    let mut out = Vec::new();
    let mut failed = None;
    for file in &args.playbooks {
        match load(file, "cron")? {
            Ok(s) => out.push(entry(&s, state.as_deref())?),
            Err(code) => failed = failed.or(Some(code)),
        }
    }
    Ok(failed.map_or(Ok(out), Err))
}

/// `[{"playbook", "line"}]`, one object per line of ward's block.
fn write_json<'a>(
    out: &mut impl Write,
    entries: impl Iterator<Item = &'a Entry>,
) -> Result<(), WardError> {
    let list: Vec<serde_json::Value> = entries
        .map(|e| serde_json::json!({ "playbook": e.playbook, "line": e.line }))
        .collect();
    serde_json::to_writer_pretty(&mut *out, &list).map_err(|e| WardError::Output(e.into()))?;
    writeln!(out)?;
    Ok(())
}

pub(super) fn cron(args: &CronArgs) -> Result<i32, WardError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let needs_playbooks = matches!(args.action, CronAction::Install | CronAction::Print);
    if needs_playbooks && args.playbooks.is_empty() {
        return Err(WardError::Usage(format!(
            "`ward cron {}` needs at least one playbook",
            args.action.name()
        )));
    }
    if args.json && !matches!(args.action, CronAction::List | CronAction::Print) {
        return Err(WardError::Usage(format!(
            "`ward cron {}` changes the crontab and prints no JSON; `--json` is for `list` and `print`",
            args.action.name()
        )));
    }
    match args.action {
        CronAction::Print => {
            let made = match entries(args)? {
                Ok(e) => e,
                Err(code) => return Ok(code),
            };
            if args.json {
                write_json(&mut out, made.iter())?;
            } else {
                out.write_all(block(&made).as_bytes())?;
            }
        }
        CronAction::Install => {
            let made = match entries(args)? {
                Ok(e) => e,
                Err(code) => return Ok(code),
            };
            let (text, mut crontab) = current()?;
            for e in made {
                let line = e.line.clone();
                let what = match crontab.upsert(e.clone()) {
                    None => "installed",
                    Some(old) if old == line => "unchanged",
                    Some(_) => "replaced",
                };
                writeln!(out, "{what}: {}\n  {line}", e.playbook)?;
            }
            warn_stray(&crontab);
            let new = crontab.render();
            if new != text {
                write_crontab(&new)?;
            }
        }
        CronAction::List => {
            let (_, crontab) = current()?;
            let wanted: Vec<String> = args.playbooks.iter().map(|p| entry_path(p)).collect();
            let listed = crontab
                .entries
                .iter()
                .filter(|e| wanted.is_empty() || wanted.contains(&e.playbook));
            if args.json {
                write_json(&mut out, listed)?;
            } else {
                for e in listed {
                    writeln!(out, "{}\n  {}", e.playbook, e.line)?;
                }
            }
            for w in &wanted {
                if !crontab.entries.iter().any(|e| &e.playbook == w) {
                    eprintln!("not installed: {w}");
                }
            }
            if crontab.entries.is_empty() && wanted.is_empty() {
                eprintln!("no ward block in this user's crontab");
            }
        }
        CronAction::Remove => {
            let (text, mut crontab) = current()?;
            if args.playbooks.is_empty() {
                for e in std::mem::take(&mut crontab.entries) {
                    writeln!(out, "removed: {}", e.playbook)?;
                }
            }
            for file in &args.playbooks {
                let path = entry_path(file);
                if crontab.remove(&path) {
                    writeln!(out, "removed: {path}")?;
                } else {
                    eprintln!("not installed: {path}");
                }
            }
            warn_stray(&crontab);
            let new = crontab.render();
            if new != text {
                write_crontab(&new)?;
            }
        }
    }
    out.flush()?;
    Ok(exit::OK)
}

fn warn_stray(crontab: &Crontab) {
    for line in &crontab.stray {
        eprintln!(
            "{}: dropped a line inside ward's block that ward did not write: {line}",
            Style::stderr().warning("warning")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(p: &str, line: &str) -> Entry {
        Entry {
            playbook: p.into(),
            line: line.into(),
        }
    }

    #[test]
    fn foreign_lines_are_kept_in_place() {
        let text = format!(
            "MAILTO=ops\n5 4 * * * foreign\n{}# trailing comment\n",
            block(&[entry("/a.yml", "0 1 * * * w run /a.yml")])
        );
        let mut c = Crontab::parse(&text).expect("parses");
        assert_eq!(c.render(), text);
        assert_eq!(c.upsert(entry("/b.yml", "0 2 * * * w run /b.yml")), None);
        assert_eq!(
            c.upsert(entry("/a.yml", "0 3 * * * w run /a.yml")),
            Some("0 1 * * * w run /a.yml".into())
        );
        let out = c.render();
        assert!(
            out.starts_with("MAILTO=ops\n5 4 * * * foreign\n# BEGIN ward"),
            "{out}"
        );
        assert!(out.ends_with("# END ward\n# trailing comment\n"), "{out}");
        assert!(out.find("/a.yml\n0 3") < out.find("/b.yml"), "{out}");
        assert!(c.remove("/a.yml") && c.remove("/b.yml"));
        assert_eq!(
            c.render(),
            "MAILTO=ops\n5 4 * * * foreign\n# trailing comment\n"
        );
    }

    #[test]
    fn a_broken_block_is_refused() {
        assert!(Crontab::parse(&format!("{BEGIN}\n")).is_err());
        assert!(Crontab::parse(&format!("{END}\n")).is_err());
        let twice = format!("{BEGIN}\n{END}\n{BEGIN}\n{END}\n");
        assert!(Crontab::parse(&twice).is_err());
    }

    #[test]
    fn percent_signs_are_escaped() {
        assert_eq!(cron_word("/srv/a%b c"), "'/srv/a\\%b c'");
    }
}
