//! Syntax: the pest grammar (`grammar/prog.pest`) turned into a spanned AST, and the loader
//! that follows imports. Parsing never fails: it returns `(tree, diagnostics)`. `fmt` prints a
//! tree back in the canonical layout, with the source's comments.

pub mod ast;
pub mod fmt;
pub mod load;
pub mod parse;

pub use load::{Program, StdLib, load_program, load_source, load_text};
pub use parse::{parse, parse_set};
