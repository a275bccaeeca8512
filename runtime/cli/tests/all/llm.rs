//! `warden models`, `warden llm chat|usage`, and a plugin asking a model
//! through `warden tool call` under `--allow-model` and policy grants.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use warden_tests::artifacts::{DATA_DIR, THINKER};
use warden_tests::fake_llm::FakeLlm;

use crate::*;

const KEY_VAR: &str = "WARDEN_CLI_TEST_KEY";

/// The suites' shared data dir, after one `warden models fetch` into it.
pub(crate) fn fetched() -> &'static Path {
    static DONE: OnceLock<PathBuf> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = PathBuf::from(DATA_DIR);
        let out = models(&dir, &["models", "fetch"]);
        assert_eq!(code(&out), 0, "models fetch: {}", stderr(&out));
        dir
    })
}

/// `warden ARGS` with `data` as the data dir and every proxy pointed at a
/// closed port: whatever answers must answer without the network.
fn models(data: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.env("WARDEN_DATA_DIR", data)
        .env_remove("RUST_LOG")
        .args(args);
    if let Ok(python) = std::env::var("WARDEN_PYTHON") {
        cmd.env("WARDEN_PYTHON", python);
    }
    cmd.output().expect("run warden")
}

fn offline(data: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.env("WARDEN_DATA_DIR", data).env_remove("RUST_LOG");
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        cmd.env(var, "http://127.0.0.1:9");
    }
    cmd.args(args).output().expect("run warden")
}

#[test]
fn models_fetch_is_idempotent_and_list_shows_what_is_there() {
    let data = fetched();
    let out = models(data, &["models", "fetch"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stderr(&out).matches("already there, verified").count(),
        2,
        "{}",
        stderr(&out)
    );
    let out = models(data, &["models", "list"]);
    assert_eq!(code(&out), 0);
    for line in stdout(&out)
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_alphanumeric()))
    {
        assert!(line.contains("present"), "{line}");
    }
    assert!(stdout(&out).contains("smollm2-135m-instruct"));

    let empty = tempfile::tempdir().unwrap();
    let out = models(empty.path(), &["models", "list"]);
    assert!(stdout(&out).contains("missing"), "{}", stdout(&out));
    let out = offline(empty.path(), &["llm", "chat", "hello"]);
    assert_exit(&out, 1, "run `warden models fetch`", &"chat without models");
}

#[test]
fn llm_chat_answers_offline_with_the_local_model_and_usage_counts_it() {
    let data = fetched();
    let out = offline(
        data,
        &["llm", "chat", "hello", "--json", "--max-tokens", "16"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let answer: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(answer["provider"], "local");
    assert!(
        !answer["text"].as_str().unwrap().trim().is_empty(),
        "{answer}"
    );
    let tokens = answer["usage"]["output_tokens"].as_u64().unwrap();
    assert!((1..=16).contains(&tokens), "{answer}");

    // A provider's name alone picks its model ("unknown model" before).
    let out = offline(
        data,
        &[
            "llm",
            "chat",
            "--model",
            "local",
            "hi",
            "--json",
            "--max-tokens",
            "4",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let named: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(named["provider"], "local", "{named}");

    let out = offline(data, &["llm", "usage", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["plugin"] == "cli" && r["model"] == "local/smollm2-135m-instruct")
        .unwrap_or_else(|| panic!("no cli row in {rows}"));
    assert!(row["calls"].as_u64().unwrap() >= 1);
    assert!(row["output_tokens"].as_u64().unwrap() >= tokens);
}

fn config(dir: &Path, origin: &str, extra: &str) -> PathBuf {
    let path = dir.join("llm.toml");
    std::fs::write(
        &path,
        format!(
            "version = 1\ndefault = \"fast\"\n[providers.openai]\nkind = \"openai\"\nbase-url = \"{origin}/v1\"\napi-key-env = \"{KEY_VAR}\"\n[aliases]\nfast = \"openai/gpt-test\"\n{extra}"
        ),
    )
    .unwrap();
    path
}

fn with_key(s: &Scratch, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(s.cwd.path())
        .env("WARDEN_DATA_DIR", s.data.path())
        .env(KEY_VAR, "sk-cli-test")
        .env_remove("RUST_LOG")
        .args(args)
        .output()
        .expect("run warden")
}

#[test]
fn llm_chat_uses_a_config_and_says_what_is_wrong_with_one() {
    let fake = FakeLlm::start();
    let s = Scratch::new();
    let cfg = config(s.cwd.path(), &fake.origin(), "");
    let cfg = cfg.to_str().unwrap();
    let out = with_key(
        &s,
        &[
            "llm", "chat", "--config", cfg, "--model", "fast", "hi there",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "echo: hi there");
    assert_eq!(
        fake.requests()[0].header("authorization"),
        Some("Bearer sk-cli-test")
    );

    // No key in the environment: bad input, naming the variable.
    let out = s.run(&["llm", "chat", "--config", cfg, "hi"]);
    assert_exit(&out, 2, KEY_VAR, &"missing key");

    // A budget that cannot cover the prompt: the limit exit code.
    let tight = config(s.cwd.path(), &fake.origin(), "[budgets]\ncall-tokens = 3\n");
    let out = with_key(
        &s,
        &[
            "llm",
            "chat",
            "--config",
            tight.to_str().unwrap(),
            "a longer prompt than three tokens",
        ],
    );
    assert_exit(&out, 3, "budget exceeded", &"budget");

    let bad = s.cwd.path().join("bad.toml");
    std::fs::write(
        &bad,
        "version = 1\n[providers.x]\nkind = \"openai\"\nbase_url = \"http://x\"\n",
    )
    .unwrap();
    let out = s.run(&["llm", "chat", "--config", bad.to_str().unwrap(), "hi"]);
    assert_exit(&out, 2, "is not valid", &"bad config");
    assert!(stderr(&out).contains("base_url"), "{}", stderr(&out));
}

#[test]
fn a_plugin_asks_only_the_models_it_was_granted() {
    let fake = FakeLlm::start();
    let s = Scratch::new();
    let cfg = config(s.cwd.path(), &fake.origin(), "");
    let cfg = cfg.to_str().unwrap();
    let args = r#"{"messages":[{"role":"user","content":"from a plugin"}]}"#;
    let call = |extra: &[&str]| {
        let mut all = vec![
            "tool",
            "call",
            THINKER,
            "complete",
            "--args",
            args,
            "--llm-config",
            cfg,
        ];
        all.extend_from_slice(extra);
        with_key(&s, &all)
    };
    let out = call(&["--allow-model", "fast"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let answer: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(answer["text"], "echo: from a plugin");

    let out = call(&[]);
    let answer: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(answer["error"]["kind"], "denied", "{answer}");
    assert_eq!(fake.requests().len(), 1);

    std::fs::write(
        s.cwd.path().join("policy.toml"),
        "version = 1\n[plugins.thinker]\nmodels = [\"fast\"]\n",
    )
    .unwrap();
    let out = call(&["--policy", "policy.toml"]);
    let answer: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(answer["text"], "echo: from a plugin", "{answer}");

    let out = call(&["--allow-model", "two words"]);
    assert_exit(&out, 2, "--allow-model", &"bad model flag");
}
