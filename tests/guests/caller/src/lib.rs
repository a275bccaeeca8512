//! A role for the run suites. Its task input says what to do:
//!
//! ```json
//! {"calls": [{"tool": "fs.write_file", "arguments": {...}}],
//!  "agent": "a prompt for the SDK's agent loop",
//!  "fail_attempts": 1, "fail_kind": "failed",
//!  "follow_ups": [{"id": "b", "role": "caller", "instructions": "..."}],
//!  "artifacts": ["a.txt"], "spin": 1000000, "summary": "what it says it did"}
//! ```
//!
//! It makes each call through `warden:plugin/tools` and reports every result
//! or error in its output; it fails its first `fail_attempts` attempts (after
//! making the calls, as a step that crashed half-way would).

use serde::Deserialize;
use serde_json::{Value, json};
use warden_sdk::agent::Agent;
use warden_sdk::role::{NewTask, Outcome, Role, RoleError, RoleSpec, Task};
use warden_sdk::tools;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Input {
    calls: Vec<Call>,
    agent: Option<String>,
    fail_attempts: u32,
    fail_kind: Option<String>,
    follow_ups: Vec<FollowUp>,
    artifacts: Vec<String>,
    /// Burn this many loop iterations of guest fuel.
    spin: u64,
    /// The outcome's summary (default: how many calls it made).
    summary: Option<String>,
}

#[derive(Deserialize)]
struct Call {
    tool: String,
    #[serde(default)]
    arguments: Value,
}

#[derive(Deserialize)]
struct FollowUp {
    id: String,
    role: String,
    instructions: String,
    #[serde(default)]
    depends_on: Vec<String>,
    #[serde(default)]
    input: Option<Value>,
}

struct Caller;

impl Role for Caller {
    fn describe() -> RoleSpec {
        RoleSpec::new("caller", "Makes the tool calls its input lists").tool("fs")
    }

    fn run(task: Task) -> Result<Outcome, RoleError> {
        let input: Input = if task.input == "null" {
            Input::default()
        } else {
            task.input_as()?
        };
        let mut results = Vec::new();
        for call in &input.calls {
            results.push(match tools::call(&call.tool, &call.arguments) {
                Ok(v) => json!({"tool": call.tool, "ok": v}),
                Err(e) => json!({"tool": call.tool, "error": tools::describe(&e)}),
            });
        }
        let mut x: u64 = 0;
        for i in 0..input.spin {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        let agent = match &input.agent {
            Some(prompt) => {
                let done = Agent::new("Use the tools to do the task.")
                    .max_steps(4)
                    .run(prompt)?;
                json!({"answer": done.answer, "calls": done.calls})
            }
            None => Value::Null,
        };
        if task.context.attempt <= input.fail_attempts {
            let message = format!("attempt {} fails on purpose", task.context.attempt);
            return Err(match input.fail_kind.as_deref() {
                Some("invalid") => RoleError::InvalidTask(message),
                _ => RoleError::Failed(message),
            });
        }
        let summary = input
            .summary
            .clone()
            .unwrap_or_else(|| format!("{} call(s) made", results.len()));
        let mut outcome = Outcome::new(summary).output(&json!({
            "results": results,
            "agent": agent,
            "tools": tools::list().iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
            "attempt": task.context.attempt,
            "dependencies": task.context.dependencies.iter().map(|d| d.task_id.clone()).collect::<Vec<_>>(),
            "spun": x,
        }))?;
        for a in input.artifacts {
            outcome = outcome.artifact(a);
        }
        for f in input.follow_ups {
            let mut t = NewTask::new(&f.id, &f.role, &f.instructions);
            t.depends_on = f.depends_on;
            if let Some(i) = f.input {
                t = t.input(&i);
            }
            outcome = outcome.follow_up(t);
        }
        Ok(outcome)
    }
}

warden_sdk::export_role!(Caller);
