//! `progc lsp`: a language server over stdio (`lsp-server` transport, `lsp-types` messages).
//!
//! Invariants:
//! - it uses the front end and `plan` only: every answer comes from loading the open buffer's
//!   text (imports resolved as `progc check` resolves them, relative to the file, then the
//!   embedded std library), checking it and, for a recipe's hover, compiling its plan;
//! - diagnostics are exactly `progc check`'s for the open file (code, message, range), with
//!   the help appended to the message and secondary labels as related information;
//! - ranges are LSP positions: zero-based lines and UTF-16 columns;
//! - a request never fails the server: bad positions or broken files give empty answers;
//! - a definition in the embedded std library opens a copy written to
//!   `$PROGC_CACHE_DIR/std/` (default `~/.cache/progc/std/`), refreshed when it differs.

use std::collections::HashMap;
use std::error::Error;
use std::path::{Path, PathBuf};

use lsp_server::{Connection, Message, Notification, Request, Response};
use lsp_types::notification::{
    DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument, Notification as _,
    PublishDiagnostics,
};
use lsp_types::request::{Completion, Formatting, GotoDefinition, HoverRequest, Request as _};
use lsp_types::{
    CompletionItem, CompletionItemKind, CompletionOptions, CompletionParams, CompletionResponse,
    DiagnosticRelatedInformation, DiagnosticSeverity, DocumentFormattingParams,
    GotoDefinitionParams, GotoDefinitionResponse, Hover, HoverContents, HoverParams,
    HoverProviderCapability, Location, MarkupContent, MarkupKind, NumberOrString, OneOf, Position,
    PublishDiagnosticsParams, Range, ServerCapabilities, TextDocumentSyncCapability,
    TextDocumentSyncKind, TextEdit, Url,
};

use crate::check::{MODEL_FIELDS, OPTIMIZER_FUNCS, RECIPE_KEYS, SCHEDULE_FUNCS, check};
use crate::diagnostic::{Diagnostic, FileId, Severity, Span};
use crate::plan::compile_run;
use crate::plan::spec::ProgramSpec;
use crate::syntax::ast::{Field, Item, ValueKind};
use crate::syntax::fmt::format_source;
use crate::syntax::{Program, StdLib, load_source, load_text};

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// Serves on stdin/stdout until the client sends `shutdown` and `exit`.
pub fn run_stdio() -> Result<()> {
    let (connection, io_threads) = Connection::stdio();
    let caps = ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::FULL)),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec![":".into(), "=".into(), "(".into(), " ".into()]),
            ..CompletionOptions::default()
        }),
        document_formatting_provider: Some(OneOf::Left(true)),
        ..ServerCapabilities::default()
    };
    connection.initialize(serde_json::to_value(caps)?)?;
    let mut server = Server {
        docs: HashMap::new(),
    };
    for msg in &connection.receiver {
        match msg {
            Message::Request(req) => {
                if connection.handle_shutdown(&req)? {
                    break;
                }
                let resp = server.request(req);
                connection.sender.send(Message::Response(resp))?;
            }
            Message::Notification(not) => {
                for out in server.notification(not) {
                    connection.sender.send(Message::Notification(out))?;
                }
            }
            Message::Response(_) => {}
        }
    }
    drop(connection);
    io_threads.join()?;
    Ok(())
}

struct Server {
    docs: HashMap<Url, String>,
}

/// One analysis of an open buffer.
struct Analysis {
    program: Program,
    spec: ProgramSpec,
    diags: Vec<Diagnostic>,
}

fn analyze(uri: &Url, text: &str) -> Analysis {
    let (program, mut diags) = match uri.to_file_path() {
        Ok(path) => load_text(&path, text, &[]),
        Err(()) => load_source(uri.as_str(), text, &[]),
    };
    let (spec, more) = check(&program);
    diags.extend(more);
    Analysis {
        program,
        spec,
        diags,
    }
}

impl Server {
    fn notification(&mut self, not: Notification) -> Vec<Notification> {
        let uri = match not.method.as_str() {
            DidOpenTextDocument::METHOD => {
                let Ok(p) =
                    serde_json::from_value::<lsp_types::DidOpenTextDocumentParams>(not.params)
                else {
                    return vec![];
                };
                self.docs
                    .insert(p.text_document.uri.clone(), p.text_document.text);
                p.text_document.uri
            }
            DidChangeTextDocument::METHOD => {
                let Ok(p) =
                    serde_json::from_value::<lsp_types::DidChangeTextDocumentParams>(not.params)
                else {
                    return vec![];
                };
                // Full sync: the last change is the whole text.
                let Some(change) = p.content_changes.into_iter().last() else {
                    return vec![];
                };
                self.docs.insert(p.text_document.uri.clone(), change.text);
                p.text_document.uri
            }
            DidCloseTextDocument::METHOD => {
                let Ok(p) =
                    serde_json::from_value::<lsp_types::DidCloseTextDocumentParams>(not.params)
                else {
                    return vec![];
                };
                self.docs.remove(&p.text_document.uri);
                return vec![publish(p.text_document.uri, Vec::new())];
            }
            _ => return vec![],
        };
        let text = self.docs.get(&uri).cloned().unwrap_or_default();
        let a = analyze(&uri, &text);
        let diags = a
            .diags
            .iter()
            .filter(|d| d.span.file == FileId(0))
            .map(|d| to_lsp_diagnostic(d, &a.program, &uri))
            .collect();
        vec![publish(uri, diags)]
    }

    fn request(&mut self, req: Request) -> Response {
        let result = match req.method.as_str() {
            HoverRequest::METHOD => serde_json::from_value::<HoverParams>(req.params)
                .ok()
                .and_then(|p| {
                    let tp = p.text_document_position_params;
                    self.hover(&tp.text_document.uri, tp.position)
                })
                .map(|h| serde_json::to_value(h).unwrap_or_default()),
            GotoDefinition::METHOD => serde_json::from_value::<GotoDefinitionParams>(req.params)
                .ok()
                .and_then(|p| {
                    let tp = p.text_document_position_params;
                    self.definition(&tp.text_document.uri, tp.position)
                })
                .map(|d| serde_json::to_value(d).unwrap_or_default()),
            Completion::METHOD => serde_json::from_value::<CompletionParams>(req.params)
                .ok()
                .map(|p| {
                    let tp = p.text_document_position;
                    let items = self.completion(&tp.text_document.uri, tp.position);
                    serde_json::to_value(CompletionResponse::Array(items)).unwrap_or_default()
                }),
            Formatting::METHOD => serde_json::from_value::<DocumentFormattingParams>(req.params)
                .ok()
                .and_then(|p| self.format(&p.text_document.uri))
                .map(|e| serde_json::to_value(e).unwrap_or_default()),
            _ => {
                return Response::new_err(
                    req.id,
                    lsp_server::ErrorCode::MethodNotFound as i32,
                    format!("progc lsp does not handle `{}`", req.method),
                );
            }
        };
        Response::new_ok(req.id, result.unwrap_or(serde_json::Value::Null))
    }

    fn hover(&self, uri: &Url, pos: Position) -> Option<Hover> {
        let text = self.docs.get(uri)?;
        let offset = to_offset(text, pos);
        let (start, end) = word_at(text, offset)?;
        let a = analyze(uri, text);
        let def = find_def(&a.program, &text[start..end])?;
        let value = hover_text(&a, def);
        Some(Hover {
            contents: HoverContents::Markup(MarkupContent {
                kind: MarkupKind::Markdown,
                value,
            }),
            range: Some(Range::new(to_position(text, start), to_position(text, end))),
        })
    }

    fn definition(&self, uri: &Url, pos: Position) -> Option<GotoDefinitionResponse> {
        let text = self.docs.get(uri)?;
        let offset = to_offset(text, pos);
        let a = analyze(uri, text);
        // An import's string: the file it loads.
        if let Some(path) = a
            .program
            .modules
            .first()?
            .items
            .iter()
            .find_map(|i| match i {
                Item::Import { path, span } if span.start <= offset && offset < span.end => {
                    Some(path)
                }
                _ => None,
            })
        {
            let target = import_target(uri, path)?;
            let start = Position::new(0, 0);
            return Some(GotoDefinitionResponse::Scalar(Location::new(
                target,
                Range::new(start, start),
            )));
        }
        let (start, end) = word_at(text, offset)?;
        let def = find_def(&a.program, &text[start..end])?;
        let name = def.name()?;
        let file_uri = file_uri(&a.program, name.span.file, uri)?;
        let file_text = &a.program.sources.get(name.span.file).text;
        Some(GotoDefinitionResponse::Scalar(Location::new(
            file_uri,
            span_range(file_text, name.span),
        )))
    }

    fn completion(&self, uri: &Url, pos: Position) -> Vec<CompletionItem> {
        let Some(text) = self.docs.get(uri) else {
            return Vec::new();
        };
        let offset = to_offset(text, pos);
        let a = analyze(uri, text);
        completions(&a.program, text, offset)
    }

    fn format(&self, uri: &Url) -> Option<Vec<TextEdit>> {
        let text = self.docs.get(uri)?;
        let out = format_source(FileId(0), text).ok()?;
        if &out == text {
            return Some(Vec::new());
        }
        let end = to_position(text, text.len());
        Some(vec![TextEdit::new(
            Range::new(Position::new(0, 0), end),
            out,
        )])
    }
}

fn publish(uri: Url, diagnostics: Vec<lsp_types::Diagnostic>) -> Notification {
    Notification::new(
        PublishDiagnostics::METHOD.to_string(),
        PublishDiagnosticsParams {
            uri,
            diagnostics,
            version: None,
        },
    )
}

fn to_lsp_diagnostic(d: &Diagnostic, program: &Program, uri: &Url) -> lsp_types::Diagnostic {
    let text = &program.sources.get(d.span.file).text;
    let mut message = d.message.clone();
    if let Some(help) = &d.help {
        message.push_str("\nhelp: ");
        message.push_str(help);
    }
    let related: Vec<DiagnosticRelatedInformation> = d
        .labels
        .iter()
        .filter_map(|l| {
            let uri = file_uri(program, l.span.file, uri)?;
            let text = &program.sources.get(l.span.file).text;
            Some(DiagnosticRelatedInformation {
                location: Location::new(uri, span_range(text, l.span)),
                message: l.message.clone(),
            })
        })
        .collect();
    lsp_types::Diagnostic {
        range: span_range(text, d.span),
        severity: Some(match d.severity {
            Severity::Error => DiagnosticSeverity::ERROR,
            Severity::Warning => DiagnosticSeverity::WARNING,
        }),
        code: Some(NumberOrString::String(d.code.name().to_string())),
        source: Some("progc".into()),
        message,
        related_information: (!related.is_empty()).then_some(related),
        ..lsp_types::Diagnostic::default()
    }
}

/// Zero-based line and UTF-16 column of a byte offset.
pub fn to_position(text: &str, offset: usize) -> Position {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = text[line_start..offset].encode_utf16().count();
    Position::new(line as u32, col as u32)
}

/// The byte offset of a position (clamped to its line and the text).
pub fn to_offset(text: &str, pos: Position) -> usize {
    let mut line_start = 0;
    for _ in 0..pos.line {
        match text[line_start..].find('\n') {
            Some(i) => line_start += i + 1,
            None => return text.len(),
        }
    }
    let mut units = 0;
    for (i, c) in text[line_start..].char_indices() {
        if c == '\n' || units >= pos.character as usize {
            return line_start + i;
        }
        units += c.len_utf16();
    }
    text.len()
}

fn span_range(text: &str, span: Span) -> Range {
    Range::new(to_position(text, span.start), to_position(text, span.end))
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifier around `offset` (or ending at it).
fn word_at(text: &str, offset: usize) -> Option<(usize, usize)> {
    let start = text[..offset]
        .char_indices()
        .rev()
        .take_while(|&(_, c)| is_ident(c))
        .last()
        .map_or(offset, |(i, _)| i);
    let end = offset
        + text[offset..]
            .find(|c: char| !is_ident(c))
            .unwrap_or(text.len() - offset);
    (start < end && !text[start..].starts_with(|c: char| c.is_ascii_digit()))
        .then_some((start, end))
}

/// The item that defines `name`, the entry file's first.
fn find_def<'p>(program: &'p Program, name: &str) -> Option<&'p Item> {
    program
        .modules
        .iter()
        .flat_map(|m| m.items.iter())
        .find(|i| i.name().is_some_and(|n| n.name == name))
}

/// The URI to open for a loaded file: the buffer itself, the file on disk, or the cached copy
/// of a std file.
fn file_uri(program: &Program, file: FileId, entry: &Url) -> Option<Url> {
    if file == FileId(0) {
        return Some(entry.clone());
    }
    let name = &program.sources.get(file).name;
    if let Some(std_name) = name.strip_prefix("std/") {
        return std_copy(std_name);
    }
    let path = std::fs::canonicalize(name).ok()?;
    Url::from_file_path(path).ok()
}

/// Where `import "path"` in the buffer `entry` leads.
fn import_target(entry: &Url, path: &str) -> Option<Url> {
    if let Ok(file) = entry.to_file_path() {
        let candidate = file.parent().unwrap_or(Path::new("")).join(path);
        if candidate.is_file() {
            return Url::from_file_path(std::fs::canonicalize(candidate).ok()?).ok();
        }
    }
    let base = Path::new(path).file_name()?.to_str()?;
    std_copy(base)
}

/// A read-only copy of the embedded `std/NAME`, written to the cache directory.
fn std_copy(name: &str) -> Option<Url> {
    let text = StdLib::get(name)?;
    let dir = match std::env::var_os("PROGC_CACHE_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/progc"),
    }
    .join("std");
    let path = dir.join(name);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
        std::fs::create_dir_all(&dir).ok()?;
        std::fs::write(&path, text).ok()?;
    }
    Url::from_file_path(std::fs::canonicalize(path).ok()?).ok()
}

/// A value's source text, without the whitespace and line comment that a name's span
/// (`reference = ident ~ fields?`) also covers.
fn source_of(program: &Program, span: Span) -> String {
    let mut text = program.sources.slice(span).trim_end();
    loop {
        let last = text.rsplit('\n').next().unwrap_or("");
        let mut in_str = false;
        let cut = last.char_indices().find(|&(i, c)| {
            in_str ^= c == '"';
            !in_str && last[i..].starts_with("//")
        });
        match cut {
            Some((i, _)) => text = text[..text.len() - last.len() + i].trim_end(),
            None => return text.to_string(),
        }
    }
}

fn hover_text(a: &Analysis, item: &Item) -> String {
    let p = &a.program;
    match item {
        Item::Recipe { name, parent, .. } => {
            let mut s = format!("**recipe** `{}`", name.name);
            if let Some(par) = parent {
                s.push_str(&format!(" (from `{}`)", par.name));
            }
            s.push_str("\n\n");
            let Some(run) = a.spec.runs.iter().find(|r| r.name == name.name) else {
                s.push_str("does not check yet: see its diagnostics");
                return s;
            };
            let plan = compile_run(run);
            let m = &run.model;
            s.push_str(&format!(
                "- model `{}`: width {}, heads {}, depth {}, context {}, vocab {}\n",
                m.name, m.width, m.heads, m.depth, m.context, m.vocab
            ));
            s.push_str(&format!(
                "- {} steps of {} x {} tokens, seed {}\n",
                run.total_steps, run.batch.sequences, run.batch.context, run.seed
            ));
            if let Some(rp) = plan.runs.first() {
                s.push_str(&format!("\n**plan**: {} segments\n\n", rp.segments.len()));
                for seg in &rp.segments {
                    s.push_str(&format!(
                        "- depth {}: steps {}..{}\n",
                        seg.depth, seg.start_step, seg.end_step
                    ));
                }
                let r = &rp.ratio;
                s.push_str(&format!(
                    "\nFLOP ratio to fixed depth: {:.3} exact, {:.3} 6N with embeddings, {:.3} 6N \
                     non-embedding\n\nprojected saving: {:.1}% of the fixed run's compute (exact)",
                    r.exact,
                    r.six_n_embedding,
                    r.six_n_non_embedding,
                    (1.0 - r.exact) * 100.0
                ));
            }
            s
        }
        Item::Model { name, .. } => {
            let mut s = format!("**model** `{}`\n\n", name.name);
            for (key, value) in model_fields(p, &name.name) {
                s.push_str(&format!("- {key}: `{value}`\n"));
            }
            s
        }
        Item::Let { kind, name, value } => {
            let mut s = format!(
                "**{}** `{}` = `{}`\n\n",
                kind.keyword(),
                name.name,
                source_of(p, value.span)
            );
            if let ValueKind::Call(f, args) = &value.kind {
                s.push_str(&format!("`{}` with\n\n", f.name));
                for (i, arg) in args.iter().enumerate() {
                    let key = arg
                        .name
                        .as_ref()
                        .map_or(format!("#{}", i + 1), |n| n.name.clone());
                    s.push_str(&format!("- {key}: `{}`\n", source_of(p, arg.value.span)));
                }
            }
            s
        }
        Item::Experiment { name, fields } => {
            let mut s = format!("**experiment** `{}`\n\n", name.name);
            for f in fields {
                s.push_str(&format!(
                    "- {}: `{}`\n",
                    f.key.name,
                    source_of(p, f.value.span)
                ));
            }
            s
        }
        Item::Import { path, .. } => format!("import `{path}`"),
    }
}

/// A model's fields through its `= PARENT` chain, the nearest definition of each winning,
/// in the order the base model lists them.
fn model_fields(p: &Program, name: &str) -> Vec<(String, String)> {
    let mut chain: Vec<&[Field]> = Vec::new();
    let mut current = Some(name.to_string());
    while let Some(n) = current.take() {
        if chain.len() > 32 {
            break; // an inheritance cycle (P0109 reports it)
        }
        match find_def(p, &n) {
            Some(Item::Model { parent, fields, .. }) => {
                chain.push(fields);
                current = parent.as_ref().map(|i| i.name.clone());
            }
            _ => break,
        }
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for fields in chain.iter().rev() {
        for f in *fields {
            let v = source_of(p, f.value.span);
            match out.iter_mut().find(|(k, _)| *k == f.key.name) {
                Some(slot) => slot.1 = v,
                None => out.push((f.key.name.clone(), v)),
            }
        }
    }
    out
}

/// Values each option field accepts.
fn option_values(key: &str) -> &'static [&'static str] {
    match key {
        "init" => &[
            "random",
            "random(std: 0.02)",
            "copy(stack)",
            "copy(interleave)",
            "copy(last)",
            "zero",
            "zero_out",
        ],
        "placement" => &["top", "bottom"],
        "optimizer_state" => &["keep", "reset", "copy"],
        "residual" => &["none", "inv_sqrt_depth", "inv_depth"],
        "shape" => &["linear", "cosine", "sqrt"],
        "tokenizer" => &["gpt2", "bytes"],
        "clip" => &["none"],
        "nesterov" => &["true", "false"],
        _ => &[],
    }
}

fn item(label: &str, kind: CompletionItemKind, detail: &str) -> CompletionItem {
    CompletionItem {
        label: label.to_string(),
        kind: Some(kind),
        detail: (!detail.is_empty()).then(|| detail.to_string()),
        ..CompletionItem::default()
    }
}

/// Names defined by items of one keyword (`model`, `data`, ..., `recipe`).
fn names_of(p: &Program, keyword: &str) -> Vec<CompletionItem> {
    p.modules
        .iter()
        .flat_map(|m| m.items.iter())
        .filter(|i| match i {
            Item::Model { .. } => keyword == "model",
            Item::Let { kind, .. } => kind.keyword() == keyword,
            Item::Recipe { .. } => keyword == "recipe",
            Item::Experiment { .. } => keyword == "experiment",
            Item::Import { .. } => false,
        })
        .filter_map(|i| i.name())
        .map(|n| item(&n.name, CompletionItemKind::REFERENCE, keyword))
        .collect()
}

/// Completions at `offset`: option values after `copy(` or `KEY:`/`KEY =`, field names at the
/// start of a line inside a block, known names elsewhere.
fn completions(p: &Program, text: &str, offset: usize) -> Vec<CompletionItem> {
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..offset];
    let partial_start = before
        .char_indices()
        .rev()
        .take_while(|&(_, c)| is_ident(c))
        .last()
        .map_or(before.len(), |(i, _)| i);
    let head = before[..partial_start].trim_end();
    let value = CompletionItemKind::ENUM_MEMBER;
    if head.ends_with("copy(") {
        return ["stack", "interleave", "last"]
            .iter()
            .map(|v| item(v, value, "copy layout"))
            .collect();
    }
    if let Some(key_part) = head.strip_suffix(':').or_else(|| head.strip_suffix('=')) {
        let key: String = key_part
            .trim_end()
            .chars()
            .rev()
            .take_while(|c| is_ident(*c))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let mut out: Vec<CompletionItem> = option_values(&key)
            .iter()
            .map(|v| item(v, value, &key))
            .collect();
        let funcs = |fs: &[&str], out: &mut Vec<CompletionItem>| {
            out.extend(
                fs.iter()
                    .map(|f| item(&format!("{f}()"), CompletionItemKind::FUNCTION, "")),
            )
        };
        match key.as_str() {
            "model" => out.extend(names_of(p, "model")),
            "data" => {
                out.extend(names_of(p, "data"));
                funcs(&["text"], &mut out);
            }
            "schedule" => {
                out.extend(names_of(p, "schedule"));
                funcs(SCHEDULE_FUNCS, &mut out);
            }
            "optimizer" | "adam" => {
                out.extend(names_of(p, "optimizer"));
                funcs(OPTIMIZER_FUNCS, &mut out);
            }
            "runs" | "reference" => out.extend(names_of(p, "recipe")),
            _ => {}
        }
        if key_part.trim_end().ends_with(|c: char| is_ident(c)) && !out.is_empty() {
            return out;
        }
        if head.ends_with('=') && head.trim_start().split_whitespace().count() >= 2 {
            // `recipe NAME =` or `model NAME =`: a parent.
            let kw = head.split_whitespace().next().unwrap_or("");
            return names_of(p, kw);
        }
        return out;
    }
    if head.is_empty() {
        let field = CompletionItemKind::FIELD;
        return match enclosing_block(text, line_start) {
            Block::Top => ["import", "model", "data", "schedule", "optimizer", "recipe"]
                .iter()
                .chain(["experiment"].iter())
                .map(|k| item(k, CompletionItemKind::KEYWORD, ""))
                .collect(),
            Block::Recipe => RECIPE_KEYS
                .iter()
                .map(|k| item(k, field, "recipe statement"))
                .chain(
                    ["start depth", "grow at", "no growth"]
                        .iter()
                        .map(|k| item(k, CompletionItemKind::KEYWORD, "")),
                )
                .collect(),
            Block::Model => MODEL_FIELDS
                .iter()
                .map(|k| item(k, field, "model field"))
                .collect(),
            Block::Grow => ["init", "placement", "optimizer_state"]
                .iter()
                .map(|k| item(k, field, "growth option"))
                .collect(),
            Block::Experiment => ["runs", "reference"]
                .iter()
                .map(|k| item(k, field, "experiment field"))
                .collect(),
        };
    }
    Vec::new()
}

enum Block {
    Top,
    Recipe,
    Model,
    Grow,
    Experiment,
}

/// The kind of the innermost `{` still open at `offset` (comments and strings are not
/// skipped: good enough for completion).
fn enclosing_block(text: &str, offset: usize) -> Block {
    let mut depth = 0usize;
    for (i, c) in text[..offset].char_indices().rev() {
        match c {
            '}' => depth += 1,
            '{' if depth > 0 => depth -= 1,
            '{' => {
                let line_start = text[..i].rfind('\n').map_or(0, |n| n + 1);
                let line = text[line_start..i].trim_start();
                return if line.contains("grow ") {
                    Block::Grow
                } else if line.starts_with("recipe") && !line.contains('{') {
                    Block::Recipe
                } else if line.starts_with("experiment") {
                    Block::Experiment
                } else {
                    Block::Model
                };
            }
            _ => {}
        }
    }
    Block::Top
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_utf16_units() {
        let text = "a\n\u{1F600}b\n";
        let p = to_position(text, 1 + 1 + 4);
        assert_eq!((p.line, p.character), (1, 2));
        assert_eq!(to_offset(text, p), 6);
        assert_eq!(to_offset(text, Position::new(9, 0)), text.len());
    }

    #[test]
    fn completes_copy_layouts_and_model_fields() {
        let text =
            "model m {\n  wi\n}\nrecipe r {\n  model = m\n  grow at 1 to depth 2 { init: copy(";
        let (p, _) = load_source("t.prog", text, &[]);
        let labels = |items: Vec<CompletionItem>| -> Vec<String> {
            items.into_iter().map(|i| i.label).collect()
        };
        let at_copy = labels(completions(&p, text, text.len()));
        assert_eq!(at_copy, ["stack", "interleave", "last"]);
        let in_model = labels(completions(&p, text, text.find("wi").unwrap() + 2));
        assert!(in_model.contains(&"width".to_string()), "{in_model:?}");
        let after_model = labels(completions(&p, text, text.find("model = ").unwrap() + 8));
        assert!(after_model.contains(&"m".to_string()), "{after_model:?}");
    }
}
