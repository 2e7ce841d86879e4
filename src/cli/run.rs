//! `progc run`: train a recipe's plan, an experiment, or continue a stopped run.

use std::path::{Path, PathBuf};

use clap::Args;

use super::recipe::{
    Select, SetArgs, checked, entry_recipes, find_run, print_warnings_for, select_plans,
};
use super::{Ctx, Failure, Outcome, usage};
use crate::exec::ExecError;
use crate::exec::device::DeviceChoice;
use crate::exec::device::parallel::{Nodes, Topology, parse_devices};
use crate::exec::error::ErrorKind;
use crate::exec::io::metrics::Summary;
use crate::exec::io::report::to_markdown;
use crate::exec::io::run_dir::{ExperimentDir, RunDir};
use crate::exec::jobs::experiment::run_experiment;
use crate::exec::jobs::train::{self, RunOptions, Tuning};
use crate::exec::network::precision::Precision;
use crate::plan::compile_run;

/// Train a recipe's plan with burn (CPU by default, a GPU when asked or available).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The recipe file; not needed with `--resume`.
    #[arg(required_unless_present = "resume")]
    file: Option<PathBuf>,
    /// Which recipe of the file to run (needed when it defines several).
    #[arg(long, conflicts_with = "experiment")]
    run: Option<String>,
    /// Run every run of this experiment, training shared prefixes once; re-running the
    /// same command continues an interrupted experiment.
    #[arg(long)]
    experiment: Option<String>,
    #[arg(long, default_value = "auto", help = DeviceChoice::help(), value_parser = device)]
    device: DeviceChoice,
    /// Run directory (default: runs/<recipe>, never overwriting an existing one; for an
    /// experiment runs/<experiment>, continued when it holds the same experiment).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue a stopped run from its latest checkpoint.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["file", "run", "experiment", "out", "set"])]
    resume: Option<PathBuf>,
    /// Stop cleanly after this global step (a checkpoint is written; resume later).
    #[arg(long, value_name = "STEP")]
    stop_after: Option<u64>,
    /// Hide the progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Matmul precision: f32 | bf16 (bf16 keeps f32 master weights and optimizer state).
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Read the training loss back (one metrics row) every N steps; default 1 on the CPU,
    /// 25 on a GPU, where every read waits for the device.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    log_every: Option<u64>,
    #[command(flatten)]
    peers: PeerArgs,
    #[command(flatten)]
    sets: SetArgs,
}

/// Data-parallel training: peers on this machine, and several machines.
#[derive(Debug, Args)]
struct PeerArgs {
    /// Train data-parallel on these devices, one peer each: `cpu:N` (N peers on the CPU) or a
    /// list such as `cuda:0,cuda:1`. The recipe's batch is the global batch, split evenly.
    #[arg(long, value_name = "LIST", conflicts_with = "device")]
    devices: Option<String>,
    /// Number of machines (nodes) in the run; every node runs the same command.
    #[arg(long, value_name = "N", requires_all = ["node_rank", "orchestrator"],
          value_parser = clap::value_parser!(u32).range(1..))]
    nodes: Option<u32>,
    /// This node's index, 0..N; node 0 coordinates the nodes and writes the run.
    #[arg(long, value_name = "R", requires = "nodes")]
    node_rank: Option<u32>,
    /// HOST:PORT of node 0, which listens on PORT for the other nodes.
    #[arg(long, value_name = "HOST:PORT", requires = "nodes")]
    orchestrator: Option<String>,
    /// Stop with an error when no peer finishes a step for this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..))]
    peer_timeout: u64,
}

impl RunArgs {
    pub fn run(self, ctx: &Ctx) -> Outcome {
        let opts = RunOptions {
            device: self.device,
            out_dir: PathBuf::new(), // set per command below
            progress: !self.no_progress,
            stop_after: self.stop_after,
            checkpoint_at: Vec::new(),
            tuning: Tuning {
                precision: self.precision,
                log_every: self.log_every,
            },
            parallel: self.peers.topology()?,
        };
        crate::exec::jobs::stop::install();
        if let Some(dir) = &self.resume {
            return finish_run(train::resume(dir, &opts), dir);
        }
        let Some(file) = &self.file else {
            unreachable!("clap requires FILE unless --resume")
        };
        match &self.experiment {
            Some(name) => self.experiment(file, name, opts, ctx),
            None => self.single(file, opts, ctx),
        }
    }

    fn single(&self, file: &Path, opts: RunOptions, ctx: &Ctx) -> Outcome {
        let c = checked(file, &self.sets.set, ctx.color)?;
        let name = match &self.run {
            Some(n) => n.clone(),
            None => match entry_recipes(&c.program).as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(usage(
                        format!("{} defines no recipe to run", file.display()),
                        "name one with --run NAME, or an experiment with --experiment NAME",
                    ));
                }
                many => {
                    return Err(usage(
                        format!(
                            "{} defines {} recipes: {}",
                            file.display(),
                            many.len(),
                            many.join(", ")
                        ),
                        "choose one with --run NAME",
                    ));
                }
            },
        };
        let run_spec = find_run(&c.spec, &name, ctx.color)?;
        print_warnings_for(&c, &[name.as_str()], ctx.color);
        let plan = compile_run(run_spec);
        let Some(run_plan) = plan.runs.first() else {
            return Err(ExecError::new(
                ErrorKind::Internal,
                format!("the plan of `{name}` has no run"),
            )
            .into());
        };
        // The corpus and the device are checked before a directory is chosen: a run that
        // cannot start leaves nothing behind.
        let start = train::prepare(run_plan, &opts)?;
        let (out_dir, claimed) = match &self.out {
            Some(dir) => (dir.clone(), false),
            None => {
                let runs = Path::new("runs");
                let dir = fresh_dir(runs, &name)
                    .map_err(|e| ExecError::io("create a run directory in", runs, e))?;
                (dir, true)
            }
        };
        eprintln!("progc: running `{name}` into {}", out_dir.display());
        let result = start.run(&RunOptions {
            out_dir: out_dir.clone(),
            ..opts
        });
        if result.is_err() && claimed {
            // A run that failed before writing anything leaves no empty directory behind.
            let _ = std::fs::remove_dir(&out_dir);
        }
        finish_run(result, &out_dir)
    }

    fn experiment(&self, file: &Path, name: &str, opts: RunOptions, ctx: &Ctx) -> Outcome {
        let c = checked(file, &self.sets.set, ctx.color)?;
        if let Some(exp) = c.spec.experiments.iter().find(|e| e.name == name) {
            let runs: Vec<&str> = exp.runs.iter().map(String::as_str).collect();
            print_warnings_for(&c, &runs, ctx.color);
        }
        let select = Select {
            run: None,
            experiment: Some(name.to_string()),
        };
        let plans = select_plans(&c, &select, ctx.color)?;
        let plan = &plans[0];
        let out_dir = self
            .out
            .clone()
            .unwrap_or_else(|| Path::new("runs").join(name));
        let s = plan.sharing;
        eprintln!(
            "progc: experiment `{name}`: {} runs into {}; shared prefixes train {} steps instead \
             of {}",
            plan.runs.len(),
            out_dir.display(),
            s.steps_trained,
            s.steps_separate
        );
        let opts = RunOptions {
            out_dir: out_dir.clone(),
            ..opts
        };
        let Some(report) = run_experiment(plan, &opts)? else {
            return match crate::exec::jobs::stop::requested() {
                Some(signal) => {
                    eprintln!(
                        "progc: {} received: experiment stopped with its step saved; continue \
                         it with the same command: progc run {} --experiment {name} --out {}",
                        signal.name(),
                        file.display(),
                        out_dir.display()
                    );
                    Err(Failure::Stopped(signal))
                }
                None => {
                    eprintln!("progc: stopped early; run the same command again to continue");
                    Ok(())
                }
            };
        };
        println!("{}", to_markdown(&report));
        eprintln!(
            "progc: report written to {}",
            ExperimentDir::new(&out_dir).report_md().display()
        );
        Ok(())
    }
}

impl PeerArgs {
    /// The data-parallel peers, from `--devices` and the node flags (clap already requires
    /// the node flags together).
    fn topology(&self) -> Result<Option<Topology>, Failure> {
        let Some(list) = &self.devices else {
            if self.nodes.is_some() {
                return Err(usage(
                    "`--nodes` needs `--devices`, the devices of this node",
                    "for example `--devices cpu:1 --nodes 2 --node-rank 0 --orchestrator \
                     10.0.0.1:4100`",
                ));
            }
            return Ok(None);
        };
        let devices = parse_devices(list).map_err(|e| {
            usage(
                format!("bad --devices `{list}`: {e}"),
                "use `cpu:N` or a list such as `cuda:0,cuda:1`",
            )
        })?;
        let nodes = match (self.nodes, self.node_rank, &self.orchestrator) {
            (Some(count), Some(rank), Some(orchestrator)) => {
                if rank >= count {
                    return Err(usage(
                        format!("--node-rank {rank} is out of range for --nodes {count}"),
                        format!("ranks run from 0 to {}", count - 1),
                    ));
                }
                let has_port = orchestrator
                    .rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
                if !has_port {
                    return Err(usage(
                        format!("--orchestrator `{orchestrator}` is not HOST:PORT"),
                        "node 0's address, for example `--orchestrator 10.0.0.1:4100`",
                    ));
                }
                Some(Nodes {
                    count,
                    rank,
                    orchestrator: orchestrator.clone(),
                })
            }
            (None, None, None) => None,
            _ => unreachable!("clap requires --nodes, --node-rank and --orchestrator together"),
        };
        Ok(Some(Topology {
            devices,
            nodes,
            peer_timeout: std::time::Duration::from_secs(self.peer_timeout),
        }))
    }
}

/// A `--device` value, or the error in the CLI's style (clap prints it after its own
/// `error: invalid value ...` line).
pub fn device(s: &str) -> Result<DeviceChoice, String> {
    s.parse().map_err(|e: String| {
        // `cuda:x` has a colon of its own: cut at the message's `: expected ...` tail.
        let (what, _) = e.split_once(": expected").unwrap_or((&e, ""));
        format!(
            "{what}\n  help: use {} (N a device index)",
            DeviceChoice::spellings()
        )
    })
}

/// `base/name`, or `base/name-2`, `-3`, ... when taken, created here: `create_dir` succeeds
/// for one process only, so two runs started together get two directories, and an earlier
/// run is never overwritten.
fn fresh_dir(base: &Path, name: &str) -> Result<PathBuf, std::io::Error> {
    std::fs::create_dir_all(base)?;
    for i in 1.. {
        let p = if i == 1 {
            base.join(name)
        } else {
            base.join(format!("{name}-{i}"))
        };
        match std::fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("an unbounded range")
}

/// The summary of a finished run; for a run stopped by a signal after saving its step, where
/// it stopped and how to go on.
fn finish_run(result: Result<Summary, ExecError>, dir: &Path) -> Outcome {
    let summary = result?;
    let Some(signal) = crate::exec::jobs::stop::requested() else {
        println!("{}", summary.to_text());
        return Ok(());
    };
    let of = RunDir::new(dir)
        .read_plan()
        .map_or(String::new(), |p| format!(" of {}", p.spec.total_steps));
    eprintln!(
        "progc: {} received: stopped at step {}{of}; resume with: progc run --resume {}",
        signal.name(),
        summary.total_steps,
        dir.display()
    );
    Err(Failure::Stopped(signal))
}

/// Readers need no lock, but say when they read a run that is still training.
pub fn note_writer(run_dir: &Path) {
    if let Some(h) = crate::exec::io::lock::holder(run_dir) {
        eprintln!(
            "progc: note: {} is still being written by {h}; this reads its latest checkpoint \
             so far",
            run_dir.display()
        );
    }
}
