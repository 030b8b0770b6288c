//! What the commands that take one playbook file share: its diagnostics
//! on stderr, then its plan, or the exit code of an invalid playbook.

use std::io::Write;

use crate::error::exit;
use crate::plan::Plan;
use crate::report::{self, Style, render_human};

/// Prints `checked`'s diagnostics (warnings too) on stderr, so that
/// stdout stays the command's own; returns the plan, or, for an invalid
/// playbook, exit 2 after one closing line ending in `outcome` (e.g.
/// "; nothing was run"). A closed stderr must not panic: the exit code
/// still says it.
pub(super) fn plan_or_exit(
    checked: crate::Checked,
    shown: &str,
    outcome: &str,
) -> Result<Plan, i32> {
    let stderr = std::io::stderr();
    let _ = render_human(
        &mut stderr.lock(),
        Some(&checked.source),
        shown,
        &checked.diagnostics,
        Style::stderr(),
    );
    checked.plan.ok_or_else(|| {
        let count = checked.diagnostics.iter().filter(|d| d.is_error()).count();
        let _ = writeln!(
            stderr.lock(),
            "{}: {shown}: {}{outcome}",
            Style::stderr().error("invalid"),
            report::count(count, "error")
        );
        exit::USAGE
    })
}
