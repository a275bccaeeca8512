//! text-stats: counts and frequent words. See README.md for how to build and
//! run it.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use warden_sdk::{ToolError, Toolbox};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountArgs {
    /// The text to measure.
    pub text: String,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub words: usize,
    pub lines: usize,
    pub chars: usize,
    pub sentences: usize,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopArgs {
    /// The text to read.
    pub text: String,
    /// How many words to return (1-100, default 10).
    pub n: Option<usize>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct WordCount {
    pub word: String,
    pub count: usize,
}

pub fn count(args: CountArgs) -> Result<Counts, ToolError> {
    let text = args.text;
    Ok(Counts {
        words: words(&text).count(),
        lines: text.lines().count(),
        chars: text.chars().count(),
        sentences: text
            .split(['.', '!', '?'])
            .filter(|s| s.chars().any(char::is_alphanumeric))
            .count(),
    })
}

pub fn top_words(args: TopArgs) -> Result<Vec<WordCount>, ToolError> {
    let n = args.n.unwrap_or(10);
    if !(1..=100).contains(&n) {
        return Err(ToolError::InvalidArguments(format!(
            "n = {n}: ask for between 1 and 100 words"
        )));
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for word in words(&args.text) {
        *counts.entry(word.to_lowercase()).or_default() += 1;
    }
    let mut ranked: Vec<WordCount> = counts
        .into_iter()
        .map(|(word, count)| WordCount { word, count })
        .collect();
    ranked.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.word.cmp(&b.word)));
    ranked.truncate(n);
    Ok(ranked)
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
}

pub fn toolbox() -> Toolbox {
    Toolbox::new()
        .tool(
            "count",
            "Counts words, lines, characters and sentences",
            count,
        )
        .tool(
            "top_words",
            "The most frequent words, most frequent first",
            top_words,
        )
}

warden_sdk::export!(toolbox);
warden_sdk::embed_manifest!("../warden.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_ranks() {
        let text = "One fish. Two fish.\nRed fish!".to_string();
        assert_eq!(
            count(CountArgs { text: text.clone() }).unwrap(),
            Counts {
                words: 6,
                lines: 2,
                chars: 29,
                sentences: 3
            }
        );
        let top = top_words(TopArgs { text, n: Some(1) }).unwrap();
        assert_eq!(
            top,
            vec![WordCount {
                word: "fish".into(),
                count: 3
            }]
        );
        assert!(
            top_words(TopArgs {
                text: "x".into(),
                n: Some(0)
            })
            .is_err()
        );
    }
}
