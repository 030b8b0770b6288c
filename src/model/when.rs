use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// When a step runs relative to the outcome of the steps before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum When {
    /// Only if every `needs` step succeeded and the run has not failed (default).
    #[default]
    Success,
    /// Only if the run has failed by the time the step is reached.
    Failure,
    /// Whatever happened before (e.g. restarting a service).
    Always,
}

impl When {
    /// The keyword as written in a playbook.
    pub fn as_str(self) -> &'static str {
        match self {
            When::Success => "success",
            When::Failure => "failure",
            When::Always => "always",
        }
    }
}
