//! Typed readers for written values: integers, numbers, fractions, times with units, option
//! names, strings. Each reader returns `None` after pushing exactly one diagnostic, so a bad
//! value is reported once and the caller simply skips what depended on it.
//!
//! Conventions: a type mismatch is P0201 ("expected an integer, found a string"); a number
//! with the wrong unit where a number is expected is P0202; an unknown unit is P0106;
//! out-of-range values are P0203. Times stay unresolved (`Time`) until the run length is known.

use crate::diagnostic::{Code, Diagnostic, Span};
use crate::plan::spec::Named;
use crate::syntax::ast::{Ident, Number, Value, ValueKind};

use super::suggest::{did_you_mean, one_of};

pub type Sink = Vec<Diagnostic>;

/// Units a quantity may carry (besides `%`), with the seconds of each wall-clock unit.
pub const UNITS: &[&str] = &["steps", "tokens", "step", "token", "s", "min", "h"];
const CLOCK_UNITS: [(&str, u64); 3] = [("s", 1), ("min", 60), ("h", 3600)];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Steps,
    Tokens,
    /// Wall-clock time; the value is the number of seconds in one unit (`min`: 60).
    Seconds(u64),
}

/// What a value is, for "found ..." in messages.
pub fn describe(v: &Value) -> String {
    match &v.kind {
        ValueKind::Number(n) if n.integer => "an integer".into(),
        ValueKind::Number(_) => "a number".into(),
        ValueKind::Percent(_) => "a percentage".into(),
        ValueKind::Quantity(_, u) => format!("a quantity in {}", u.name),
        ValueKind::Str(_) => "a string".into(),
        ValueKind::Ref(n, None) => format!("the name `{}`", n.name),
        ValueKind::Ref(n, Some(_)) => format!("`{}` with overrides", n.name),
        ValueKind::Call(n, _) => format!("a call to `{}`", n.name),
        ValueKind::Tuple(_) => "a tuple".into(),
        ValueKind::List(_) => "a list".into(),
        ValueKind::Product(..) => "a product (`a x b`)".into(),
    }
}

/// A number printed without float noise: `1200000`, `0.02`.
pub fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

/// The unit of a quantity, or P0106 with a did-you-mean.
pub fn unit(u: &Ident, d: &mut Sink) -> Option<Unit> {
    match u.name.as_str() {
        "step" | "steps" => Some(Unit::Steps),
        "token" | "tokens" => Some(Unit::Tokens),
        other if CLOCK_UNITS.iter().any(|(u, _)| *u == other) => CLOCK_UNITS
            .iter()
            .find(|(u, _)| *u == other)
            .map(|(_, s)| Unit::Seconds(*s)),
        other => {
            let mut diag = Diagnostic::new(Code::P0106, u.span, format!("unknown unit `{other}`"))
                .with_label("unknown unit");
            diag = diag.with_help(match did_you_mean(other, UNITS.iter().copied()) {
                Some(s) => s,
                None => "units are `steps` and `tokens` (and `s`, `min`, `h` for \
                         `checkpoint_every`); a fraction is written `80%`"
                    .into(),
            });
            d.push(diag);
            None
        }
    }
}

/// A mismatch diagnostic: P0202 when a number came with the wrong unit, P0201 otherwise.
/// An unknown unit is reported as P0106 instead.
pub fn mismatch(v: &Value, expected: &str, d: &mut Sink) {
    let code = match &v.kind {
        ValueKind::Quantity(_, u) => {
            if unit(u, d).is_none() {
                return;
            }
            Code::P0202
        }
        ValueKind::Percent(_) => Code::P0202,
        _ => Code::P0201,
    };
    d.push(
        Diagnostic::new(
            code,
            v.span,
            format!("expected {expected}, found {}", describe(v)),
        )
        .with_label(format!("expected {expected}")),
    );
}

/// P0203 at `span`.
pub fn out_of_range(span: Span, message: String, help: Option<&str>, d: &mut Sink) {
    let mut diag = Diagnostic::new(Code::P0203, span, message).with_label("out of range");
    if let Some(h) = help {
        diag = diag.with_help(h);
    }
    d.push(diag);
}

/// A plain number (no unit).
pub fn number(v: &Value, d: &mut Sink) -> Option<f64> {
    match &v.kind {
        ValueKind::Number(n) => Some(n.value),
        _ => {
            mismatch(v, "a number", d);
            None
        }
    }
}

/// A number that must be `> 0` (`strict`) or `>= 0`.
pub fn non_negative(v: &Value, what: &str, strict: bool, d: &mut Sink) -> Option<f64> {
    let x = number(v, d)?;
    if x < 0.0 || (strict && x == 0.0) || !x.is_finite() {
        let bound = if strict { "positive" } else { "at least 0" };
        out_of_range(
            v.span,
            format!("`{what}` must be {bound}, found {}", fmt_num(x)),
            None,
            d,
        );
        return None;
    }
    Some(x)
}

/// A whole number `>= min` with no unit.
pub fn integer(v: &Value, what: &str, min: u64, d: &mut Sink) -> Option<u64> {
    integer_in(v, what, min, u64::MAX / 2, d)
}

/// A whole number in `min..=max` with no unit (the bounds are in docs/language.md).
pub fn integer_in(v: &Value, what: &str, min: u64, max: u64, d: &mut Sink) -> Option<u64> {
    match &v.kind {
        ValueKind::Number(Number {
            value,
            integer: true,
        }) => {
            if *value < min as f64 {
                let bound = if min == 1 {
                    "positive".to_string()
                } else {
                    format!("at least {min}")
                };
                out_of_range(
                    v.span,
                    format!("`{what}` must be {bound}, found {}", fmt_num(*value)),
                    None,
                    d,
                );
                return None;
            }
            if *value > max as f64 {
                let message = if max == u64::MAX / 2 {
                    format!("`{what}` is too large")
                } else {
                    format!("`{what}` must be at most {max}, found {}", fmt_num(*value))
                };
                out_of_range(v.span, message, None, d);
                return None;
            }
            Some(*value as u64)
        }
        _ => {
            mismatch(v, "an integer", d);
            None
        }
    }
}

/// A fraction: `10%` or a number in [0, 1].
pub fn fraction(v: &Value, what: &str, d: &mut Sink) -> Option<f64> {
    let x = match &v.kind {
        ValueKind::Percent(p) => p.value / 100.0,
        ValueKind::Number(n) => n.value,
        _ => {
            mismatch(v, "a fraction (`10%` or a number in [0, 1])", d);
            return None;
        }
    };
    if !(0.0..=1.0).contains(&x) {
        out_of_range(
            v.span,
            format!("`{what}` must be between 0 and 100%, found {}", fmt_num(x)),
            Some("write a percentage (`10%`) or a number between 0 and 1"),
            d,
        );
        return None;
    }
    Some(x)
}

/// A time not yet converted to steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TimeKind {
    /// A fraction of the run (`80%` is 0.8).
    Fraction(f64),
    Steps(u64),
    Tokens(f64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Time {
    pub kind: TimeKind,
    pub span: Span,
}

/// A time: `80%`, `16000`, `16k steps`, `1.2M tokens`.
pub fn time(v: &Value, what: &str, d: &mut Sink) -> Option<Time> {
    let expected = "a time (`80%`, `500 steps` or `1M tokens`)";
    let negative = |x: f64, d: &mut Sink| {
        if x < 0.0 {
            out_of_range(v.span, format!("`{what}` cannot be negative"), None, d);
            true
        } else {
            false
        }
    };
    let whole_steps = |x: f64, d: &mut Sink| -> Option<u64> {
        if x.fract() != 0.0 {
            d.push(
                Diagnostic::new(
                    Code::P0201,
                    v.span,
                    format!("expected a whole number of steps, found {}", fmt_num(x)),
                )
                .with_label("not a whole number"),
            );
            return None;
        }
        Some(x as u64)
    };
    let kind = match &v.kind {
        ValueKind::Percent(p) => {
            if negative(p.value, d) {
                return None;
            }
            TimeKind::Fraction(p.value / 100.0)
        }
        ValueKind::Number(n) => {
            if negative(n.value, d) {
                return None;
            }
            TimeKind::Steps(whole_steps(n.value, d)?)
        }
        ValueKind::Quantity(n, u) => {
            let unit = unit(u, d)?;
            if negative(n.value, d) {
                return None;
            }
            match unit {
                Unit::Steps => TimeKind::Steps(whole_steps(n.value, d)?),
                Unit::Tokens => TimeKind::Tokens(n.value),
                Unit::Seconds(_) => {
                    d.push(
                        Diagnostic::new(
                            Code::P0202,
                            v.span,
                            format!("`{what}` is a training time, not a wall-clock time"),
                        )
                        .with_label(format!("expected {expected}"))
                        .with_help(
                            "only `checkpoint_every` takes a wall-clock time (`30 min`); \
                             give a fraction, steps or tokens",
                        ),
                    );
                    return None;
                }
            }
        }
        _ => {
            mismatch(v, expected, d);
            return None;
        }
    };
    Some(Time { kind, span: v.span })
}

/// A wall-clock duration in whole seconds (`90 s`, `30 min`, `2 h`), or `None` (no
/// diagnostic) when `v` is not a quantity in a clock unit.
pub fn clock_seconds(v: &Value, what: &str, d: &mut Sink) -> Option<Option<u64>> {
    let ValueKind::Quantity(n, u) = &v.kind else {
        return Some(None);
    };
    let Some(Unit::Seconds(per)) = unit(u, &mut Vec::new()) else {
        return Some(None);
    };
    let seconds = n.value * per as f64;
    if !(0.0..=1e9).contains(&seconds) || seconds.fract() != 0.0 {
        out_of_range(
            v.span,
            format!("`{what}` must be a whole number of seconds, at least 0"),
            Some("for example `30 min`, `90 s` or `2 h`; `0 min` turns the clock off"),
            d,
        );
        return None;
    }
    Some(Some(seconds as u64))
}

impl Time {
    /// Steps for a run of `total` steps of `tokens_per_step` tokens; tokens that are not a
    /// whole number of steps are rounded with warning P0406.
    pub fn steps(&self, total: u64, tokens_per_step: u64, d: &mut Sink) -> u64 {
        match self.kind {
            TimeKind::Fraction(f) => (f * total as f64).round() as u64,
            TimeKind::Steps(s) => s,
            TimeKind::Tokens(t) => tokens_to_steps(t, tokens_per_step, self.span, d),
        }
    }
}

/// `tokens / tokens_per_step`, rounded, warning P0406 when it is not exact.
pub fn tokens_to_steps(tokens: f64, tokens_per_step: u64, span: Span, d: &mut Sink) -> u64 {
    let tps = tokens_per_step.max(1) as f64;
    let steps = (tokens / tps).round();
    if (tokens / tps).fract() != 0.0 {
        let steps_hint = steps.max(1.0);
        let exact = steps_hint * tps;
        d.push(
            Diagnostic::new(
                Code::P0406,
                span,
                format!(
                    "{} tokens is not a multiple of the batch ({} tokens per step): rounded to {} steps",
                    fmt_num(tokens),
                    fmt_num(tps),
                    fmt_num(steps)
                ),
            )
            .with_label(format!("rounded to {} steps", fmt_num(steps)))
            .with_help(format!(
                "write a multiple of {} tokens, e.g. `{} tokens` ({} step{}), or a number of steps",
                fmt_num(tps),
                fmt_num(exact),
                fmt_num(steps_hint),
                if steps_hint == 1.0 { "" } else { "s" }
            )),
        );
    }
    steps as u64
}

/// One of a fixed set of option names (`placement: top`); P0110 with a did-you-mean otherwise.
pub fn option<'a>(v: &Value, what: &str, options: &[&'a str], d: &mut Sink) -> Option<&'a str> {
    match &v.kind {
        ValueKind::Ref(n, None) => {
            if let Some(o) = options.iter().find(|o| **o == n.name) {
                return Some(o);
            }
            let help = did_you_mean(&n.name, options.iter().copied())
                .unwrap_or_else(|| format!("`{what}` is one of {}", one_of(options)));
            d.push(
                Diagnostic::new(
                    Code::P0110,
                    n.span,
                    format!("unknown `{what}` value `{}`", n.name),
                )
                .with_label(format!("expected {}", one_of(options)))
                .with_help(help),
            );
            None
        }
        _ => {
            mismatch(v, &format!("one of {}", one_of(options)), d);
            None
        }
    }
}

/// An option value of a `Named` enum (`placement: top`), checked against its names.
pub fn named<T: Named>(v: &Value, what: &str, d: &mut Sink) -> Option<T> {
    option(v, what, T::NAMES, d).and_then(T::from_name)
}

pub fn boolean(v: &Value, what: &str, d: &mut Sink) -> Option<bool> {
    option(v, what, &["true", "false"], d).map(|b| b == "true")
}

pub fn string<'v>(v: &'v Value, d: &mut Sink) -> Option<&'v str> {
    match &v.kind {
        ValueKind::Str(s) => Some(s),
        _ => {
            mismatch(v, "a string", d);
            None
        }
    }
}
