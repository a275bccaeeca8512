//! The `coder` role: asks the model for the files a task needs (as JSON with
//! a path and the contents of each) and writes them into the run workspace
//! through the `fs` tool, which sees the workspace at `/workspace`. The role
//! itself touches no file: every write is a host-mediated tool call.

use serde::Deserialize;
use warden_sdk::llm::{self, Message, Request};
use warden_sdk::role::{Outcome, Role, RoleError, RoleSpec, Task};
use warden_sdk::serde_json::{self, json};
use warden_sdk::tools;

const WORKSPACE: &str = "/workspace";
const MAX_FILES: usize = 4;

#[derive(Debug, Deserialize)]
struct Files {
    files: Vec<File>,
    summary: String,
}

#[derive(Debug, Deserialize)]
struct File {
    path: String,
    content: String,
}

struct Coder;

impl Role for Coder {
    fn describe() -> RoleSpec {
        RoleSpec::new(
            "coder",
            "Writes source files and their tests into the run workspace",
        )
        .tool("fs")
    }

    fn run(task: Task) -> Result<Outcome, RoleError> {
        if !tools::has("fs.write_file") {
            return Err(RoleError::Denied(
                "the coder writes through the fs tool; grant it with `tools = [\"fs\"]` in the role's workflow entry".into(),
            ));
        }
        let mut prompt = task.brief();
        // What dependencies wrote, so a fix sees the code it fixes.
        for path in task.dependency_artifacts().iter().take(4) {
            if let Ok(text) = read(path) {
                prompt.push_str(&format!("\nCurrent {path}:\n```\n{text}\n```\n"));
            }
        }
        let request = Request::new(vec![
            Message::system(format!(
                "You are a careful Python programmer. Write the files the task asks for. \
                 Answer with JSON: {{\"files\": [{{\"path\": \"name.py\", \"content\": \"...\"}}], \
                 \"summary\": \"{SUMMARY_EXAMPLE}\"}}. Paths are relative, like stats.py or \
                 test_stats.py. Tests use unittest."
            )),
            Message::user(prompt),
        ])
        .max_tokens(1500)
        .temperature(0.0);
        let answer = llm::ask_schema(request, &schema(&mentioned_files(&task.brief())))?;
        let files: Files = serde_json::from_value(answer)
            .map_err(|e| RoleError::Failed(format!("the answer has the wrong shape: {e}")))?;
        if files.files.is_empty() {
            return Err(RoleError::Failed("the model wrote no files".into()));
        }
        // A small model may echo the example summary back.
        let summary = files.summary.trim();
        let summary = if summary.eq_ignore_ascii_case(SUMMARY_EXAMPLE) {
            ""
        } else {
            summary
        };
        let files = distinct_files(files.files);
        let mut outcome = if summary.is_empty() {
            let names: Vec<&str> = files.iter().map(|(path, _)| path.as_str()).collect();
            Outcome::new(format!("wrote {}", names.join(", ")))
        } else {
            Outcome::new(summary.to_string())
        };
        let mut written = Vec::new();
        for (path, content) in files {
            tools::call(
                "fs.write_file",
                &json!({
                    "path": format!("{WORKSPACE}/{path}"),
                    "content": content,
                    "create_dirs": true,
                }),
            )?;
            written.push(json!({"path": path, "bytes": content.len()}));
            outcome = outcome.artifact(path);
        }
        outcome.output(&json!({ "files": written }))
    }
}

warden_sdk::export_role!(Coder);
warden_sdk::embed_manifest!("../warden.toml");

/// The file names a task mentions (`stats.py`, `pkg/util.py`): when there
/// are any, the answer's paths are held to them, so even a small model
/// writes the files asked for and not others.
fn mentioned_files(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let words =
        text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')));
    for word in words {
        let word = word.trim_end_matches(['.', '/']);
        let Some((stem, ext)) = word.rsplit_once('.') else {
            continue;
        };
        let named = !stem.is_empty()
            && (2..=4).contains(&ext.len())
            && ext.chars().all(|c| c.is_ascii_lowercase());
        if let Some(path) = clean_path(word).filter(|_| named)
            && !names.contains(&path)
        {
            names.push(path);
        }
    }
    names.truncate(MAX_FILES * 2);
    names
}

/// The summary in the prompt's example answer.
const SUMMARY_EXAMPLE: &str = "what you wrote";

/// The files to write, each path once (a later entry for the same path
/// replaces the earlier one), at most [`MAX_FILES`]; a path that is not a
/// clean relative one gets a generated name.
fn distinct_files(files: Vec<File>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, file) in files.into_iter().take(MAX_FILES).enumerate() {
        let path = clean_path(&file.path).unwrap_or_else(|| format!("file_{}.py", i + 1));
        match out.iter_mut().find(|(p, _)| *p == path) {
            Some(slot) => slot.1 = file.content,
            None => out.push((path, file.content)),
        }
    }
    out
}

fn schema(names: &[String]) -> serde_json::Value {
    let path = if names.is_empty() {
        json!({"type": "string", "maxLength": 60})
    } else {
        json!({"enum": names})
    };
    json!({
        "type": "object",
        "properties": {
            "files": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_FILES,
                "items": {
                    "type": "object",
                    "properties": {
                        "path": path,
                        "content": {"type": "string", "maxLength": 4000}
                    },
                    "required": ["path", "content"],
                    "additionalProperties": false
                }
            },
            "summary": {"type": "string", "maxLength": 200}
        },
        "required": ["files", "summary"],
        "additionalProperties": false
    })
}

fn read(path: &str) -> Result<String, RoleError> {
    let result = tools::call(
        "fs.read_file",
        &json!({"path": format!("{WORKSPACE}/{path}"), "max_bytes": 16384}),
    )?;
    Ok(result["content"].as_str().unwrap_or_default().to_string())
}

/// A path inside the workspace, or `None`: relative, no `..`, plain
/// characters only.
fn clean_path(raw: &str) -> Option<String> {
    let trimmed = raw
        .trim()
        .trim_start_matches("/workspace/")
        .trim_start_matches("./")
        .trim_start_matches('/');
    let ok = !trimmed.is_empty()
        && trimmed.len() <= 100
        && trimmed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && trimmed
            .split('/')
            .all(|part| !part.is_empty() && part != ".." && part != ".");
    ok.then(|| trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::{File, clean_path, distinct_files, mentioned_files};

    #[test]
    fn a_path_given_twice_is_written_once_with_its_last_content() {
        let file = |path: &str, content: &str| File {
            path: path.into(),
            content: content.into(),
        };
        let files = distinct_files(vec![
            file("stats.py", "v1"),
            file("test_stats.py", "t"),
            file("./stats.py", "v2"),
            file("../x.py", "x"),
        ]);
        assert_eq!(
            files,
            [
                ("stats.py".to_string(), "v2".to_string()),
                ("test_stats.py".to_string(), "t".to_string()),
                ("file_4.py".to_string(), "x".to_string()),
            ]
        );
    }

    #[test]
    fn the_files_a_task_names_are_the_ones_it_may_write() {
        assert_eq!(
            mentioned_files(
                "Write stats.py (mean, e.g. of [1, 2.5]) and test_stats.py; see pkg/util.py. Fix stats.py."
            ),
            ["stats.py", "test_stats.py", "pkg/util.py"]
        );
        assert!(mentioned_files("Write a CSV parser, version 2.0.").is_empty());
        assert!(mentioned_files("read ../etc/passwd.txt").is_empty());
    }

    #[test]
    fn paths_stay_inside_the_workspace() {
        assert_eq!(clean_path("stats.py").as_deref(), Some("stats.py"));
        assert_eq!(
            clean_path("/workspace/pkg/a.py").as_deref(),
            Some("pkg/a.py")
        );
        assert_eq!(clean_path("./b.py").as_deref(), Some("b.py"));
        assert_eq!(clean_path("../etc/passwd"), None);
        assert_eq!(clean_path("a/../../b"), None);
        assert_eq!(clean_path("a b.py"), None);
        assert_eq!(clean_path(""), None);
    }
}
