//! Tidy: the rules the rooms' `mod.rs` files state, checked on the source text, so that a new
//! leak fails `cargo test` instead of waiting for a reviewer (rust-analyzer's `tidy.rs` habit).
//!
//! The rules, each one a `mod.rs` invariant (see ARCHITECTURE.md):
//! - the layers: cli -> jobs -> device -> io -> network -> front. A room of the executor names
//!   only the rooms below it (and `exec::error`, which every room shares);
//! - concrete backends (`burn::backend::*`, `burn_flex`, `burn_cubecl`, `burn_fusion`) are
//!   named only by `device/` (dispatch and the runtimes it starts) and by the kernels'
//!   implementation for a backend (`network/kernels/{flex,autodiff}.rs`, `network/kernels/cube/`);
//! - `network` reads and writes no file and prints nothing; `jobs` touches files only through
//!   `io`; `cli` never touches burn;
//! - the front end is a crate that cannot reach burn, a GPU runtime or an async runtime.
//!
//! Test code (a file's `#[cfg(test)] mod tests` at its end) is exempt: tests may name a backend
//! or write a scratch file.

use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The executor's rooms, lowest first; a room may name the rooms before it in this list.
const LAYERS: [&str; 4] = ["network", "io", "device", "jobs"];

/// Modules of `exec` that are not rooms and every room may name.
const SHARED: [&str; 1] = ["error"];

/// Paths that name a concrete backend.
const BACKEND_PATHS: [&str; 4] = ["burn::backend::", "burn_flex", "burn_cubecl", "burn_fusion"];

/// Where a backend may be named (prefixes of paths relative to `src/exec/`).
const BACKEND_HOMES: [&str; 4] = [
    "device/",
    "network/kernels/flex.rs",
    "network/kernels/autodiff.rs",
    "network/kernels/cube/",
];

/// What touches the file system.
const FS_PATHS: [&str; 3] = ["std::fs", "fs::", "File::"];

/// What prints.
const PRINTS: [&str; 4] = ["println!", "eprintln!", "print!(", "eprint!("];

/// Dependencies the front end must never have (`front/Cargo.toml`).
const FRONT_FORBIDDEN: [&str; 6] = ["burn", "cubecl", "wgpu", "tokio", "tokenizers", "gemm"];

/// One line of non-test source code.
struct Line {
    file: PathBuf,
    number: usize,
    text: String,
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The code lines of `file`: comments dropped, and nothing from its `#[cfg(test)]` module on.
fn code_lines(file: &Path) -> Vec<Line> {
    let text = fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let test_module = |w: &[&str]| {
        let module = w[1]
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub ");
        w[0].starts_with("#[cfg(") && w[0].contains("test") && module.starts_with("mod tests")
    };
    let end = lines
        .windows(2)
        .position(test_module)
        .unwrap_or(lines.len());
    lines[..end]
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let code = l.split("//").next().unwrap_or("").trim();
            (!code.is_empty()).then(|| Line {
                file: file.to_path_buf(),
                number: i + 1,
                text: code.to_string(),
            })
        })
        .collect()
}

/// The path of `file` relative to `src/exec/`, with `/` separators.
fn in_exec(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(Path::new(ROOT).join("src/exec")).ok()?;
    Some(rel.to_string_lossy().replace('\\', "/"))
}

/// The executor room a file belongs to, if any.
fn room_of(file: &Path) -> Option<&'static str> {
    let rel = in_exec(file)?;
    LAYERS
        .into_iter()
        .find(|r| rel.starts_with(&format!("{r}/")))
}

/// The executor modules a line names through `crate::exec::`.
fn named_rooms(text: &str) -> Vec<String> {
    text.match_indices("crate::exec::")
        .map(|(i, m)| {
            text[i + m.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// A word of `pattern` in `text`, not inside a longer identifier on its left.
fn mentions(text: &str, pattern: &str) -> bool {
    text.match_indices(pattern).any(|(i, _)| {
        !text[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

fn report(problems: &[String], rule: &str) {
    assert!(
        problems.is_empty(),
        "{rule}:\n  {}\n(the rule is stated in ARCHITECTURE.md and the room's mod.rs; move the \
         code to the room that owns it rather than loosening the rule)",
        problems.join("\n  ")
    );
}

fn at(line: &Line) -> String {
    let rel = line.file.strip_prefix(ROOT).unwrap_or(&line.file);
    format!("{}:{}: {}", rel.display(), line.number, line.text)
}

/// Problems in `lines` for the layering rule: each room names only the rooms below it.
fn layer_problems(lines: &[Line]) -> Vec<String> {
    let mut problems = Vec::new();
    for line in lines {
        let Some(room) = room_of(&line.file) else {
            continue;
        };
        let rank = LAYERS.iter().position(|r| *r == room).unwrap();
        for named in named_rooms(&line.text) {
            let allowed =
                SHARED.contains(&named.as_str()) || LAYERS[..=rank].contains(&named.as_str());
            if !allowed {
                problems.push(format!("{} (`{room}` names `{named}`)", at(line)));
            }
        }
    }
    problems
}

fn backend_problems(lines: &[Line]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| BACKEND_PATHS.iter().any(|p| mentions(&l.text, p)))
        .filter(|l| {
            let home = in_exec(&l.file)
                .is_some_and(|rel| BACKEND_HOMES.iter().any(|h| rel.starts_with(h)));
            !home
        })
        .map(at)
        .collect()
}

fn all_lines(dir: &str) -> Vec<Line> {
    rust_files(&Path::new(ROOT).join(dir))
        .iter()
        .flat_map(|f| code_lines(f))
        .collect()
}

fn lines_of_room(room: &str) -> Vec<Line> {
    all_lines(&format!("src/exec/{room}"))
}

#[test]
fn each_room_names_only_the_rooms_below_it() {
    report(
        &layer_problems(&all_lines("src/exec")),
        "a room names a room above it (layers, lowest first: front, network, io, device, jobs; \
         cli above all)",
    );
}

#[test]
fn backends_are_named_only_by_device_and_the_kernels() {
    report(
        &backend_problems(&all_lines("src")),
        "a concrete backend is named outside device/ and the kernels' backend implementations",
    );
}

#[test]
fn network_touches_no_file_and_prints_nothing() {
    let lines = lines_of_room("network");
    let problems: Vec<String> = lines
        .iter()
        .filter(|l| {
            FS_PATHS.iter().any(|p| mentions(&l.text, p))
                || PRINTS.iter().any(|p| mentions(&l.text, p))
        })
        .map(at)
        .collect();
    report(&problems, "`network` reads or writes a file, or prints");
}

#[test]
fn jobs_touch_files_only_through_io() {
    let problems: Vec<String> = lines_of_room("jobs")
        .iter()
        .filter(|l| FS_PATHS.iter().any(|p| mentions(&l.text, p)))
        .map(at)
        .collect();
    report(
        &problems,
        "`jobs` touches the file system directly instead of through `io`",
    );
}

#[test]
fn cli_never_touches_burn() {
    let problems: Vec<String> = all_lines("src/cli")
        .iter()
        .filter(|l| mentions(&l.text, "burn"))
        .map(at)
        .collect();
    report(&problems, "`cli` names burn");
}

#[test]
fn the_front_end_cannot_reach_burn() {
    let manifest = fs::read_to_string(Path::new(ROOT).join("front/Cargo.toml")).unwrap();
    let mut section = "";
    let mut problems = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        let dependency = section.ends_with("dependencies]");
        let name = line.split(['=', ' ', '.']).next().unwrap_or("");
        if dependency && FRONT_FORBIDDEN.iter().any(|f| name.starts_with(f)) {
            problems.push(format!("front/Cargo.toml {section}: {line}"));
        }
    }
    report(
        &problems,
        "the front end depends on a crate it must never reach",
    );
}

/// The rules above must catch what they are written for: each is given a leak to find.
#[test]
fn the_rules_catch_a_deliberate_leak() {
    let line = |file: &str, text: &str| Line {
        file: Path::new(ROOT).join(file),
        number: 1,
        text: text.into(),
    };
    let leaks = [
        line(
            "src/exec/io/export.rs",
            "use crate::exec::jobs::train::validation_losses;",
        ),
        line(
            "src/exec/network/kernels/cube/mod.rs",
            "crate::exec::device::panic_message(p)",
        ),
        line(
            "src/exec/network/grow.rs",
            "use crate::exec::io::checkpoint::Checkpoint;",
        ),
    ];
    for leak in &leaks {
        assert_eq!(
            layer_problems(std::slice::from_ref(leak)).len(),
            1,
            "{}",
            leak.text
        );
    }
    let fine = [
        line(
            "src/exec/jobs/train.rs",
            "use crate::exec::device::dispatch;",
        ),
        line(
            "src/exec/io/export.rs",
            "use crate::exec::network::model::Gpt2;",
        ),
        line(
            "src/exec/network/optim.rs",
            "use crate::exec::error::ExecError;",
        ),
    ];
    for ok in &fine {
        assert!(
            layer_problems(std::slice::from_ref(ok)).is_empty(),
            "{}",
            ok.text
        );
    }
    let named = line(
        "src/exec/io/export.rs",
        "let m = run.model::<burn::backend::Flex>(&d)?;",
    );
    assert_eq!(backend_problems(std::slice::from_ref(&named)).len(), 1);
    let home = line(
        "src/exec/device/dispatch.rs",
        "type Cpu = burn::backend::Flex;",
    );
    assert!(backend_problems(std::slice::from_ref(&home)).is_empty());
    assert!(mentions("std::fs::write(p, b)", "std::fs"));
    assert!(!mentions("let my_fs::x = 1", "fs::"));
    assert_eq!(named_rooms("use crate::exec::io::data::Batch;"), ["io"]);
}

/// The scan must see the source: an empty walk would pass every rule.
#[test]
fn the_scan_reads_every_room() {
    for room in LAYERS {
        assert!(
            lines_of_room(room).len() > 100,
            "src/exec/{room} yielded too few lines"
        );
    }
    assert!(all_lines("src/cli").len() > 100);
}
