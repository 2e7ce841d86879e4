//! Syntax: the pest grammar (`grammar/prog.pest`) turned into a spanned AST, and the loader
//! that follows imports. Parsing never fails: it returns `(tree, diagnostics)`.

pub mod ast;
pub mod load;
pub mod parse;

pub use load::{Program, StdLib, load_program, load_source};
pub use parse::{parse, parse_set};
