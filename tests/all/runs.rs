//! Runs: real role plugins calling real tool plugins through the host, the
//! models answered by a loopback server speaking the OpenAI API (recorded,
//! then replayed), the journal on disk. Scheduling order, backoff and dead
//! letters are covered with a controllable clock in warden-run's own tests;
//! here every part is the real one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use warden_core::{Engine, EngineConfig, TenantId};
use warden_llm::router::{LlmConfig, Router};
use warden_memory::{Limits as MemoryLimits, Memory};
use warden_run::journal::{self, Event};
use warden_run::workflow::Workflow;
use warden_run::{Finished, RunEnv, RunStatus, Runs, TaskStatus};
use warden_tests::artifacts::{CACHE_DIR, CALLER, PLUGIN_DIR, RUNTIME_DIR};
use warden_tests::fake_llm::{FakeLlm, Reply, python_module_coder_answer};
use warden_tests::server::{RecordingServer, Reply as Page};

struct Setup {
    data: tempfile::TempDir,
    env: RunEnv,
}

impl Setup {
    fn runs(&self) -> Runs {
        Runs::new(self.data.path())
    }

    async fn run(&self, workflow: &str) -> Finished {
        let workflow = Workflow::parse(workflow, "test.toml").unwrap();
        self.runs()
            .start(workflow, None, &self.env, Vec::new())
            .await
            .unwrap()
    }

    fn events(&self, run: &str) -> Vec<Event> {
        journal::read(&self.runs().dir(run).join("journal.jsonl"))
            .unwrap()
            .into_iter()
            .map(|r| r.event)
            .collect()
    }
}

/// An engine whose models are `llm` (TOML), with the first-party plugins
/// and the test roles findable by name.
fn setup_with(llm: &str, memory: Option<Arc<Memory>>) -> Setup {
    let data = tempfile::tempdir().unwrap();
    let config = LlmConfig::parse(llm, "test").unwrap();
    let router = Arc::new(Router::new(config, Some(data.path())).unwrap());
    let engine = Engine::new(&EngineConfig {
        cache_dir: Some(CACHE_DIR.into()),
        runtime_dir: Some(RUNTIME_DIR.into()),
        max_concurrent_calls: 32,
        llm: Some(router),
        memory: memory.map(|m| m as Arc<dyn warden_api::memory::Memories>),
        ..EngineConfig::default()
    })
    .unwrap();
    let env = RunEnv {
        engine,
        tenant: TenantId::default(),
        plugin_dirs: vec![
            PLUGIN_DIR.into(),
            Path::new(CALLER).parent().unwrap().to_path_buf(),
        ],
        base_dir: data.path().to_path_buf(),
        ceiling: None,
        quota: warden_run::Quota::default(),
    };
    Setup { data, env }
}

fn fake_config(fake: &FakeLlm) -> String {
    format!(
        "version = 1\ndefault = \"fake/m\"\n[providers.fake]\nkind = \"openai\"\nbase-url = \"{}/v1\"\n[retry]\nmax-attempts = 1\n",
        fake.origin()
    )
}

fn output(finished: &Finished, task: &str) -> Value {
    let t = finished.state.task(task).unwrap();
    assert_eq!(
        t.status,
        TaskStatus::Done,
        "task {task}: {:?}",
        t.last_error
    );
    t.outcome.as_ref().unwrap().output.clone()
}

fn caller_workflow(tools: &str, input: Value, extra: &str) -> String {
    format!(
        r#"
version = 1
name = "calls"
[run]
retry-base = "10ms"
[roles.caller]
plugin = "caller"
tools = {tools}
{extra}
[[tasks]]
id = "a"
role = "caller"
prompt = "make the calls"
max-retries = 1
input = {input}
"#,
        input = toml_inline(&input)
    )
}

/// JSON as a TOML inline value.
fn toml_inline(value: &Value) -> String {
    match value {
        Value::Object(map) => format!(
            "{{ {} }}",
            map.iter()
                .map(|(k, v)| format!("{k} = {}", toml_inline(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(toml_inline).collect::<Vec<_>>().join(", ")
        ),
        Value::Null => "\"\"".into(),
        other => other.to_string(),
    }
}

/// The planner turns a goal into tasks for the run's other roles: the
/// model is asked for a plan whose `role` is an enum of those roles, and
/// the plan (ids cleaned, dependencies kept) joins the DAG and runs.
#[tokio::test]
pub(crate) async fn the_planner_turns_a_goal_into_tasks_for_the_runs_roles() {
    let fake = FakeLlm::start();
    let s = setup_with(&fake_config(&fake), None);
    let plan = json!({"tasks": [
        {"id": "Write It", "role": "caller", "instructions": "write the file", "depends_on": []},
        {"id": "check", "role": "caller", "instructions": "check it", "depends_on": ["Write It"]},
    ]});
    fake.push(Reply::openai_text(&plan.to_string()));
    let workflow = Workflow::parse(
        "version = 1\nname = \"planned\"\n[roles.planner]\nplugin = \"planner\"\n[roles.caller]\nplugin = \"caller\"\n",
        "test.toml",
    )
    .unwrap();
    let finished = s
        .runs()
        .start(workflow, Some("a file, checked".into()), &s.env, Vec::new())
        .await
        .unwrap();
    assert_eq!(
        finished.status,
        RunStatus::Succeeded,
        "{:?}",
        finished.state.dead_letters()
    );
    let asked = &fake.requests()[0].body;
    let schema = asked.to_string();
    assert!(schema.contains(r#""enum":["caller"]"#), "{schema}");
    assert!(
        schema.contains("a file, checked"),
        "the goal reaches the model: {schema}"
    );
    let ids: Vec<&str> = finished
        .state
        .tasks
        .iter()
        .map(|t| t.spec.id.as_str())
        .collect();
    assert_eq!(ids, ["plan", "write-it", "check"]);
    let check = finished.state.task("check").unwrap();
    assert!(check.spec.depends_on.contains(&"write-it".to_string()));
    assert_eq!(check.status, TaskStatus::Done);
}

#[tokio::test]
pub(crate) async fn roles_reach_granted_tools_through_the_host_and_no_others() {
    let fake = FakeLlm::start();
    let s = setup_with(&fake_config(&fake), None);
    let finished = s
        .run(&caller_workflow(
            r#"["fs.write_file", "fs.read_file"]"#,
            json!({"calls": [
                {"tool": "fs.write_file", "arguments": {"path": "/workspace/a.txt", "content": "hi"}},
                {"tool": "fs.read_file", "arguments": {"path": "/workspace/a.txt"}},
                {"tool": "fs.list_dir", "arguments": {"path": "/workspace"}},
                {"tool": "exec.run_python", "arguments": {"code": "print(1)"}},
                {"tool": "fs.read_file", "arguments": {"path": "/etc/passwd"}}
            ]}),
            "",
        ))
        .await;
    assert_eq!(finished.status, RunStatus::Succeeded);
    let out = output(&finished, "a");
    let mut tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tools.sort();
    assert_eq!(tools, ["fs.read_file", "fs.write_file"]);
    let results = out["results"].as_array().unwrap();
    assert!(results[0]["ok"].is_object(), "{results:?}");
    assert_eq!(results[1]["ok"]["content"], "hi");
    for denied in [&results[2], &results[3]] {
        let e = denied["error"].as_str().unwrap();
        assert!(e.starts_with("denied:") && e.contains("not granted"), "{e}");
    }
    // The fs tool sees only the workspace, under its own grant.
    let escaped = results[4]["error"].as_str().unwrap();
    assert!(!escaped.contains("root:"), "{escaped}");
    assert_eq!(
        std::fs::read_to_string(finished.state.workspace.join("a.txt")).unwrap(),
        "hi"
    );
    let calls: Vec<(bool, String)> = s
        .events(&finished.run)
        .into_iter()
        .filter_map(|e| match e {
            Event::ToolCall { ok, key, .. } => Some((ok, key.tool)),
            _ => None,
        })
        .collect();
    // Denied calls never reach a tool, so only the three that ran are
    // journaled.
    assert_eq!(
        calls,
        [
            (true, "fs.write_file".to_string()),
            (true, "fs.read_file".to_string()),
            (false, "fs.read_file".to_string())
        ]
    );
}

#[tokio::test]
async fn a_retried_step_does_not_repeat_its_tool_side_effects() {
    let fake = FakeLlm::start();
    let s = setup_with(&fake_config(&fake), None);
    let finished = s
        .run(&caller_workflow(
            r#"["fs"]"#,
            json!({
                "calls": [{"tool": "fs.write_file", "arguments": {
                    "path": "/workspace/log.txt", "content": "line\n", "append": true
                }}],
                "fail_attempts": 1
            }),
            "",
        ))
        .await;
    assert_eq!(finished.status, RunStatus::Succeeded);
    assert_eq!(output(&finished, "a")["attempt"], 2);
    // Appended once, though two attempts made the call.
    assert_eq!(
        std::fs::read_to_string(finished.state.workspace.join("log.txt")).unwrap(),
        "line\n"
    );
    let calls: Vec<(u32, bool)> = s
        .events(&finished.run)
        .into_iter()
        .filter_map(|e| match e {
            Event::ToolCall {
                attempt, replayed, ..
            } => Some((attempt, replayed)),
            _ => None,
        })
        .collect();
    assert_eq!(calls, [(1, false), (2, true)]);
}

/// Each tool call of a task sees its own idempotency key, `RUN/TASK/N`, and
/// nothing else in its environment; the retried attempt gets both calls
/// from the journal, so the side effect happened once.
#[tokio::test]
async fn a_tool_call_in_a_run_sees_a_key_stable_across_attempts() {
    let fake = FakeLlm::start();
    let s = setup_with(&fake_config(&fake), None);
    let finished = s
        .run(&caller_workflow(
            r#"["hostile.env", "hostile.tally"]"#,
            json!({
                "calls": [
                    {"tool": "hostile.env", "arguments": {}},
                    {"tool": "hostile.tally", "arguments": {"path": "/workspace/tally", "ms": 0}}
                ],
                "fail_attempts": 1
            }),
            "",
        ))
        .await;
    assert_eq!(finished.status, RunStatus::Succeeded);
    let run = &finished.run;
    assert_eq!(
        output(&finished, "a")["results"][0]["ok"]["vars"],
        json!([["WARDEN_CALL_KEY", format!("{run}/a/0")]]),
        "the key is all the environment a tool sees"
    );
    assert_eq!(
        std::fs::read_to_string(finished.state.workspace.join("tally")).unwrap(),
        format!("{run}/a/1\n")
    );
}

#[tokio::test]
async fn the_sdk_agent_loop_acts_through_the_tools_the_model_asks_for() {
    let fake = FakeLlm::start();
    fake.push(Reply::openai_tool_call(
        "c1",
        "fs__write_file",
        &json!({"path": "/workspace/agent.txt", "content": "from the agent"}),
    ));
    fake.push(Reply::openai_text("done"));
    let s = setup_with(&fake_config(&fake), None);
    let finished = s
        .run(&caller_workflow(
            r#"["fs"]"#,
            json!({"agent": "write agent.txt"}),
            "",
        ))
        .await;
    let out = output(&finished, "a");
    assert_eq!(out["agent"]["answer"], "done");
    assert_eq!(out["agent"]["calls"][0]["tool"], "fs.write_file");
    assert_eq!(
        std::fs::read_to_string(finished.state.workspace.join("agent.txt")).unwrap(),
        "from the agent"
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let offered: Vec<&str> = requests[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(offered.contains(&"fs__write_file"), "{offered:?}");
    let last = requests[1].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["role"], "tool");
    assert_eq!(last["tool_call_id"], "c1");
    // Both completions were journaled with their usage, and counted.
    let t = finished.state.task("a").unwrap();
    assert_eq!(t.usage.llm_calls, 2);
    assert!(t.usage.input_tokens > 0);
}

#[tokio::test]
async fn budgets_fail_the_task_that_meets_them_and_name_them() {
    let fake = FakeLlm::start();
    let s = setup_with(&fake_config(&fake), None);
    // Tokens: the first task's prompt fits, but its completion (60 tokens)
    // spends the run's budget, so the second never starts.
    fake.push(Reply::openai_text("said"));
    let finished = s
        .run(
            r#"
version = 1
name = "tokens"
[run]
concurrency = 1
[budget]
tokens = 50
[roles.caller]
plugin = "caller"
[[tasks]]
id = "first"
role = "caller"
prompt = "think"
priority = 1
input = { agent = "say something" }
[[tasks]]
id = "second"
role = "caller"
prompt = "think again"
input = { agent = "say more" }
"#,
        )
        .await;
    assert_eq!(finished.status, RunStatus::Failed);
    let dead = finished.state.dead_letters();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].0, "second");
    assert!(dead[0].1.contains("token budget is spent"), "{}", dead[0].1);
    assert_eq!(fake.requests().len(), 1);

    // Fuel: an attempt gets no more than the run has left, and running out
    // of it is final, named as the run's budget.
    let finished = s
        .run(
            r#"
version = 1
name = "fuel"
[budget]
fuel = 20000000
[roles.caller]
plugin = "caller"
[[tasks]]
id = "spin"
role = "caller"
prompt = "spin"
max-retries = 3
input = { spin = 100000000 }
"#,
        )
        .await;
    let dead = finished.state.dead_letters();
    assert_eq!(dead[0].0, "spin");
    assert!(
        dead[0].1.contains("the run's fuel budget is spent"),
        "{}",
        dead[0].1
    );
    assert_eq!(
        finished.state.task("spin").unwrap().attempt,
        1,
        "not retried"
    );
}

#[tokio::test]
async fn follow_ups_join_the_run_and_dependents_see_outputs() {
    let fake = FakeLlm::start();
    let s = setup_with(&fake_config(&fake), None);
    let finished = s
        .run(&caller_workflow(
            r#"["fs"]"#,
            json!({"follow_ups": [
                {"id": "b", "role": "caller", "instructions": "next"},
                {"id": "c", "role": "caller", "instructions": "last", "depends_on": ["b"]}
            ]}),
            "",
        ))
        .await;
    assert_eq!(finished.status, RunStatus::Succeeded);
    assert_eq!(output(&finished, "b")["dependencies"], json!(["a"]));
    assert_eq!(output(&finished, "c")["dependencies"], json!(["a", "b"]));
    assert_eq!(
        finished.state.task("c").unwrap().spec.parent.as_deref(),
        Some("a")
    );
}

/// A run belongs to the tenant that started it: resumed under another
/// tenant it is not there at all (the same error as an id that never
/// existed).
#[tokio::test]
async fn another_tenants_run_cannot_be_resumed() {
    let fake = FakeLlm::start();
    let s = setup_with(&fake_config(&fake), None);
    let finished = s.run(&caller_workflow("[]", json!({}), "")).await;
    assert_eq!(finished.status, RunStatus::Succeeded);
    let as_acme = |base: &Path| RunEnv {
        engine: s.env.engine.clone(),
        tenant: TenantId::new("acme").unwrap(),
        plugin_dirs: s.env.plugin_dirs.clone(),
        base_dir: base.to_path_buf(),
        ceiling: None,
        quota: warden_run::Quota::default(),
    };
    let err = s
        .runs()
        .resume(&finished.run, as_acme, Vec::new())
        .await
        .unwrap_err();
    let missing = s
        .runs()
        .resume("20990101-000000-beef", as_acme, Vec::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no run"), "{err}");
    assert_eq!(
        err.to_string().replace(&finished.run, "ID"),
        missing.to_string().replace("20990101-000000-beef", "ID")
    );
    assert_eq!(finished.state.tenant, TenantId::default());
}

/// What a role recalls with its task goes through the same namespace gate
/// as its own memory calls: the manifest's ceiling ∩ the workflow's grant.
/// The coder declares no memory, so a namespace the workflow grants it is
/// cut, and nothing from it reaches the role (or its model).
#[tokio::test]
async fn recall_passes_the_manifest_ceiling() {
    let store = tempfile::tempdir().unwrap();
    let memory = Arc::new(Memory::with_embedder(
        store.path(),
        crate::memory::minilm(),
        MemoryLimits::default(),
    ));
    memory
        .store(
            "default",
            "notes",
            "CANARY-recall-5f1c: write stats.py with mean and median".into(),
            Default::default(),
        )
        .await
        .unwrap();
    let fake = FakeLlm::start();
    fake.push(Reply::openai_text(
        &json!({"summary": "wrote it", "files": []}).to_string(),
    ));
    let s = setup_with(&fake_config(&fake), Some(memory));
    s.run(
        r#"
version = 1
name = "recall"
[roles.coder]
plugin = "coder"
tools = ["fs"]
memory = ["notes"]
recall = 3
[[tasks]]
id = "write"
role = "coder"
prompt = "write stats.py with mean and median"
max-retries = 0
"#,
    )
    .await;
    let asked = fake.requests();
    assert!(!asked.is_empty(), "the coder asked its model");
    for request in asked {
        let body = request.body.to_string();
        assert!(
            !body.contains("CANARY-recall-5f1c"),
            "a memory the manifest does not allow reached the role: {body}"
        );
    }
}

#[tokio::test]
async fn unknown_roles_and_plugins_are_rejected_before_anything_starts() {
    let fake = FakeLlm::start();
    let s = setup_with(&fake_config(&fake), None);
    let bad = Workflow::parse(
        "version = 1\nname = \"x\"\n[roles.a]\nplugin = \"no-such-plugin\"\n[[tasks]]\nid = \"t\"\nrole = \"a\"\nprompt = \"p\"\n",
        "x.toml",
    )
    .unwrap();
    let e = s
        .runs()
        .start(bad, None, &s.env, Vec::new())
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("no plugin named \"no-such-plugin\""),
        "{e}"
    );
    let tool_as_role = Workflow::parse(
        "version = 1\nname = \"x\"\n[roles.a]\nplugin = \"fs\"\n[[tasks]]\nid = \"t\"\nrole = \"a\"\nprompt = \"p\"\n",
        "x.toml",
    )
    .unwrap();
    let e = s
        .runs()
        .start(tool_as_role, None, &s.env, Vec::new())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not a Role plugin"), "{e}");
    assert!(s.runs().list().is_empty(), "nothing was journaled");
}

fn example(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/workflows")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

fn record_config(fake: &FakeLlm, cassette: &Path) -> String {
    format!(
        "version = 1\ndefault = \"tape/m\"\n[providers.fake]\nkind = \"openai\"\nbase-url = \"{}/v1\"\n[providers.tape]\nkind = \"record\"\ninner = \"fake\"\ncassette = \"{}\"\n",
        fake.origin(),
        cassette.display()
    )
}

fn replay_config(cassette: &Path) -> String {
    format!(
        "version = 1\ndefault = \"tape/m\"\n[providers.tape]\nkind = \"replay\"\ncassette = \"{}\"\n",
        cassette.display()
    )
}

#[tokio::test]
pub(crate) async fn the_python_module_example_runs_end_to_end_and_replays() {
    let tape = tempfile::tempdir().unwrap();
    let cassette = tape.path().join("python-module.jsonl");
    let check = |finished: &Finished| {
        assert_eq!(
            finished.status,
            RunStatus::Succeeded,
            "{:?}",
            finished.state.dead_letters()
        );
        let written = output(finished, "write");
        assert_eq!(written["files"].as_array().unwrap().len(), 2);
        let tested = output(finished, "test");
        assert_eq!(tested["passed"], true, "{tested}");
        assert_eq!(tested["tests_run"], 3);
        assert_eq!(output(finished, "review")["accepted"], true);
        let module = std::fs::read_to_string(finished.state.workspace.join("stats.py")).unwrap();
        assert!(module.contains("def median"));
    };

    // Recorded against the loopback model...
    let fake = FakeLlm::start();
    fake.push(Reply::openai_text(&python_module_coder_answer()));
    let s = setup_with(&record_config(&fake, &cassette), None);
    let finished = s.run(&example("python-module.toml")).await;
    check(&finished);
    assert_eq!(fake.requests().len(), 1, "only the coder asks a model");
    drop(fake);

    // ...then replayed with no model at all.
    let s = setup_with(&replay_config(&cassette), None);
    let finished = s.run(&example("python-module.toml")).await;
    check(&finished);
}

#[tokio::test]
pub(crate) async fn the_research_example_fetches_remembers_and_answers_from_memory() {
    let page = "The example domain is reserved for documentation.\n\nIt may be used in examples without permission.";
    let site = RecordingServer::start(Page::Body(page.into()));
    let workflow = example("research.toml").replace("https://example.com", &site.origin());
    let tape = tempfile::tempdir().unwrap();
    let cassette = tape.path().join("research.jsonl");
    let store = tempfile::tempdir().unwrap();
    let memory = || {
        Arc::new(Memory::with_embedder(
            store.path(),
            crate::memory::minilm(),
            MemoryLimits::default(),
        ))
    };

    let fake = FakeLlm::start();
    fake.push(Reply::openai_text(
        "The page reserves a domain for documentation.",
    ));
    fake.push(Reply::openai_text("It is used in documentation examples."));
    let s = setup_with(&record_config(&fake, &cassette), Some(memory()));
    let finished = s.run(&workflow).await;
    assert_eq!(
        finished.status,
        RunStatus::Succeeded,
        "{:?}",
        finished.state.dead_letters()
    );
    let read = output(&finished, "read");
    assert_eq!(read["stored_chunks"], 1);
    assert_eq!(read["sources"][0], site.origin());
    let recall = output(&finished, "recall");
    assert_eq!(recall["stored_chunks"], 0);
    assert_eq!(recall["answer"], "It is used in documentation examples.");
    // The second task's prompt carried what the first one stored.
    let asked = fake.requests()[1].body.to_string();
    assert!(asked.contains("reserved for documentation"), "{asked}");
    assert_eq!(site.hits().len(), 1);
    drop(fake);

    // Replayed: the same page, the same store contents, no model.
    let store_again = tempfile::tempdir().unwrap();
    let memory = Arc::new(Memory::with_embedder(
        store_again.path(),
        crate::memory::minilm(),
        MemoryLimits::default(),
    ));
    let s = setup_with(&replay_config(&cassette), Some(memory));
    let finished = s.run(&workflow).await;
    assert_eq!(
        finished.status,
        RunStatus::Succeeded,
        "{:?}",
        finished.state.dead_letters()
    );
    assert_eq!(
        output(&finished, "recall")["answer"],
        "It is used in documentation examples."
    );
}
