//! The workflow file: the roles of a run (plugin, model, grants, limits),
//! the tool plugins they may call, the tasks and their dependencies, and
//! the run's budget. Checked whole before anything starts: unknown fields,
//! unknown roles, unknown dependencies and cycles are errors that name the
//! place and the fix.
//!
//! ```toml
//! version = 1
//! name = "python-module"
//! goal = "A small Python module with tests"
//!
//! [run]
//! concurrency = 2
//!
//! [budget]
//! tokens = 200000
//! wall-clock = "20m"
//!
//! [roles.coder]
//! plugin = "coder"
//! tools = ["fs"]
//!
//! [[tasks]]
//! id = "write"
//! role = "coder"
//! prompt = "Write stats.py with mean() and median()"
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use warden_core::grant::is_valid_plugin_name;
use warden_core::{HostPattern, LimitSettings, ModelName, NamespaceGrant};

/// Tasks a run may hold, follow-ups included, unless the workflow says.
pub const DEFAULT_MAX_TASKS: usize = 50;

/// The text of [`Workflow::goal`].
pub const GOAL_WORKFLOW: &str = include_str!("goal-workflow.toml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Workflow {
    pub version: u32,
    pub name: String,
    /// What the run is for; every task sees it. `--goal` replaces it.
    #[serde(default)]
    pub goal: String,
    #[serde(default)]
    pub run: RunSettings,
    #[serde(default)]
    pub budget: Budget,
    pub roles: BTreeMap<String, RoleConfig>,
    /// Settings of tool plugins beyond the defaults.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolConfig>,
    #[serde(default)]
    pub tasks: Vec<TaskConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct RunSettings {
    /// Tasks running at once.
    pub concurrency: usize,
    /// Tasks the run may hold, follow-ups included.
    pub max_tasks: usize,
    /// The first retry waits this long, each next one twice as long.
    #[serde(with = "duration")]
    pub retry_base: Duration,
    #[serde(with = "duration")]
    pub retry_max: Duration,
    /// The role that turns `--goal` into tasks.
    pub planner: String,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            concurrency: 2,
            max_tasks: DEFAULT_MAX_TASKS,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            planner: "planner".into(),
        }
    }
}

/// The run's budget; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Budget {
    /// Fuel for every sandbox of the run together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Time the run may take, counted across resumes.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub wall_clock: Option<Duration>,
    /// LLM tokens (input and output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// US dollars, from the LLM config's prices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RoleConfig {
    /// A plugin name (looked up in the plugin directories) or a path to a
    /// `.wasm`, relative to the workflow file.
    pub plugin: String,
    /// The model alias the role uses and is granted; unset lets it use the
    /// LLM config's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelName>,
    /// Tool plugins the role may call, or `plugin.tool` for one tool.
    #[serde(default)]
    pub tools: Vec<ToolGrant>,
    /// Memory namespaces (`NS`, `NS:rw`).
    #[serde(default)]
    pub memory: Vec<NamespaceGrant>,
    /// Before each task, search these namespaces for the task's
    /// instructions and hand the role this many hits.
    #[serde(default)]
    pub recall: u32,
    #[serde(default)]
    pub limits: LimitSettings,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ToolConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// How the tool sees the run workspace at /workspace.
    #[serde(default)]
    pub workspace: WorkspaceAccess,
    /// Hosts it may reach (`--allow-host` patterns).
    #[serde(default)]
    pub net: Vec<HostPattern>,
    #[serde(default)]
    pub memory: Vec<NamespaceGrant>,
    #[serde(default)]
    pub limits: LimitSettings,
}

/// A tool plugin granted to a role, or one tool of it: `fs` or
/// `fs.read_file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ToolGrant {
    /// The key of the plugin in `[tools]` (and its file name).
    pub plugin: String,
    /// One tool of it; `None` grants them all.
    pub tool: Option<String>,
}

impl ToolGrant {
    pub fn parse(text: &str) -> Result<ToolGrant, WorkflowError> {
        let (plugin, tool) = match text.split_once('.') {
            Some((plugin, tool)) => (plugin, Some(tool)),
            None => (text, None),
        };
        let tool_ok = tool.is_none_or(|t| {
            !t.is_empty()
                && t.len() <= 64
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
        if !is_valid_plugin_name(plugin) || !tool_ok {
            return Err(WorkflowError::Invalid(format!(
                "{text:?} is not a tool grant; write a tool plugin's name (\"fs\") or one of its tools (\"fs.read_file\")"
            )));
        }
        Ok(ToolGrant {
            plugin: plugin.to_string(),
            tool: tool.map(str::to_string),
        })
    }
}

impl fmt::Display for ToolGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tool {
            Some(tool) => write!(f, "{}.{tool}", self.plugin),
            None => f.write_str(&self.plugin),
        }
    }
}

impl TryFrom<String> for ToolGrant {
    type Error = WorkflowError;
    fn try_from(text: String) -> Result<Self, WorkflowError> {
        ToolGrant::parse(&text)
    }
}

impl From<ToolGrant> for String {
    fn from(grant: ToolGrant) -> String {
        grant.to_string()
    }
}

/// A workflow that cannot be run, saying where and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    /// Not TOML, or not the shape of a workflow; toml names the line.
    #[error("workflow {origin} is not valid: {message}")]
    Syntax { origin: String, message: String },
    /// One workflow, checked whole: the message names the field or task.
    #[error("workflow {origin}: {problem}")]
    InFile { origin: String, problem: String },
    /// A value or task set that breaks a rule (also for follow-up tasks a
    /// role adds at run time).
    #[error("{0}")]
    Invalid(String),
}

impl WorkflowError {
    fn problem(self) -> String {
        match self {
            WorkflowError::Invalid(problem) => problem,
            other => other.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkspaceAccess {
    #[default]
    Rw,
    Ro,
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TaskConfig {
    pub id: String,
    pub role: String,
    pub prompt: String,
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Higher runs first among ready tasks.
    #[serde(default)]
    pub priority: i32,
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Time for one attempt; the role's limit when unset.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// LLM tokens one attempt may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
}

fn default_retries() -> u32 {
    2
}

impl Workflow {
    /// The workflow a bare goal runs: the first-party roles (planner,
    /// coder, tester, reviewer, researcher), the planner first.
    pub fn goal() -> Result<Workflow, WorkflowError> {
        Workflow::parse(GOAL_WORKFLOW, "(built-in)")
    }

    /// Parses and checks workflow text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Workflow, WorkflowError> {
        let workflow: Workflow = toml::from_str(text).map_err(|e| WorkflowError::Syntax {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        workflow.accept(origin)
    }

    /// The same workflow written as JSON (the fields of the TOML form).
    pub fn from_json(value: serde_json::Value, origin: &str) -> Result<Workflow, WorkflowError> {
        let workflow: Workflow =
            serde_json::from_value(value).map_err(|e| WorkflowError::Syntax {
                origin: origin.to_string(),
                message: e.to_string(),
            })?;
        workflow.accept(origin)
    }

    fn accept(self, origin: &str) -> Result<Workflow, WorkflowError> {
        let workflow = self;
        let in_file = |problem: String| WorkflowError::InFile {
            origin: origin.to_string(),
            problem,
        };
        if workflow.version != 1 {
            return Err(in_file(format!(
                "`version = {}` is not one this warden reads; set `version = 1`",
                workflow.version
            )));
        }
        workflow.check().map_err(|e| in_file(e.problem()))?;
        Ok(workflow)
    }

    /// The checks a run needs before it starts: names, roles, dependencies,
    /// cycles, limits.
    pub fn check(&self) -> Result<(), WorkflowError> {
        let invalid = |problem: String| Err(WorkflowError::Invalid(problem));
        if !is_name(&self.name) {
            return invalid(format!(
                "`name = {:?}` must be 1-64 characters of a-z, 0-9, `-` and `_`",
                self.name
            ));
        }
        if self.run.concurrency == 0 {
            return invalid("`run.concurrency` must be at least 1".into());
        }
        if self.roles.is_empty() {
            return invalid("no roles: add a `[roles.NAME]` table with a `plugin`".into());
        }
        for (name, role) in &self.roles {
            if !is_name(name) {
                return invalid(format!(
                    "role name {name:?} must be 1-64 characters of a-z, 0-9, `-` and `_`"
                ));
            }
            if role.plugin.trim().is_empty() {
                return invalid(format!(
                    "`roles.{name}.plugin` is empty: name a role plugin or a .wasm path"
                ));
            }
            if let Err(e) = role.limits.check() {
                return invalid(format!("`roles.{name}.limits`: {e}"));
            }
        }
        for (name, tool) in &self.tools {
            if !is_valid_plugin_name(name) {
                return invalid(format!(
                    "`[tools.{name}]`: {name:?} is not a tool plugin name (a-z, 0-9 and `-`, starting with a letter)"
                ));
            }
            if let Err(e) = tool.limits.check() {
                return invalid(format!("`tools.{name}.limits`: {e}"));
            }
        }
        if self.tasks.len() > self.run.max_tasks {
            return invalid(format!(
                "{} tasks, more than `run.max-tasks = {}`",
                self.tasks.len(),
                self.run.max_tasks
            ));
        }
        let specs: Vec<TaskSpec> = self.tasks.iter().map(TaskSpec::from).collect();
        check_tasks(&[], &specs, |role| self.roles.contains_key(role))
    }

    /// The role names, sorted.
    pub fn role_names(&self) -> Vec<&str> {
        self.roles.keys().map(String::as_str).collect()
    }
}

/// A task as the scheduler holds it: from the workflow, or added by a role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub id: String,
    pub role: String,
    pub instructions: String,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub priority: i32,
    pub max_retries: u32,
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    #[serde(default)]
    pub input: serde_json::Value,
    /// The task whose outcome added this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

impl From<&TaskConfig> for TaskSpec {
    fn from(t: &TaskConfig) -> Self {
        TaskSpec {
            id: t.id.clone(),
            role: t.role.clone(),
            instructions: t.prompt.clone(),
            depends_on: t.depends_on.clone(),
            priority: t.priority,
            max_retries: t.max_retries,
            timeout: t.timeout,
            tokens: t.tokens,
            input: t.input.clone().unwrap_or(serde_json::Value::Null),
            parent: None,
        }
    }
}

/// Checks `new` tasks against the `existing` ones: ids valid and unique,
/// roles known, dependencies known, no cycle.
pub fn check_tasks(
    existing: &[&TaskSpec],
    new: &[TaskSpec],
    role_known: impl Fn(&str) -> bool,
) -> Result<(), WorkflowError> {
    let invalid = |problem: String| Err(WorkflowError::Invalid(problem));
    let mut ids: BTreeSet<&str> = existing.iter().map(|t| t.id.as_str()).collect();
    for task in new {
        if !is_name(&task.id) {
            return invalid(format!(
                "task id {:?} must be 1-64 characters of a-z, 0-9, `-` and `_`",
                task.id
            ));
        }
        if !ids.insert(&task.id) {
            return invalid(format!(
                "two tasks have the id {:?}; ids must be unique",
                task.id
            ));
        }
        if !role_known(&task.role) {
            return invalid(format!(
                "task {:?} names role {:?}, which the workflow does not define in `[roles]`",
                task.id, task.role
            ));
        }
    }
    for task in new {
        for dep in &task.depends_on {
            if !ids.contains(dep.as_str()) {
                return invalid(format!(
                    "task {:?} depends on {dep:?}, which is not a task of this run",
                    task.id
                ));
            }
        }
    }
    // Existing tasks were acyclic and cannot depend on new ones, so a cycle
    // runs through new tasks only.
    let graph: BTreeMap<&str, Vec<&str>> = new
        .iter()
        .map(|t| {
            (
                t.id.as_str(),
                t.depends_on.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    if let Some(cycle) = find_cycle(&graph) {
        return invalid(format!(
            "the tasks' dependencies form a cycle: {}; a task cannot wait for itself",
            cycle.join(" -> ")
        ));
    }
    Ok(())
}

/// A cycle in `graph` (node → the nodes it depends on), as a path that
/// starts and ends at the same node.
fn find_cycle<'a>(graph: &BTreeMap<&'a str, Vec<&'a str>>) -> Option<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, Vec<&'a str>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = path.iter().position(|n| *n == node).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(node);
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node, Mark::Visiting);
        path.push(node);
        for dep in graph.get(node).into_iter().flatten() {
            if graph.contains_key(dep)
                && let Some(cycle) = visit(dep, graph, marks, path)
            {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(node, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Parses `500ms`, `90s`, `5m`, `1h` (or a bare number of seconds).
pub fn parse_duration(text: &str) -> Result<Duration, WorkflowError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let not_a_duration = || {
        WorkflowError::Invalid(format!(
            "{text:?} is not a duration; write e.g. 500ms, 90s, 5m or 1h"
        ))
    };
    let n: u64 = number.parse().map_err(|_| not_a_duration())?;
    let ms = match unit.trim() {
        "ms" => n,
        "" | "s" => n.saturating_mul(1000),
        "m" | "min" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        _ => return Err(not_a_duration()),
    };
    Ok(Duration::from_millis(ms))
}

fn format_duration(d: &Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format_duration(d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
version = 1
name = "demo"
[roles.coder]
plugin = "coder"
[roles.tester]
plugin = "tester"
"#;

    fn parse(tasks: &str) -> Result<Workflow, String> {
        Workflow::parse(&format!("{BASE}{tasks}"), "test.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn a_good_workflow_parses_with_defaults() {
        let w = parse(
            r#"
[[tasks]]
id = "write"
role = "coder"
prompt = "write it"
timeout = "90s"
[[tasks]]
id = "test"
role = "tester"
prompt = "test it"
depends-on = ["write"]
priority = 5
"#,
        )
        .unwrap();
        assert_eq!(w.run.concurrency, 2);
        assert_eq!(w.run.retry_base, Duration::from_secs(1));
        assert_eq!(w.tasks[0].timeout, Some(Duration::from_secs(90)));
        assert_eq!(w.tasks[0].max_retries, 2);
        assert_eq!(w.tasks[1].priority, 5);
    }

    #[test]
    fn cycles_unknown_roles_and_dependencies_are_rejected_by_name() {
        let cycle = parse(
            r#"
[[tasks]]
id = "a"
role = "coder"
prompt = "x"
depends-on = ["c"]
[[tasks]]
id = "b"
role = "coder"
prompt = "x"
depends-on = ["a"]
[[tasks]]
id = "c"
role = "coder"
prompt = "x"
depends-on = ["b"]
"#,
        )
        .unwrap_err();
        assert!(cycle.contains("cycle: a -> c -> b -> a"), "{cycle}");

        let role = parse("[[tasks]]\nid = \"a\"\nrole = \"poet\"\nprompt = \"x\"\n").unwrap_err();
        assert!(role.contains("names role \"poet\""), "{role}");

        let dep = parse(
            "[[tasks]]\nid = \"a\"\nrole = \"coder\"\nprompt = \"x\"\ndepends-on = [\"zz\"]\n",
        )
        .unwrap_err();
        assert!(dep.contains("depends on \"zz\""), "{dep}");

        let dup = parse(
            "[[tasks]]\nid = \"a\"\nrole = \"coder\"\nprompt = \"x\"\n[[tasks]]\nid = \"a\"\nrole = \"coder\"\nprompt = \"y\"\n",
        )
        .unwrap_err();
        assert!(dup.contains("two tasks have the id \"a\""), "{dup}");

        let field = parse("[[tasks]]\nid = \"a\"\nrole = \"coder\"\nprompt = \"x\"\nretries = 3\n")
            .unwrap_err();
        assert!(field.contains("unknown field `retries`"), "{field}");

        let self_dep = parse(
            "[[tasks]]\nid = \"a\"\nrole = \"coder\"\nprompt = \"x\"\ndepends-on = [\"a\"]\n",
        )
        .unwrap_err();
        assert!(self_dep.contains("cycle: a -> a"), "{self_dep}");
    }

    /// Grants are typed values, parsed when the file is read: a bad one
    /// refuses the workflow before any run (or run directory) exists, and
    /// the error names the value.
    #[test]
    fn bad_grants_are_refused_when_the_workflow_is_read() {
        let with = |role: &str, extra: &str| {
            Workflow::parse(
                &format!(
                    "version = 1\nname = \"w\"\n[roles.coder]\nplugin = \"coder\"\n{role}\n{extra}"
                ),
                "w.toml",
            )
            .map_err(|e| e.to_string())
        };
        for (role, needle) in [
            ("memory = [\"notes:rx\"]", "not an access mode"),
            ("memory = [\"../up\"]", "not a namespace name"),
            ("model = \"two words\"", "not a model name"),
            ("tools = [\"Fs.read\"]", "not a tool grant"),
            ("tools = [\"fs.\"]", "not a tool grant"),
            ("limits = { memory-mib = 0 }", "memory-mib"),
        ] {
            let err = with(role, "").unwrap_err();
            assert!(err.contains(needle), "{role}: {err}");
        }
        let err = with("", "[tools.fetch]\nnet = [\"ftp://example.com\"]").unwrap_err();
        assert!(err.contains("ftp"), "{err}");
        let ok = with(
            "model = \"fast\"\nmemory = [\"notes:rw\"]\ntools = [\"fs.read_file\", \"exec\"]",
            "[tools.exec]\nnet = [\"https://example.com\"]",
        )
        .unwrap();
        let coder = &ok.roles["coder"];
        assert_eq!(coder.tools[0].tool.as_deref(), Some("read_file"));
        assert_eq!(coder.memory[0].to_string(), "notes:rw");
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .to_string()
                .contains("e.g. 500ms")
        );
    }
}
