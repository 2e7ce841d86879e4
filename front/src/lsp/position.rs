//! Positions: LSP's zero-based lines and UTF-16 columns against the buffer's byte offsets,
//! and the identifier under the cursor.
//!
//! Invariant: every function clamps to the text and to char boundaries, so no client position
//! can make a request panic.

use lsp_types::{Position, Range};

use crate::diagnostic::Span;

/// Zero-based line and UTF-16 column of a byte offset.
pub(super) fn to_position(text: &str, offset: usize) -> Position {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = text[line_start..offset].encode_utf16().count();
    Position::new(line as u32, col as u32)
}

/// The byte offset of a position (clamped to its line and the text).
pub(super) fn to_offset(text: &str, pos: Position) -> usize {
    let mut line_start = 0;
    for _ in 0..pos.line {
        match text[line_start..].find('\n') {
            Some(i) => line_start += i + 1,
            None => return text.len(),
        }
    }
    let mut units = 0;
    for (i, c) in text[line_start..].char_indices() {
        if c == '\n' || units >= pos.character as usize {
            return line_start + i;
        }
        units += c.len_utf16();
    }
    text.len()
}

pub(super) fn span_range(text: &str, span: Span) -> Range {
    Range::new(to_position(text, span.start), to_position(text, span.end))
}

pub(super) fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The identifier around `offset` (or ending at it).
pub(super) fn word_at(text: &str, offset: usize) -> Option<(usize, usize)> {
    let start = text[..offset]
        .char_indices()
        .rev()
        .take_while(|&(_, c)| is_ident(c))
        .last()
        .map_or(offset, |(i, _)| i);
    let end = offset
        + text[offset..]
            .find(|c: char| !is_ident(c))
            .unwrap_or(text.len() - offset);
    (start < end && !text[start..].starts_with(|c: char| c.is_ascii_digit()))
        .then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_utf16_units() {
        let text = "a\n\u{1F600}b\n";
        let p = to_position(text, 1 + 1 + 4);
        assert_eq!((p.line, p.character), (1, 2));
        assert_eq!(to_offset(text, p), 6);
        assert_eq!(to_offset(text, Position::new(9, 0)), text.len());
    }
}
