//! `ward systemd print PLAYBOOK [--state PATH]`: a .service and a .timer
//! that run the playbook on its schedule, to stdout.

use std::io::Write;

use super::SystemdArgs;
use super::cron::{absolute_state, one_line, ward_binary};
use super::next::load;
use crate::error::{WardError, exit};
use crate::schedule::systemd::on_calendar;

/// One word of an `ExecStart=` line: `%` and `$` escaped (systemd expands
/// them), quoted when it holds a space, a quote or a backslash.
fn exec_word(s: &str) -> String {
    let escaped = s.replace('%', "%%").replace('$', "$$");
    if escaped.is_empty() || escaped.contains([' ', '\t', '"', '\'', '\\', ';']) {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped
    }
}

pub(super) fn systemd(args: &SystemdArgs) -> Result<i32, WardError> {
    let s = match load(&args.file, "systemd")? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let state = absolute_state(args.state.as_deref())?;
    let ward = ward_binary()?;
    let ward = one_line("the ward binary's path", &ward.to_string_lossy())?.to_owned();
    let playbook = one_line("the playbook's path", &s.path.to_string_lossy())?.to_owned();
    // The timer applies the jitter (RandomizedDelaySec=), so ward must not
    // wait again (`--no-jitter`); `--if-due` lets a `Persistent=true` catch-up
    // after downtime run only when the last slot has no successful run.
    let mut exec = format!(
        "{} run --if-due --no-jitter {}",
        exec_word(&ward),
        exec_word(&playbook)
    );
    if let Some(state) = &state {
        let state = one_line("the --state path", &state.to_string_lossy())?.to_owned();
        exec.push_str(&format!(" --state {}", exec_word(&state)));
    }
    let zone = s.schedule.zone();
    let calendars = on_calendar(s.schedule.expr(), zone.is_explicit().then(|| zone.name()));
    let unit = format!("ward-{}", s.name);
    let mut text = format!(
        "# {unit}.service\n\
         [Unit]\n\
         Description=ward playbook {name}\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={exec}\n\
         \n\
         # {unit}.timer\n\
         [Unit]\n\
         Description=Run ward playbook {name} on its schedule ({expr})\n\
         \n\
         [Timer]\n",
        name = s.name,
        expr = s.schedule.expr().written(),
    );
    for c in &calendars {
        text.push_str(&format!("OnCalendar={c}\n"));
    }
    text.push_str("Persistent=true\n");
    if let Some(j) = s.jitter {
        text.push_str(&format!("RandomizedDelaySec={j}\n"));
    }
    text.push_str("\n[Install]\nWantedBy=timers.target\n");
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::exec_word;

    #[test]
    fn exec_words_are_escaped() {
        assert_eq!(exec_word("/usr/bin/ward"), "/usr/bin/ward");
        assert_eq!(
            exec_word("/srv/my backups/a%b$c.yml"),
            "\"/srv/my backups/a%%b$$c.yml\""
        );
    }
}
