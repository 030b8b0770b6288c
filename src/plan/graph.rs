//! Builds the step DAG with petgraph, finds every cycle with its full path,
//! and groups steps into layers.

use std::collections::{HashMap, HashSet, VecDeque};

use petgraph::Direction;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::diagnostic::Diagnostic;
use crate::model::Step;
use crate::source::Span;

/// Why one step waits for another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdgeKind {
    /// `needs`: the dependency must have succeeded.
    Needs,
    /// `after`: the dependency must have finished, whatever its result.
    After,
}

/// The DAG over the steps that run in normal order. Node weights are step
/// indexes into the playbook's `steps`; an edge `a -> b` means b waits for a.
#[derive(Debug)]
pub struct StepGraph {
    graph: DiGraph<usize, EdgeKind>,
    node_of: HashMap<usize, NodeIndex>,
    layers: Vec<Vec<usize>>,
}

impl StepGraph {
    /// Builds the graph; returns one diagnostic per cycle if there are any.
    /// Steps in `compensation_only` are left out (they run only to undo).
    pub fn build(
        steps: &[Step],
        compensation_only: &HashSet<String>,
    ) -> Result<StepGraph, Vec<Diagnostic>> {
        let mut graph = DiGraph::new();
        let mut node_of = HashMap::new();
        let mut by_id: HashMap<&str, usize> = HashMap::new();
        for (i, step) in steps.iter().enumerate() {
            if compensation_only.contains(step.id.value.as_str()) {
                continue;
            }
            // Duplicate ids were reported already; the first one wins here.
            by_id.entry(step.id.value.as_str()).or_insert_with(|| {
                node_of.insert(i, graph.add_node(i));
                i
            });
        }
        // Where each edge was written, to point a cycle at its first link.
        let mut edge_span: HashMap<(usize, usize), Span> = HashMap::new();
        for (i, step) in steps.iter().enumerate() {
            let Some(&to) = node_of.get(&i) else { continue };
            let deps = step
                .needs
                .iter()
                .map(|r| (r, EdgeKind::Needs))
                .chain(step.after.iter().map(|r| (r, EdgeKind::After)));
            for (r, kind) in deps {
                let Some(&dep) = by_id.get(r.value.as_str()) else {
                    continue;
                };
                let Some(&from) = node_of.get(&dep) else {
                    continue;
                };
                if from == to || graph.contains_edge(from, to) {
                    continue;
                }
                graph.add_edge(from, to, kind);
                edge_span.entry((i, dep)).or_insert(r.span);
            }
        }
        let cycles = find_cycles(&graph, steps, &edge_span);
        if !cycles.is_empty() {
            return Err(cycles);
        }
        let layers = layer(&graph);
        Ok(StepGraph {
            graph,
            node_of,
            layers,
        })
    }

    /// Steps grouped into layers: every step's dependencies are in earlier
    /// layers; within a layer, steps are in playbook order.
    pub fn layers(&self) -> &[Vec<usize>] {
        &self.layers
    }

    /// The steps `step` waits for, with the kind of wait, in playbook order.
    pub fn dependencies(&self, step: usize) -> Vec<(usize, EdgeKind)> {
        let Some(&n) = self.node_of.get(&step) else {
            return Vec::new();
        };
        let mut deps: Vec<(usize, EdgeKind)> = self
            .graph
            .edges_directed(n, Direction::Incoming)
            .map(|e| (self.graph[e.source()], *e.weight()))
            .collect();
        deps.sort_unstable_by_key(|(i, _)| *i);
        deps
    }

    /// The steps that wait for `step`, in playbook order.
    pub fn dependents(&self, step: usize) -> Vec<usize> {
        let Some(&n) = self.node_of.get(&step) else {
            return Vec::new();
        };
        let mut out: Vec<usize> = self
            .graph
            .neighbors_directed(n, Direction::Outgoing)
            .map(|m| self.graph[m])
            .collect();
        out.sort_unstable();
        out
    }

    /// Every edge as (dependency, dependent, kind), in playbook order.
    pub fn edges(&self) -> Vec<(usize, usize, EdgeKind)> {
        let mut out: Vec<(usize, usize, EdgeKind)> = self
            .graph
            .edge_references()
            .map(|e| (self.graph[e.source()], self.graph[e.target()], *e.weight()))
            .collect();
        out.sort_unstable_by_key(|(a, b, _)| (*b, *a));
        out
    }

    /// True if the step runs in normal order (it is not compensation-only).
    pub fn contains(&self, step: usize) -> bool {
        self.node_of.contains_key(&step)
    }
}

/// Longest-path layering: a step's layer is one more than its deepest dependency's.
fn layer(graph: &DiGraph<usize, EdgeKind>) -> Vec<Vec<usize>> {
    let mut indegree: HashMap<NodeIndex, usize> = graph
        .node_indices()
        .map(|n| (n, graph.neighbors_directed(n, Direction::Incoming).count()))
        .collect();
    let mut current: Vec<NodeIndex> = graph.node_indices().filter(|n| indegree[n] == 0).collect();
    let mut layers = Vec::new();
    while !current.is_empty() {
        let mut steps: Vec<usize> = current.iter().map(|n| graph[*n]).collect();
        steps.sort_unstable();
        layers.push(steps);
        let mut next = Vec::new();
        for n in &current {
            for m in graph.neighbors_directed(*n, Direction::Outgoing) {
                if let Some(d) = indegree.get_mut(&m) {
                    *d -= 1;
                    if *d == 0 {
                        next.push(m);
                    }
                }
            }
        }
        current = next;
    }
    layers
}

/// One diagnostic per strongly connected component that forms a cycle, with
/// the whole path spelled out (`a → b → c → a`, read "a waits for b ...").
fn find_cycles(
    graph: &DiGraph<usize, EdgeKind>,
    steps: &[Step],
    edge_span: &HashMap<(usize, usize), Span>,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut components = tarjan_scc(graph);
    components.retain(|c| c.len() > 1);
    for component in &mut components {
        component.sort_unstable_by_key(|n| graph[*n]);
    }
    components.sort_unstable_by_key(|c| graph[c[0]]);
    for component in components {
        let members: HashSet<NodeIndex> = component.iter().copied().collect();
        let start = component[0];
        let Some(path) = cycle_through(graph, start, &members) else {
            continue;
        };
        let ids: Vec<&str> = path
            .iter()
            .map(|n| steps[graph[*n]].id.value.as_str())
            .collect();
        let first = graph[path[0]];
        let second = graph[path[1]];
        let span = edge_span
            .get(&(first, second))
            .copied()
            .unwrap_or(steps[first].span);
        out.push(
            Diagnostic::error(
                "cycle",
                span,
                format!("steps wait for each other in a cycle: {}", ids.join(" → ")),
            )
            .with_help(
                "each arrow reads \"waits for\" (`needs` or `after`); remove one of these links",
            ),
        );
    }
    out
}

/// Shortest path from `start` back to itself along "waits for" links
/// (incoming edges), staying inside one component. BFS with a parent map:
/// linear, unlike enumerating simple paths.
fn cycle_through(
    graph: &DiGraph<usize, EdgeKind>,
    start: NodeIndex,
    members: &HashSet<NodeIndex>,
) -> Option<Vec<NodeIndex>> {
    let waits_for = |n: NodeIndex| {
        let mut v: Vec<NodeIndex> = graph
            .neighbors_directed(n, Direction::Incoming)
            .filter(|m| members.contains(m))
            .collect();
        v.sort_unstable_by_key(|m| graph[*m]);
        v
    };
    let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for m in waits_for(n) {
            if m == start {
                // n waits for start: walk the parents back from n to start.
                let mut path = vec![n];
                let mut cur = n;
                while cur != start {
                    cur = parent[&cur];
                    path.push(cur);
                }
                path.reverse();
                path.push(start);
                return Some(path);
            }
            if m != start && !parent.contains_key(&m) {
                parent.insert(m, n);
                queue.push_back(m);
            }
        }
    }
    None
}
