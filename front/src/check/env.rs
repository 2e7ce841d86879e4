//! The name table: every definition of the program (imports included) in one namespace.
//!
//! Invariants: each name maps to exactly one definition, the first one; a later definition of
//! the same name is reported (P0102, labelling the first) and otherwise ignored. "First" means
//! imported files before the files that import them, then textual order, so a clash between a
//! user file and the std library is reported in the user's file.

use std::collections::{HashMap, HashSet};

use crate::diagnostic::{Code, Diagnostic};
use crate::syntax::Program;
use crate::syntax::ast::{Ident, Item, LetKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefKind {
    Model,
    Data,
    Schedule,
    Optimizer,
    Recipe,
    Experiment,
}

impl DefKind {
    /// "a model", "data", ... for messages.
    pub fn article(self) -> &'static str {
        match self {
            DefKind::Model => "a model",
            DefKind::Data => "data",
            DefKind::Schedule => "a schedule",
            DefKind::Optimizer => "an optimizer",
            DefKind::Recipe => "a recipe",
            DefKind::Experiment => "an experiment",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            DefKind::Model => "model",
            DefKind::Data => "data",
            DefKind::Schedule => "schedule",
            DefKind::Optimizer => "optimizer",
            DefKind::Recipe => "recipe",
            DefKind::Experiment => "experiment",
        }
    }

    fn of(item: &Item) -> Option<DefKind> {
        Some(match item {
            Item::Import { .. } => return None,
            Item::Model { .. } => DefKind::Model,
            Item::Let { kind, .. } => match kind {
                LetKind::Data => DefKind::Data,
                LetKind::Schedule => DefKind::Schedule,
                LetKind::Optimizer => DefKind::Optimizer,
            },
            Item::Recipe { .. } => DefKind::Recipe,
            Item::Experiment { .. } => DefKind::Experiment,
        })
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Def<'p> {
    pub kind: DefKind,
    pub name: &'p Ident,
    pub item: &'p Item,
}

pub struct Env<'p> {
    defs: HashMap<&'p str, Def<'p>>,
    /// Names whose definition is written but did not parse (the parser skipped the item and
    /// reported P0001): using them fails silently instead of adding "cannot find".
    broken: HashSet<String>,
    /// Names in definition order (for stable iteration).
    order: Vec<&'p str>,
}

impl<'p> Env<'p> {
    pub fn build(program: &'p Program, diags: &mut Vec<Diagnostic>) -> Env<'p> {
        let mut env = Env {
            defs: HashMap::new(),
            broken: HashSet::new(),
            order: Vec::new(),
        };
        // The loader pushes a file before its imports: reversed, imports come first.
        for module in program.modules.iter().rev() {
            for item in &module.items {
                let (Some(kind), Some(name)) = (DefKind::of(item), item.name()) else {
                    continue;
                };
                if let Some(first) = env.defs.get(name.name.as_str()) {
                    diags.push(
                        Diagnostic::new(
                            Code::P0102,
                            name.span,
                            format!("`{}` is defined more than once", name.name),
                        )
                        .with_label(format!("`{}` redefined here", name.name))
                        .with_secondary(
                            first.name.span,
                            format!("first defined here ({})", first.kind.article()),
                        )
                        .with_help("names share one namespace across the program and its imports: rename one of them"),
                    );
                    continue;
                }
                env.defs.insert(&name.name, Def { kind, name, item });
                env.order.push(&name.name);
            }
        }
        for module in &program.modules {
            for name in written_names(&program.sources.get(module.file).text) {
                if !env.defs.contains_key(name.as_str()) {
                    env.broken.insert(name);
                }
            }
        }
        env
    }

    /// True when `name` is defined by an item that failed to parse.
    pub fn is_broken(&self, name: &str) -> bool {
        self.broken.contains(name)
    }

    pub fn get(&self, name: &str) -> Option<Def<'p>> {
        self.defs.get(name).copied()
    }

    /// Every definition, in definition order.
    pub fn all(&self) -> impl Iterator<Item = Def<'p>> + '_ {
        self.order.iter().map(|n| self.defs[n])
    }

    /// Names of the definitions of one kind.
    pub fn names_of(&self, kind: DefKind) -> Vec<&'p str> {
        self.all()
            .filter(|d| d.kind == kind)
            .map(|d| d.name.name.as_str())
            .collect()
    }
}

/// Names that lines of `text` start to define (`recipe NAME ...`), parsed or not. Assignments
/// in bodies (`data = books`) are not definitions.
fn written_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let kw = words.next()?;
            if !crate::syntax::parse::definition_keywords().contains(&kw) {
                return None;
            }
            let name: String = words
                .next()?
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}
