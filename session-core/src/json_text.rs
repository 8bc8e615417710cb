//! Finding things in JSON text without parsing it: where strings and nested values start
//! and end. One walker, so every place that looks into stored JSON (how deep it nests,
//! where a member's text is, which strings hold lone surrogates) agrees on what is inside
//! a string and what is structure.
//!
//! The text is assumed to be JSON a parser accepted, or is only measured: nothing here
//! recurses, so any depth is safe.

use std::ops::Range;

/// A piece of structure in JSON text, outside strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// `{` or `[` at this offset.
    Open(usize),
    /// `}` or `]` at this offset.
    Close(usize),
    /// A string, quotes included (unterminated: to the end of the text).
    String(Range<usize>),
}

/// The strings and brackets of `text` from `at` on, in order.
pub(crate) fn tokens(text: &[u8], at: usize) -> impl Iterator<Item = Token> + '_ {
    let mut i = at;
    std::iter::from_fn(move || {
        while let Some(&byte) = text.get(i) {
            let start = i;
            i += 1;
            match byte {
                b'"' => {
                    i = string_end(text, start).unwrap_or(text.len());
                    return Some(Token::String(start..i));
                }
                b'{' | b'[' => return Some(Token::Open(start)),
                b'}' | b']' => return Some(Token::Close(start)),
                _ => {}
            }
        }
        None
    })
}

/// Where the string starting at `at` (its opening quote) ends, past its closing quote;
/// `None` when there is no string there or it is unterminated.
pub(crate) fn string_end(text: &[u8], at: usize) -> Option<usize> {
    if text.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    loop {
        match text.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// Where the value starting at `at` ends.
pub(crate) fn value_end(text: &[u8], at: usize) -> Option<usize> {
    match text.get(at)? {
        b'"' => string_end(text, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            for token in tokens(text, at) {
                match token {
                    Token::Open(_) => depth += 1,
                    Token::Close(end) => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(end + 1);
                        }
                    }
                    Token::String(_) => {}
                }
            }
            None
        }
        _ => {
            let len = text[at..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(text.len() - at);
            (len > 0).then_some(at + len)
        }
    }
}

/// How deeply `text` nests arrays and objects.
pub(crate) fn nesting(text: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0);
    for token in tokens(text, 0) {
        match token {
            Token::Open(_) => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            Token::Close(_) => depth = depth.saturating_sub(1),
            Token::String(_) => {}
        }
    }
    deepest
}

/// The offset of the first byte at or after `at` that is not JSON whitespace.
pub(crate) fn skip_space(text: &[u8], at: usize) -> usize {
    at + text[at.min(text.len())..]
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_hide_their_brackets_and_quotes() {
        let text = br#"{"a":["}\"]",{"b":[]}],"c":1}"#;
        assert_eq!(nesting(text), 4);
        assert_eq!(value_end(text, 5), Some(22));
        assert_eq!(&text[5..22], br#"["}\"]",{"b":[]}]"#);
        assert_eq!(value_end(text, 27), Some(28));
        assert_eq!(string_end(br#""x\\"y"#, 0), Some(5));
        assert_eq!(string_end(br#""open"#, 0), None);
        assert_eq!(nesting(br#""[[[""#), 0);
        assert_eq!(skip_space(b"  \n x", 0), 4);
        assert_eq!(skip_space(b"x", 5), 5);
    }
}
