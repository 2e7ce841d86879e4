//! The syntax tree of a `.prog` file. Every node carries the span it was parsed from.
//!
//! Invariants: the tree is exactly what was written (no defaults filled in, no names resolved);
//! a number's `value` already has its suffix applied (`20k` -> 20000.0), and `integer` tells
//! whether the written literal denotes a whole number.

use crate::diagnostic::{FileId, Span};

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    /// A plain number.
    Number(Number),
    /// A number with a unit: `1.2M tokens`, `500 steps`. Percentages are `Percent`.
    Quantity(Number, Ident),
    /// `80%`, stored as written (80.0).
    Percent(Number),
    Str(String),
    /// A name with an optional override block: `random`, `gpt2_small { context: 1024 }`.
    Ref(Ident, Option<Vec<Field>>),
    /// `adamw(lr: 6e-4)`, `copy(stack)`.
    Call(Ident, Vec<Arg>),
    /// `(0.9, 0.95)`.
    Tuple(Vec<Value>),
    /// `[a, b, c]`.
    List(Vec<Value>),
    /// `64 x 1024`.
    Product(Box<Value>, Box<Value>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Number {
    pub value: f64,
    pub integer: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Value,
}

/// `key: value` inside braces.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub key: Ident,
    pub value: Value,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LetKind {
    Data,
    Schedule,
    Optimizer,
}

impl LetKind {
    pub fn keyword(self) -> &'static str {
        match self {
            LetKind::Data => "data",
            LetKind::Schedule => "schedule",
            LetKind::Optimizer => "optimizer",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// `import "std/gpt2.prog"`; `span` is the string literal's.
    Import { path: String, span: Span },
    /// `model NAME (= PARENT)? { fields }`.
    Model {
        name: Ident,
        parent: Option<Ident>,
        fields: Vec<Field>,
    },
    /// `data|schedule|optimizer NAME = value`.
    Let {
        kind: LetKind,
        name: Ident,
        value: Value,
    },
    /// `recipe NAME (= PARENT)? { statements }`.
    Recipe {
        name: Ident,
        parent: Option<Ident>,
        body: Vec<Stmt>,
    },
    /// `experiment NAME { fields }`.
    Experiment { name: Ident, fields: Vec<Field> },
}

impl Item {
    /// The defined name, if the item defines one.
    pub fn name(&self) -> Option<&Ident> {
        match self {
            Item::Import { .. } => None,
            Item::Model { name, .. }
            | Item::Let { name, .. }
            | Item::Recipe { name, .. }
            | Item::Experiment { name, .. } => Some(name),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `key = value`.
    Assign { key: Ident, value: Value },
    /// `start depth N`; `span` covers the statement.
    Start { depth: Value, span: Span },
    /// `grow at TIME to depth N { options }`; `span` is the `grow` keyword's.
    Grow {
        at: Value,
        to: Value,
        options: Vec<Field>,
        span: Span,
    },
    /// `no growth`.
    NoGrowth { span: Span },
}

/// One parsed file.
#[derive(Clone, Debug, PartialEq)]
pub struct Module {
    pub file: FileId,
    pub items: Vec<Item>,
}
