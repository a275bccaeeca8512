//! The `researcher` role: fetches the sources a task names (URLs in its
//! instructions or its input's `urls`) through the `fetch` tool, keeps them
//! in memory in chunks with their URL as source, then answers the task from
//! the best-matching memories — those it just stored and those stored
//! before, by this run or earlier ones.

use serde::Deserialize;
use warden_sdk::llm::{self, Message, Request};
use warden_sdk::memory::{self, Filter, Meta, SearchMode};
use warden_sdk::role::{Outcome, Role, RoleError, RoleSpec, Task};
use warden_sdk::serde_json::json;
use warden_sdk::tools;

const CHUNK_CHARS: usize = 1500;
const MAX_CHUNKS_PER_SOURCE: usize = 20;
const RECALL: u32 = 4;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Input {
    urls: Vec<String>,
    /// The memory namespace to keep sources in (default `research`).
    namespace: Option<String>,
}

struct Researcher;

impl Role for Researcher {
    fn describe() -> RoleSpec {
        RoleSpec::new(
            "researcher",
            "Fetches web sources, keeps them in memory and answers questions from them",
        )
        .tool("fetch")
    }

    fn run(task: Task) -> Result<Outcome, RoleError> {
        let input: Input = if task.input == "null" {
            Input::default()
        } else {
            task.input_as()?
        };
        let namespace = input.namespace.unwrap_or_else(|| "research".into());
        let mut urls = input.urls;
        for word in task.instructions.split_whitespace() {
            let word = word.trim_end_matches(['.', ',', ')', ';']);
            if (word.starts_with("http://") || word.starts_with("https://"))
                && !urls.iter().any(|u| u == word)
            {
                urls.push(word.to_string());
            }
        }

        let mut stored = 0;
        let mut sources = Vec::new();
        for url in &urls {
            let page = tools::call(
                "fetch.fetch_url",
                &json!({"url": url, "as_text": true, "max_bytes": 200_000}),
            )?;
            let status = page["status"].as_u64().unwrap_or(0);
            if !(200..300).contains(&status) {
                return Err(RoleError::Failed(format!("{url} answered HTTP {status}")));
            }
            let body = page["body"].as_str().unwrap_or_default();
            let meta = Meta {
                kind: Some("web".into()),
                source: Some(url.clone()),
                task_id: Some(task.id.clone()),
                ..Meta::default()
            };
            for chunk in chunks(body).into_iter().take(MAX_CHUNKS_PER_SOURCE) {
                memory::store(&namespace, &chunk, &meta)?;
                stored += 1;
            }
            sources.push(url.clone());
        }

        let hits = memory::search(
            &namespace,
            &task.instructions,
            RECALL,
            &Filter::default(),
            SearchMode::Hybrid,
        )?;
        let mut notes = String::new();
        let mut cited = Vec::new();
        for hit in hits.iter().chain(task.context.memories.iter()) {
            let source = hit.entry.meta.source.clone().unwrap_or_default();
            notes.push_str(&format!("[{source}] {}\n\n", hit.entry.content));
            if !source.is_empty() && !cited.contains(&source) {
                cited.push(source);
            }
        }
        if notes.is_empty() {
            return Err(RoleError::InvalidTask(format!(
                "nothing to answer from: the task names no URL and memory namespace {namespace:?} has nothing on it"
            )));
        }
        let request = Request::new(vec![
            Message::system(
                "Answer the task from the notes only, in at most 150 words. Say which source each point comes from.",
            ),
            Message::user(format!("{}\nNotes:\n{notes}", task.brief())),
        ])
        .max_tokens(400)
        .temperature(0.0);
        let answer = llm::complete(&request)?.text.trim().to_string();
        Outcome::new(first_line(&answer)).output(&json!({
            "answer": answer,
            "fetched": sources,
            "stored_chunks": stored,
            "sources": cited,
            "namespace": namespace,
        }))
    }
}

warden_sdk::export_role!(Researcher);
warden_sdk::embed_manifest!("../warden.toml");

/// Paragraph-aligned pieces of about [`CHUNK_CHARS`] characters.
fn chunks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for paragraph in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        if !current.is_empty() && current.len() + paragraph.len() > CHUNK_CHARS {
            out.push(std::mem::take(&mut current));
        }
        let mut rest = paragraph;
        while rest.len() > CHUNK_CHARS {
            let mut cut = CHUNK_CHARS;
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push(rest[..cut].to_string());
            rest = &rest[cut..];
        }
        if !current.is_empty() {
            current.push_str("\n\n");
        }
        current.push_str(rest);
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(160) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_follow_paragraphs_and_cap_their_size() {
        let text = format!("a\n\nb\n\n{}", "x".repeat(CHUNK_CHARS * 2 + 10));
        let parts = chunks(&text);
        assert_eq!(parts[0], "a\n\nb");
        assert_eq!(parts[1].len(), CHUNK_CHARS);
        assert_eq!(parts[2].len(), CHUNK_CHARS);
        assert_eq!(parts[3].len(), 10);
    }
}
