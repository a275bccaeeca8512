//! Text a guest (or a model) wrote, made safe to print on the operator's
//! terminal: control characters could move the cursor, recolour, rewrite
//! warden's own lines, set the window title or write the clipboard (OSC 52),
//! so every one of them is shown as an escape instead. Only `warden exec`'s
//! pass-through of the program's own output is left alone: that is the
//! point of running it.

use std::borrow::Cow;

/// Whether a terminal would act on `c` rather than show it: C0 controls
/// but newline and tab, DEL, the C1 controls (U+0080–U+009F; U+009B is a
/// one-character CSI), and the bidirectional overrides that reorder what
/// follows.
fn is_hazard(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with each hazard written as `\u{XX}`.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hazard) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_hazard(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Serialized JSON with each hazard serde leaves as it is (DEL, C1, the
/// bidi overrides) written as a JSON `\uXXXX` escape: the same document,
/// still valid JSON, safe on a terminal. (serde already escapes C0.)
pub fn escape_json(json: &str) -> Cow<'_, str> {
    if !json.chars().any(is_hazard) {
        return Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if is_hazard(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_act_on_and_nothing_else() {
        assert_eq!(escape("plain\ttext\nnext"), "plain\ttext\nnext");
        assert_eq!(
            escape("\u{1b}[2J\u{1b}]52;c;aGk=\u{7}done\r"),
            "\\u{1b}[2J\\u{1b}]52;c;aGk=\\u{7}done\\u{d}"
        );
        assert_eq!(escape("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(escape("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(escape("héllo ✓"), "héllo ✓");
    }

    #[test]
    fn escaped_json_is_the_same_json() {
        let value = serde_json::json!({"text": "x\u{7f}\u{9b}31m\u{1b}[0m\u{202e}"});
        let raw = value.to_string();
        let safe = escape_json(&raw);
        assert!(!safe.chars().any(is_hazard), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, value);
    }
}
