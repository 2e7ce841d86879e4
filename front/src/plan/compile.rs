//! Lowers resolved runs into stage plans.
//!
//! Invariants of what this module produces (see `ir` for the full list):
//! - `RunPlan::segments` tile `[0, total_steps)` and are split exactly at the growth steps;
//! - the graph is a forest of prefix trees: a node is shared by several runs only when the runs
//!   are step-for-step identical up to the node's end (see [`shared_prefix`]), so training it
//!   once gives each run exactly what training it alone would;
//! - node indices are deterministic: depth-first, children in the order of their first run in
//!   the experiment.
//!
//! Pure: given the same specs it always builds the same plan.

use petgraph::graph::NodeIndex;

use super::flops::{Flops, exact_flops_per_token, param_counts};
use super::ir::{
    Plan, Replica, RunPlan, Segment, Sharing, StageGraph, StageNode, Transition, replica_name,
};
use super::schedule::lr_factor;
use super::spec::{ExperimentSpec, ModelSpec, ResidualScaling, RunSpec};

/// The plan of one run on its own: one node per segment, `Grow` edges between them.
pub fn compile_run(spec: &RunSpec) -> Plan {
    build(std::slice::from_ref(spec), None, None)
}

/// The plan of an experiment: its runs, in the experiment's order, sharing identical prefixes.
///
/// `runs` should be the experiment's runs; they are taken in the order `exp.runs` names them
/// (runs it does not name are dropped; if it names none of them, `runs` is used as given),
/// then its frontier recipes, which are planned and trained like runs.
/// With `seeds`, every run is planned once per seed, seed-major (every run at the first seed,
/// then every run at the next), so a stopped experiment holds whole comparisons; runs share
/// prefixes only within a seed, since the seed sets the init and the data order.
pub fn compile_experiment(exp: &ExperimentSpec, runs: &[RunSpec]) -> Plan {
    let ordered: Vec<RunSpec> = exp
        .runs
        .iter()
        .chain(&exp.frontier)
        .filter_map(|n| runs.iter().find(|r| &r.name == n).cloned())
        .collect();
    let ordered = if ordered.is_empty() {
        runs.to_vec()
    } else {
        ordered
    };
    if exp.seeds.is_empty() {
        let mut plan = build(
            &ordered,
            Some(exp.name.clone()),
            Some(exp.reference.clone()),
        );
        plan.frontier = exp.frontier.clone();
        return plan;
    }
    let mut replicas = Vec::new();
    let mut expanded = Vec::new();
    for &seed in &exp.seeds {
        for r in &ordered {
            replicas.push(Replica {
                recipe: r.name.clone(),
                seed,
            });
            expanded.push(RunSpec {
                name: replica_name(&r.name, seed),
                seed,
                ..r.clone()
            });
        }
    }
    let mut plan = build(
        &expanded,
        Some(exp.name.clone()),
        Some(exp.reference.clone()),
    );
    for (rp, replica) in plan.runs.iter_mut().zip(replicas) {
        rp.replica = Some(replica);
    }
    plan.seeds = exp.seeds.clone();
    plan.frontier = exp.frontier.clone();
    plan
}

/// One depth-constant stretch `[start, end)` of `spec` (requires `start < end`).
fn segment(spec: &RunSpec, depth: usize, start: u64, end: u64) -> Segment {
    let tps = spec.batch.tokens_per_step();
    let peak = spec.optimizer.peak_lr();
    let lr = |s: u64| peak * lr_factor(&spec.schedule, s, spec.total_steps);
    Segment {
        depth,
        start_step: start,
        end_step: end,
        start_tokens: start * tps,
        end_tokens: end * tps,
        lr_start: lr(start),
        lr_end: lr(end - 1),
        params: param_counts(&spec.model, depth),
        flops_per_token: exact_flops_per_token(&spec.model, depth),
        flops: Flops::of(&spec.model, depth, (end - start) * tps),
    }
}

/// Step boundaries of a run: 0, each growth step inside the run, and `total_steps`.
fn boundaries(spec: &RunSpec) -> Vec<u64> {
    let mut b = vec![0];
    b.extend(
        spec.growths
            .iter()
            .map(|g| g.at_step)
            .filter(|&s| s > 0 && s < spec.total_steps),
    );
    b.push(spec.total_steps);
    b.dedup();
    b
}

/// Depth-constant segments of a run, split at its growths.
fn segments(spec: &RunSpec) -> Vec<Segment> {
    boundaries(spec)
        .windows(2)
        .filter(|w| w[0] < w[1])
        .map(|w| segment(spec, spec.depth_at(w[0]), w[0], w[1]))
        .collect()
}

/// The first growth step of `spec` strictly after `step`, if any.
fn next_growth_after(spec: &RunSpec, step: u64) -> Option<u64> {
    spec.growths.iter().map(|g| g.at_step).find(|&s| s > step)
}

/// Until which step the models of `a` and `b` (same start depth) train identically: to the end
/// when equal but for their names (labels only); `0` when they differ in anything but two
/// fields that are inert early on:
/// - the full depth, while the run has no blocks: it only shapes the init of the starting blocks
///   (output projections use `init_std / sqrt(2 * depth)`), and what is grown later is pinned by
///   the growth specs;
/// - the residual scaling, while the run has at most one block: every scaling is 1 at `L <= 1`,
///   so the two differ from the first growth on.
fn model_agrees_until(a: &RunSpec, b: &RunSpec) -> u64 {
    let unnamed = |m: &ModelSpec| ModelSpec {
        name: String::new(),
        ..m.clone()
    };
    let (ma, mb) = (unnamed(&a.model), unnamed(&b.model));
    if ma == mb {
        return u64::MAX;
    }
    let inert = |m: &ModelSpec| ModelSpec {
        depth: if a.start_depth == 0 { 0 } else { m.depth },
        residual: if a.start_depth <= 1 {
            ResidualScaling::None
        } else {
            m.residual
        },
        ..m.clone()
    };
    if inert(&ma) != inert(&mb) {
        return 0;
    }
    if ma.residual == mb.residual {
        return u64::MAX; // only the full depth differs
    }
    let first_growth = |r: &RunSpec| r.growths.first().map_or(r.total_steps, |g| g.at_step);
    first_growth(a).min(first_growth(b))
}

/// The largest `s` such that runs `a` and `b` train identically on `[0, s)`, so those steps can
/// be trained once for both: same data, batch, seed, optimizer and start depth; models that
/// train alike before `s` (see [`model_agrees_until`]); the same growths (specs identical)
/// before `s`; and the same LR value at every step before `s`.
///
/// Both specs are destructured field by field, with no `..`: a new `RunSpec` field does not
/// compile until it is decided here whether runs that differ in it may share steps.
pub fn shared_prefix(a: &RunSpec, b: &RunSpec) -> u64 {
    let RunSpec {
        name: _,  // a label
        model: _, // compared by `model_agrees_until`
        data,
        batch,
        total_steps: _, // compared through the LR schedule below
        optimizer,
        schedule: _, // compared step by step below
        seed,
        start_depth,
        growths: _, // compared growth by growth below
        // Evaluation and checkpoints read the model and write files; they never change what
        // is trained, so runs that differ in them still share.
        eval_every: _,
        eval_batches: _,
        checkpoint_every: _,
        checkpoint_clock_s: _,
    } = a;
    let same_setup = *start_depth == b.start_depth
        && *data == b.data
        && *batch == b.batch
        && *seed == b.seed
        && *optimizer == b.optimizer;
    if !same_setup {
        return 0;
    }
    let mut limit = a
        .total_steps
        .min(b.total_steps)
        .min(model_agrees_until(a, b));
    // The first growth on which they differ (or that only one has) ends the shared history.
    let mut ga = a.growths.iter();
    let mut gb = b.growths.iter();
    loop {
        match (ga.next(), gb.next()) {
            (Some(x), Some(y)) if x == y => continue,
            (Some(x), Some(y)) => limit = limit.min(x.at_step.min(y.at_step)),
            (Some(x), None) | (None, Some(x)) => limit = limit.min(x.at_step),
            (None, None) => {}
        }
        break;
    }
    // The LR as a value per step; schedules of different kinds or lengths may still agree on a
    // prefix (WSD's stable phase). Same optimizer, so the peak is the same: compare factors.
    let differ = a.schedule != b.schedule || a.total_steps != b.total_steps;
    if differ
        && let Some(s) = (0..limit).find(|&s| {
            lr_factor(&a.schedule, s, a.total_steps) != lr_factor(&b.schedule, s, b.total_steps)
        })
    {
        limit = s;
    }
    limit
}

/// Runs still to be placed from `start` on, all identical on `[0, start)`, hanging off `parent`.
struct Pending {
    parent: Option<NodeIndex>,
    start: u64,
    members: Vec<usize>,
}

/// Builds the prefix forest of `runs` (a single run gives a chain of its segments).
fn build(runs: &[RunSpec], experiment: Option<String>, reference: Option<String>) -> Plan {
    let n = runs.len();
    let mut common = vec![vec![0u64; n]; n];
    for i in 0..n {
        common[i][i] = runs[i].total_steps;
        for j in i + 1..n {
            let s = shared_prefix(&runs[i], &runs[j]);
            common[i][j] = s;
            common[j][i] = s;
        }
    }

    let mut graph = StageGraph::new();
    let mut paths: Vec<Vec<NodeIndex>> = vec![Vec::new(); n];
    let roots: Vec<usize> = (0..n).filter(|&i| runs[i].total_steps > 0).collect();
    let mut stack = vec![Pending {
        parent: None,
        start: 0,
        members: roots,
    }];
    while let Some(p) = stack.pop() {
        // Runs identical on step `start` too form one class: "identical on [0, s)" is an
        // equivalence for each s, so comparing with the class's first run is enough.
        let mut classes: Vec<Vec<usize>> = Vec::new();
        for &i in &p.members {
            match classes.iter_mut().find(|c| common[c[0]][i] > p.start) {
                Some(c) => c.push(i),
                None => classes.push(vec![i]),
            }
        }
        let mut children = Vec::new();
        for class in classes {
            let rep = &runs[class[0]];
            let mut end = rep.total_steps;
            for &i in &class {
                end = end.min(runs[i].total_steps);
                for &j in &class {
                    if i != j {
                        end = end.min(common[i][j]);
                    }
                }
            }
            if let Some(g) = next_growth_after(rep, p.start) {
                end = end.min(g);
            }
            let node = graph.add_node(StageNode {
                segment: segment(rep, rep.depth_at(p.start), p.start, end),
                runs: class.iter().map(|&i| runs[i].name.clone()).collect(),
            });
            if let Some(parent) = p.parent {
                let t = match rep.growths.iter().find(|g| g.at_step == p.start) {
                    Some(g) => Transition::Grow(*g),
                    None => Transition::Continue,
                };
                graph.add_edge(parent, node, t);
            }
            for &i in &class {
                paths[i].push(node);
            }
            let rest: Vec<usize> = class
                .into_iter()
                .filter(|&i| runs[i].total_steps > end)
                .collect();
            if !rest.is_empty() {
                children.push(Pending {
                    parent: Some(node),
                    start: end,
                    members: rest,
                });
            }
        }
        // Depth-first, first class first.
        stack.extend(children.into_iter().rev());
    }

    let mut run_plans = Vec::with_capacity(n);
    for (spec, nodes) in runs.iter().zip(paths) {
        let segments = segments(spec);
        let flops = segments
            .iter()
            .fold(Flops::default(), |acc, s| acc + s.flops);
        let fixed_flops = Flops::of(
            &spec.model,
            spec.model.depth,
            spec.total_steps * spec.batch.tokens_per_step(),
        );
        run_plans.push(RunPlan {
            spec: spec.clone(),
            segments,
            nodes,
            flops,
            fixed_flops,
            ratio: flops.ratio(fixed_flops),
            replica: None,
        });
    }

    let mut sharing = Sharing::default();
    for r in &run_plans {
        sharing.steps_separate += r.spec.total_steps;
        sharing.flops_separate = sharing.flops_separate + r.flops;
    }
    for node in graph.node_weights() {
        sharing.steps_trained += node.segment.steps();
        sharing.flops_trained = sharing.flops_trained + node.segment.flops;
    }

    Plan {
        experiment,
        reference,
        runs: run_plans,
        graph,
        sharing,
        frontier: Vec::new(),
        seeds: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::fixtures::*;
    use crate::plan::spec::{InitSpec, ScheduleSpec};
    use std::collections::HashSet;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
    }

    fn flops_close(a: Flops, b: Flops) -> bool {
        close(a.exact, b.exact)
            && close(a.six_n_embedding, b.six_n_embedding)
            && close(a.six_n_non_embedding, b.six_n_non_embedding)
    }

    /// Each run's segments and node path tile [0, total) at the depths the spec says.
    fn check_invariants(plan: &Plan) {
        for r in &plan.runs {
            let spec = &r.spec;
            let mut at = 0;
            for s in &r.segments {
                assert_eq!(s.start_step, at, "{}: segments are contiguous", spec.name);
                assert!(s.end_step > s.start_step, "non-empty");
                assert_eq!(s.depth, spec.depth_at(s.start_step));
                assert_eq!(
                    s.depth,
                    spec.depth_at(s.end_step - 1),
                    "one depth per segment"
                );
                assert_eq!(s.start_tokens, s.start_step * spec.batch.tokens_per_step());
                assert_eq!(s.end_tokens, s.end_step * spec.batch.tokens_per_step());
                at = s.end_step;
            }
            assert_eq!(at, spec.total_steps);
            let sum = r.segments.iter().fold(Flops::default(), |a, s| a + s.flops);
            assert!(flops_close(sum, r.flops));

            let mut at = 0;
            for (k, &n) in r.nodes.iter().enumerate() {
                let node = &plan.graph[n];
                assert!(node.runs.contains(&spec.name));
                assert_eq!(node.segment.start_step, at);
                assert_eq!(node.segment.depth, spec.depth_at(at));
                assert_eq!(node.segment.depth, spec.depth_at(node.segment.end_step - 1));
                if k > 0 {
                    let e = plan
                        .graph
                        .find_edge(r.nodes[k - 1], n)
                        .expect("path follows edges");
                    match &plan.graph[e] {
                        Transition::Grow(g) => {
                            assert_eq!(Some(g), spec.growths.iter().find(|g| g.at_step == at))
                        }
                        Transition::Continue => {
                            assert!(spec.growths.iter().all(|g| g.at_step != at))
                        }
                    }
                }
                at = node.segment.end_step;
            }
            assert_eq!(at, spec.total_steps);
        }
    }

    #[test]
    fn segments_tile_the_run_and_split_at_growths() {
        let m = model(64, 4, 6, 32, 256);
        let r = run(
            "multi",
            m,
            0,
            vec![grow(40, 0, 2), grow(80, 2, 6)],
            100,
            wsd(2, 10),
        );
        let plan = compile_run(&r);
        check_invariants(&plan);
        let rp = &plan.runs[0];
        let spans: Vec<_> = rp
            .segments
            .iter()
            .map(|s| (s.depth, s.start_step, s.end_step))
            .collect();
        assert_eq!(spans, vec![(0, 0, 40), (2, 40, 80), (6, 80, 100)]);
        assert_eq!(plan.graph.node_count(), 3);
        assert_eq!(plan.graph.edge_count(), 2);
        assert!(
            plan.graph
                .raw_edges()
                .iter()
                .all(|e| matches!(e.weight, Transition::Grow(_)))
        );
        assert_eq!(rp.nodes.len(), 3);
        assert_eq!(plan.sharing.steps_separate, 100);
        assert_eq!(plan.sharing.steps_trained, 100);
        assert_eq!(plan.sharing.flops_separate, plan.sharing.flops_trained);
        let fixed = Flops::of(&rp.spec.model, 6, 100 * 128);
        assert_eq!(rp.fixed_flops, fixed);
        assert!(rp.ratio.exact > 0.0 && rp.ratio.exact < 1.0);
        assert_eq!(plan.experiment, None);
    }

    /// The executor reads segments, growths and FLOPs from the plan; these agree with the
    /// spec they were compiled from.
    #[test]
    fn a_run_plan_answers_where_a_step_is() {
        let m = model(64, 4, 6, 32, 256);
        let r = run(
            "multi",
            m,
            0,
            vec![grow(40, 0, 2), grow(80, 2, 6)],
            100,
            wsd(2, 10),
        );
        let rp = &compile_run(&r).runs[0];
        for step in 0..100 {
            let seg = &rp.segments[rp.segment_index(step)];
            assert_eq!(seg.depth, rp.spec.depth_at(step), "step {step}");
            assert!(seg.start_step <= step && step < seg.end_step);
        }
        assert_eq!(rp.segment_index(100), 2, "past the end: the last segment");
        assert_eq!(rp.growth_at(40).map(|g| g.to_depth), Some(2));
        assert_eq!(rp.growth_at(41), None);
        assert_eq!(rp.flops_until(0), Flops::default());
        assert_eq!(rp.flops_until(100), rp.flops);
        let head = Flops::of(&rp.spec.model, 0, 40 * 128);
        let part = Flops::of(&rp.spec.model, 2, 10 * 128);
        assert_eq!(rp.flops_until(50), head + part);
        assert_eq!(rp.fixed_flops_until(100), rp.fixed_flops);
    }

    #[test]
    fn fixed_depth_run_costs_exactly_the_fixed_run() {
        let r = run("fixed", tiny(), 2, vec![], 100, wsd(2, 10));
        let plan = compile_run(&r);
        check_invariants(&plan);
        assert_eq!(plan.runs[0].segments.len(), 1);
        assert_eq!(plan.runs[0].ratio.exact, 1.0);
        assert_eq!(plan.runs[0].ratio.six_n_embedding, 1.0);
    }

    #[test]
    fn gpt2_small_zero_to_twelve_at_0_8t_matches_the_paper() {
        let plan = compile_run(&zero_to_full("p", gpt2_small(), 8000, 10_000));
        let r = plan.runs[0].ratio;
        assert!(
            (0.44..0.46).contains(&r.six_n_embedding),
            "6N emb {}",
            r.six_n_embedding
        );
        assert!(
            (0.19..0.21).contains(&r.six_n_non_embedding),
            "6N non-emb {}",
            r.six_n_non_embedding
        );
        // The exact count sits between: the head is costly even at depth 0.
        assert!(
            r.exact > r.six_n_non_embedding && r.exact < 1.0,
            "exact {}",
            r.exact
        );
        assert_eq!(plan.runs[0].segments[0].params.non_embedding, 0);
    }

    #[test]
    fn lr_is_continuous_across_growths() {
        // Growths in warmup, in the stable phase and in the decay phase.
        let m = model(64, 4, 6, 32, 256);
        let r = run(
            "lr",
            m,
            0,
            vec![grow(5, 0, 1), grow(50, 1, 2), grow(95, 2, 6)],
            100,
            wsd(10, 10),
        );
        let plan = compile_run(&r);
        check_invariants(&plan);
        let segs = &plan.runs[0].segments;
        let lr = |s: u64| 6e-4 * lr_factor(&r.schedule, s, 100);
        for w in segs.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            assert_eq!(a.end_step, b.start_step);
            assert_eq!(a.lr_end, lr(a.end_step - 1));
            assert_eq!(b.lr_start, lr(b.start_step));
        }
        // Warmup: one step's worth of increase; stable: equal; decay: one step's decrease.
        assert!(close(segs[1].lr_start - segs[0].lr_end, 6e-4 / 10.0));
        assert_eq!(segs[1].lr_end, segs[2].lr_start);
        assert!(close(segs[2].lr_end - segs[3].lr_start, 6e-4 / 10.0));
        assert_eq!(segs[3].lr_end, 0.0);
    }

    #[test]
    fn tau_sweep_shares_the_zero_layer_prefixes() {
        let m = gpt2_small();
        let t = 10_000;
        let runs = vec![
            zero_to_full("tau50", m.clone(), 5000, t),
            zero_to_full("tau70", m.clone(), 7000, t),
            zero_to_full("tau80", m.clone(), 8000, t),
        ];
        let exp = ExperimentSpec {
            name: "sweep".into(),
            runs: vec!["tau50".into(), "tau70".into(), "tau80".into()],
            reference: "tau80".into(),
            seeds: vec![],
            frontier: vec![],
        };
        let plan = compile_experiment(&exp, &runs);
        check_invariants(&plan);
        let nodes: Vec<_> = plan
            .graph
            .node_weights()
            .map(|n| {
                (
                    n.segment.depth,
                    n.segment.start_step,
                    n.segment.end_step,
                    n.runs.join(","),
                )
            })
            .collect();
        // Depth-first, first run's branch first.
        assert_eq!(
            nodes,
            vec![
                (0, 0, 5000, "tau50,tau70,tau80".to_string()),
                (12, 5000, 10000, "tau50".to_string()),
                (0, 5000, 7000, "tau70,tau80".to_string()),
                (12, 7000, 10000, "tau70".to_string()),
                (0, 7000, 8000, "tau80".to_string()),
                (12, 8000, 10000, "tau80".to_string()),
            ]
        );
        let path = |i: usize| {
            plan.runs[i]
                .nodes
                .iter()
                .map(|n| n.index())
                .collect::<Vec<_>>()
        };
        assert_eq!(path(0), vec![0, 1]);
        assert_eq!(path(1), vec![0, 2, 3]);
        assert_eq!(path(2), vec![0, 2, 4, 5]);
        let kinds: Vec<_> = plan
            .graph
            .raw_edges()
            .iter()
            .map(|e| {
                (
                    e.source().index(),
                    e.target().index(),
                    matches!(e.weight, Transition::Grow(_)),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                (0, 1, true),
                (0, 2, false),
                (2, 3, true),
                (2, 4, false),
                (4, 5, true)
            ]
        );
        // 0-layer steps trained once up to 0.8T; full depth 0.5T + 0.3T + 0.2T.
        let sh = plan.sharing;
        assert_eq!(sh.steps_separate, 30_000);
        assert_eq!(sh.steps_trained, 8000 + 10_000);
        let tps = 4 * 1024;
        let trained = Flops::of(&m, 0, 8000 * tps) + Flops::of(&m, 12, 10_000 * tps);
        let separate = Flops::of(&m, 0, 20_000 * tps) + Flops::of(&m, 12, 10_000 * tps);
        assert!(flops_close(sh.flops_trained, trained));
        assert!(flops_close(sh.flops_separate, separate));
        assert_eq!(plan.experiment.as_deref(), Some("sweep"));
        assert_eq!(plan.reference.as_deref(), Some("tau80"));
    }

    #[test]
    fn fixed_run_shares_nothing_with_a_zero_layer_run() {
        let m = tiny();
        let fixed = run("fixed", m.clone(), 2, vec![], 100, wsd(2, 10));
        let prog = zero_to_full("prog", m, 80, 100);
        assert_eq!(shared_prefix(&fixed, &prog), 0);
        let exp = ExperimentSpec {
            name: "e".into(),
            runs: vec!["fixed".into(), "prog".into()],
            reference: "fixed".into(),
            seeds: vec![],
            frontier: vec![],
        };
        let plan = compile_experiment(&exp, &[fixed, prog]);
        check_invariants(&plan);
        assert_eq!(plan.graph.node_count(), 3);
        assert!(plan.graph.node_weights().all(|n| n.runs.len() == 1));
        assert_eq!(plan.sharing.steps_trained, plan.sharing.steps_separate);
        assert!(flops_close(
            plan.sharing.flops_trained,
            plan.sharing.flops_separate
        ));
    }

    #[test]
    fn seeds_plan_every_run_per_seed_and_share_only_within_a_seed() {
        let m = tiny();
        let runs = [
            zero_to_full("tau50", m.clone(), 5000, 10_000),
            zero_to_full("tau80", m, 8000, 10_000),
        ];
        let exp = ExperimentSpec {
            name: "sweep".into(),
            runs: vec!["tau50".into(), "tau80".into()],
            reference: "tau80".into(),
            seeds: vec![3, 0, 7],
            frontier: vec![],
        };
        let plan = compile_experiment(&exp, &runs);
        check_invariants(&plan);
        let names: Vec<&str> = plan.runs.iter().map(|r| r.spec.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "tau50@seed3",
                "tau80@seed3",
                "tau50@seed0",
                "tau80@seed0",
                "tau50@seed7",
                "tau80@seed7"
            ]
        );
        for r in &plan.runs {
            let replica = r.replica.as_ref().expect("seeded runs name their recipe");
            assert_eq!(r.spec.seed, replica.seed);
            assert_eq!(r.spec.name, replica_name(&replica.recipe, replica.seed));
            let reference = plan.reference_of(r).expect("every seed has its reference");
            assert_eq!(reference.recipe(), "tau80");
            assert_eq!(reference.spec.seed, r.spec.seed);
        }
        assert_eq!(plan.seeds, vec![3, 0, 7]);
        // Each seed shares its 0-layer prefix [0, 5000) between its two runs, and no node spans
        // two seeds.
        for n in plan.graph.node_weights() {
            let seeds: HashSet<u64> = n
                .runs
                .iter()
                .map(|name| plan.run(name).expect("a run of the plan").spec.seed)
                .collect();
            assert_eq!(seeds.len(), 1, "node {n:?} spans seeds");
        }
        assert_eq!(plan.sharing.steps_separate, 6 * 10_000);
        assert_eq!(plan.sharing.steps_trained, 6 * 10_000 - 3 * 5000);
        // Without seeds the runs keep their names and their own seeds.
        let plain = compile_experiment(
            &ExperimentSpec {
                seeds: vec![],
                frontier: vec![],
                ..exp
            },
            &runs,
        );
        assert!(plain.runs.iter().all(|r| r.replica.is_none()));
        assert_eq!(plain.runs[0].recipe(), "tau50");
        assert_eq!(
            plain.reference_of(&plain.runs[0]).map(|r| r.recipe()),
            Some("tau80")
        );
    }

    #[test]
    fn wsd_runs_of_different_lengths_share_the_stable_phase() {
        let m = tiny();
        let short = run("short", m.clone(), 2, vec![], 10_000, wsd(200, 1000));
        let long = run("long", m.clone(), 2, vec![], 20_000, wsd(200, 1000));
        assert_eq!(shared_prefix(&short, &long), 9000);
        // Constant with the same warmup agrees until the WSD decay starts.
        let flat = run(
            "flat",
            m.clone(),
            2,
            vec![],
            20_000,
            ScheduleSpec::Constant { warmup_steps: 200 },
        );
        assert_eq!(shared_prefix(&short, &flat), 9000);
        assert_eq!(shared_prefix(&long, &flat), 19_000);
        // A different warmup differs from step 0.
        let other = run("other", m, 2, vec![], 10_000, wsd(100, 1000));
        assert_eq!(shared_prefix(&short, &other), 0);

        let exp = ExperimentSpec {
            name: "len".into(),
            runs: vec!["short".into(), "long".into(), "flat".into()],
            reference: "long".into(),
            seeds: vec![],
            frontier: vec![],
        };
        let plan = compile_experiment(&exp, &[short, long, flat]);
        check_invariants(&plan);
        let nodes: Vec<_> = plan
            .graph
            .node_weights()
            .map(|n| (n.segment.start_step, n.segment.end_step, n.runs.join(",")))
            .collect();
        assert_eq!(
            nodes,
            vec![
                (0, 9000, "short,long,flat".to_string()),
                (9000, 10_000, "short".to_string()),
                (9000, 19_000, "long,flat".to_string()),
                (19_000, 20_000, "long".to_string()),
                (19_000, 20_000, "flat".to_string()),
            ]
        );
        assert!(
            plan.graph
                .raw_edges()
                .iter()
                .all(|e| e.weight == Transition::Continue)
        );
        assert_eq!(plan.sharing.steps_trained, 9000 + 1000 + 10_000 + 2000);
    }

    #[test]
    fn differing_growth_specs_split_at_the_growth() {
        let m = tiny();
        let a = zero_to_full("random", m.clone(), 80, 100);
        let mut b = zero_to_full("zero", m.clone(), 80, 100);
        b.growths[0].init = InitSpec::Zero;
        assert_eq!(shared_prefix(&a, &b), 80);
        // Different seed, data or optimizer: nothing shared.
        let mut c = a.clone();
        c.seed = 2;
        assert_eq!(shared_prefix(&a, &c), 0);
        // The full depth does not matter before blocks exist...
        let deeper = zero_to_full("deeper", model(64, 4, 4, 32, 256), 80, 100);
        assert_eq!(shared_prefix(&a, &deeper), 80);
        // ...but it shapes the init of the starting block of a 1-layer run.
        let one_a = run("one_a", m.clone(), 1, vec![grow(80, 1, 2)], 100, wsd(2, 10));
        let one_b = run(
            "one_b",
            model(64, 4, 4, 32, 256),
            1,
            vec![grow(80, 1, 4)],
            100,
            wsd(2, 10),
        );
        assert_eq!(shared_prefix(&one_a, &one_b), 0);
        // Residual scaling is 1 at one block or none: it splits runs at their first growth...
        let scaled = |r: &RunSpec, residual| RunSpec {
            model: ModelSpec {
                name: "scaled".into(),
                residual,
                ..r.model.clone()
            },
            ..r.clone()
        };
        // (the model's name is a label: the same model under another name is the same)
        assert_eq!(
            shared_prefix(&one_a, &scaled(&one_a, ResidualScaling::None)),
            100
        );
        for residual in [ResidualScaling::InvSqrtDepth, ResidualScaling::InvDepth] {
            assert_eq!(shared_prefix(&one_a, &scaled(&one_a, residual)), 80);
            assert_eq!(shared_prefix(&a, &scaled(&deeper, residual)), 80);
        }
        let fixed_one = run("fixed_one", m.clone(), 1, vec![], 100, wsd(2, 10));
        let fixed_scaled = scaled(&fixed_one, ResidualScaling::InvDepth);
        assert_eq!(shared_prefix(&fixed_one, &fixed_scaled), 100);
        // ...but not from two blocks on.
        let two = run("two", m.clone(), 2, vec![grow(80, 2, 4)], 100, wsd(2, 10));
        assert_eq!(
            shared_prefix(&two, &scaled(&two, ResidualScaling::InvDepth)),
            0
        );

        let exp = ExperimentSpec {
            name: "init".into(),
            runs: vec!["zero".into(), "random".into()],
            reference: "random".into(),
            seeds: vec![],
            frontier: vec![],
        };
        // Runs are taken in the experiment's order.
        let plan = compile_experiment(&exp, &[a, b]);
        check_invariants(&plan);
        assert_eq!(plan.runs[0].spec.name, "zero");
        assert_eq!(plan.graph.node_count(), 3);
        assert_eq!(plan.graph[NodeIndex::new(0)].runs, vec!["zero", "random"]);
        assert_eq!(plan.sharing.steps_trained, 80 + 20 + 20);
    }
}
