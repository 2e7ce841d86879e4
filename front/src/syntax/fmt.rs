//! `progc fmt`: one canonical layout for `.prog` files.
//!
//! The layout is printed from the syntax tree; comments, which the grammar skips, are found
//! again by re-scanning the source text and placed back by byte offset: a comment that shared a
//! line with code stays at the end of that line, one on its own line stays on its own line
//! before the code that followed it. The layout: two-space indentation, one item per line,
//! one statement or field per line inside a multi-line block, `=` (and `key:` values) aligned
//! within a block and across consecutive one-line items of one kind, at most one blank line where the source had any, and single spaces
//! elsewhere. Short derived definitions (`model m = gpt2 { ... }`, `recipe r = base { ... }`)
//! and growth options stay on one line when they fit in 100 columns and hold no comment.
//!
//! Invariants:
//! - only a file that parses without errors is formatted (`Err` carries the diagnostics);
//! - the output parses to the same tree (numbers, strings and units keep their spelling, so
//!   the checked plan is identical) and keeps every comment, in order;
//! - formatting the output again changes nothing (checked before returning).
//!
//! A value that contains a comment is copied verbatim, so its comments stay inside it.

use super::ast::*;
use super::parse::parse;
use crate::diagnostic::{Diagnostic, FileId, Span};

/// Lines longer than this are wrapped (calls and lists) or kept multi-line (blocks).
const WIDTH: usize = 100;
const INDENT: &str = "  ";

/// Why a file was not formatted.
#[derive(Debug)]
pub enum FmtError {
    /// The file does not parse; nothing was formatted.
    Syntax(Vec<Diagnostic>),
    /// The formatter's own self-check failed (a bug): the text is left as it was.
    Internal(String),
}

/// Formats one file's text (`file` is the id its diagnostics will carry).
pub fn format_source(file: FileId, src: &str) -> Result<String, FmtError> {
    let out = format_once(file, src)?;
    // Self-check: the output keeps every comment, parses, and is a fixed point.
    let before: Vec<&str> = scan_comments(src).iter().map(|c| c.text(src)).collect();
    let after: Vec<&str> = scan_comments(&out).iter().map(|c| c.text(&out)).collect();
    if before != after {
        return Err(FmtError::Internal(
            "formatting would lose or reorder a comment".into(),
        ));
    }
    match format_once(file, &out) {
        Ok(again) if again == out => Ok(out),
        Ok(_) => Err(FmtError::Internal(
            "formatting is not stable on this file".into(),
        )),
        Err(_) => Err(FmtError::Internal(
            "the formatted text does not parse".into(),
        )),
    }
}

fn format_once(file: FileId, src: &str) -> Result<String, FmtError> {
    let (module, diags) = parse(file, src);
    if !diags.is_empty() {
        return Err(FmtError::Syntax(diags));
    }
    let mut p = Printer {
        src,
        comments: scan_comments(src),
        next: 0,
        lines: Vec::new(),
    };
    p.module(&module);
    Ok(p.finish())
}

/// A comment in the source.
#[derive(Clone, Copy, Debug)]
struct Comment {
    start: usize,
    end: usize,
    /// Only whitespace precedes it on its line.
    own_line: bool,
}

impl Comment {
    fn text<'s>(&self, src: &'s str) -> &'s str {
        src[self.start..self.end].trim_end()
    }
}

/// Every comment, in order, skipping string literals (which may hold `//`).
fn scan_comments(src: &str) -> Vec<Comment> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'/') || b.get(i + 1) == Some(&b'*') => {
                let start = i;
                let end = if b[i + 1] == b'/' {
                    src[i..].find('\n').map_or(b.len(), |n| i + n)
                } else {
                    src[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2)
                };
                let line_start = src[..start].rfind('\n').map_or(0, |n| n + 1);
                out.push(Comment {
                    start,
                    end,
                    own_line: src[line_start..start].trim().is_empty(),
                });
                i = end;
            }
            _ => i += 1,
        }
    }
    out
}

/// Whether a blank line directly precedes `pos` (ignoring the whitespace right before it).
fn blank_before(src: &str, pos: usize) -> bool {
    let before = &src[..pos.min(src.len())];
    let code = before.trim_end_matches([' ', '\t', '\r', '\n']);
    !code.is_empty() && before[code.len()..].matches('\n').count() >= 2
}

/// The first byte at or after `pos` that is not whitespace or a comment.
fn skip_trivia(src: &str, mut pos: usize) -> usize {
    loop {
        let rest = &src[pos.min(src.len())..];
        let trimmed = rest.trim_start();
        pos += rest.len() - trimmed.len();
        if trimmed.starts_with("//") {
            pos += trimmed.find('\n').unwrap_or(trimmed.len());
        } else if let Some(body) = trimmed.strip_prefix("/*") {
            pos += body.find("*/").map_or(trimmed.len(), |n| n + 4);
        } else {
            return pos;
        }
    }
}

/// The closing `}` of a block whose last entry ends at `pos`: skips trivia and separators.
fn find_close(src: &str, mut pos: usize) -> usize {
    loop {
        let p = skip_trivia(src, pos);
        match src.as_bytes().get(p) {
            Some(b',' | b';') => pos = p + 1,
            _ => return p,
        }
    }
}

/// Where an item begins: its keyword, found by stepping back from its first span.
fn item_start(src: &str, item: &Item) -> usize {
    let first = match item {
        Item::Import { span, .. } => span.start,
        other => other.name().map_or(0, |n| n.span.start),
    };
    let before = src[..first].trim_end();
    let kw = before.trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_');
    kw.len()
}

fn stmt_start(s: &Stmt) -> usize {
    match s {
        Stmt::Assign { key, .. } => key.span.start,
        Stmt::Start { span, .. } | Stmt::Grow { span, .. } | Stmt::NoGrowth { span } => span.start,
    }
}

struct Line {
    text: String,
    trailing: Option<String>,
}

struct Printer<'s> {
    src: &'s str,
    comments: Vec<Comment>,
    /// Comments before this index are printed.
    next: usize,
    lines: Vec<Line>,
}

impl<'s> Printer<'s> {
    fn slice(&self, span: Span) -> &'s str {
        &self.src[span.start..span.end]
    }

    fn has_comment(&self, start: usize, end: usize) -> bool {
        self.comments
            .iter()
            .any(|c| c.start >= start && c.start < end)
    }

    fn push(&mut self, indent: usize, text: String) {
        self.lines.push(Line {
            text: format!("{}{text}", INDENT.repeat(indent)),
            trailing: None,
        });
    }

    /// One blank line, unless at the start of the file or of a block.
    fn blank(&mut self) {
        if let Some(last) = self.lines.last()
            && !last.text.is_empty()
            && !last.text.ends_with('{')
        {
            self.lines.push(Line {
                text: String::new(),
                trailing: None,
            });
        }
    }

    /// Prints every comment that starts before `pos`.
    fn comments_before(&mut self, pos: usize, indent: usize) {
        while let Some(c) = self.comments.get(self.next).copied() {
            if c.start >= pos {
                break;
            }
            self.next += 1;
            let text = c.text(self.src).to_string();
            if !c.own_line
                && let Some(last) = self.lines.last_mut()
                && !last.text.is_empty()
                && last.trailing.is_none()
            {
                last.trailing = Some(text);
                continue;
            }
            if blank_before(self.src, c.start) {
                self.blank();
            }
            self.push(indent, text);
        }
    }

    /// Marks the comments before `pos` as printed (they are inside verbatim text).
    fn consume_comments(&mut self, pos: usize) {
        while self.comments.get(self.next).is_some_and(|c| c.start < pos) {
            self.next += 1;
        }
    }

    /// Blank line and comments before an entry that starts at `pos`.
    fn before_entry(&mut self, pos: usize, indent: usize) {
        self.comments_before(pos, indent);
        if blank_before(self.src, pos) {
            self.blank();
        }
    }

    fn finish(mut self) -> String {
        self.comments_before(usize::MAX, 0);
        // Trailing comments on consecutive lines line up.
        let mut out = String::new();
        let mut i = 0;
        while i < self.lines.len() {
            let mut j = i;
            while j < self.lines.len() && self.lines[j].trailing.is_some() {
                j += 1;
            }
            if j == i {
                out.push_str(self.lines[i].text.trim_end());
                out.push('\n');
                i += 1;
                continue;
            }
            let width = self.lines[i..j]
                .iter()
                .map(|l| last_line_width(&l.text))
                .max()
                .unwrap_or(0);
            for l in &self.lines[i..j] {
                let pad = width - last_line_width(&l.text);
                out.push_str(&l.text);
                out.push_str(&" ".repeat(pad + 2));
                out.push_str(l.trailing.as_deref().unwrap_or(""));
                out.push('\n');
            }
            i = j;
        }
        while out.ends_with("\n\n") {
            out.pop();
        }
        if out.trim().is_empty() {
            out.clear();
        }
        out
    }

    fn module(&mut self, module: &Module) {
        let starts: Vec<usize> = module
            .items
            .iter()
            .map(|i| item_start(self.src, i))
            .collect();
        let pads = self.item_pads(&module.items);
        for (i, item) in module.items.iter().enumerate() {
            self.before_entry(starts[i], 0);
            self.item(item, pads[i]);
        }
    }

    /// Name widths for the `=` alignment of consecutive one-line items of one kind (across
    /// blank lines and comments: a family of definitions lines up).
    fn item_pads(&self, items: &[Item]) -> Vec<usize> {
        let keys: Vec<Option<(&str, usize)>> = items.iter().map(|i| self.align_key(i)).collect();
        let mut pads = vec![0; items.len()];
        let mut i = 0;
        while i < items.len() {
            let Some((kind, _)) = keys[i] else {
                i += 1;
                continue;
            };
            let mut j = i + 1;
            while j < items.len() && keys[j].is_some_and(|(k, _)| k == kind) {
                j += 1;
            }
            let width = keys[i..j].iter().flatten().map(|(_, w)| *w).max();
            for pad in &mut pads[i..j] {
                *pad = width.unwrap_or(0);
            }
            i = j;
        }
        pads
    }

    /// `(kind, name width)` of an item printed as one line with an `=` after its name.
    fn align_key(&self, item: &Item) -> Option<(&'static str, usize)> {
        match item {
            Item::Let { kind, name, .. } => Some((kind.keyword(), name.name.len())),
            Item::Model {
                name,
                parent: Some(parent),
                fields,
            } => self
                .model_inline(name, parent, fields, 0)
                .map(|_| ("model", name.name.len())),
            Item::Recipe {
                name,
                parent: Some(parent),
                body,
            } => self
                .recipe_inline(name, parent, body, 0)
                .map(|_| ("recipe", name.name.len())),
            _ => None,
        }
    }

    fn header(kw: &str, name: &Ident, parent: Option<&Ident>, pad: usize) -> String {
        match parent {
            Some(p) => format!("{kw} {:<pad$} = {}", name.name, p.name),
            None => format!("{kw} {}", name.name),
        }
    }

    fn item(&mut self, item: &Item, pad: usize) {
        match item {
            Item::Import { span, .. } => {
                let text = format!("import {}", self.slice(*span));
                self.push(0, text);
            }
            Item::Let { kind, name, value } => {
                let head = format!("{} {:<pad$} = ", kind.keyword(), name.name);
                let v = self.value_at(value, head.len());
                self.push(0, head + &v);
            }
            Item::Model {
                name,
                parent,
                fields,
            } => {
                if let Some(p) = parent
                    && let Some(inline) = self.model_inline(name, p, fields, 0)
                {
                    let text = format!(
                        "{} {inline}",
                        Self::header("model", name, parent.as_ref(), pad)
                    );
                    return self.push(0, text);
                }
                let after = parent.as_ref().unwrap_or(name).span.end;
                let open = skip_trivia(self.src, after);
                self.push(
                    0,
                    format!("{} {{", Self::header("model", name, parent.as_ref(), pad)),
                );
                self.fields_block(fields, open + 1, 1);
            }
            Item::Recipe { name, parent, body } => {
                // The one-line decision ignores the alignment pad, as `align_key` does, so
                // the groups come out the same when the output is formatted again.
                if let Some(p) = parent
                    && let Some(inline) = self.recipe_inline(name, p, body, 0)
                {
                    let text = format!(
                        "{} {inline}",
                        Self::header("recipe", name, parent.as_ref(), pad)
                    );
                    return self.push(0, text);
                }
                let after = parent.as_ref().unwrap_or(name).span.end;
                let open = skip_trivia(self.src, after);
                self.push(
                    0,
                    format!("{} {{", Self::header("recipe", name, parent.as_ref(), pad)),
                );
                self.body_block(body, open + 1, 1);
            }
            Item::Experiment { name, fields } => {
                let open = skip_trivia(self.src, name.span.end);
                let close = self.close_of(fields.last().map(|f| f.value.span.end), open);
                if fields.is_empty() && !self.has_comment(open, close) {
                    return self.push(0, format!("experiment {} {{ }}", name.name));
                }
                self.push(0, format!("experiment {} {{", name.name));
                self.fields_block(fields, open + 1, 1);
            }
        }
    }

    /// The closing brace of a block opening at `open` whose last entry ends at `last_end`.
    fn close_of(&self, last_end: Option<usize>, open: usize) -> usize {
        find_close(self.src, last_end.unwrap_or(open + 1))
    }

    /// `{ a: 1, b: 2 }` when it fits after the header and the braces hold no comment.
    fn model_inline(
        &self,
        name: &Ident,
        parent: &Ident,
        fields: &[Field],
        pad: usize,
    ) -> Option<String> {
        let open = skip_trivia(self.src, parent.span.end);
        let close = self.close_of(fields.last().map(|f| f.value.span.end), open);
        if self.has_comment(open, close) || fields.iter().any(|f| self.value_has_comment(&f.value))
        {
            return None;
        }
        let text = self.fields_inline(fields);
        // `model NAME = PARENT {...}`
        let width = 6 + pad.max(name.name.len()) + 3 + parent.name.len() + 1 + text.len();
        (width <= WIDTH).then_some(text)
    }

    /// `{ s1; s2 }` under the same conditions; a recipe without a body gets `{ }`.
    fn recipe_inline(
        &self,
        name: &Ident,
        parent: &Ident,
        body: &[Stmt],
        pad: usize,
    ) -> Option<String> {
        let open = skip_trivia(self.src, parent.span.end);
        if self.src.as_bytes().get(open) == Some(&b'{') {
            let close = self.close_of(body.last().map(|s| self.stmt_end(s)), open);
            if self.has_comment(open, close) {
                return None;
            }
        }
        let stmts: Vec<String> = body.iter().map(|s| self.stmt_inline(s, 0)).collect();
        let text = if stmts.is_empty() {
            "{ }".to_string()
        } else {
            format!("{{ {} }}", stmts.join("; "))
        };
        let width = 7 + pad.max(name.name.len()) + 3 + parent.name.len() + 1 + text.len();
        (width <= WIDTH).then_some(text)
    }

    fn stmt_end(&self, s: &Stmt) -> usize {
        match s {
            Stmt::Assign { value, .. } => value.span.end,
            Stmt::Start { span, .. } | Stmt::NoGrowth { span } => span.end,
            Stmt::Grow { to, options, .. } => match options.last() {
                Some(f) => find_close(self.src, f.value.span.end) + 1,
                None => {
                    let p = skip_trivia(self.src, to.span.end);
                    if self.src.as_bytes().get(p) == Some(&b'{') {
                        skip_trivia(self.src, p + 1) + 1
                    } else {
                        to.span.end
                    }
                }
            },
        }
    }

    fn fields_inline(&self, fields: &[Field]) -> String {
        if fields.is_empty() {
            return "{ }".into();
        }
        let parts: Vec<String> = fields
            .iter()
            .map(|f| format!("{}: {}", f.key.name, self.value(&f.value)))
            .collect();
        format!("{{ {} }}", parts.join(", "))
    }

    /// A statement on one line; `pad` aligns the `=` of assignments.
    fn stmt_inline(&self, s: &Stmt, pad: usize) -> String {
        match s {
            Stmt::Assign { key, value } => {
                format!("{:<pad$} = {}", key.name, self.value(value))
            }
            Stmt::Start { depth, .. } => format!("start depth {}", self.value(depth)),
            Stmt::NoGrowth { .. } => "no growth".into(),
            Stmt::Grow {
                at, to, options, ..
            } => {
                let head = format!("grow at {} to depth {}", self.value(at), self.value(to));
                if options.is_empty() {
                    head
                } else {
                    format!("{head} {}", self.fields_inline(options))
                }
            }
        }
    }

    /// `key: value` lines, values aligned, then the closing brace at `indent - 1`.
    fn fields_block(&mut self, fields: &[Field], open_end: usize, indent: usize) {
        let width = fields.iter().map(|f| f.key.name.len()).max().unwrap_or(0) + 1;
        for (i, f) in fields.iter().enumerate() {
            let start = f.key.span.start;
            if i == 0 {
                self.comments_before(start, indent);
            } else {
                self.before_entry(start, indent);
            }
            let head = format!("{:<width$} ", format!("{}:", f.key.name));
            let v = self.value_at(&f.value, indent * INDENT.len() + head.len());
            self.push(indent, head + &v);
        }
        let close = find_close(
            self.src,
            fields.last().map_or(open_end, |f| f.value.span.end),
        );
        self.comments_before(close, indent);
        self.push(indent - 1, "}".into());
    }

    fn body_block(&mut self, body: &[Stmt], open_end: usize, indent: usize) {
        let width = body
            .iter()
            .filter_map(|s| match s {
                Stmt::Assign { key, .. } => Some(key.name.len()),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        for (i, s) in body.iter().enumerate() {
            let start = stmt_start(s);
            if i == 0 {
                self.comments_before(start, indent);
            } else {
                self.before_entry(start, indent);
            }
            self.stmt(s, width, indent);
        }
        let close = find_close(self.src, body.last().map_or(open_end, |s| self.stmt_end(s)));
        self.comments_before(close, indent);
        self.push(indent - 1, "}".into());
    }

    fn stmt(&mut self, s: &Stmt, width: usize, indent: usize) {
        match s {
            Stmt::Assign { key, value } => {
                let head = format!("{:<width$} = ", key.name);
                let v = self.value_at(value, indent * INDENT.len() + head.len());
                self.push(indent, head + &v);
            }
            Stmt::Grow {
                at, to, options, ..
            } if !options.is_empty() => {
                let line = self.stmt_inline(s, 0);
                let open = find_close(self.src, to.span.end);
                let close = self.stmt_end(s) - 1;
                let fits = indent * INDENT.len() + line.len() <= WIDTH;
                let commented = self.has_comment(open, close)
                    || options.iter().any(|f| self.value_has_comment(&f.value));
                if fits && !commented {
                    return self.push(indent, line);
                }
                let head = format!("grow at {} to depth {} {{", self.value(at), self.value(to));
                self.push(indent, head);
                self.fields_block(options, open + 1, indent + 1);
            }
            _ => {
                let line = self.stmt_inline(s, 0);
                self.push(indent, line);
            }
        }
    }

    /// Where a value really ends: the span of a name (`reference = ident ~ fields?`) also
    /// covers the whitespace and comments after it.
    fn value_end(&self, v: &Value) -> usize {
        let start = v.span.start;
        let mut end = v.span.end;
        loop {
            end = start + self.src[start..end].trim_end().len();
            match self
                .comments
                .iter()
                .find(|c| c.start >= start && c.start < end && c.end >= end)
            {
                Some(c) => end = c.start,
                None => return end,
            }
        }
    }

    fn value_has_comment(&self, v: &Value) -> bool {
        self.has_comment(v.span.start, self.value_end(v))
    }

    /// A value starting at column `col`: verbatim when it holds a comment, else one line, or
    /// (a call or list too long for the line) its items filled up to the width and aligned
    /// after the opening bracket.
    fn value_at(&mut self, v: &Value, col: usize) -> String {
        if self.value_has_comment(v) {
            let end = self.value_end(v);
            self.consume_comments(end);
            return self.src[v.span.start..end].to_string();
        }
        let one = self.value(v);
        if col + one.len() <= WIDTH {
            return one;
        }
        let (open, items, close): (String, Vec<String>, &str) = match &v.kind {
            ValueKind::Call(f, args) => (
                format!("{}(", f.name),
                args.iter().map(|a| self.arg(a)).collect(),
                ")",
            ),
            ValueKind::List(items) => (
                "[".into(),
                items.iter().map(|i| self.value(i)).collect(),
                "]",
            ),
            _ => return one,
        };
        let inner = col + open.len();
        let mut out = open;
        let mut line_len = inner;
        for (i, item) in items.iter().enumerate() {
            let piece = format!("{item}{}", if i + 1 == items.len() { close } else { "," });
            if i > 0 && line_len + 1 + piece.len() > WIDTH {
                out.push('\n');
                out.push_str(&" ".repeat(inner));
                line_len = inner;
            } else if i > 0 {
                out.push(' ');
                line_len += 1;
            }
            out.push_str(&piece);
            line_len += piece.len();
        }
        if items.is_empty() {
            out.push_str(close);
        }
        out
    }

    fn arg(&self, a: &Arg) -> String {
        match &a.name {
            Some(n) => format!("{}: {}", n.name, self.value(&a.value)),
            None => self.value(&a.value),
        }
    }

    /// A value on one line. Numbers, strings and units keep their spelling.
    fn value(&self, v: &Value) -> String {
        match &v.kind {
            ValueKind::Number(_) | ValueKind::Str(_) => self.slice(v.span).trim().to_string(),
            ValueKind::Percent(_) => {
                let s = self.slice(v.span).trim();
                format!("{}%", s.trim_end_matches('%').trim_end())
            }
            ValueKind::Quantity(_, unit) => {
                let number = self.src[v.span.start..unit.span.start].trim();
                format!("{number} {}", unit.name)
            }
            ValueKind::Ref(name, None) => name.name.clone(),
            ValueKind::Ref(name, Some(fields)) => {
                format!("{} {}", name.name, self.fields_inline(fields))
            }
            ValueKind::Call(f, args) => {
                let args: Vec<String> = args.iter().map(|a| self.arg(a)).collect();
                format!("{}({})", f.name, args.join(", "))
            }
            ValueKind::Tuple(items) => {
                let items: Vec<String> = items.iter().map(|i| self.value(i)).collect();
                format!("({})", items.join(", "))
            }
            ValueKind::List(items) => {
                let items: Vec<String> = items.iter().map(|i| self.value(i)).collect();
                format!("[{}]", items.join(", "))
            }
            ValueKind::Product(a, b) => {
                let side = |x: &Value| match x.kind {
                    ValueKind::Product(..) => format!("({})", self.value(x)),
                    _ => self.value(x),
                };
                format!("{} x {}", side(a), side(b))
            }
        }
    }
}

fn last_line_width(text: &str) -> usize {
    text.rsplit('\n').next().map_or(0, |l| l.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(src: &str) -> String {
        match format_source(FileId(0), src) {
            Ok(s) => s,
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn aligns_assignments_and_keeps_comments() {
        let src = "recipe r {\n  // lead\n  model = m   // trailing\n\n\n  eval_every=1\n}\n";
        assert_eq!(
            fmt(src),
            "recipe r {\n  // lead\n  model      = m  // trailing\n\n  eval_every = 1\n}\n"
        );
    }

    #[test]
    fn derived_items_stay_on_one_line_and_align() {
        let src = "model a = gpt2 {width:1}\nmodel bbb = gpt2 {\n}\n";
        assert_eq!(
            fmt(src),
            "model a   = gpt2 { width: 1 }\nmodel bbb = gpt2 { }\n"
        );
    }

    #[test]
    fn nested_products_keep_their_parentheses() {
        let src = "recipe r = b { batch = (2 x 3) x 4 }\n";
        assert_eq!(fmt(src), "recipe r = b { batch = (2 x 3) x 4 }\n");
    }

    #[test]
    fn comments_in_strings_are_not_comments() {
        let src = "import \"a//b.prog\" // real\n";
        assert_eq!(fmt(src), "import \"a//b.prog\"  // real\n");
    }

    #[test]
    fn syntax_errors_are_reported_not_formatted() {
        match format_source(FileId(0), "recipe r {\n  steps = \n") {
            Err(FmtError::Syntax(d)) => assert!(!d.is_empty()),
            other => panic!("expected syntax errors, got {other:?}"),
        }
    }

    #[test]
    fn long_calls_wrap_after_the_paren() {
        let src = "optimizer o = muon(lr: 0.02, momentum: 0.95, nesterov: true, ns_steps: 5, weight_decay: 0.01, adam: adamw(lr: 6e-4))\n";
        let out = fmt(src);
        assert!(out.lines().all(|l| l.len() <= WIDTH), "{out}");
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(
            out.lines().nth(1).unwrap().starts_with(&" ".repeat(19)),
            "{out}"
        );
    }
}
