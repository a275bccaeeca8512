//! The `planner` role: turns the run's goal into tasks for the run's other
//! roles. The model answers in a schema whose `role` is an enum of the
//! roles the run has, so even a small local model can only name real ones;
//! the plan is then cleaned (ids made unique, dependencies only on earlier
//! tasks, so no cycle) before it becomes the outcome's follow-ups.

use serde::Deserialize;
use warden_sdk::llm::{self, Message, Request};
use warden_sdk::role::{NewTask, Outcome, Role, RoleError, RoleSpec, Task};
use warden_sdk::serde_json::{self, json};

/// Tasks one plan may add.
const MAX_TASKS: usize = 6;

#[derive(Debug, Deserialize)]
struct Plan {
    tasks: Vec<Planned>,
}

#[derive(Debug, Deserialize)]
struct Planned {
    id: String,
    role: String,
    instructions: String,
    #[serde(default)]
    depends_on: Vec<String>,
}

struct Planner;

impl Role for Planner {
    fn describe() -> RoleSpec {
        RoleSpec::new(
            "planner",
            "Breaks a goal into tasks for the other roles, with dependencies and priorities",
        )
    }

    fn run(task: Task) -> Result<Outcome, RoleError> {
        // Only roles that can act in this run: one that works on web
        // sources alone (its only tool is `fetch`) needs a URL in the goal
        // or memories to work from, else it could only fail.
        let has_sources =
            has_url(&task.goal) || has_url(&task.instructions) || !task.context.memories.is_empty();
        let roles: Vec<(String, String)> = task
            .context
            .roles
            .iter()
            .filter(|r| r.name != "planner")
            .filter(|r| has_sources || !needs_sources(&r.tools))
            .map(|r| (r.name.clone(), r.description.clone()))
            .collect();
        if roles.is_empty() {
            return Err(RoleError::InvalidTask(
                "the run has no roles besides the planner to give tasks to".into(),
            ));
        }
        let schema = plan_schema(&roles);
        let catalogue: String = roles
            .iter()
            .map(|(name, description)| format!("- {name}: {description}\n"))
            .collect();
        let request = Request::new(vec![
            Message::system(format!(
                "You plan software work. Split the goal into at most {MAX_TASKS} small tasks, \
                 each for one of these roles:\n{catalogue}\
                 Give each task a short id, the role, precise instructions (file names included) \
                 and the ids of earlier tasks it needs. Answer with JSON only."
            )),
            Message::user(task.brief()),
        ])
        .max_tokens(700)
        .temperature(0.0);
        let answer = llm::ask_schema(request, &schema)?;
        let plan: Plan = serde_json::from_value(answer)
            .map_err(|e| RoleError::Failed(format!("the plan has the wrong shape: {e}")))?;
        let tasks = clean(plan.tasks, &roles);
        if tasks.is_empty() {
            return Err(RoleError::Failed("the model planned no tasks".into()));
        }
        let count = tasks.len();
        let summary = format!(
            "planned {count} task(s): {}",
            tasks
                .iter()
                .map(|t| format!("{} ({})", t.id, t.role))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let listed: Vec<_> = tasks
            .iter()
            .map(|t| json!({"id": t.id, "role": t.role, "instructions": t.instructions, "depends_on": t.depends_on}))
            .collect();
        let mut outcome = Outcome::new(summary).output(&json!({ "tasks": listed }))?;
        for t in tasks {
            outcome = outcome.follow_up(t);
        }
        Ok(outcome)
    }
}

warden_sdk::export_role!(Planner);
warden_sdk::embed_manifest!("../warden.toml");

fn plan_schema(roles: &[(String, String)]) -> serde_json::Value {
    let names: Vec<&str> = roles.iter().map(|(n, _)| n.as_str()).collect();
    json!({
        "type": "object",
        "properties": {
            "tasks": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_TASKS,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "maxLength": 24},
                        "role": {"type": "string", "enum": names},
                        "instructions": {"type": "string", "maxLength": 300},
                        "depends_on": {
                            "type": "array",
                            "maxItems": 3,
                            "items": {"type": "string", "maxLength": 24}
                        }
                    },
                    "required": ["id", "role", "instructions", "depends_on"],
                    "additionalProperties": false
                }
            }
        },
        "required": ["tasks"],
        "additionalProperties": false
    })
}

/// A plan the host will accept: known roles, valid unique ids, and
/// dependencies only on tasks planned before (which rules out cycles).
/// Earlier tasks get higher priority.
fn clean(planned: Vec<Planned>, roles: &[(String, String)]) -> Vec<NewTask> {
    let mut out: Vec<NewTask> = Vec::new();
    let mut renamed: Vec<(String, String)> = Vec::new();
    for (i, p) in planned.into_iter().take(MAX_TASKS).enumerate() {
        if !roles.iter().any(|(name, _)| *name == p.role) || p.instructions.trim().is_empty() {
            continue;
        }
        let mut id = slug(&p.id);
        if id.is_empty() {
            id = format!("{}-{}", p.role, i + 1);
        }
        let base = id.clone();
        let mut n = 2;
        while out.iter().any(|t| t.id == id) {
            id = format!("{base}-{n}");
            n += 1;
        }
        let depends_on: Vec<String> = p
            .depends_on
            .iter()
            .filter_map(|d| {
                renamed
                    .iter()
                    .find(|(from, _)| from == d)
                    .map(|(_, to)| to.clone())
            })
            .collect();
        renamed.push((p.id.clone(), id.clone()));
        let mut task =
            NewTask::new(&id, &p.role, p.instructions.trim()).priority((MAX_TASKS - i) as i32);
        task.depends_on = depends_on;
        out.push(task);
    }
    out
}

/// Whether a role works on web sources alone.
fn needs_sources(tools: &[String]) -> bool {
    !tools.is_empty() && tools.iter().all(|t| t == "fetch")
}

fn has_url(text: &str) -> bool {
    text.contains("http://") || text.contains("https://")
}

/// `Write Tests!` → `write-tests`.
fn slug(raw: &str) -> String {
    let lowered: String = raw
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut slug = String::new();
    for part in lowered.split('-').filter(|p| !p.is_empty()) {
        if !slug.is_empty() {
            slug.push('-');
        }
        slug.push_str(part);
    }
    slug.truncate(40);
    slug
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(id: &str, role: &str, deps: &[&str]) -> Planned {
        Planned {
            id: id.into(),
            role: role.into(),
            instructions: format!("do {id}"),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn a_role_that_only_fetches_needs_a_source() {
        assert!(needs_sources(&["fetch".to_string()]));
        assert!(!needs_sources(&["fetch".to_string(), "fs".to_string()]));
        assert!(!needs_sources(&[]));
        assert!(has_url("summarise https://example.com/a"));
        assert!(!has_url("Write a Python file add.py"));
    }

    #[test]
    fn plans_are_cleaned_into_an_acyclic_set_of_known_roles() {
        let roles = vec![
            ("coder".to_string(), String::new()),
            ("tester".to_string(), String::new()),
        ];
        let tasks = clean(
            vec![
                planned("Write Code", "coder", &["test"]),
                planned("test", "tester", &["Write Code"]),
                planned("test", "tester", &["test", "nowhere"]),
                planned("poem", "poet", &[]),
            ],
            &roles,
        );
        let ids: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["write-code", "test", "test-2"]);
        assert!(
            tasks[0].depends_on.is_empty(),
            "a later task is not a dependency"
        );
        assert_eq!(tasks[1].depends_on, ["write-code"]);
        assert_eq!(tasks[2].depends_on, ["test"]);
        assert!(tasks[0].priority > tasks[1].priority);
    }
}
