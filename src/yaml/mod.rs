//! YAML reading: a spanned node tree with hostile-input limits, YAML 1.2
//! scalar resolution, and a serde deserializer over the tree that reports
//! errors at the exact node.
//!
//! ward reads YAML through `saphyr-parser` events rather than a serde YAML
//! crate so that every key and value keeps its line and column, duplicate
//! keys are found, aliases are expanded under a budget, and validation can
//! go on after the first mistake (see docs/design.md).

mod de;
mod load;
mod node;
mod resolve;

pub use de::{DeError, from_node};
pub use load::{Limits, load};
pub use node::{Entry, Node, NodeKind, Scalar};
pub use resolve::{Resolved, resolve_plain};
