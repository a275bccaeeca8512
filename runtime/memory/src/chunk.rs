//! Cutting a document into overlapping chunks for `warden memory import`:
//! each chunk is embedded and stored on its own, so a search finds the
//! passage, not the whole file.

/// Splits `text` into chunks of about `size` characters, cut at paragraph,
/// then line, then word boundaries, each starting `overlap` characters
/// before the previous one ended (at a word boundary).
pub fn chunk_text(text: &str, size: usize, overlap: usize) -> Vec<String> {
    let text = text.trim();
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let rest = &text[start..];
        if rest.len() <= size {
            chunks.push(rest.trim().to_string());
            break;
        }
        let window = &rest[..floor_char(rest, size)];
        // The best cut in the second half of the window.
        let half = window.len() / 2;
        let cut = ["\n\n", "\n", ". ", " "]
            .iter()
            .find_map(|sep| window[half..].rfind(sep).map(|i| half + i + sep.len()))
            .unwrap_or(window.len());
        chunks.push(rest[..cut].trim().to_string());
        // Back up by `overlap`, to the start of a word.
        let back = cut.saturating_sub(overlap);
        let back = rest[..cut][back..]
            .find(char::is_whitespace)
            .map_or(cut, |i| back + i + 1);
        start += back.clamp(1, cut);
    }
    chunks.retain(|c| !c.is_empty());
    chunks
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::chunk_text;

    #[test]
    fn chunks_cover_the_text_with_overlap_and_respect_the_size() {
        let text: String = (0..400)
            .map(|i| format!("word{i}{}", if i % 37 == 36 { ".\n\n" } else { " " }))
            .collect();
        let chunks = chunk_text(&text, 400, 60);
        assert!(chunks.len() > 5, "{}", chunks.len());
        for c in &chunks {
            assert!(c.len() <= 400, "{} > 400", c.len());
        }
        // Every word lands in some chunk, and neighbours share words.
        for i in 0..400 {
            let w = format!("word{i}");
            assert!(
                chunks
                    .iter()
                    .any(|c| c.split_whitespace().any(|t| t.trim_end_matches('.') == w)),
                "{w} lost"
            );
        }
        for pair in chunks.windows(2) {
            let last = pair[0].split_whitespace().last().unwrap();
            assert!(
                pair[1].contains(last),
                "no overlap between {:?} and {:?}",
                pair[0],
                pair[1]
            );
        }
        assert_eq!(chunk_text("short", 400, 60), vec!["short".to_string()]);
        assert!(chunk_text("  \n ", 400, 60).is_empty());
    }
}
