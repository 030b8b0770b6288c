//! Renders and types `restore:` (model/restore.rs).

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::model::{Playbook, RestoreSpec};
use crate::template::{TemplateContext, Templates};

/// `restore:` with its templates rendered and its values typed.
#[derive(Clone, Debug)]
pub struct ResolvedRestore {
    /// The values.
    pub spec: RestoreSpec,
}

pub(super) fn resolve(
    playbook: &Playbook,
    ctx: &TemplateContext,
    templates: &Templates,
    diags: &mut Diagnostics,
) -> Option<ResolvedRestore> {
    let restore = playbook.restore.as_ref()?;
    let mut names = std::collections::HashSet::new();
    templates.node_names(&restore.node, &mut names);
    if ctx.reads_unrendered(&names) {
        return None;
    }
    let what = || "`restore`".to_owned();
    let node = match templates.render_node(
        &restore.node,
        &ctx.value,
        &ctx.secrets,
        &playbook.source,
        &what,
    ) {
        Ok((n, tainted)) if tainted.is_empty() => n,
        Ok((_, tainted)) => {
            for (span, used) in tainted {
                diags.push(Diagnostic::error(
                    "secret-in-restore",
                    span,
                    format!(
                        "`restore` uses {}; its values are shown in plans and recorded",
                        used.describe()
                    ),
                ));
            }
            return None;
        }
        Err(errors) => {
            diags.extend(errors);
            return None;
        }
    };
    let spec = match crate::yaml::from_node::<RestoreSpec>(&node) {
        Ok(spec) => spec,
        Err(e) => {
            diags.push(
                Diagnostic::error(
                    e.code,
                    e.span.unwrap_or(node.span),
                    format!("invalid `restore`: {}", e.message),
                )
                .with_help_opt(e.help),
            );
            return None;
        }
    };
    let var_span = restore
        .node
        .as_map()
        .and_then(|m| m.iter().find(|e| e.key.as_str() == Some("snapshot_var")))
        .map_or(restore.span, |e| e.value.span);
    if !playbook
        .vars
        .iter()
        .any(|v| v.name.value == spec.snapshot_var)
    {
        diags.push(
            Diagnostic::error(
                "undefined-variable",
                var_span,
                format!(
                    "`restore.snapshot_var` names `{}`, which is not one of `vars:`",
                    spec.snapshot_var
                ),
            )
            .with_help(format!(
                "declare it with the snapshot used without a terminal, e.g. `vars: {{ {}: \"{{{{ snapshots }}}}/latest\" }}`",
                spec.snapshot_var
            )),
        );
        return None;
    }
    if spec.guards.playbook.as_ref().is_some_and(Vec::is_empty) {
        diags.push(
            Diagnostic::error(
                "invalid-value",
                restore.span,
                "`restore.guards.playbook` is empty: no backup could ever be restored",
            )
            .with_help("list the backup playbooks' names, e.g. `playbook: [nightly-backup]`"),
        );
        return None;
    }
    Some(ResolvedRestore { spec })
}
