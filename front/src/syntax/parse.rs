//! Parsing never fails: `parse` returns whatever items it could read plus a diagnostic for each
//! stretch it could not.
//!
//! Recovery works item by item: each top-level item is parsed on its own (`item_entry`); on an
//! error the parser reports it (P0001) and skips to the next line that starts with a top-level
//! keyword, so one broken recipe does not hide the problems of the next.

use pest::Parser;
use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;

use super::ast::*;
use crate::diagnostic::{Code, Diagnostic, FileId, Span};

#[derive(pest_derive::Parser)]
#[grammar = "../../grammar/prog.pest"]
struct ProgParser;

/// Keywords that start a top-level item.
const TOP_KEYWORDS: &[&str] = &[
    "import",
    "model",
    "data",
    "schedule",
    "optimizer",
    "recipe",
    "experiment",
];

/// The top-level keywords that define a name (every item but `import`).
pub fn definition_keywords() -> &'static [&'static str] {
    &TOP_KEYWORDS[1..]
}

/// Parses one file's text.
pub fn parse(file: FileId, src: &str) -> (Module, Vec<Diagnostic>) {
    let mut items = Vec::new();
    let mut diags = Vec::new();
    let mut pos = 0;
    while pos < src.len() {
        let rest = &src[pos..];
        if ProgParser::parse(Rule::rest_entry, rest).is_ok() {
            break; // only whitespace and comments are left
        }
        match ProgParser::parse(Rule::item_entry, rest) {
            Ok(mut pairs) => {
                let entry = pairs.next().expect("item_entry matched");
                let end = entry.as_span().end();
                let conv = Conv { file, base: pos };
                if let Some(item) = entry.into_inner().find(|p| p.as_rule() != Rule::EOI) {
                    items.push(conv.item(item));
                }
                pos += end.max(1);
            }
            Err(err) => {
                let diag = syntax_error(file, pos, rest, &err);
                // Resume after the error point: the broken item is skipped whole.
                pos = next_item_start(src, diag.span.start + 1);
                diags.push(diag);
            }
        }
    }
    (Module { file, items }, diags)
}

/// Parses a `--set key=value` override (its own source file).
pub fn parse_set(file: FileId, src: &str) -> Result<(Ident, Value), Diagnostic> {
    match ProgParser::parse(Rule::set_entry, src) {
        Ok(mut pairs) => {
            let mut inner = pairs.next().expect("set_entry matched").into_inner();
            let conv = Conv { file, base: 0 };
            let key = conv.ident(inner.next().expect("key"));
            let value = conv.value(inner.next().expect("value"));
            Ok((key, value))
        }
        Err(err) => Err(syntax_error(file, 0, src, &err)
            .with_help("an override is `key=value`, e.g. `--set steps=2000`")),
    }
}

/// Byte offset of the next line (at or after `from`) that begins with a top-level keyword.
fn next_item_start(src: &str, mut from: usize) -> usize {
    while from < src.len() && !src.is_char_boundary(from) {
        from += 1; // `from` may land inside a multi-byte character
    }
    let mut line_start = match src[..from.min(src.len())].rfind('\n') {
        Some(i) => i + 1,
        None => 0,
    };
    loop {
        // Look only at lines that begin after `from - 1`, so progress is guaranteed.
        if line_start >= from {
            let line = &src[line_start..];
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            // `data NAME = ...` starts an item; `data = NAME` inside a recipe body does not.
            if TOP_KEYWORDS.iter().any(|k| {
                trimmed.starts_with(k)
                    && trimmed[k.len()..].starts_with(char::is_whitespace)
                    && !trimmed[k.len()..].trim_start().starts_with('=')
            }) {
                return line_start + indent;
            }
        }
        match src[line_start..].find('\n') {
            Some(i) => line_start += i + 1,
            None => return src.len(),
        }
    }
}

fn syntax_error(
    file: FileId,
    base: usize,
    rest: &str,
    err: &pest::error::Error<Rule>,
) -> Diagnostic {
    let at = match err.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    // Point at the offending token, not at everything after it.
    let tok_len = rest[at..]
        .char_indices()
        .find(|&(i, c)| i > 0 && !(c.is_alphanumeric() || c == '_' || c == '.'))
        .map(|(i, _)| i)
        .unwrap_or(rest.len() - at);
    let found = &rest[at..at + tok_len];
    let span = Span::new(
        file,
        base + at,
        base + at + tok_len.max(if at < rest.len() { 1 } else { 0 }),
    );
    let expected = match &err.variant {
        ErrorVariant::ParsingError { positives, .. } => describe_expected(positives),
        ErrorVariant::CustomError { message } => message.clone(),
    };
    let found_text = if found.trim().is_empty() {
        if at >= rest.len() {
            "end of file".to_string()
        } else {
            "this".to_string()
        }
    } else {
        format!("`{}`", found.trim())
    };
    Diagnostic::new(
        Code::P0001,
        span,
        format!("expected {expected}, found {found_text}"),
    )
    .with_label(format!("expected {expected}"))
}

fn describe_expected(rules: &[Rule]) -> String {
    let mut names: Vec<&str> = rules.iter().filter_map(|r| rule_name(*r)).collect();
    names.sort_unstable();
    names.dedup();
    match names.len() {
        0 => "something else".to_string(),
        1 => names[0].to_string(),
        n => format!("{} or {}", names[..n - 1].join(", "), names[n - 1]),
    }
}

fn rule_name(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::EOI => "end of file",
        Rule::item | Rule::item_entry => "an item (`import`, `model`, `data`, `recipe`, ...)",
        Rule::kw_import => "`import`",
        Rule::kw_model => "`model`",
        Rule::kw_data | Rule::kw_schedule | Rule::kw_optimizer | Rule::let_kind => {
            "a definition (`model`, `data`, `schedule`, `optimizer`, `recipe`, `experiment`)"
        }
        Rule::kw_recipe => "`recipe`",
        Rule::kw_experiment => "`experiment`",
        Rule::kw_start => "`start`",
        Rule::kw_depth => "`depth`",
        Rule::kw_grow => "`grow`",
        Rule::kw_at => "`at`",
        Rule::kw_to => "`to`",
        Rule::kw_no => "`no`",
        Rule::kw_growth => "`growth`",
        Rule::kw_x => "`x`",
        Rule::ident | Rule::ident_raw => "a name",
        Rule::key => "a field name",
        Rule::value | Rule::call | Rule::reference | Rule::tuple | Rule::list => "a value",
        Rule::quantity | Rule::number => "a number",
        Rule::unit => "a unit",
        Rule::string | Rule::string_inner => "a string",
        Rule::fields => "`{`",
        Rule::field => "a field (`name: value`)",
        Rule::body => "`{`",
        Rule::start_stmt | Rule::grow_stmt | Rule::no_growth | Rule::assign => "a statement",
        Rule::parent => "`=`",
        Rule::arg => "an argument",
        _ => return None,
    })
}

/// Converts pest pairs of one item into AST nodes; `base` is the item's offset in the file.
struct Conv {
    file: FileId,
    base: usize,
}

impl Conv {
    fn span(&self, p: &Pair<Rule>) -> Span {
        let s = p.as_span();
        Span::new(self.file, self.base + s.start(), self.base + s.end())
    }

    fn ident(&self, p: Pair<Rule>) -> Ident {
        Ident {
            name: p.as_str().to_string(),
            span: self.span(&p),
        }
    }

    fn item(&self, p: Pair<Rule>) -> Item {
        let rule = p.as_rule();
        let mut inner = p.into_inner().peekable();
        match rule {
            Rule::import => {
                inner.next(); // keyword
                let s = inner.next().expect("string");
                let span = self.span(&s);
                Item::Import {
                    path: unescape(string_text(s)),
                    span,
                }
            }
            Rule::model_decl => {
                inner.next();
                let name = self.ident(inner.next().expect("name"));
                let parent = inner
                    .next_if(|p| p.as_rule() == Rule::parent)
                    .map(|p| self.ident(p.into_inner().next().expect("parent name")));
                let fields = self.fields(inner.next().expect("fields"));
                Item::Model {
                    name,
                    parent,
                    fields,
                }
            }
            Rule::let_decl => {
                let kind_pair = inner.next().expect("kind");
                let kind = match kind_pair.into_inner().next().map(|k| k.as_rule()) {
                    Some(Rule::kw_data) => LetKind::Data,
                    Some(Rule::kw_schedule) => LetKind::Schedule,
                    _ => LetKind::Optimizer,
                };
                let name = self.ident(inner.next().expect("name"));
                let value = self.value(inner.next().expect("value"));
                Item::Let { kind, name, value }
            }
            Rule::recipe => {
                inner.next();
                let name = self.ident(inner.next().expect("name"));
                let parent = inner
                    .next_if(|p| p.as_rule() == Rule::parent)
                    .map(|p| self.ident(p.into_inner().next().expect("parent name")));
                let body = inner.next().map(|b| self.body(b)).unwrap_or_default();
                Item::Recipe { name, parent, body }
            }
            Rule::experiment => {
                inner.next();
                let name = self.ident(inner.next().expect("name"));
                let fields = self.fields(inner.next().expect("fields"));
                Item::Experiment { name, fields }
            }
            other => unreachable!("not an item rule: {other:?}"),
        }
    }

    fn fields(&self, p: Pair<Rule>) -> Vec<Field> {
        p.into_inner()
            .map(|f| {
                let mut it = f.into_inner();
                let key = self.ident(it.next().expect("key"));
                let value = self.value(it.next().expect("value"));
                Field { key, value }
            })
            .collect()
    }

    fn body(&self, p: Pair<Rule>) -> Vec<Stmt> {
        p.into_inner().map(|s| self.stmt(s)).collect()
    }

    fn stmt(&self, p: Pair<Rule>) -> Stmt {
        let span = self.span(&p);
        let rule = p.as_rule();
        let mut inner = p.into_inner();
        match rule {
            Rule::assign => {
                let key = self.ident(inner.next().expect("key"));
                let value = self.value(inner.next().expect("value"));
                Stmt::Assign { key, value }
            }
            Rule::start_stmt => {
                let depth = inner
                    .find(|p| p.as_rule() == Rule::value)
                    .expect("depth value");
                Stmt::Start {
                    depth: self.value(depth),
                    span,
                }
            }
            Rule::grow_stmt => {
                let kw = inner.next().expect("grow keyword");
                let kw_span = self.span(&kw);
                let mut values =
                    inner.filter(|p| matches!(p.as_rule(), Rule::value | Rule::fields));
                let at = self.value(values.next().expect("time"));
                let to = self.value(values.next().expect("depth"));
                let options = values.next().map(|f| self.fields(f)).unwrap_or_default();
                Stmt::Grow {
                    at,
                    to,
                    options,
                    span: kw_span,
                }
            }
            Rule::no_growth => Stmt::NoGrowth { span },
            other => unreachable!("not a statement rule: {other:?}"),
        }
    }

    fn value(&self, p: Pair<Rule>) -> Value {
        // `value` is one atom with an optional `x atom`.
        debug_assert_eq!(p.as_rule(), Rule::value);
        let span = self.span(&p);
        let mut it = p.into_inner().filter(|q| q.as_rule() != Rule::kw_x);
        let a = self.atom(it.next().expect("atom"));
        match it.next() {
            Some(b) => Value {
                kind: ValueKind::Product(Box::new(a), Box::new(self.atom(b))),
                span,
            },
            None => a,
        }
    }

    fn atom(&self, p: Pair<Rule>) -> Value {
        let span = self.span(&p);
        let kind = match p.as_rule() {
            Rule::quantity => {
                let mut it = p.into_inner();
                let num = number(it.next().expect("number").as_str());
                match it.next() {
                    Some(u) if u.as_str() == "%" => ValueKind::Percent(num),
                    Some(u) => ValueKind::Quantity(num, self.ident(u)),
                    None => ValueKind::Number(num),
                }
            }
            Rule::string => ValueKind::Str(unescape(string_text(p))),
            Rule::reference => {
                let mut it = p.into_inner();
                let name = self.ident(it.next().expect("name"));
                ValueKind::Ref(name, it.next().map(|f| self.fields(f)))
            }
            Rule::call => {
                let mut it = p.into_inner();
                let name = self.ident(it.next().expect("name"));
                let args = it
                    .map(|a| {
                        let mut parts: Vec<Pair<Rule>> = a.into_inner().collect();
                        let value = self.value(parts.pop().expect("argument value"));
                        let name = parts.pop().map(|k| self.ident(k));
                        Arg { name, value }
                    })
                    .collect();
                ValueKind::Call(name, args)
            }
            Rule::tuple => {
                let mut trailing_comma = false;
                let mut items: Vec<Value> = p
                    .into_inner()
                    .filter(|q| {
                        trailing_comma |= q.as_rule() == Rule::comma;
                        q.as_rule() == Rule::value
                    })
                    .map(|v| self.value(v))
                    .collect();
                if items.len() == 1 && !trailing_comma {
                    // `(v)`: a parenthesized value, spanned without its parentheses.
                    return items.pop().expect("one item");
                }
                ValueKind::Tuple(items)
            }
            Rule::list => ValueKind::List(p.into_inner().map(|v| self.value(v)).collect()),
            other => unreachable!("not a value rule: {other:?}"),
        };
        Value { kind, span }
    }
}

fn string_text(p: Pair<'_, Rule>) -> &str {
    p.into_inner().next().map(|i| i.as_str()).unwrap_or("")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A number literal with its suffix applied. The grammar guarantees the shape.
fn number(text: &str) -> Number {
    let (digits, mult) = match text.chars().last() {
        Some('k' | 'K') => (&text[..text.len() - 1], 1e3),
        Some('M') => (&text[..text.len() - 1], 1e6),
        Some('B' | 'G') => (&text[..text.len() - 1], 1e9),
        Some('T') => (&text[..text.len() - 1], 1e12),
        _ => (text, 1.0),
    };
    let mut value = digits.parse::<f64>().unwrap_or(f64::NAN) * mult;
    // `327.68M` is meant as a whole number; undo the float error of the multiplication.
    if mult > 1.0 && (value - value.round()).abs() < 1e-9 * value.abs() {
        value = value.round();
    }
    Number {
        value,
        integer: value.is_finite() && value.fract() == 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(src: &str) -> Module {
        let (m, d) = parse(FileId(0), src);
        assert!(d.is_empty(), "unexpected diagnostics: {d:?}");
        m
    }

    #[test]
    fn parses_the_readme_shape() {
        let m = parse_ok(
            r#"
            import "std/gpt2.prog"
            data books = text("data/emma.txt", tokenizer: gpt2, val: 10%)
            recipe zero_layer {
              model     = gpt2_small { context: 1024 }   // inherit and override
              data      = books
              steps     = 20k
              batch     = 64 x 1024
              optimizer = adamw(lr: 6e-4, betas: (0.9, 0.95), weight_decay: 0.01, clip: none)
              schedule  = wsd(warmup: 2%, decay: 10%, floor: 0)
              seed      = 0
              start depth 0
              grow at 80% to depth 12 { init: random(std: 0.02), optimizer_state: keep }
            }
            recipe fixed_12 = zero_layer { start depth 12; no growth }
            experiment headline { runs: [fixed_12, zero_layer], reference: fixed_12 }
            "#,
        );
        assert_eq!(m.items.len(), 5);
        let Item::Recipe { body, .. } = &m.items[2] else {
            panic!("recipe")
        };
        assert_eq!(body.len(), 9);
        let Stmt::Assign { value, .. } = &body[2] else {
            panic!("assign")
        };
        assert_eq!(
            value.kind,
            ValueKind::Number(Number {
                value: 20000.0,
                integer: true
            })
        );
        let Stmt::Grow { at, options, .. } = &body[8] else {
            panic!("grow")
        };
        assert!(matches!(at.kind, ValueKind::Percent(_)));
        assert_eq!(options.len(), 2);
    }

    #[test]
    fn units_stay_on_their_line() {
        let m = parse_ok("recipe r {\n steps = 20k\n seed = 1\n grow at 1.2M tokens to depth 2\n}");
        let Item::Recipe { body, .. } = &m.items[0] else {
            panic!()
        };
        assert_eq!(body.len(), 3);
        let Stmt::Grow { at, .. } = &body[2] else {
            panic!()
        };
        let ValueKind::Quantity(n, u) = &at.kind else {
            panic!("{at:?}")
        };
        assert_eq!((n.value, u.name.as_str()), (1.2e6, "tokens"));
    }

    #[test]
    fn recovers_and_reports_each_broken_item() {
        let src =
            "recipe a { steps = }\nmodel m { width: 4 }\nrecipe b { seed = = }\nrecipe c {}\n";
        let (m, d) = parse(FileId(0), src);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d.iter().all(|d| d.code == Code::P0001));
        let names: Vec<_> = m
            .items
            .iter()
            .filter_map(|i| i.name())
            .map(|n| n.name.clone())
            .collect();
        assert_eq!(names, ["m", "c"]);
        assert!(
            d[0].message.contains("expected a value"),
            "{}",
            d[0].message
        );
    }

    #[test]
    fn suffixed_decimals_are_whole_numbers() {
        assert_eq!(
            number("327.68M"),
            Number {
                value: 327_680_000.0,
                integer: true
            }
        );
        assert_eq!(
            number("1.5"),
            Number {
                value: 1.5,
                integer: false
            }
        );
        assert_eq!(number("6e-4").value, 6e-4);
    }

    #[test]
    fn spans_point_into_the_file() {
        let src = "// c\nmodel tiny { width: 128 }";
        let m = parse_ok(src);
        let Item::Model { name, fields, .. } = &m.items[0] else {
            panic!()
        };
        assert_eq!(&src[name.span.start..name.span.end], "tiny");
        assert_eq!(
            &src[fields[0].value.span.start..fields[0].value.span.end],
            "128"
        );
    }

    /// The value of `model m { f: SRC }`.
    fn field_value(src: &str) -> Value {
        let m = parse_ok(&format!("model m {{ f: {src} }}"));
        let Item::Model { fields, .. } = &m.items[0] else {
            panic!()
        };
        fields[0].value.clone()
    }

    #[test]
    fn parentheses_group_tuples_and_products() {
        // One element without a trailing comma is the element itself, spanned inside the parens.
        let v = field_value("((7))");
        assert!(
            matches!(v.kind, ValueKind::Number(n) if n.value == 7.0),
            "{v:?}"
        );
        assert_eq!(v.span.end - v.span.start, 1);
        // A trailing comma makes a one-element tuple; more elements make a tuple.
        assert!(matches!(field_value("(7,)").kind, ValueKind::Tuple(t) if t.len() == 1));
        assert!(matches!(field_value("(1, 2,)").kind, ValueKind::Tuple(t) if t.len() == 2));
        // A product takes one `x`; parentheses nest products.
        let ValueKind::Product(a, b) = field_value("(2 x 3) x 4").kind else {
            panic!()
        };
        assert!(matches!(a.kind, ValueKind::Product(..)));
        assert!(matches!(b.kind, ValueKind::Number(n) if n.value == 4.0));
        let (_, d) = parse(FileId(0), "model m { f: 2 x 3 x 4 }");
        assert!(!d.is_empty(), "a chained product is an error");
    }

    #[test]
    fn deeply_nested_parentheses_parse_in_linear_time() {
        // Each `(` used to be parsed twice (as a tuple, then as a group), and each value twice
        // (as a product, then as an atom): 4^depth. At depth 200 that never ends; parsed once
        // per token it takes microseconds, closed or unclosed.
        let depth = 200;
        let closed = format!("{}1{}", "(".repeat(depth), ")".repeat(depth));
        assert!(matches!(field_value(&closed).kind, ValueKind::Number(_)));
        let (_, d) = parse(
            FileId(0),
            &format!("model m {{ f: {} }}", "(".repeat(depth)),
        );
        assert!(!d.is_empty(), "unclosed parentheses are an error");
    }
}
