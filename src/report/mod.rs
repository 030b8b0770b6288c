//! Everything ward prints: diagnostics and plans, for people and machines.
//!
//! The library never prints on its own; commands hand results to these
//! renderers, which write to any `io::Write`.

mod diagnostics;
mod plan_dot;
mod plan_json;
mod plan_mermaid;
mod plan_text;
mod preconditions;
mod probe;
mod progress;
mod run_report;
mod runs;
mod style;

pub use diagnostics::{render_human, render_json_file};
pub use plan_dot::render as plan_dot;
pub use plan_json::render as plan_json;
pub use plan_mermaid::render as plan_mermaid;
pub use plan_text::render as plan_text;
pub use preconditions::render_preconditions;
pub use probe::{
    Counts as ProbeCounts, Probe, StepProbe, render_json as probe_json, render_text as probe_text,
};
pub use progress::{
    ProgressReporter, QuietReporter, count, fmt_bytes, fmt_duration, log_tail, plain_every,
    state_flag,
};
pub use run_report::{ReportFormat, RunReport};
pub use runs::{
    attempt_json, json_time, local_time, not_recorded_note, recorded_running_but_gone, render_runs,
    render_status, rfc3339, run_json, runs_json, status_json, times_to_rfc3339,
};
pub use style::{Style, dumb_terminal, live_stdout};
