//! `confirm:`: the operator types a word before a step that overwrites
//! something starts (docs/playbook.md, "Confirm").
//!
//! The question is asked when the step is ready (earlier steps, such as a
//! verification, have run), one at a time: the scheduler pauses that step
//! only, and the reporter holds its live lines and output while the
//! question is on the screen. The answer is read on a thread of its own
//! (a detached one: a read from a terminal cannot be cancelled, and ward
//! must be able to exit while it waits, e.g. on Ctrl-C).

use std::io::{BufRead, IsTerminal, Write};

/// How the steps of this run are confirmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfirmBy {
    /// `--yes`: every `confirm:` counts as answered, and that is recorded.
    Yes,
    /// Asked at the terminal on stdin.
    Terminal,
    /// Neither: a run with a `confirm:` step is refused before it starts.
    Nobody,
}

/// What the scheduler needs to ask.
#[derive(Clone, Debug)]
pub struct ConfirmSetup {
    /// How.
    pub by: ConfirmBy,
    /// Who runs ward, in words ([`operator`]).
    pub who: String,
    /// Lines shown above every question (the chosen snapshot and its
    /// state, for a restore).
    pub context: Vec<String>,
}

impl ConfirmSetup {
    /// `--yes` given or not; a terminal on stdin or not.
    pub fn new(yes: bool, context: Vec<String>) -> ConfirmSetup {
        let by = if yes {
            ConfirmBy::Yes
        } else if terminal() {
            ConfirmBy::Terminal
        } else {
            ConfirmBy::Nobody
        };
        ConfirmSetup {
            by,
            who: operator(),
            context,
        }
    }
}

/// True when stdin is a terminal: only then can a person answer. (Not
/// `/dev/tty`: a ward started by cron or a test from someone's shell may
/// still have a controlling terminal that nobody watches for it.)
pub fn terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// Who runs ward: the real user, who called sudo, and the terminal, e.g.
/// `root (uid 0) via sudo by alice on /dev/pts/3`.
pub fn operator() -> String {
    let mut who = crate::state::private::describe_uid(rustix::process::getuid().as_raw());
    if let Ok(by) = std::env::var("SUDO_USER")
        && !by.is_empty()
    {
        who.push_str(&format!(" via sudo by {}", plain(&by)));
    }
    if terminal()
        && let Ok(tty) = std::fs::read_link("/proc/self/fd/0")
    {
        who.push_str(&format!(" on {}", tty.display()));
    }
    who
}

/// What the operator answered.
#[derive(Debug)]
pub enum Answer {
    /// The line typed (without its newline).
    Typed(String),
    /// The terminal closed (end of input) before a line came.
    Closed,
    /// Reading failed.
    Failed(String),
}

/// The whole text of a question: context, what the step does, the
/// question, and what to type.
pub fn question(setup: &ConfirmSetup, step: &str, does: &str, prompt: &str, word: &str) -> String {
    let mut text = String::from("\n");
    for line in &setup.context {
        text.push_str(&format!("  {line}\n"));
    }
    // What the step will overwrite, in the words `ward plan` uses.
    text.push_str(&format!("  step `{step}` does: {}\n", plain(does)));
    text.push_str(&format!("  step `{step}`: {}\n", plain(prompt)));
    text.push_str(&format!(
        "  type `{word}` to go on (anything else stops the run): "
    ));
    text
}

/// Writes `text` to stderr and reads one line from stdin, on a thread of
/// its own; the answer comes through the returned channel.
pub fn ask(text: String) -> tokio::sync::oneshot::Receiver<Answer> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut err = std::io::stderr();
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
        let mut line = String::new();
        let answer = match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) => Answer::Closed,
            Ok(_) => Answer::Typed(line.trim_end_matches(['\n', '\r']).to_owned()),
            Err(e) => Answer::Failed(e.to_string()),
        };
        let _ = tx.send(answer);
    });
    rx
}

/// `text` with control characters shown as `?`: what is written to the
/// terminal or recorded must not move its cursor or clear it.
pub fn plain(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
