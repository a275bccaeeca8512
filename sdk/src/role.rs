//! Write a role: one worker of a warden run. The host gives it one task per
//! call; it thinks through [`llm`](crate::llm), remembers through
//! [`memory`](crate::memory), acts through [`tools`](crate::tools), and
//! returns an [`Outcome`] — which may add tasks to the run.
//!
//! ```
//! use warden_sdk::role::{Outcome, Role, RoleError, RoleSpec, Task};
//!
//! struct Echo;
//!
//! impl Role for Echo {
//!     fn describe() -> RoleSpec {
//!         RoleSpec::new("echo", "Repeats its instructions")
//!     }
//!
//!     fn run(task: Task) -> Result<Outcome, RoleError> {
//!         Ok(Outcome::new(format!("echoed {}", task.id))
//!             .output(&task.instructions)?)
//!     }
//! }
//!
//! warden_sdk::export_role!(Echo);
//! # fn main() {}
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::role_bindings::exports::warden::plugin::role::{
    Context, Dependency, NewTask, Outcome, RoleError, RoleSpec, Task,
};

/// What a role plugin implements; [`export_role!`](crate::export_role)
/// exports it.
pub trait Role {
    /// What the role is, for operators and for a planner choosing roles.
    fn describe() -> RoleSpec;

    /// Does one task. An `Err(RoleError::Failed)` may be retried by the
    /// host; the other errors are final.
    fn run(task: Task) -> Result<Outcome, RoleError>;
}

impl RoleSpec {
    pub fn new(name: &str, description: &str) -> RoleSpec {
        RoleSpec {
            name: name.to_string(),
            description: description.to_string(),
            tools: Vec::new(),
        }
    }

    /// Names a tool plugin the role expects to call.
    pub fn tool(mut self, plugin: &str) -> RoleSpec {
        self.tools.push(plugin.to_string());
        self
    }
}

impl Task {
    /// The task's input as `T`.
    pub fn input_as<T: DeserializeOwned>(&self) -> Result<T, RoleError> {
        serde_json::from_str(&self.input)
            .map_err(|e| RoleError::InvalidTask(format!("task {}: bad input: {e}", self.id)))
    }

    /// The output of dependency `task_id`, if this task depends on it.
    pub fn dependency(&self, task_id: &str) -> Option<&Dependency> {
        self.context
            .dependencies
            .iter()
            .find(|d| d.task_id == task_id)
    }

    /// Every artifact the dependencies produced, in order, without repeats.
    pub fn dependency_artifacts(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for d in &self.context.dependencies {
            for a in &d.artifacts {
                if !seen.contains(a) {
                    seen.push(a.clone());
                }
            }
        }
        seen
    }

    /// The instructions with the goal and the dependencies' summaries: what
    /// a model needs to know to do the task.
    pub fn brief(&self) -> String {
        let mut text = format!(
            "Goal of the run: {}\n\nYour task ({}): {}\n",
            self.goal, self.id, self.instructions
        );
        if self.input != "null" && self.input != "{}" {
            text.push_str(&format!("\nInput: {}\n", self.input));
        }
        for d in &self.context.dependencies {
            text.push_str(&format!(
                "\nDone before you, by {} ({}): {}\n",
                d.role, d.task_id, d.summary
            ));
            if !d.artifacts.is_empty() {
                text.push_str(&format!("Files: {}\n", d.artifacts.join(", ")));
            }
        }
        for hit in &self.context.memories {
            text.push_str(&format!("\nRemembered: {}\n", hit.entry.content));
        }
        if let Some(error) = &self.context.last_error {
            text.push_str(&format!(
                "\nAttempt {} failed with: {error}\n",
                self.context.attempt.saturating_sub(1)
            ));
        }
        text
    }
}

impl Dependency {
    /// The dependency's output as `T`.
    pub fn output_as<T: DeserializeOwned>(&self) -> Result<T, RoleError> {
        serde_json::from_str(&self.output).map_err(|e| {
            RoleError::InvalidTask(format!("the output of task {}: {e}", self.task_id))
        })
    }
}

impl Outcome {
    /// An outcome with a summary, `null` output, no artifacts and no
    /// follow-ups.
    pub fn new(summary: impl Into<String>) -> Outcome {
        Outcome {
            summary: summary.into(),
            output: "null".into(),
            artifacts: Vec::new(),
            follow_ups: Vec::new(),
        }
    }

    /// Sets the output to `value` as JSON.
    pub fn output(mut self, value: &impl Serialize) -> Result<Outcome, RoleError> {
        self.output = serde_json::to_string(value)
            .map_err(|e| RoleError::Failed(format!("cannot serialise the output: {e}")))?;
        Ok(self)
    }

    /// Adds a file (relative to the run workspace) the task produced.
    pub fn artifact(mut self, path: impl Into<String>) -> Outcome {
        self.artifacts.push(path.into());
        self
    }

    /// Adds a task to the run.
    pub fn follow_up(mut self, task: NewTask) -> Outcome {
        self.follow_ups.push(task);
        self
    }
}

impl NewTask {
    pub fn new(id: &str, role: &str, instructions: &str) -> NewTask {
        NewTask {
            id: id.to_string(),
            role: role.to_string(),
            instructions: instructions.to_string(),
            depends_on: Vec::new(),
            priority: 0,
            input: None,
        }
    }

    pub fn after(mut self, task_id: &str) -> NewTask {
        self.depends_on.push(task_id.to_string());
        self
    }

    pub fn priority(mut self, priority: i32) -> NewTask {
        self.priority = priority;
        self
    }

    pub fn input(mut self, value: &impl Serialize) -> NewTask {
        self.input = serde_json::to_string(value).ok();
        self
    }
}

impl From<crate::llm::LlmError> for RoleError {
    fn from(e: crate::llm::LlmError) -> Self {
        use crate::llm::LlmError;
        match e {
            LlmError::Denied(m) => RoleError::Denied(format!("llm: {m}")),
            LlmError::BudgetExceeded(m) => RoleError::Denied(format!("llm budget: {m}")),
            LlmError::InvalidRequest(m) => RoleError::Failed(format!("llm: {m}")),
            LlmError::Unavailable(m) => RoleError::Failed(format!("llm: {m}")),
        }
    }
}

impl From<crate::ToolError> for RoleError {
    fn from(e: crate::ToolError) -> Self {
        match e {
            crate::ToolError::Denied(m) => RoleError::Denied(format!("tool: {m}")),
            other => RoleError::Failed(format!("tool {}", crate::tools::describe(&other))),
        }
    }
}

impl From<crate::memory::MemoryError> for RoleError {
    fn from(e: crate::memory::MemoryError) -> Self {
        use crate::memory::MemoryError;
        match e {
            MemoryError::Denied(m) => RoleError::Denied(format!("memory: {m}")),
            MemoryError::Invalid(m) => RoleError::Failed(format!("memory: {m}")),
            MemoryError::NotFound(m) => RoleError::Failed(format!("memory: {m}")),
            MemoryError::Unavailable(m) => RoleError::Failed(format!("memory: {m}")),
        }
    }
}

/// Exports `warden:plugin/role` from a type implementing [`Role`].
#[macro_export]
macro_rules! export_role {
    ($role:ident) => {
        impl $crate::role_bindings::exports::warden::plugin::role::Guest for $role {
            fn describe() -> $crate::role::RoleSpec {
                <$role as $crate::role::Role>::describe()
            }

            fn run(
                task: $crate::role::Task,
            ) -> ::std::result::Result<$crate::role::Outcome, $crate::role::RoleError> {
                <$role as $crate::role::Role>::run(task)
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::role_bindings::__export_role_plugin!($role with_types_in $crate::role_bindings);
        // A native build (the role's own unit tests) has no exports; keep
        // the role in use so it is not reported as dead code.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn($crate::role::Task) -> ::std::result::Result<$crate::role::Outcome, $crate::role::RoleError> =
            <$role as $crate::role::Role>::run;
    };
}
