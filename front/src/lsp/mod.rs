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

mod complete;
mod hover;
mod locate;
mod position;

use std::collections::HashMap;
use std::error::Error;

use lsp_server::{Connection, Message, Notification, Request, Response};
use lsp_types::notification::{
    DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument, Notification as _,
    PublishDiagnostics,
};
use lsp_types::request::{Completion, Formatting, GotoDefinition, HoverRequest, Request as _};
use lsp_types::{
    CompletionItem, CompletionOptions, CompletionParams, CompletionResponse,
    DiagnosticRelatedInformation, DiagnosticSeverity, DocumentFormattingParams,
    GotoDefinitionParams, GotoDefinitionResponse, Hover, HoverContents, HoverParams,
    HoverProviderCapability, Location, MarkupContent, MarkupKind, NumberOrString, OneOf, Position,
    PublishDiagnosticsParams, Range, ServerCapabilities, TextDocumentSyncCapability,
    TextDocumentSyncKind, TextEdit, Url,
};

use crate::check::check;
use crate::diagnostic::{Diagnostic, FileId, Severity};
use crate::plan::spec::ProgramSpec;
use crate::syntax::ast::Item;
use crate::syntax::fmt::format_source;
use crate::syntax::{Program, load_source, load_text};

use complete::completions;
use hover::hover_text;
use locate::{file_uri, find_def, import_target};
use position::{span_range, to_offset, to_position, word_at};

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
