//! The subcommands. Each returns the process exit code.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::args::{
    Cli, Command, DiagFormat, PeerArgs, PlanFormat, Select, ShardFormat, TokenizerArg,
};
use super::report::{count, print_diagnostics, print_exec_error, use_color};
use crate::check::{check, suggest::did_you_mean};
use crate::diagnostic::{CODES, Code, Diagnostic, SourceMap, Span, has_errors, render};
use crate::exec::device::DeviceChoice;
use crate::exec::experiment::{read_plan, run_experiment};
use crate::exec::io::{ExportFormat, ExportOptions, export};
use crate::exec::parallel::{Nodes, Topology, parse_devices};
use crate::exec::report::{to_markdown, write_report};
use crate::exec::sample::{SampleOptions, sample};
use crate::exec::train::{self, RunOptions, Tuning};
use crate::plan::render::{render_dot, render_json, render_text};
use crate::plan::spec::ProgramSpec;
use crate::plan::{Plan, compile_experiment, compile_run};
use crate::syntax::{Program, load_program};

const EXIT_OK: i32 = 0;
const EXIT_IO: i32 = 1;
const EXIT_USER: i32 = 2;

pub fn dispatch(cli: Cli) -> i32 {
    let color = use_color(cli.color);
    match cli.command {
        Command::Check {
            files,
            format,
            deny_warnings,
            sets,
        } => cmd_check(&files, format, deny_warnings, &sets.set, color),
        Command::Plan {
            file,
            select,
            format,
            sets,
        } => cmd_plan(&file, &select, format, &sets.set, color),
        Command::Run {
            file,
            run,
            experiment,
            device,
            out,
            resume,
            stop_after,
            no_progress,
            precision,
            log_every,
            peers,
            sets,
        } => {
            let parallel = match topology(&peers) {
                Ok(t) => t,
                Err(msg) => {
                    eprintln!("error: {msg}");
                    return EXIT_USER;
                }
            };
            let tuning = Tuning {
                precision,
                log_every,
            };
            let device = match DeviceChoice::from_str(&device) {
                Ok(d) => d,
                Err(msg) => {
                    eprintln!("error: {msg}\n  help: use --device auto, cpu, cuda or cuda:N");
                    return EXIT_USER;
                }
            };
            let run_opts = RunOpts {
                device,
                out,
                progress: !no_progress,
                stop_after,
                color,
                tuning,
                parallel,
            };
            crate::exec::stop::install();
            match (resume, file) {
                (Some(dir), _) => {
                    finish_run(train::resume(&dir, &run_opts.for_dir(dir.clone())), &dir)
                }
                (None, Some(file)) => match experiment {
                    Some(exp) => cmd_run_experiment(&file, &exp, &sets.set, run_opts),
                    None => cmd_run(&file, run.as_deref(), &sets.set, run_opts),
                },
                (None, None) => unreachable!("clap requires FILE unless --resume"),
            }
        }
        Command::Report { dir } => cmd_report(&dir),
        Command::Tokenize {
            inputs,
            out,
            format,
            tokenizer,
            val,
            shard_tokens,
            no_progress,
        } => cmd_tokenize(
            inputs,
            out,
            format,
            tokenizer,
            val.as_deref(),
            shard_tokens,
            !no_progress,
        ),
        Command::Export {
            run_dir,
            to,
            out_dir,
            checkpoint,
            force,
            no_eval,
        } => cmd_export(&run_dir, &to, out_dir, checkpoint, force, !no_eval),
        Command::Sample {
            run_dir,
            prompt,
            tokens,
            temperature,
            top_k,
            seed,
            device,
            checkpoint,
        } => {
            let Ok(device) = DeviceChoice::from_str(&device) else {
                eprintln!(
                    "error: unknown device `{device}`\n  help: use --device cpu, cuda or cuda:N"
                );
                return EXIT_USER;
            };
            let opts = SampleOptions {
                tokens,
                temperature,
                top_k,
                seed,
            };
            cmd_sample(run_dir, checkpoint, prompt, opts, device)
        }
        Command::Fmt { files, check } => cmd_fmt(&files, check, color),
        Command::Lsp => match crate::lsp::run_stdio() {
            Ok(()) => EXIT_OK,
            Err(err) => {
                eprintln!("error: the language server stopped: {err}");
                EXIT_IO
            }
        },
        Command::Explain { code } => cmd_explain(code.as_deref()),
    }
}

/// `progc fmt`: rewrites each file in place (or, with `--check`, lists those it would change).
/// A file that does not parse is reported and left untouched. Exit 2 for such files, else 1
/// for IO failures or (with `--check`) unformatted files, else 0.
fn cmd_fmt(files: &[PathBuf], check_only: bool, color: bool) -> i32 {
    use crate::syntax::fmt::{FmtError, format_source};
    let mut exit = EXIT_OK;
    for file in files {
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(err) => {
                eprintln!("error: cannot read {}: {err}", file.display());
                eprintln!("  help: check the path; recipe files usually end in `.prog`");
                exit = exit.max(EXIT_IO);
                continue;
            }
        };
        let mut map = SourceMap::new();
        let text = match crate::syntax::load::decode(bytes) {
            Ok(text) => text,
            Err((text, at)) => {
                let id = map.add(file.display().to_string(), text.clone());
                let d = crate::syntax::load::not_utf8(id, &text, at);
                print_diagnostics(&[d], &map, color);
                exit = EXIT_USER;
                continue;
            }
        };
        let id = map.add(file.display().to_string(), text.clone());
        match format_source(id, &text) {
            Ok(out) if out == text => {}
            Ok(_) if check_only => {
                println!("{}", file.display());
                exit = exit.max(EXIT_IO);
            }
            Ok(out) => match std::fs::write(file, out) {
                Ok(()) => eprintln!("formatted {}", file.display()),
                Err(err) => {
                    eprintln!("error: cannot write {}: {err}", file.display());
                    exit = exit.max(EXIT_IO);
                }
            },
            Err(FmtError::Syntax(diags)) => {
                print_diagnostics(&diags, &map, color);
                exit = EXIT_USER;
            }
            Err(FmtError::Internal(msg)) => {
                eprintln!("error: cannot format {}: {msg}", file.display());
                eprintln!("  help: this is a bug in progc fmt; the file is left as it was");
                exit = exit.max(EXIT_IO);
            }
        }
    }
    exit
}

/// Loads and checks one file. `Err(code)` when it could not be read.
fn load_and_check(
    file: &Path,
    sets: &[String],
) -> Result<(Program, ProgramSpec, Vec<Diagnostic>), i32> {
    let (program, mut diags) = match load_program(file, sets) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("error: cannot read {}: {err}", file.display());
            eprintln!("  help: check the path; recipe files usually end in `.prog`");
            return Err(EXIT_IO);
        }
    };
    let (spec, more) = check(&program);
    diags.extend(more);
    Ok((program, spec, diags))
}

fn cmd_check(
    files: &[PathBuf],
    format: DiagFormat,
    deny_warnings: bool,
    sets: &[String],
    color: bool,
) -> i32 {
    let mut exit = EXIT_OK;
    let mut json_items: Vec<serde_json::Value> = Vec::new();
    let (mut errors, mut warnings) = (0, 0);
    for file in files {
        let (program, _spec, diags) = match load_and_check(file, sets) {
            Ok(x) => x,
            Err(code) => {
                exit = exit.max(code);
                continue;
            }
        };
        let (e, w) = count(&diags);
        errors += e;
        warnings += w;
        match format {
            DiagFormat::Text => {
                for d in &diags {
                    eprint!("{}", render::render(d, &program.sources, color));
                }
            }
            DiagFormat::Json => {
                let text = render::to_json(&diags, &program.sources);
                if let Ok(serde_json::Value::Array(items)) = serde_json::from_str(&text) {
                    json_items.extend(items);
                }
            }
        }
    }
    match format {
        DiagFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json_items).unwrap_or_else(|_| "[]".into())
        ),
        DiagFormat::Text => {
            if errors + warnings > 0 {
                eprintln!("{}", super::report::count_line(errors, warnings));
            } else if exit == EXIT_OK {
                let n = files.len();
                eprintln!(
                    "progc: {n} file{} checked, no problems",
                    if n == 1 { "" } else { "s" }
                );
            }
        }
    }
    if errors > 0 || (deny_warnings && warnings > 0) {
        exit = exit.max(EXIT_USER);
    }
    exit
}

/// Names of the recipes defined in the entry file itself, in order.
fn entry_recipes(program: &Program) -> Vec<String> {
    program.modules.first().map_or_else(Vec::new, |m| {
        m.items
            .iter()
            .filter_map(|i| match i {
                crate::syntax::ast::Item::Recipe { name, .. } => Some(name.name.clone()),
                _ => None,
            })
            .collect()
    })
}

/// A P0111 diagnostic for a `--run` / `--experiment` name that does not exist.
fn unknown_selection(
    flag: &str,
    name: &str,
    known: &[String],
    what: &str,
) -> (Diagnostic, SourceMap) {
    let mut map = SourceMap::new();
    let text = format!("{flag} {name}");
    let file = map.add("<command line>", text.clone());
    let span = Span::new(file, flag.len() + 1, text.len());
    let mut diag = Diagnostic::new(Code::P0111, span, format!("no {what} named `{name}`"))
        .with_label(format!("not a {what} of this program"));
    diag = match did_you_mean(name, known.iter().map(String::as_str)) {
        Some(s) => diag.with_help(s),
        None if known.is_empty() => diag.with_help(format!("this program defines no {what}")),
        None => diag.with_help(format!("the program defines: {}", known.join(", "))),
    };
    (diag, map)
}

fn cmd_plan(file: &Path, select: &Select, format: PlanFormat, sets: &[String], color: bool) -> i32 {
    let (program, spec, warnings) = match checked(file, sets, color) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let experiment = select
        .experiment
        .as_ref()
        .and_then(|n| spec.experiments.iter().find(|e| &e.name == n));
    match (&select.run, experiment) {
        (Some(run), _) => print_warnings_for(&program, &warnings, &[run.as_str()], color),
        (None, Some(exp)) => {
            let runs: Vec<&str> = exp.runs.iter().map(String::as_str).collect();
            print_warnings_for(&program, &warnings, &runs, color);
        }
        (None, None) => print_diagnostics(&warnings, &program.sources, color),
    }
    let plans = match select_plans(&program, &spec, select, color) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let out = match format {
        PlanFormat::Text => plans.iter().map(render_text).collect::<Vec<_>>().join("\n"),
        PlanFormat::Dot => plans.iter().map(render_dot).collect::<Vec<_>>().join("\n"),
        PlanFormat::Json if plans.len() == 1 => render_json(&plans[0]),
        PlanFormat::Json => {
            let items: Vec<serde_json::Value> = plans
                .iter()
                .filter_map(|p| serde_json::to_value(p).ok())
                .collect();
            serde_json::to_string_pretty(&items).unwrap_or_else(|_| "[]".into())
        }
    };
    println!("{}", out.trim_end());
    EXIT_OK
}

fn select_plans(
    program: &Program,
    spec: &ProgramSpec,
    select: &Select,
    color: bool,
) -> Result<Vec<Plan>, i32> {
    if let Some(name) = &select.experiment {
        let Some(exp) = spec.experiments.iter().find(|e| &e.name == name) else {
            let known: Vec<String> = spec.experiments.iter().map(|e| e.name.clone()).collect();
            let (d, map) = unknown_selection("--experiment", name, &known, "experiment");
            print_diagnostics(&[d], &map, color);
            return Err(EXIT_USER);
        };
        return Ok(vec![compile_experiment(exp, &spec.runs)]);
    }
    if let Some(name) = &select.run {
        return find_run(spec, name, color).map(|r| vec![compile_run(r)]);
    }
    let names = entry_recipes(program);
    if names.is_empty() {
        eprintln!(
            "error: {} defines no recipe",
            program.sources.get(crate::diagnostic::FileId(0)).name
        );
        eprintln!(
            "  help: plan a recipe from an imported file with --run NAME, or an experiment with --experiment NAME"
        );
        return Err(EXIT_USER);
    }
    Ok(names
        .iter()
        .filter_map(|n| spec.runs.iter().find(|r| &r.name == n))
        .map(compile_run)
        .collect())
}

fn find_run<'a>(
    spec: &'a ProgramSpec,
    name: &str,
    color: bool,
) -> Result<&'a crate::plan::spec::RunSpec, i32> {
    spec.runs.iter().find(|r| r.name == name).ok_or_else(|| {
        let known: Vec<String> = spec.runs.iter().map(|r| r.name.clone()).collect();
        let (d, map) = unknown_selection("--run", name, &known, "recipe");
        print_diagnostics(&[d], &map, color);
        EXIT_USER
    })
}

/// What `progc run` was asked for, beyond the recipe.
struct RunOpts {
    device: DeviceChoice,
    out: Option<PathBuf>,
    progress: bool,
    stop_after: Option<u64>,
    color: bool,
    tuning: Tuning,
    parallel: Option<Topology>,
}

impl RunOpts {
    fn for_dir(&self, out_dir: PathBuf) -> RunOptions {
        RunOptions {
            device: self.device,
            out_dir,
            progress: self.progress,
            stop_after: self.stop_after,
            checkpoint_at: Vec::new(),
            tuning: self.tuning,
            parallel: self.parallel.clone(),
        }
    }
}

/// The data-parallel peers of `progc run`, from `--devices` and the node flags (clap already
/// requires the node flags together).
fn topology(p: &PeerArgs) -> Result<Option<Topology>, String> {
    let Some(list) = &p.devices else {
        if p.nodes.is_some() {
            return Err(
                "`--nodes` needs `--devices`, the devices of this node\n  help: for \
                        example `--devices cpu:1 --nodes 2 --node-rank 0 --orchestrator \
                        10.0.0.1:4100`"
                    .into(),
            );
        }
        return Ok(None);
    };
    let devices = parse_devices(list).map_err(|e| {
        format!(
            "bad --devices `{list}`: {e}\n  help: use `cpu:N` or a list such as `cuda:0,cuda:1`"
        )
    })?;
    let nodes = match (p.nodes, p.node_rank, &p.orchestrator) {
        (Some(count), Some(rank), Some(orchestrator)) => {
            if rank >= count {
                return Err(format!(
                    "--node-rank {rank} is out of range for --nodes {count}\n  help: ranks \
                     run from 0 to {}",
                    count - 1
                ));
            }
            let has_port = orchestrator
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
            if !has_port {
                return Err(format!(
                    "--orchestrator `{orchestrator}` is not HOST:PORT\n  help: node 0's \
                     address, for example `--orchestrator 10.0.0.1:4100`"
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
        peer_timeout: std::time::Duration::from_secs(p.peer_timeout),
    }))
}

/// Loads, checks (printing the diagnostics) and returns the spec, or the exit code.
fn checked(
    file: &Path,
    sets: &[String],
    color: bool,
) -> Result<(Program, ProgramSpec, Vec<Diagnostic>), i32> {
    let (program, spec, diags) = load_and_check(file, sets)?;
    if has_errors(&diags) {
        print_diagnostics(&diags, &program.sources, color);
        return Err(EXIT_USER);
    }
    Ok((program, spec, diags))
}

/// Prints the warnings that concern `runs` (their recipes and the recipes they derive from);
/// the others are only counted, so running one recipe of a large file stays readable.
fn print_warnings_for(program: &Program, diags: &[Diagnostic], runs: &[&str], color: bool) {
    // Each recipe's extent: from its name to the next item's name in the same file.
    let mut extents: Vec<(
        String,
        Option<String>,
        crate::diagnostic::FileId,
        usize,
        usize,
    )> = Vec::new();
    for m in &program.modules {
        for (i, item) in m.items.iter().enumerate() {
            if let crate::syntax::ast::Item::Recipe { name, parent, .. } = item {
                let end = m.items[i + 1..]
                    .iter()
                    .find_map(|i| i.name())
                    .map_or(usize::MAX, |n| n.span.start);
                extents.push((
                    name.name.clone(),
                    parent.as_ref().map(|p| p.name.clone()),
                    m.file,
                    name.span.start,
                    end,
                ));
            }
        }
    }
    let mut wanted: Vec<String> = runs.iter().map(|r| r.to_string()).collect();
    let mut i = 0;
    while i < wanted.len() {
        let parent = extents
            .iter()
            .find(|e| e.0 == wanted[i])
            .and_then(|e| e.1.clone());
        if let Some(p) = parent.filter(|p| !wanted.contains(p)) {
            wanted.push(p);
        }
        i += 1;
    }
    let (shown, hidden): (Vec<Diagnostic>, Vec<Diagnostic>) =
        diags.iter().cloned().partition(|d| {
            extents.iter().any(|(name, _, file, start, end)| {
                wanted.contains(name)
                    && d.span.file == *file
                    && d.span.start >= *start
                    && d.span.start < *end
            })
        });
    print_diagnostics(&shown, &program.sources, color);
    if !hidden.is_empty() {
        eprintln!(
            "progc: {} more warning{} in other definitions (`progc check {}` shows them)",
            hidden.len(),
            if hidden.len() == 1 { "" } else { "s" },
            program.sources.get(crate::diagnostic::FileId(0)).name
        );
    }
}

fn cmd_run(file: &Path, run: Option<&str>, sets: &[String], opts: RunOpts) -> i32 {
    let (program, spec, warnings) = match checked(file, sets, opts.color) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let name = match run {
        Some(n) => n.to_string(),
        None => match entry_recipes(&program).as_slice() {
            [one] => one.clone(),
            [] => {
                eprintln!("error: {} defines no recipe to run", file.display());
                eprintln!(
                    "  help: name one with --run NAME, or an experiment with --experiment NAME"
                );
                return EXIT_USER;
            }
            many => {
                eprintln!(
                    "error: {} defines {} recipes: {}",
                    file.display(),
                    many.len(),
                    many.join(", ")
                );
                eprintln!("  help: choose one with --run NAME");
                return EXIT_USER;
            }
        },
    };
    let run_spec = match find_run(&spec, &name, opts.color) {
        Ok(r) => r,
        Err(code) => return code,
    };
    print_warnings_for(&program, &warnings, &[name.as_str()], opts.color);
    let plan = compile_run(run_spec);
    let Some(run_plan) = plan.runs.first() else {
        eprintln!("error: internal: the plan of `{name}` has no run");
        return EXIT_IO;
    };
    let (out_dir, claimed) = match &opts.out {
        Some(dir) => (dir.clone(), false),
        None => match fresh_dir(Path::new("runs"), &name) {
            Ok(dir) => (dir, true),
            Err(e) => {
                print_exec_error(&crate::exec::ExecError::io(
                    "create a run directory in",
                    Path::new("runs"),
                    e,
                ));
                return EXIT_IO;
            }
        },
    };
    eprintln!("progc: running `{name}` into {}", out_dir.display());
    let result = train::run(run_plan, &opts.for_dir(out_dir.clone()));
    if result.is_err() && claimed {
        // A run that failed before writing anything leaves no empty directory behind.
        let _ = std::fs::remove_dir(&out_dir);
    }
    finish_run(result, &out_dir)
}

fn cmd_run_experiment(file: &Path, name: &str, sets: &[String], opts: RunOpts) -> i32 {
    let (program, spec, warnings) = match checked(file, sets, opts.color) {
        Ok(x) => x,
        Err(code) => return code,
    };
    if let Some(exp) = spec.experiments.iter().find(|e| e.name == name) {
        let runs: Vec<&str> = exp.runs.iter().map(String::as_str).collect();
        print_warnings_for(&program, &warnings, &runs, opts.color);
    }
    let plans = match select_plans(
        &program,
        &spec,
        &Select {
            run: None,
            experiment: Some(name.to_string()),
        },
        opts.color,
    ) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let plan = &plans[0];
    let out_dir = opts
        .out
        .clone()
        .unwrap_or_else(|| Path::new("runs").join(name));
    let s = plan.sharing;
    eprintln!(
        "progc: experiment `{name}`: {} runs into {}; shared prefixes train {} steps instead of {}",
        plan.runs.len(),
        out_dir.display(),
        s.steps_trained,
        s.steps_separate
    );
    let exp_opts = opts.for_dir(out_dir.clone());
    match run_experiment(plan, &exp_opts) {
        Ok(Some(report)) => {
            println!("{}", to_markdown(&report));
            eprintln!(
                "progc: report written to {}",
                out_dir.join("report.md").display()
            );
            EXIT_OK
        }
        Ok(None) => match crate::exec::stop::requested() {
            Some(signal) => {
                eprintln!(
                    "progc: {} received: experiment stopped with its step saved; continue it \
                     with the same command: progc run {} --experiment {name} --out {}",
                    signal.name(),
                    file.display(),
                    out_dir.display()
                );
                signal.exit_code()
            }
            None => {
                eprintln!("progc: stopped early; run the same command again to continue");
                EXIT_OK
            }
        },
        Err(err) => {
            print_exec_error(&err);
            EXIT_IO
        }
    }
}

fn cmd_report(dir: &Path) -> i32 {
    let result = read_plan(dir).and_then(|plan| write_report(dir, &plan));
    match result {
        Ok(report) => {
            println!("{}", to_markdown(&report));
            eprintln!(
                "progc: report written to {}",
                dir.join("report.md").display()
            );
            EXIT_OK
        }
        Err(err) => {
            print_exec_error(&err);
            EXIT_IO
        }
    }
}

fn cmd_tokenize(
    inputs: Vec<PathBuf>,
    out: PathBuf,
    format: ShardFormat,
    tokenizer: TokenizerArg,
    val: Option<&str>,
    shard_tokens: u64,
    progress: bool,
) -> i32 {
    use crate::exec::data::tokenize::{TokenizeOptions, tokenize};
    use crate::plan::spec::{DataFormat, Tokenizer};
    let val_fraction = match val.map(parse_fraction) {
        None => 0.0,
        Some(Some(x)) if (0.0..1.0).contains(&x) => x,
        Some(_) => {
            eprintln!(
                "error: --val `{}` is not a fraction below 100%\n  = help: write e.g. `--val 1%` or `--val 0.01`",
                val.unwrap_or_default()
            );
            return EXIT_USER;
        }
    };
    let opts = TokenizeOptions {
        inputs,
        out: out.clone(),
        format: match format {
            ShardFormat::Nanogpt => DataFormat::Nanogpt,
            ShardFormat::Llmc => DataFormat::Llmc,
        },
        tokenizer: match tokenizer {
            TokenizerArg::Gpt2 => Tokenizer::Gpt2,
            TokenizerArg::Bytes => Tokenizer::Bytes,
        },
        val_fraction,
        shard_tokens: shard_tokens as usize,
        progress,
    };
    match tokenize(&opts) {
        Ok(s) => {
            for w in s.train.iter().chain(&s.val) {
                println!("wrote {} ({} tokens)", w.path.display(), w.tokens);
            }
            let name = |w: &[crate::exec::data::tokenize::Written], split: &str| {
                if w.len() > 1 {
                    format!("{}/{split}_*.bin", out.display())
                } else {
                    w.first()
                        .map(|w| w.path.display().to_string())
                        .unwrap_or_default()
                }
            };
            let val = if s.val.is_empty() {
                "5%".to_string()
            } else {
                format!("\"{}\"", name(&s.val, "val"))
            };
            println!(
                "use it in a recipe (paths resolve against the recipe's folder):\n  data d = tokens(\"{}\", val: {val}, format: {}, tokenizer: {})",
                name(&s.train, "train"),
                opts.format.name(),
                opts.tokenizer.name()
            );
            EXIT_OK
        }
        Err(err) => {
            print_exec_error(&err);
            EXIT_IO
        }
    }
}

/// `1%` or `0.01`.
fn parse_fraction(s: &str) -> Option<f64> {
    match s.trim().strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok().map(|x| x / 100.0),
        None => s.trim().parse().ok(),
    }
    .filter(|x: &f64| x.is_finite())
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

/// A run stopped by a signal after saving its step: where it stopped and how to go on.
fn stopped_by(
    signal: crate::exec::stop::Signal,
    summary: &crate::exec::metrics::Summary,
    dir: &Path,
) -> i32 {
    let of = std::fs::read_to_string(dir.join("run.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["spec"]["total_steps"].as_u64())
        .map_or(String::new(), |m| format!(" of {m}"));
    eprintln!(
        "progc: {} received: stopped at step {}{of}; resume with: progc run --resume {}",
        signal.name(),
        summary.total_steps,
        dir.display()
    );
    signal.exit_code()
}

fn finish_run(
    result: Result<crate::exec::metrics::Summary, crate::exec::ExecError>,
    dir: &Path,
) -> i32 {
    match result {
        Ok(summary) => {
            if let Some(signal) = crate::exec::stop::requested() {
                return stopped_by(signal, &summary, dir);
            }
            println!("{}", summary.to_text());
            EXIT_OK
        }
        Err(err) => {
            print_exec_error(&err);
            EXIT_IO
        }
    }
}

/// Readers need no lock, but say when they read a run that is still training.
fn note_writer(run_dir: &Path) {
    if let Some(h) = crate::exec::io::lock::holder(run_dir) {
        eprintln!(
            "progc: note: {} is still being written by {h}; this reads its latest checkpoint \
             so far",
            run_dir.display()
        );
    }
}

fn cmd_export(
    run_dir: &Path,
    to: &str,
    out_dir: PathBuf,
    checkpoint: Option<PathBuf>,
    force: bool,
    eval: bool,
) -> i32 {
    note_writer(run_dir);
    let result = ExportFormat::parse(to).and_then(|format| {
        let opts = ExportOptions {
            format,
            out_dir,
            checkpoint,
            force,
            eval,
        };
        export(run_dir, &opts)
    });
    match result {
        Ok(r) => {
            println!(
                "exported step {} (depth {}) of {} to {}",
                r.step,
                r.depth,
                r.checkpoint.display(),
                r.out_dir.display()
            );
            if let Some((loss, windows)) = r.val {
                println!("progc val loss {loss:.6} on {windows} windows (progc_eval.json)");
            }
            EXIT_OK
        }
        Err(err) => {
            print_exec_error(&err);
            EXIT_IO
        }
    }
}

fn cmd_sample(
    run_dir: PathBuf,
    checkpoint: Option<PathBuf>,
    prompt: String,
    opts: SampleOptions,
    device: DeviceChoice,
) -> i32 {
    if let Err(err) = opts.validate() {
        print_exec_error(&err);
        return EXIT_USER;
    }
    note_writer(&run_dir);
    match sample(run_dir, checkpoint, prompt, opts, device) {
        Ok(s) => {
            println!("{}{}", s.prompt, s.continuation);
            eprintln!("progc: sampled from step {}", s.step);
            EXIT_OK
        }
        Err(err) => {
            print_exec_error(&err);
            EXIT_IO
        }
    }
}

fn cmd_explain(code: Option<&str>) -> i32 {
    let Some(code) = code else {
        println!("Diagnostic codes (progc explain CODE for details):\n");
        for c in CODES {
            let sev = match c.severity {
                crate::diagnostic::Severity::Error => "error",
                crate::diagnostic::Severity::Warning => "warning",
            };
            println!("  {}  {:<8} {}", c.name, sev, c.title);
        }
        return EXIT_OK;
    };
    match Code::parse(code) {
        Some(c) => {
            println!("{}", c.info().explain.trim_end());
            EXIT_OK
        }
        None => {
            eprintln!("error: no diagnostic code `{code}`");
            let names = CODES.iter().map(|c| c.name);
            match did_you_mean(&code.to_uppercase(), names) {
                Some(s) => eprintln!("  help: {s} (`progc explain` lists every code)"),
                None => {
                    eprintln!("  help: codes look like P0402; `progc explain` lists every code")
                }
            }
            EXIT_USER
        }
    }
}
