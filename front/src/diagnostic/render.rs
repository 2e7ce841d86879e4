//! Renderers: ariadne text (for people) and JSON (for tools).

use ariadne::{Color, Config, IndexType, Label as ALabel, Report, ReportKind};
use serde::Serialize;

use super::{Diagnostic, Severity, SourceMap, Span};

type ASpan = (String, std::ops::Range<usize>);

fn aspan(map: &SourceMap, span: Span) -> ASpan {
    let file = map.get(span.file);
    let len = file.text.len();
    let start = span.start.min(len);
    (file.name.clone(), start..span.end.clamp(start, len))
}

/// Renders one diagnostic in rustc style with ariadne; `color` off gives stable text.
pub fn render(diag: &Diagnostic, map: &SourceMap, color: bool) -> String {
    let kind = match diag.severity {
        Severity::Error => ReportKind::Error,
        Severity::Warning => ReportKind::Warning,
    };
    let primary_color = match diag.severity {
        Severity::Error => Color::Red,
        Severity::Warning => Color::Yellow,
    };
    let mut report = Report::build(kind, aspan(map, diag.span))
        .with_config(
            Config::default()
                .with_color(color)
                .with_index_type(IndexType::Byte),
        )
        .with_code(diag.code.name())
        .with_message(&diag.message);
    let mut primary = ALabel::new(aspan(map, diag.span))
        .with_color(primary_color)
        .with_order(0);
    if let Some(text) = &diag.primary_label {
        primary = primary.with_message(text);
    }
    report = report.with_label(primary);
    for (i, label) in diag.labels.iter().enumerate() {
        report = report.with_label(
            ALabel::new(aspan(map, label.span))
                .with_message(&label.message)
                .with_color(Color::Blue)
                .with_order(i as i32 + 1),
        );
    }
    if let Some(help) = &diag.help {
        report = report.with_help(help);
    }
    let cache = ariadne::sources(map.files().map(|(_, f)| (f.name.clone(), f.text.clone())));
    let mut out = Vec::new();
    if report.finish().write(cache, &mut out).is_err() {
        // Rendering into memory cannot fail on IO; fall back to a plain line just in case.
        return plain(diag, map);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `file:line:col: severity[CODE]: message`, one line.
pub fn plain(diag: &Diagnostic, map: &SourceMap) -> String {
    let (line, col) = map.line_col(diag.span.file, diag.span.start);
    let sev = match diag.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    format!(
        "{}:{line}:{col}: {sev}[{}]: {}",
        map.get(diag.span.file).name,
        diag.code,
        diag.message
    )
}

#[derive(Serialize)]
struct JsonLabel {
    file: String,
    line: usize,
    column: usize,
    end_line: usize,
    end_column: usize,
    message: String,
}

#[derive(Serialize)]
struct JsonDiagnostic {
    code: String,
    severity: Severity,
    message: String,
    file: String,
    line: usize,
    column: usize,
    end_line: usize,
    end_column: usize,
    labels: Vec<JsonLabel>,
    help: Option<String>,
}

fn json_label(map: &SourceMap, span: Span, message: &str) -> JsonLabel {
    let (line, column) = map.line_col(span.file, span.start);
    let (end_line, end_column) = map.line_col(span.file, span.end);
    JsonLabel {
        file: map.get(span.file).name.clone(),
        line,
        column,
        end_line,
        end_column,
        message: message.to_string(),
    }
}

/// All diagnostics as a JSON array (one object each: code, severity, message, file, line,
/// column, labels, help). The primary label is the first entry of `labels`.
pub fn to_json(diags: &[Diagnostic], map: &SourceMap) -> String {
    let items: Vec<JsonDiagnostic> = diags
        .iter()
        .map(|d| {
            let at = json_label(map, d.span, d.primary_label.as_deref().unwrap_or(""));
            let mut labels = vec![json_label(
                map,
                d.span,
                d.primary_label.as_deref().unwrap_or(""),
            )];
            labels.extend(d.labels.iter().map(|l| json_label(map, l.span, &l.message)));
            JsonDiagnostic {
                code: d.code.name().to_string(),
                severity: d.severity,
                message: d.message.clone(),
                file: at.file,
                line: at.line,
                column: at.column,
                end_line: at.end_line,
                end_column: at.end_column,
                labels,
                help: d.help.clone(),
            }
        })
        .collect();
    serde_json::to_string_pretty(&items).unwrap_or_else(|_| "[]".to_string())
}
