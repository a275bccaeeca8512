//! Roles: plugins that export `warden:plugin/role`. The host asks a role
//! what it is ([`CompiledPlugin::describe_role`]) and gives it one task per
//! call ([`CompiledPlugin::run_role`]); these are the host-side shapes of
//! what crosses that boundary.
//!
//! [`CompiledPlugin::describe_role`]: crate::CompiledPlugin::describe_role
//! [`CompiledPlugin::run_role`]: crate::CompiledPlugin::run_role

use serde::{Deserialize, Serialize};
use serde_json::Value;
use warden_api::memory::Hit;

use crate::bindings::role::exports::warden::plugin::role as wit;
use crate::call::CallError;
use crate::document;

/// What a role says it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSpec {
    pub name: String,
    pub description: String,
    /// The tool plugins it expects to call.
    pub tools: Vec<String>,
}

/// What a finished task this one depends on produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dependency {
    pub task_id: String,
    pub role: String,
    pub summary: String,
    pub output: Value,
    pub artifacts: Vec<String>,
}

/// What a task is given besides its instructions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskContext {
    pub dependencies: Vec<Dependency>,
    pub memories: Vec<Hit>,
    pub roles: Vec<RoleSpec>,
    /// 1 on the first try.
    pub attempt: u32,
    pub last_error: Option<String>,
}

/// One attempt of one task, as a role receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub goal: String,
    pub instructions: String,
    pub input: Value,
    pub context: TaskContext,
}

/// A task a role adds to the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTask {
    pub id: String,
    pub role: String,
    pub instructions: String,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub input: Option<Value>,
}

/// What a task produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub summary: String,
    pub output: Value,
    /// Relative to the run workspace.
    pub artifacts: Vec<String>,
    pub follow_ups: Vec<NewTask>,
}

/// A role's own failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum RoleError {
    /// The task cannot be done as given; trying again will not help.
    #[error("invalid task: {0}")]
    InvalidTask(String),
    /// This attempt failed; another may succeed.
    #[error("failed: {0}")]
    Failed(String),
    /// The host refused something the role needed.
    #[error("denied: {0}")]
    Denied(String),
}

impl RoleError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, RoleError::Failed(_))
    }
}

pub(crate) fn to_wit_task(task: &Task) -> wit::Task {
    wit::Task {
        id: task.id.clone(),
        goal: task.goal.clone(),
        instructions: task.instructions.clone(),
        input: task.input.to_string(),
        context: wit::Context {
            dependencies: task
                .context
                .dependencies
                .iter()
                .map(|d| wit::Dependency {
                    task_id: d.task_id.clone(),
                    role: d.role.clone(),
                    summary: d.summary.clone(),
                    output: d.output.to_string(),
                    artifacts: d.artifacts.clone(),
                })
                .collect(),
            memories: task
                .context
                .memories
                .iter()
                .cloned()
                .map(crate::host::memory::to_wit_hit)
                .collect(),
            roles: task.context.roles.iter().map(to_wit_spec).collect(),
            attempt: task.context.attempt,
            last_error: task.context.last_error.clone(),
        },
    }
}

fn to_wit_spec(spec: &RoleSpec) -> wit::RoleSpec {
    wit::RoleSpec {
        name: spec.name.clone(),
        description: spec.description.clone(),
        tools: spec.tools.clone(),
    }
}

pub(crate) fn from_wit_spec(spec: wit::RoleSpec) -> RoleSpec {
    RoleSpec {
        name: spec.name,
        description: spec.description,
        tools: spec.tools,
    }
}

/// A role's outcome, with its JSON checked: a role that returns output that
/// is not JSON broke the contract.
pub(crate) fn from_wit_outcome(outcome: wit::Outcome) -> Result<Outcome, CallError> {
    // The call's output limit already bounds the size; the depth is
    // checked before parsing.
    let json = |what: String, text: &str| {
        document::parse_within(&format!("the role's {what}"), text, usize::MAX)
            .map_err(CallError::Contract)
    };
    let follow_ups = outcome
        .follow_ups
        .into_iter()
        .map(|t| {
            Ok(NewTask {
                input: t
                    .input
                    .as_deref()
                    .map(|i| json(format!("input for follow-up task {:?}", t.id), i))
                    .transpose()?,
                id: t.id,
                role: t.role,
                instructions: t.instructions,
                depends_on: t.depends_on,
                priority: t.priority,
            })
        })
        .collect::<Result<Vec<_>, CallError>>()?;
    Ok(Outcome {
        output: json("output".into(), &outcome.output)?,
        summary: outcome.summary,
        artifacts: outcome.artifacts,
        follow_ups,
    })
}

pub(crate) fn from_wit_error(e: wit::RoleError) -> RoleError {
    match e {
        wit::RoleError::InvalidTask(m) => RoleError::InvalidTask(m),
        wit::RoleError::Failed(m) => RoleError::Failed(m),
        wit::RoleError::Denied(m) => RoleError::Denied(m),
    }
}
