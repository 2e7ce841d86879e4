//! The diagnostic code catalogue: one entry per code, its default severity, a one-line title,
//! and the long explanation embedded from `docs/codes/<CODE>.md` (shown by `progc explain`).
//!
//! Invariant: codes are stable; a retired code is never reused. Each code has a fixture
//! `tests/fixtures/<CODE>.prog` and a snapshot of its rendering (see `front/tests/diagnostics.rs`).

use super::Severity;
use serde::{Serialize, Serializer};

macro_rules! codes {
    ($( $code:ident, $sev:ident, $title:literal; )*) => {
        /// A stable diagnostic code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $( $code, )* }

        /// Every code, in order.
        pub const CODES: &[CodeInfo] = &[
            $( CodeInfo {
                code: Code::$code,
                name: stringify!($code),
                severity: Severity::$sev,
                title: $title,
                explain: include_str!(concat!("../../../docs/codes/", stringify!($code), ".md")),
            }, )*
        ];
    };
}

codes! {
    // Syntax
    P0001, Error, "syntax error";
    P0002, Error, "file is not UTF-8";
    // Names, imports, structure
    P0101, Error, "import not found";
    P0102, Error, "duplicate definition";
    P0103, Error, "unknown name";
    P0104, Error, "unknown field";
    P0105, Error, "unknown function";
    P0106, Error, "unknown unit";
    P0107, Error, "missing required field";
    P0108, Error, "duplicate field";
    P0109, Error, "inheritance cycle";
    P0110, Error, "unknown option value";
    P0111, Error, "unknown run in an override or selection";
    P0112, Error, "tokenizer file cannot be used";
    // Types, units, sizes
    P0201, Error, "type mismatch";
    P0202, Error, "unit mismatch";
    P0203, Error, "value out of range";
    P0204, Error, "heads do not divide the width";
    P0205, Error, "batch does not match the context";
    // Method rules
    P0301, Error, "growth times not strictly increasing";
    P0302, Error, "growth outside the run";
    P0303, Error, "depth does not grow";
    P0304, Error, "copy init from a zero-layer model";
    P0305, Error, "final depth differs from the model's depth";
    P0306, Error, "invalid experiment";
    P0307, Error, "optimizer state copy without copied blocks";
    // Warnings citing the paper
    P0401, Warning, "growth inside the decay phase";
    P0402, Warning, "little learning-rate mass after growth";
    P0403, Warning, "more than one growth";
    P0404, Warning, "zero-initialized new layers";
    P0405, Warning, "copy(last) from a multi-layer source";
    P0406, Warning, "token budget rounded to whole steps";
    P0407, Warning, "frontier point that costs a run or adds nothing";
}

/// What the catalogue knows about a code.
#[derive(Clone, Copy, Debug)]
pub struct CodeInfo {
    pub code: Code,
    /// `P0101`.
    pub name: &'static str,
    pub severity: Severity,
    pub title: &'static str,
    /// Markdown, `docs/codes/<CODE>.md`.
    pub explain: &'static str,
}

impl Code {
    pub fn info(self) -> &'static CodeInfo {
        CODES
            .iter()
            .find(|c| c.code == self)
            .expect("every code is in the catalogue")
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Looks a code up by name, case-insensitively (`p0101` works).
    pub fn parse(name: &str) -> Option<Code> {
        CODES
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name.trim()))
            .map(|c| c.code)
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}
