//! Plan renderers: text tables, JSON, Graphviz dot.
//!
//! Invariants: output is a pure, deterministic function of the plan (no colors, no clock, no
//! hash-map order), since it is snapshot-tested; sizes use human units (k, M, G, T, P, E) with
//! three significant digits, step numbers are exact; every FLOPs figure names its convention.

use std::fmt::Write as _;

use super::flops::{Flops, embedding_params, param_counts};
use super::ir::{Plan, RunPlan, Transition};
use super::spec::{GrowthSpec, OptimizerSpec, RunSpec, ScheduleSpec};

/// The three FLOPs conventions of `flops.rs`, with the labels used everywhere.
type Convention = (&'static str, fn(&Flops) -> f64);

const CONVENTIONS: [Convention; 3] = [
    ("exact (attention + head)", |f| f.exact),
    ("6N, embeddings counted", |f| f.six_n_embedding),
    ("6N, non-embedding", |f| f.six_n_non_embedding),
];

/// A human-readable plan: each run's header, segment table, growths and totals; for an
/// experiment also a summary table, the shared nodes and what sharing saves.
pub fn render_text(plan: &Plan) -> String {
    let mut out = String::new();
    for (i, run) in plan.runs.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        run_block(&mut out, run, plan.experiment.is_some());
    }
    if let Some(name) = &plan.experiment {
        out.push('\n');
        experiment_block(&mut out, plan, name);
    }
    out
}

/// The plan as pretty JSON (serde of `Plan`, graph included).
pub fn render_json(plan: &Plan) -> String {
    // Plain data with string keys only: serialization cannot fail (non-finite floats become
    // `null`).
    serde_json::to_string_pretty(plan).expect("a Plan always serializes to JSON")
}

/// The stage graph in Graphviz dot: one box per node, one labelled arrow per transition.
pub fn render_dot(plan: &Plan) -> String {
    let mut out = String::from("digraph plan {\n");
    out.push_str("  rankdir=LR;\n");
    out.push_str("  node [shape=box, fontname=\"monospace\"];\n");
    out.push_str("  edge [fontname=\"monospace\"];\n");
    if let Some(exp) = &plan.experiment {
        let _ = writeln!(out, "  label=\"experiment {}\";", dot_escape(exp));
        out.push_str("  labelloc=t;\n");
    }
    for idx in plan.graph.node_indices() {
        let node = &plan.graph[idx];
        let s = &node.segment;
        let label = format!(
            "n{}: depth {}\\nsteps {}..{}\\nruns: {}",
            idx.index(),
            s.depth,
            s.start_step,
            s.end_step,
            dot_escape(&node.runs.join(", "))
        );
        let _ = writeln!(out, "  n{} [label=\"{}\"];", idx.index(), label);
    }
    for e in plan.graph.raw_edges() {
        let label = match &e.weight {
            Transition::Continue => "continue".to_string(),
            Transition::Grow(g) => format!(
                "grow {} -> {}\\ninit {}\\nplacement {}\\noptimizer state {}{}",
                g.from_depth,
                g.to_depth,
                g.init.to_string(),
                g.placement,
                g.optimizer_state,
                lr_mult_text(g, "\\n")
            ),
        };
        let _ = writeln!(
            out,
            "  n{} -> n{} [label=\"{}\"];",
            e.source().index(),
            e.target().index(),
            label
        );
    }
    out.push_str("}\n");
    out
}

fn run_block(out: &mut String, run: &RunPlan, in_experiment: bool) {
    let spec = &run.spec;
    let m = &spec.model;
    let b = &spec.batch;
    let tps = b.tokens_per_step();
    let _ = writeln!(out, "run {}", spec.name);
    let mut header = vec![
        (
            "model",
            format!(
                "{}: width {}, {} heads, depth {}, context {}",
                m.name, m.width, m.heads, m.depth, m.context
            ),
        ),
        ("vocabulary", vocabulary_text(spec)),
        (
            "batch",
            format!(
                "{} x {} = {} tokens/step",
                b.sequences,
                b.context,
                human(tps as f64)
            ),
        ),
        (
            "length",
            format!(
                "{} steps, {} tokens",
                spec.total_steps,
                human((spec.total_steps * tps) as f64)
            ),
        ),
        ("optimizer", optimizer_text(&spec.optimizer)),
        ("schedule", schedule_text(&spec.schedule)),
        ("checkpoints", checkpoint_text(spec)),
    ];
    if in_experiment {
        let path: Vec<String> = run
            .nodes
            .iter()
            .map(|n| format!("n{}", n.index()))
            .collect();
        header.push(("path", path.join(" -> ")));
    }
    let key_w = header.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in &header {
        let _ = writeln!(out, "  {k:<key_w$}  {v}");
    }
    out.push('\n');

    let mut rows = vec![
        [
            "#",
            "depth",
            "steps",
            "tokens",
            "LR start -> end",
            "params total / non-emb",
            "FLOPs/token",
            "FLOPs (exact)",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (i, s) in run.segments.iter().enumerate() {
        rows.push(vec![
            (i + 1).to_string(),
            s.depth.to_string(),
            format!("{}..{}", s.start_step, s.end_step),
            human((s.end_tokens - s.start_tokens) as f64),
            format!("{} -> {}", lr(s.lr_start), lr(s.lr_end)),
            format!(
                "{} / {}",
                human(s.params.total as f64),
                human(s.params.non_embedding as f64)
            ),
            human(s.flops_per_token),
            human(s.flops.exact),
        ]);
    }
    let lines = table(&rows, &[true, true, false, true, false, false, true, true]);
    for (i, line) in lines.iter().enumerate() {
        let _ = writeln!(out, "  {line}");
        // Row i (i >= 1) is segment i - 1; the growth that starts the next segment follows it.
        if i >= 1 && i < run.segments.len() {
            let next = &run.segments[i];
            if let Some(g) = spec.growths.iter().find(|g| g.at_step == next.start_step) {
                let _ = writeln!(out, "     {}", growth_text(g));
            }
        }
    }
    out.push('\n');

    let _ = writeln!(
        out,
        "  compute vs fixed depth {} for the same {} steps (progressive / fixed = ratio):",
        m.depth, spec.total_steps
    );
    let rows: Vec<Vec<String>> = CONVENTIONS
        .iter()
        .map(|(label, get)| {
            let (p, f) = (get(&run.flops), get(&run.fixed_flops));
            let r = get(&run.ratio);
            vec![
                label.to_string(),
                format!(
                    "{} / {} = {:.3} (saving {:.1}%)",
                    human(p),
                    human(f),
                    r,
                    (1.0 - r) * 100.0
                ),
            ]
        })
        .collect();
    for line in table(&rows, &[false, false]) {
        let _ = writeln!(out, "    {line}");
    }
}

/// The vocabulary, its tokenizer, and the share of the full-depth model's parameters that
/// are embeddings (what a zero-layer phase trains): `256 tokens (bytes); embeddings 49.2k =
/// 4.0% of 1.24M params at depth 6`.
fn vocabulary_text(spec: &RunSpec) -> String {
    let m = &spec.model;
    let emb = embedding_params(m) as f64;
    let total = param_counts(m, m.depth).total as f64;
    format!(
        "{} tokens ({}); embeddings {} = {} of {} params at depth {}",
        m.vocab,
        spec.data.tokenizer,
        human(emb),
        percent(emb, total),
        human(total),
        m.depth
    )
}

/// When a run writes checkpoints: `every 75 steps and every 30 min of training`.
fn checkpoint_text(spec: &RunSpec) -> String {
    let steps = match spec.checkpoint_every {
        0 => None,
        n => Some(format!("every {n} steps")),
    };
    let clock = spec.checkpoint_clock().map(|d| {
        let s = d.as_secs();
        let when = if s % 3600 == 0 {
            format!("{} h", s / 3600)
        } else if s % 60 == 0 {
            format!("{} min", s / 60)
        } else {
            format!("{s} s")
        };
        format!("every {when} of training")
    });
    let periodic: Vec<String> = steps.into_iter().chain(clock).collect();
    if periodic.is_empty() {
        "at growths and at the end".into()
    } else {
        format!("{}, at growths and at the end", periodic.join(" and "))
    }
}

fn experiment_block(out: &mut String, plan: &Plan, name: &str) {
    let _ = writeln!(
        out,
        "experiment {name} (reference {})",
        plan.reference.as_deref().unwrap_or("-")
    );
    if !plan.seeds.is_empty() {
        let seeds: Vec<String> = plan.seeds.iter().map(u64::to_string).collect();
        let recipes = plan.runs.len() / plan.seeds.len();
        let _ = writeln!(
            out,
            "  seeds: {} ({recipes} recipes x {} seeds = {} runs, named RECIPE@seedN; each seed \
             sets the init and the data order, and prefixes are shared within a seed)",
            seeds.join(", "),
            plan.seeds.len(),
            plan.runs.len(),
        );
    }
    if !plan.frontier.is_empty() {
        let lengths: Vec<String> = plan
            .frontier
            .iter()
            .filter_map(|f| plan.runs.iter().find(|r| r.recipe() == f))
            .map(|r| format!("{} ({} steps)", r.recipe(), r.spec.total_steps))
            .collect();
        let _ = writeln!(
            out,
            "  frontier: {} and the reference: final loss against compute, for each run's \
             speedup at matched loss",
            lengths.join(", ")
        );
    }
    out.push_str("  ratios: /ref = run FLOPs / reference run FLOPs;\n");
    out.push_str("          /fixed = run FLOPs / a fixed full-depth run of the same length\n");
    out.push_str(
        "  conventions: exact = exact (attention + head); 6N+emb = 6N, embeddings counted;\n",
    );
    out.push_str("               6N-emb = 6N, non-embedding\n\n");
    let mut rows = vec![
        [
            "run",
            "final depth",
            "growth steps",
            "exact/ref",
            "6N+emb/ref",
            "6N-emb/ref",
            "exact/fixed",
            "6N+emb/fixed",
            "6N-emb/fixed",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for run in &plan.runs {
        let reference = plan.reference_of(run);
        let spec = &run.spec;
        let final_depth = spec
            .growths
            .last()
            .map(|g| g.to_depth)
            .unwrap_or(spec.start_depth);
        let growths: Vec<String> = spec.growths.iter().map(|g| g.at_step.to_string()).collect();
        let mut row = vec![
            spec.name.clone(),
            final_depth.to_string(),
            if growths.is_empty() {
                "-".into()
            } else {
                growths.join(",")
            },
        ];
        for (_, get) in CONVENTIONS {
            row.push(match reference {
                Some(r) => ratio(get(&run.flops), get(&r.flops)),
                None => "-".into(),
            });
        }
        for (_, get) in CONVENTIONS {
            row.push(format!("{:.3}", get(&run.ratio)));
        }
        rows.push(row);
    }
    for line in table(
        &rows,
        &[false, true, false, true, true, true, true, true, true],
    ) {
        let _ = writeln!(out, "  {line}");
    }
    out.push('\n');

    let shared: Vec<_> = plan
        .graph
        .node_indices()
        .filter(|&i| plan.graph[i].runs.len() > 1)
        .collect();
    if shared.is_empty() {
        out.push_str("  shared nodes: none\n");
    } else {
        out.push_str("  shared nodes (trained once for all their runs):\n");
        let rows: Vec<Vec<String>> = shared
            .iter()
            .map(|&i| {
                let n = &plan.graph[i];
                let s = &n.segment;
                vec![
                    format!("n{}", i.index()),
                    format!("depth {}", s.depth),
                    format!("steps {}..{}", s.start_step, s.end_step),
                    format!("{} tokens", human((s.end_tokens - s.start_tokens) as f64)),
                    format!("runs {}", n.runs.join(", ")),
                ]
            })
            .collect();
        for line in table(&rows, &[false, false, false, true, false]) {
            let _ = writeln!(out, "    {line}");
        }
    }
    out.push('\n');

    let sh = &plan.sharing;
    let saved = sh.steps_separate.saturating_sub(sh.steps_trained);
    let _ = writeln!(
        out,
        "  sharing: {} steps separate, {} trained ({} saved, {})",
        sh.steps_separate,
        sh.steps_trained,
        saved,
        percent(saved as f64, sh.steps_separate as f64)
    );
    out.push_str("  FLOPs saved by sharing (separate -> trained = saved):\n");
    let rows: Vec<Vec<String>> = CONVENTIONS
        .iter()
        .map(|(label, get)| {
            let (sep, tr) = (get(&sh.flops_separate), get(&sh.flops_trained));
            vec![
                label.to_string(),
                format!(
                    "{} -> {} = {} ({})",
                    human(sep),
                    human(tr),
                    human(sep - tr),
                    percent(sep - tr, sep)
                ),
            ]
        })
        .collect();
    for line in table(&rows, &[false, false]) {
        let _ = writeln!(out, "    {line}");
    }
}

/// Aligned columns separated by two spaces (`right[i]`: right-align column i); trailing spaces
/// trimmed.
fn table(rows: &[Vec<String>], right: &[bool]) -> Vec<String> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(c, s)| {
                    let w = width[c];
                    if right.get(c).copied().unwrap_or(false) {
                        format!("{s:>w$}")
                    } else {
                        format!("{s:<w$}")
                    }
                })
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect()
}

/// `x` with three significant digits and a k/M/G/T/P/E suffix; plain below 1000.
pub fn human(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x == 0.0 {
        return "0".into();
    }
    let sign = if x < 0.0 { "-" } else { "" };
    let a = x.abs();
    // Round to three significant digits first, so 999.6k becomes 1.00M rather than 1000k.
    let exp = a.log10().floor() as i32;
    let scale = 10f64.powi(exp - 2);
    let a = (a / scale).round() * scale;
    if a < 1000.0 {
        return if a.fract() == 0.0 {
            format!("{sign}{a}")
        } else {
            format!("{sign}{}", sig3(a))
        };
    }
    const UNITS: [&str; 6] = ["k", "M", "G", "T", "P", "E"];
    let mut v = a;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{sign}{}{}", sig3(v), UNITS[unit - 1])
}

/// Three significant digits of a positive value below 1000.
fn sig3(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn lr(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else {
        format!("{x:.2e}")
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.3}", a / b)
    } else {
        "-".into()
    }
}

fn percent(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        format!("{:.1}%", 100.0 * part / whole)
    } else {
        "-".into()
    }
}

fn optimizer_text(o: &OptimizerSpec) -> String {
    match o {
        OptimizerSpec::Adamw(a) => format!("adamw, peak LR {}", lr(a.lr)),
        OptimizerSpec::Muon(m) => format!(
            "muon, peak LR {} (adamw peak LR {} on embeddings, norms, biases)",
            lr(m.lr),
            lr(m.adam.lr)
        ),
    }
}

fn schedule_text(s: &ScheduleSpec) -> String {
    match *s {
        ScheduleSpec::Wsd {
            warmup_steps,
            decay_steps,
            shape,
            floor,
        } => {
            format!(
                "wsd: warmup {warmup_steps} steps, decay last {decay_steps} steps ({shape}) to floor {floor}"
            )
        }
        ScheduleSpec::Cosine {
            warmup_steps,
            floor,
        } => {
            format!("cosine: warmup {warmup_steps} steps, cosine to floor {floor}")
        }
        ScheduleSpec::Constant { warmup_steps } => {
            format!("constant: warmup {warmup_steps} steps")
        }
    }
}

/// One growth in words: `grow 0 -> 6 at step 3200: init random(std 0.02), placement top, ...`.
pub fn growth_text(g: &GrowthSpec) -> String {
    format!(
        "grow {} -> {} at step {}: init {}, placement {}, optimizer state {}{}",
        g.from_depth,
        g.to_depth,
        g.at_step,
        g.init.to_string(),
        g.placement,
        g.optimizer_state,
        lr_mult_text(g, ", ")
    )
}

/// `lr_mult` only when it is not the default, after `sep`.
fn lr_mult_text(g: &GrowthSpec, sep: &str) -> String {
    if g.lr_mult == 1.0 {
        String::new()
    } else {
        format!("{sep}new blocks' lr x{}", g.lr_mult)
    }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::compile::{compile_experiment, compile_run};
    use crate::plan::fixtures::{grow, run, tiny, wsd, zero_to_full};
    use crate::plan::spec::ExperimentSpec;

    fn tiny_run() -> crate::plan::spec::RunSpec {
        run(
            "tiny_grow",
            tiny(),
            0,
            vec![grow(80, 0, 2)],
            100,
            wsd(2, 10),
        )
    }

    fn tiny_experiment() -> Plan {
        let exp = ExperimentSpec {
            name: "tiny_tau".into(),
            runs: vec!["tau60".into(), "tau80".into()],
            reference: "tau80".into(),
            seeds: vec![],
            frontier: vec![],
        };
        let runs = [
            zero_to_full("tau60", tiny(), 60, 100),
            zero_to_full("tau80", tiny(), 80, 100),
        ];
        compile_experiment(&exp, &runs)
    }

    #[test]
    fn human_units_have_three_significant_digits() {
        assert_eq!(human(0.0), "0");
        assert_eq!(human(512.0), "512");
        assert_eq!(human(39_383_808.0), "39.4M");
        assert_eq!(human(124_439_808.0), "124M");
        assert_eq!(human(999_600.0), "1.00M");
        assert_eq!(human(1234.0), "1.23k");
        assert_eq!(human(5.0e18), "5.00E");
        assert_eq!(human(2.5e15), "2.50P");
    }

    #[test]
    fn text_is_aligned_and_labels_every_convention() {
        let text = render_text(&compile_run(&tiny_run()));
        for label in [
            "exact (attention + head)",
            "6N, embeddings counted",
            "6N, non-embedding",
        ] {
            assert!(text.contains(label), "missing {label}");
        }
        assert!(text.contains(
            "grow 0 -> 2 at step 80: init random(std 0.02), placement top, optimizer state keep"
        ));
        assert!(text.contains("4 x 32 = 128 tokens/step"));
        // The new blocks' LR multiplier shows only when it is not the default.
        assert!(!text.contains("new blocks' lr"));
        let mut run = tiny_run();
        run.growths[0].lr_mult = 3.0;
        assert!(
            render_text(&compile_run(&run)).contains("optimizer state keep, new blocks' lr x3")
        );
        assert!(!text.contains('\x1b'), "no colors");
        assert!(text.lines().all(|l| l == l.trim_end()));
    }

    #[test]
    fn text_of_a_tiny_run() {
        insta::assert_snapshot!(render_text(&compile_run(&tiny_run())));
    }

    #[test]
    fn text_of_a_two_run_experiment() {
        insta::assert_snapshot!(render_text(&tiny_experiment()));
    }

    #[test]
    fn json_round_trips() {
        let plan = tiny_experiment();
        let back: Plan = serde_json::from_str(&render_json(&plan)).expect("valid plan JSON");
        assert_eq!(back.runs, plan.runs);
        assert_eq!(back.sharing, plan.sharing);
        assert_eq!(back.graph.node_count(), plan.graph.node_count());
        assert_eq!(back.graph.edge_count(), plan.graph.edge_count());
    }

    #[test]
    fn dot_has_every_node_and_labelled_edge() {
        let plan = tiny_experiment();
        let dot = render_dot(&plan);
        assert!(dot.starts_with("digraph plan {\n") && dot.ends_with("}\n"));
        assert!(dot.contains("n0 [label=\"n0: depth 0\\nsteps 0..60\\nruns: tau60, tau80\"];"));
        assert!(dot.contains("n0 -> n2 [label=\"continue\"];"));
        assert!(dot.contains("n0 -> n1 [label=\"grow 0 -> 2\\ninit random(std 0.02)\\nplacement top\\noptimizer state keep\"];"));
        assert_eq!(dot.matches(" -> n").count(), plan.graph.edge_count());
    }
}
