//! A run's event log as it is read back: what the `events` table holds
//! (run start, resume and end, each attempt's start and end, steps that
//! changed state without an attempt, preconditions, notes), typed.
//!
//! The kinds are text in the table, and other parts of ward add new ones
//! over time (confirmations, guard overrides, rehearsal checks); a kind
//! this ward does not know is kept as its text ([`EventKind::Other`]),
//! never an error, so a report of a run recorded by a newer ward still
//! shows every event.

use serde::Serialize;

use super::records::{AttemptOutcome, NoteKind, RunState, StepState};

/// What an event is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `run-started`: a run was recorded (its pid and host).
    RunStarted,
    /// `run-resumed`: another process took the run over.
    RunResumed,
    /// `run-<state>`: the run took this state (its end, unless `running`).
    Run(RunState),
    /// `preconditions`: what the preconditions found, in one line.
    Preconditions,
    /// `attempt-started`: an attempt of the event's step started.
    AttemptStarted,
    /// `attempt-<outcome>`: an attempt of the event's step ended.
    AttemptEnded(AttemptOutcome),
    /// `step-<state>`: the step changed state without an attempt.
    Step(StepState),
    /// A note ([`NoteKind`]).
    Note(NoteKind),
    /// A kind this ward does not know, as recorded.
    Other(String),
}

impl NoteKind {
    /// The name the events table gives a note.
    pub fn as_str(self) -> &'static str {
        match self {
            NoteKind::OrphansStopped => "orphans-stopped",
            NoteKind::ChildrenStopped => "children-stopped",
            NoteKind::PointLost => "point-lost",
            NoteKind::NotifyFailed => "notify-failed",
            NoteKind::Confirmed => "confirmed",
            NoteKind::NotConfirmed => "not-confirmed",
            NoteKind::SnapshotChosen => "snapshot-chosen",
            NoteKind::GuardOverridden => "guard-overridden",
            NoteKind::Rehearsal => "rehearsal",
            NoteKind::RehearsalCheck => "rehearsal-check",
        }
    }

    /// Every note kind (to read a stored name back).
    const ALL: [NoteKind; 10] = [
        NoteKind::OrphansStopped,
        NoteKind::ChildrenStopped,
        NoteKind::PointLost,
        NoteKind::NotifyFailed,
        NoteKind::Confirmed,
        NoteKind::NotConfirmed,
        NoteKind::SnapshotChosen,
        NoteKind::GuardOverridden,
        NoteKind::Rehearsal,
        NoteKind::RehearsalCheck,
    ];
}

impl EventKind {
    /// Reads a stored kind; an unknown one is kept as [`EventKind::Other`].
    pub fn parse(text: &str) -> EventKind {
        let known = match text {
            "run-started" => Some(EventKind::RunStarted),
            "run-resumed" => Some(EventKind::RunResumed),
            "preconditions" => Some(EventKind::Preconditions),
            "attempt-started" => Some(EventKind::AttemptStarted),
            _ => None,
        };
        known
            .or_else(|| {
                text.strip_prefix("run-")
                    .and_then(RunState::parse)
                    .map(EventKind::Run)
            })
            .or_else(|| {
                text.strip_prefix("attempt-")
                    .and_then(AttemptOutcome::parse)
                    .map(EventKind::AttemptEnded)
            })
            .or_else(|| {
                text.strip_prefix("step-")
                    .and_then(StepState::parse)
                    .map(EventKind::Step)
            })
            .or_else(|| {
                NoteKind::ALL
                    .into_iter()
                    .find(|k| k.as_str() == text)
                    .map(EventKind::Note)
            })
            .unwrap_or_else(|| EventKind::Other(text.to_owned()))
    }

    /// The kind as the table names it.
    pub fn as_text(&self) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow;
        match self {
            EventKind::RunStarted => Cow::Borrowed("run-started"),
            EventKind::RunResumed => Cow::Borrowed("run-resumed"),
            EventKind::Run(s) => Cow::Owned(format!("run-{s}")),
            EventKind::Preconditions => Cow::Borrowed("preconditions"),
            EventKind::AttemptStarted => Cow::Borrowed("attempt-started"),
            EventKind::AttemptEnded(o) => Cow::Owned(format!("attempt-{o}")),
            EventKind::Step(s) => Cow::Owned(format!("step-{s}")),
            EventKind::Note(n) => Cow::Borrowed(n.as_str()),
            EventKind::Other(text) => Cow::Borrowed(text),
        }
    }

    /// True for the events that only repeat what the steps and attempts
    /// already say (an attempt started or ended, a step skipped).
    pub fn is_step_progress(&self) -> bool {
        matches!(
            self,
            EventKind::AttemptStarted | EventKind::AttemptEnded(_) | EventKind::Step(_)
        )
    }
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_text())
    }
}

/// One recorded event of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventRecord {
    /// Its place in the log (the order events were recorded in).
    pub seq: i64,
    /// Unix ms.
    pub at: i64,
    /// The step it is about, if any.
    pub step_id: Option<String>,
    /// What it is.
    pub kind: EventKind,
    /// What happened, in words.
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_back_as_written_and_unknown_ones_are_kept() {
        for text in [
            "run-started",
            "run-resumed",
            "run-failed",
            "run-succeeded",
            "preconditions",
            "attempt-started",
            "attempt-timed-out",
            "step-skipped",
            "orphans-stopped",
            "notify-failed",
            "confirmed",
            "guard-overridden",
            "rehearsal-check",
            "rehearsal-step-x",
            "run-",
            "attempt-nonsense",
        ] {
            assert_eq!(EventKind::parse(text).as_text(), text);
        }
        assert_eq!(
            EventKind::parse("attempt-timed-out"),
            EventKind::AttemptEnded(AttemptOutcome::TimedOut)
        );
        assert_eq!(
            EventKind::parse("confirmed"),
            EventKind::Note(NoteKind::Confirmed)
        );
        assert_eq!(
            EventKind::parse("rehearsal-step-x"),
            EventKind::Other("rehearsal-step-x".into())
        );
        assert_eq!(
            EventKind::parse("point-lost"),
            EventKind::Note(NoteKind::PointLost)
        );
    }
}
