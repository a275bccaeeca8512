//! A warden role: `__NAME__`, which summarises what the tasks before it did.

use warden_sdk::llm;
use warden_sdk::role::{Outcome, Role, RoleError, RoleSpec, Task};
use warden_sdk::serde_json::json;

pub struct Summariser;

/// What the model is asked: the task, what was done before it, and what to
/// answer. Plain Rust, so `cargo test` checks it natively.
pub fn prompt(task: &Task) -> String {
    format!(
        "{}\nWrite a short summary (at most three sentences) that answers the task.",
        task.brief()
    )
}

impl Role for Summariser {
    fn describe() -> RoleSpec {
        RoleSpec::new("__NAME__", "Summarises what the tasks before it did")
    }

    fn run(task: Task) -> Result<Outcome, RoleError> {
        if task.instructions.trim().is_empty() {
            // Final: the host does not retry an invalid task.
            return Err(RoleError::InvalidTask("the task has no instructions".into()));
        }
        // A model the operator did not grant comes back as `denied`.
        let summary = llm::ask(&prompt(&task))?;
        warden_sdk::log::info(format!("summarised task {}", task.id));
        Outcome::new(summary.trim()).output(&json!({ "words": summary.split_whitespace().count() }))
    }
}

warden_sdk::export_role!(Summariser);
warden_sdk::embed_manifest!("../warden.toml");

#[cfg(test)]
mod tests {
    use super::*;
    use warden_sdk::role::{Context, Dependency};

    #[test]
    fn the_prompt_names_the_task_and_what_came_before() {
        let task = Task {
            id: "sum".into(),
            goal: "Ship the parser".into(),
            instructions: "Summarise the work".into(),
            input: "null".into(),
            context: Context {
                dependencies: vec![Dependency {
                    task_id: "code".into(),
                    role: "coder".into(),
                    summary: "wrote parser.py".into(),
                    output: "null".into(),
                    artifacts: vec![],
                }],
                memories: vec![],
                roles: vec![],
                attempt: 1,
                last_error: None,
            },
        };
        let prompt = prompt(&task);
        assert!(prompt.contains("Summarise the work"), "{prompt}");
        assert!(prompt.contains("wrote parser.py"), "{prompt}");
    }
}
