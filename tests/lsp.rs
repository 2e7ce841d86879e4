//! `progc lsp` spoken to over stdio, as an editor would: initialize, open a file with a typo
//! (P0104 at its exact range), fix it (no diagnostics), hover, go to definition (in the file
//! and into the std library), completion, formatting, shutdown and exit. Every wait is bounded,
//! so a server that hangs fails the test instead of hanging it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use serde_json::{Value, json};

#[path = "../src/testing.rs"]
mod testing;
use testing::scratch;

const WAIT: Duration = Duration::from_secs(20);

struct Client {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
    next_id: i64,
}

impl Client {
    /// Starts `progc lsp` with its std cache in `cache`.
    fn start(cache: &Path) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_progc"))
            .arg("lsp")
            .env("PROGC_CACHE_DIR", cache)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starts progc lsp");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = channel();
        // Reads framed messages until the server closes its stdout.
        std::thread::spawn(move || {
            loop {
                let mut len = None;
                loop {
                    let mut line = String::new();
                    if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = v.parse::<usize>().ok();
                    }
                }
                let mut body = vec![0; len.expect("Content-Length header")];
                if stdout.read_exact(&mut body).is_err() {
                    return;
                }
                let msg: Value = serde_json::from_slice(&body).expect("JSON body");
                if tx.send(msg).is_err() {
                    return;
                }
            }
        });
        Client {
            child,
            stdin,
            rx,
            next_id: 1,
        }
    }

    fn send(&mut self, msg: Value) {
        let body = msg.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Sends a request and returns its result (skipping notifications in between).
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let msg = self
                .rx
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("no answer to {method} within {WAIT:?}"));
            if msg["id"] == json!(id) {
                assert!(msg.get("error").is_none(), "{method} failed: {msg}");
                return msg["result"].clone();
            }
        }
    }

    /// The next publishDiagnostics notification.
    fn diagnostics(&mut self) -> Value {
        loop {
            let msg = self
                .rx
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("no diagnostics within {WAIT:?}"));
            if msg["method"] == "textDocument/publishDiagnostics" {
                return msg["params"].clone();
            }
        }
    }
}

const TYPO: &str = "import \"std/gpt2.prog\"\nimport \"std/schedules.prog\"\n\n\
data emma = text(\"data/emma.txt\", tokenizer: bytes, val: 10%)\n\n\
recipe tiny {\n  model      = gpt2_tiny { widht: 128 }\n  data       = emma\n  \
steps      = 1500\n  batch      = 8 x 128\n  optimizer  = adamw_tiny\n  \
schedule   = wsd_paper\n  start depth 0\n  grow at 80% to depth 6 { init: random }\n}\n";

#[test]
fn an_editor_session() {
    let tmp = scratch("lsp");
    let dir = tmp.path();
    let path = dir.join("tiny.prog");
    std::fs::write(&path, TYPO).unwrap();
    let uri = format!("file://{}", path.display());
    let mut c = Client::start(&dir.join("cache"));

    let init = c.request(
        "initialize",
        json!({"processId": null, "rootUri": null, "capabilities": {}}),
    );
    let caps = &init["capabilities"];
    assert_eq!(caps["hoverProvider"], json!(true), "{init}");
    assert_eq!(caps["definitionProvider"], json!(true), "{init}");
    assert_eq!(caps["documentFormattingProvider"], json!(true), "{init}");
    c.notify("initialized", json!({}));

    // didOpen with a typo: P0104 exactly on `widht` (line 6, columns 27..32).
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "prog", "version": 1, "text": TYPO}}),
    );
    let d = c.diagnostics();
    assert_eq!(d["uri"], json!(uri));
    let diags = d["diagnostics"].as_array().unwrap();
    assert_eq!(diags.len(), 1, "{d}");
    let line = TYPO.lines().nth(6).unwrap();
    let col = line.find("widht").unwrap() as u64;
    assert_eq!(diags[0]["code"], "P0104");
    assert_eq!(
        diags[0]["range"],
        json!({"start": {"line": 6, "character": col}, "end": {"line": 6, "character": col + 5}})
    );
    let message = diags[0]["message"].as_str().unwrap();
    assert!(message.starts_with("unknown field `widht`"), "{message}");
    assert!(message.contains("help: "), "{message}");
    assert!(
        message.contains("width"),
        "the help suggests `width`: {message}"
    );

    // didChange that fixes it: empty diagnostics.
    let fixed = TYPO.replace("widht", "width");
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": fixed}]}),
    );
    let d = c.diagnostics();
    assert_eq!(d["diagnostics"], json!([]), "{d}");

    // Hover on the recipe's name: its plan summary.
    // The position `k` characters into the first occurrence of `needle`.
    let at = |text: &str, needle: &str, k: usize| -> Value {
        let (i, l) = text
            .lines()
            .enumerate()
            .find(|(_, l)| l.contains(needle))
            .unwrap();
        json!({"line": i, "character": l.find(needle).unwrap() + k})
    };
    let hover = c.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": uri}, "position": at(&fixed, "tiny {", 1)}),
    );
    let value = hover["contents"]["value"].as_str().unwrap_or_default();
    assert!(value.contains("recipe** `tiny`"), "{hover}");
    assert!(value.contains("2 segments"), "{value}");
    assert!(value.contains("depth 0: steps 0..1200"), "{value}");
    assert!(value.contains("projected saving"), "{value}");

    // Hover on a std model: its fields, resolved through `= gpt2`.
    let hover = c.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": uri}, "position": at(&fixed, "gpt2_tiny", 1)}),
    );
    let value = hover["contents"]["value"].as_str().unwrap_or_default();
    assert!(value.contains("width: `128`"), "{value}");
    assert!(
        value.contains("mlp_ratio: `4`"),
        "inherited from gpt2: {value}"
    );

    // Definition of `emma`: its line in this file.
    let def = c.request(
        "textDocument/definition",
        json!({"textDocument": {"uri": uri}, "position": at(&fixed, "= emma", 3)}),
    );
    assert_eq!(def["uri"], json!(uri), "{def}");
    assert_eq!(
        def["range"]["start"],
        json!({"line": 3, "character": 5}),
        "{def}"
    );

    // Definition of a std name: a cached copy of the embedded std file.
    let def = c.request(
        "textDocument/definition",
        json!({"textDocument": {"uri": uri}, "position": at(&fixed, "wsd_paper", 1)}),
    );
    let target = def["uri"].as_str().unwrap_or_default();
    assert!(target.ends_with("/std/schedules.prog"), "{def}");
    let cached = std::fs::read_to_string(target.trim_start_matches("file://")).unwrap();
    let line = def["range"]["start"]["line"].as_u64().unwrap() as usize;
    assert!(
        cached
            .lines()
            .nth(line)
            .unwrap()
            .contains("schedule wsd_paper")
    );

    // Definition on an import string: the std file itself.
    let def = c.request(
        "textDocument/definition",
        json!({"textDocument": {"uri": uri}, "position": {"line": 0, "character": 10}}),
    );
    assert!(
        def["uri"]
            .as_str()
            .unwrap_or_default()
            .ends_with("/std/gpt2.prog"),
        "{def}"
    );

    // Completion of option values inside `copy(`.
    let with_copy = fixed.replace("init: random", "init: copy(");
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 3}, "contentChanges": [{"text": with_copy}]}),
    );
    c.diagnostics();
    let pos = at(&with_copy, "copy(", 5);
    let items = c.request(
        "textDocument/completion",
        json!({"textDocument": {"uri": uri}, "position": pos}),
    );
    let labels: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["label"].as_str())
        .collect();
    assert_eq!(labels, ["stack", "interleave", "last"], "{items}");

    // Formatting: one edit that yields the fmt output.
    let messy = "recipe r = b {start depth 0}\n";
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 4}, "contentChanges": [{"text": messy}]}),
    );
    c.diagnostics();
    let edits = c.request(
        "textDocument/formatting",
        json!({"textDocument": {"uri": uri}, "options": {"tabSize": 2, "insertSpaces": true}}),
    );
    assert_eq!(
        edits[0]["newText"], "recipe r = b { start depth 0 }\n",
        "{edits}"
    );

    // shutdown, exit: the server ends on its own, with status 0.
    assert_eq!(c.request("shutdown", json!(null)), json!(null));
    c.notify("exit", json!(null));
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = c.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = c.child.kill();
            panic!("the server did not exit after `exit`");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
