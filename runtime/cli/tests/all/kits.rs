//! Plugins written with the Python kit (sdk/python): a project from
//! `warden plugin new --lang python`, built by `warden plugin build`, with
//! the hostile tools of tests/kits/hostile.py added, then called as a user
//! and an MCP client would. Everything a Rust plugin gets holds for it: its
//! grants, the network policy, the limits, and failures as tool errors
//! (never a trap). One data dir, so the 18 MB component compiles once.

use std::path::Path;
use std::process::{Command, Output};

use warden_tests::fake_llm::{FakeLlm, Reply as LlmReply};
use warden_tests::server::{RecordingServer, Reply};

use crate::{Scratch, code, stderr, stdout};

const KIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk/python");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/kits");

/// A command with the Python that has componentize-py and the kit from this
/// checkout on its path (as `pip install -r requirements.txt` would give).
fn with_kit(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    command
        .env("WARDEN_PYTHON", warden_tests::python())
        .env("PYTHONPATH", KIT)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    command
}

fn call(s: &Scratch, tool: &str, args: &str, flags: &[&str]) -> Output {
    let mut all = vec!["tool", "call", "pykit/pykit.wasm", tool, "--args", args];
    all.extend_from_slice(flags);
    s.run(&all)
}

/// The tool error a failed call printed: (kind, message).
fn tool_error(out: &Output) -> (String, String) {
    assert_eq!(code(out), 1, "{}\n{}", stdout(out), stderr(out));
    let v: serde_json::Value = serde_json::from_str(stdout(out).trim()).unwrap();
    (
        v["error"]["kind"].as_str().unwrap().to_string(),
        v["error"]["message"].as_str().unwrap().to_string(),
    )
}

#[test]
fn a_python_plugin_from_the_kit_is_sandboxed_like_any_other() {
    let s = Scratch::new();
    let dir = s.cwd.path();
    let project = dir.join("pykit");

    let out = s.run(&["plugin", "new", "pykit", "--lang", "python", "--sdk", KIT]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for file in [
        "app.py",
        "test_tool.py",
        "warden.toml",
        "requirements.txt",
        "README.md",
    ] {
        assert!(project.join(file).is_file(), "{file}");
    }
    // The template's own tests pass natively.
    let out = with_kit(warden_tests::python())
        .current_dir(&project)
        .args(["-m", "unittest", "-q"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // Add the hostile tools, and ask for a directory and one host.
    let allowed = RecordingServer::start(Reply::Body("from the granted host".into()));
    let other = RecordingServer::start(Reply::Body("SHOULD-NOT-BE-READ".into()));
    let redirect = RecordingServer::start(Reply::Redirect(format!("{}/x", other.origin())));
    std::fs::copy(
        Path::new(FIXTURES).join("hostile.py"),
        project.join("hostile.py"),
    )
    .unwrap();
    let mut app = std::fs::read_to_string(project.join("app.py")).unwrap();
    app.push_str("import hostile  # noqa: E402,F401 - the hostile tools\n");
    std::fs::write(project.join("app.py"), app).unwrap();
    let mut manifest = std::fs::read_to_string(project.join("warden.toml")).unwrap();
    manifest.push_str(&format!(
        "\n[[capabilities.fs]]\npath = \"/data\"\nmode = \"ro\"\nreason = \"reads its input\"\n\n[[capabilities.http]]\nhost = \"{}\"\nreason = \"the test server\"\n\n[[capabilities.http]]\nhost = \"{}\"\nreason = \"the redirecting server\"\n",
        allowed.origin(),
        redirect.origin()
    ));
    std::fs::write(project.join("warden.toml"), manifest).unwrap();

    let out = s.run(&["plugin", "check", "pykit"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = with_kit(env!("CARGO_BIN_EXE_warden"))
        .current_dir(dir)
        .env("WARDEN_DATA_DIR", s.data.path())
        .args(["plugin", "build", "pykit"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "pykit/pykit.wasm");

    // Its tools, described by their annotations and docstrings.
    let out = call(&s, "greet", r#"{"name":"Ada","excited":true}"#, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), r#"{"message":"Hello, Ada!"}"#);
    let out = s.run(&["tool", "list", "pykit/pykit.wasm"]);
    let listed: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let greet = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "greet")
        .unwrap();
    assert_eq!(
        greet["inputSchema"]["required"],
        serde_json::json!(["name"])
    );
    assert_eq!(
        greet["inputSchema"]["properties"]["name"]["description"],
        "Who to greet."
    );

    // Every failure is a tool error of its kind, never a trap.
    let (kind, message) = tool_error(&call(&s, "greet", "{}", &[]));
    assert_eq!(
        (kind.as_str(), message.as_str()),
        ("invalid-arguments", "greet: missing `name`")
    );
    let (kind, message) = tool_error(&call(&s, "greet", r#"{"name":""}"#, &[]));
    assert_eq!(
        (kind.as_str(), message.as_str()),
        ("invalid-arguments", "`name` is empty")
    );
    for (how, kind, message) in [
        (
            "zero",
            "failed",
            "crash: ZeroDivisionError: division by zero",
        ),
        (
            "set",
            "failed",
            "crash: the result is a set, which is not JSON",
        ),
        ("exit", "failed", "crash: SystemExit: 7"),
        ("recurse", "failed", "crash: RecursionError"),
        ("it", "denied", "refused it"),
    ] {
        let (got_kind, got) = tool_error(&call(&s, "crash", &format!(r#"{{"how":"{how}"}}"#), &[]));
        assert_eq!(got_kind, kind, "{how}: {got}");
        assert!(got.starts_with(message), "{how}: {got}");
    }

    // Files: only what is granted, read-only as declared.
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in.txt"), "granted text").unwrap();
    std::fs::write(dir.join("canary.txt"), "CANARY-kit-51c2").unwrap();
    let grant = format!("{}::/data", data.display());
    let out = call(&s, "read", r#"{"path":"/data/in.txt"}"#, &[]);
    let (_, message) = tool_error(&out);
    assert!(message.contains("No such file"), "{message}");
    assert!(
        stderr(&out).contains("/data is declared by pykit's manifest (reads its input) but not granted: pass --dir HOST::/data"),
        "{}",
        stderr(&out)
    );
    let out = call(&s, "read", r#"{"path":"/data/in.txt"}"#, &["--dir", &grant]);
    assert_eq!(stdout(&out).trim(), r#""granted text""#, "{}", stderr(&out));
    for escape in ["/data/../canary.txt", "/canary.txt", "/etc/passwd"] {
        let out = call(
            &s,
            "read",
            &format!(r#"{{"path":"{escape}"}}"#),
            &["--dir", &grant],
        );
        assert_eq!(code(&out), 1, "{escape}");
        assert!(!stdout(&out).contains("CANARY"), "{escape}");
    }
    // An rw grant is narrowed to the manifest's ro.
    let out = call(
        &s,
        "write",
        r#"{"path":"/data/out.txt","text":"x"}"#,
        &["--dir-rw", &grant],
    );
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(!data.join("out.txt").exists());

    // The network: refused unless granted, redirects not followed.
    let url = format!(r#"{{"url":"{}/page"}}"#, allowed.origin());
    let (kind, message) = tool_error(&call(&s, "fetch", &url, &[]));
    assert_eq!(kind, "denied", "{message}");
    assert!(
        message.contains(&format!("--allow-host {}", allowed.origin())),
        "{message}"
    );
    assert!(allowed.hits().is_empty());
    let out = call(&s, "fetch", &url, &["--allow-host", &allowed.origin()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let fetched: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(fetched["status"], 200);
    assert_eq!(fetched["body"], "from the granted host");
    assert_eq!(allowed.hits(), vec!["GET /page HTTP/1.1"]);
    let out = call(
        &s,
        "fetch",
        &format!(r#"{{"url":"{}/go"}}"#, redirect.origin()),
        &["--allow-host", &redirect.origin()],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let fetched: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(fetched["status"], 302);
    assert_eq!(fetched["location"], format!("{}/x", other.origin()));
    assert!(other.hits().is_empty(), "{:?}", other.hits());

    // No environment from the host.
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(dir)
        .env("WARDEN_DATA_DIR", s.data.path())
        .env("SECRET_TOKEN", "hunter2")
        .args(["tool", "call", "pykit/pykit.wasm", "environ"])
        .output()
        .unwrap();
    assert_eq!(stdout(&out).trim(), "[]", "{}", stderr(&out));

    // Limits stop it, and say which.
    let out = call(&s, "spin", "{}", &["--fuel", "100000000"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("limit exceeded: fuel"),
        "{}",
        stderr(&out)
    );
    let out = call(&s, "spin", "{}", &["--timeout", "300"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("limit exceeded: deadline"),
        "{}",
        stderr(&out)
    );
    // Past the memory cap, CPython raises MemoryError: a tool error.
    let (kind, message) = tool_error(&call(&s, "hog", r#"{"mib":200}"#, &["--memory", "64"]));
    assert_eq!(
        (kind.as_str(), message.as_str()),
        ("failed", "hog: MemoryError")
    );
    let out = call(&s, "hog", r#"{"mib":8}"#, &["--memory", "64"]);
    assert_eq!(stdout(&out).trim(), "8", "{}", stderr(&out));

    // Over MCP, through the official client.
    let out = Command::new(warden_tests::python())
        .arg(Path::new(FIXTURES).join("mcp_kit.py"))
        .args(["--warden", env!("CARGO_BIN_EXE_warden"), "--name", "pykit"])
        .arg("--plugin")
        .arg(project.join("pykit.wasm"))
        .arg("--data-dir")
        .arg(s.data.path())
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("mcp kit: ok"),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn a_python_project_without_the_kit_is_told_how_to_get_it() {
    let s = Scratch::new();
    let out = s.run(&["plugin", "new", "nokit", "--lang", "python"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let requirements =
        std::fs::read_to_string(s.cwd.path().join("nokit/requirements.txt")).unwrap();
    assert!(requirements.contains("warden-plugin"), "{requirements}");
    // A Python without the kit (no PYTHONPATH, no componentize-py).
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(s.cwd.path())
        .env("WARDEN_DATA_DIR", s.data.path())
        .env("WARDEN_PYTHON", "python3")
        .env_remove("PYTHONPATH")
        .args(["plugin", "build", "nokit"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("cannot import the Python kit")
            && stderr(&out).contains("nokit/requirements.txt"),
        "{}",
        stderr(&out)
    );
    let out = s.run(&[
        "plugin",
        "new",
        "bad",
        "--lang",
        "python",
        "--sdk",
        "/nonexistent",
    ]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("no warden_plugin package there"),
        "{}",
        stderr(&out)
    );
}

/// Runs DIR/workflow.toml (the one `plugin new --role` writes) against the
/// fake model; returns the report.
fn run_workflow(s: &Scratch, project: &Path, llm: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(project)
        .env("WARDEN_DATA_DIR", s.data.path())
        .args([
            "run",
            "workflow.toml",
            "--plugin-dir",
            ".",
            "--json",
            "--llm-config",
        ])
        .arg(llm)
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    serde_json::from_str(stdout(&out).lines().last().unwrap()).unwrap()
}

#[test]
fn the_role_templates_run_as_a_workflow_in_rust_and_python() {
    let s = Scratch::new();
    let dir = s.cwd.path();
    let fake = FakeLlm::start();
    let llm = dir.join("llm.toml");
    std::fs::write(
        &llm,
        format!(
            "version = 1\ndefault = \"fake/m\"\n[providers.fake]\nkind = \"openai\"\nbase-url = \"{}/v1\"\n",
            fake.origin()
        ),
    )
    .unwrap();

    // Python.
    let out = s.run(&[
        "plugin", "new", "pyrole", "--lang", "python", "--role", "--sdk", KIT,
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let project = dir.join("pyrole");
    let out = with_kit(warden_tests::python())
        .current_dir(&project)
        .args(["-m", "unittest", "-q"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = with_kit(env!("CARGO_BIN_EXE_warden"))
        .current_dir(dir)
        .env("WARDEN_DATA_DIR", s.data.path())
        .args(["plugin", "build", "pyrole"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    fake.push(LlmReply::openai_text("  Sandboxes keep code apart.  "));
    let report = run_workflow(&s, &project, &llm);
    assert_eq!(report["status"], "succeeded", "{report}");
    let outcome = &report["tasks"][0]["outcome"];
    assert_eq!(outcome["summary"], "Sandboxes keep code apart.");
    assert_eq!(outcome["output"], serde_json::json!({"words": 4}));

    // Rust, in the target dir the tool template's test builds in.
    let sdk = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk");
    let out = s.run(&["plugin", "new", "rsrole", "--role", "--sdk", sdk]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let project = dir.join("rsrole");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock"),
        project.join("Cargo.lock"),
    )
    .unwrap();
    let target = Path::new(warden_tests::artifacts::RUNTIME_DIR)
        .parent()
        .unwrap()
        .join("plugin-new");
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(dir)
        .env("WARDEN_DATA_DIR", s.data.path())
        .env("CARGO_TARGET_DIR", &target)
        .args(["plugin", "build", "rsrole"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    fake.push(LlmReply::openai_text("Rust says the same."));
    let report = run_workflow(&s, &project, &llm);
    assert_eq!(report["status"], "succeeded", "{report}");
    let outcome = &report["tasks"][0]["outcome"];
    assert_eq!(outcome["summary"], "Rust says the same.");
    assert_eq!(outcome["output"], serde_json::json!({"words": 4}));

    // Both asked the model with the task's brief.
    let asked = fake.requests();
    assert_eq!(asked.len(), 2);
    for request in asked {
        let body = request.body.to_string();
        assert!(body.contains("Answer the goal in two sentences."), "{body}");
        assert!(
            body.contains("Explain in two sentences what a sandbox is."),
            "{body}"
        );
    }
}
