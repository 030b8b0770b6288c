//! The DAG ward runs: which step waits for which, in layers that may run in
//! parallel, in a deterministic order.

mod graph;

pub use graph::{EdgeKind, StepGraph};
