//! JSON documents a guest hands the host (a model request's schemas, a
//! memory's `meta.extra`, a tool's input schema, a role's output): their
//! size and nesting checked in one pass over the bytes before any parse
//! allocates, so a guest cannot make the host build a tree many times the
//! size of what it sent, or recurse on its behalf.

use serde_json::Value;

/// The most bytes of one document a guest sends alongside other data.
pub const MAX_BYTES: usize = 1024 * 1024;
/// How deeply a document may nest (arrays and objects).
pub const MAX_DEPTH: usize = 64;

/// `Err` naming the problem when `text` is over `max_bytes` or nests
/// deeper than [`MAX_DEPTH`]; `what` names the document in the message.
pub fn check(what: &str, text: &str, max_bytes: usize) -> Result<(), String> {
    if text.len() > max_bytes {
        return Err(format!(
            "{what} is {} bytes; at most {max_bytes} are accepted",
            text.len()
        ));
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!("{what} nests deeper than {MAX_DEPTH} levels"));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// `text` parsed, once [`check`] passed with [`MAX_BYTES`].
pub fn parse(what: &str, text: &str) -> Result<Value, String> {
    parse_within(what, text, MAX_BYTES)
}

/// `text` parsed, once [`check`] passed with `max_bytes` (for a document
/// whose size another limit already bounds, such as a call's output).
pub fn parse_within(what: &str, text: &str, max_bytes: usize) -> Result<Value, String> {
    check(what, text, max_bytes)?;
    serde_json::from_str(text).map_err(|e| format!("{what} is not JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_and_depth_are_checked_before_parsing() {
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(parse("x", &deep).unwrap_err().contains("nests deeper"));
        // Unbalanced: refused on the way down, before the parser sees it.
        let open = "[".repeat(MAX_DEPTH + 1);
        assert!(parse("x", &open).unwrap_err().contains("nests deeper"));
        let just = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse("x", &just).is_ok());
        let big = format!("\"{}\"", "x".repeat(MAX_BYTES));
        assert!(parse("x", &big).unwrap_err().contains("bytes"));
        assert!(parse_within("x", &big, usize::MAX).is_ok());
        // Brackets inside strings, escaped quotes included, are text.
        let text = format!("{{\"d\":\"\\\"{}\"}}", "[{".repeat(MAX_DEPTH));
        assert!(parse("x", &text).is_ok());
        assert!(
            parse("the thing", "{")
                .unwrap_err()
                .starts_with("the thing is not JSON")
        );
    }
}
