//! Plugins written with the Python kit (sdk/python) and the JavaScript kit
//! (sdk/js): a project from `warden plugin new --lang python|js`, built by
//! `warden plugin build`, with the hostile tools of tests/kits/hostile.py or
//! hostile.js added, then called as a user and an MCP client would.
//! Everything a Rust plugin gets holds for them: grants, the network
//! policy, the limits, and failures as tool errors (never a trap). One data
//! dir per language, so each interpreter component compiles once.

use std::path::Path;
use std::process::{Command, Output};

use warden_tests::fake_llm::{FakeLlm, Reply as LlmReply};
use warden_tests::server::{RecordingServer, Reply};

use crate::{Scratch, code, stderr, stdout};

const PYTHON_KIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk/python");
const JS_KIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk/js");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/kits");

/// What differs between the kits' plugins.
struct Kit {
    lang: &'static str,
    sdk: &'static str,
    files: [&'static str; 5],
    hostile: &'static str,
    /// The line that adds the hostile tools to the project's app.
    import_hostile: &'static str,
    /// (how, kind, start of the message) for the `crash` tool.
    crashes: [(&'static str, &'static str, &'static str); 5],
    /// The tool error past the memory cap.
    out_of_memory: &'static str,
}

const PYTHON: Kit = Kit {
    lang: "python",
    sdk: PYTHON_KIT,
    files: [
        "app.py",
        "test_tool.py",
        "warden.toml",
        "requirements.txt",
        "README.md",
    ],
    hostile: "hostile.py",
    import_hostile: "import hostile  # noqa: E402,F401 - the hostile tools\n",
    crashes: [
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
    ],
    // CPython raises MemoryError when the cap refuses to grow the heap.
    out_of_memory: "hog: MemoryError",
};

const JS: Kit = Kit {
    lang: "js",
    sdk: JS_KIT,
    files: [
        "app.js",
        "tool.test.js",
        "warden.toml",
        "package.json",
        "README.md",
    ],
    hostile: "hostile.js",
    import_hostile: "import './hostile.js';\n",
    crashes: [
        (
            "zero",
            "failed",
            "crash: TypeError: can't access property \"zero\" of null",
        ),
        ("set", "failed", "crash: the result is not JSON"),
        ("exit", "failed", "crash: Error: after an await"),
        (
            "recurse",
            "failed",
            "crash: InternalError: too much recursion",
        ),
        ("it", "denied", "refused it"),
    ],
    // SpiderMonkey throws "out of memory" when the cap refuses to grow it.
    out_of_memory: "hog: out of memory",
};

/// A command with what the kit needs from this checkout: for Python, the
/// venv's interpreter (with componentize-py) and the kit on its path, as
/// `pip install -r requirements.txt` would give; the JavaScript project
/// gets its kit from `npm install`.
fn with_kit(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(program);
    command
        .env("WARDEN_PYTHON", warden_tests::python())
        .env("PYTHONPATH", PYTHON_KIT)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    command
}

/// Installs the JavaScript project's dependencies as its README says,
/// offline, linking the kit from this checkout (whose own dependencies
/// `scripts/dev setup` installed) where a user's install copies it.
fn npm_install(project: &Path) {
    let out = Command::new("npm")
        .current_dir(project)
        .args([
            "install",
            "--offline",
            "--install-links=false",
            "--no-audit",
            "--no-fund",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Runs the project's own tests natively, as its README says.
fn native_tests(kit: &Kit, project: &Path) {
    let out = if kit.lang == "js" {
        npm_install(project);
        Command::new("npm")
            .current_dir(project)
            .args(["test", "--silent"])
            .output()
            .unwrap()
    } else {
        with_kit(warden_tests::python())
            .current_dir(project)
            .args(["-m", "unittest", "-q"])
            .output()
            .unwrap()
    };
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
}

/// `warden plugin build NAME` of a Python or JavaScript project in the
/// scratch dir.
fn build(s: &Scratch, name: &str) -> Output {
    with_kit(env!("CARGO_BIN_EXE_warden"))
        .current_dir(s.cwd.path())
        .env("WARDEN_DATA_DIR", s.data.path())
        .args(["plugin", "build", name])
        .output()
        .unwrap()
}

fn call(s: &Scratch, tool: &str, args: &str, flags: &[&str]) -> Output {
    let mut all = vec!["tool", "call", "kit/kit.wasm", tool, "--args", args];
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
    sandboxed_like_any_other(&PYTHON);
}

#[test]
fn a_javascript_plugin_from_the_kit_is_sandboxed_like_any_other() {
    sandboxed_like_any_other(&JS);
}

fn sandboxed_like_any_other(kit: &Kit) {
    let s = Scratch::new();
    let dir = s.cwd.path();
    let project = dir.join("kit");

    let out = s.run(&["plugin", "new", "kit", "--lang", kit.lang, "--sdk", kit.sdk]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for file in kit.files {
        assert!(project.join(file).is_file(), "{file}");
    }
    native_tests(kit, &project);

    // Add the hostile tools, and ask for a directory and two hosts.
    let allowed = RecordingServer::start(Reply::Body("from the granted host".into()));
    let other = RecordingServer::start(Reply::Body("SHOULD-NOT-BE-READ".into()));
    let redirect = RecordingServer::start(Reply::Redirect(format!("{}/x", other.origin())));
    std::fs::copy(
        Path::new(FIXTURES).join(kit.hostile),
        project.join(kit.hostile),
    )
    .unwrap();
    let app = project.join(kit.files[0]);
    let mut code_text = std::fs::read_to_string(&app).unwrap();
    code_text.push_str(kit.import_hostile);
    std::fs::write(&app, code_text).unwrap();
    let mut manifest = std::fs::read_to_string(project.join("warden.toml")).unwrap();
    manifest.push_str(&format!(
        "\n[[capabilities.fs]]\npath = \"/data\"\nmode = \"ro\"\nreason = \"reads its input\"\n\n[[capabilities.http]]\nhost = \"{}\"\nreason = \"the test server\"\n\n[[capabilities.http]]\nhost = \"{}\"\nreason = \"the redirecting server\"\n",
        allowed.origin(),
        redirect.origin()
    ));
    std::fs::write(project.join("warden.toml"), manifest).unwrap();

    let out = s.run(&["plugin", "check", "kit"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = build(&s, "kit");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "kit/kit.wasm");

    // Its tools, described as declared.
    let out = call(&s, "greet", r#"{"name":"Ada","excited":true}"#, &[]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), r#"{"message":"Hello, Ada!"}"#);
    let out = s.run(&["tool", "list", "kit/kit.wasm"]);
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
    assert!(
        greet["inputSchema"]["properties"]["name"]["description"]
            .as_str()
            .unwrap()
            .starts_with("Who to greet"),
        "{greet}"
    );

    // Every failure is a tool error of its kind, never a trap.
    let (kind, message) = tool_error(&call(&s, "greet", "{}", &[]));
    assert_eq!(
        (kind.as_str(), message.as_str()),
        ("invalid-arguments", "greet: missing `name`")
    );
    let (kind, message) = tool_error(&call(&s, "greet", r#"{"name":7}"#, &[]));
    assert_eq!(
        (kind.as_str(), message.as_str()),
        (
            "invalid-arguments",
            "greet: name: expected a string, got an integer"
        )
    );
    let (kind, message) = tool_error(&call(&s, "greet", r#"{"name":""}"#, &[]));
    assert_eq!(
        (kind.as_str(), message.as_str()),
        ("invalid-arguments", "`name` is empty")
    );
    for (how, kind, message) in kit.crashes {
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
        stderr(&out).contains(
            "/data is declared by kit's manifest (reads its input) but not granted: pass --dir HOST::/data"
        ),
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
        let (kind, message) = tool_error(&out);
        assert_eq!(kind, "failed", "{escape}: {message}");
        assert!(!stdout(&out).contains("CANARY"), "{escape}");
    }
    // An rw grant is narrowed to the manifest's ro.
    let out = call(
        &s,
        "write",
        r#"{"path":"/data/out.txt","text":"x"}"#,
        &["--dir-rw", &grant],
    );
    tool_error(&out);
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
    let post = format!(r#"{{"url":"{}/form","body":"a=1"}}"#, allowed.origin());
    let out = call(&s, "fetch", &post, &["--allow-host", &allowed.origin()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(allowed.hits()[1], "POST /form HTTP/1.1");
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
        .args(["tool", "call", "kit/kit.wasm", "environ"])
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
    let (kind, message) = tool_error(&call(&s, "hog", r#"{"mib":200}"#, &["--memory", "64"]));
    assert_eq!(
        (kind.as_str(), message.as_str()),
        ("failed", kit.out_of_memory)
    );
    let out = call(&s, "hog", r#"{"mib":8}"#, &["--memory", "64"]);
    assert_eq!(stdout(&out).trim(), "8", "{}", stderr(&out));

    // Over MCP, through the official client.
    let out = Command::new(warden_tests::python())
        .arg(Path::new(FIXTURES).join("mcp_kit.py"))
        .args(["--warden", env!("CARGO_BIN_EXE_warden"), "--name", "kit"])
        .arg("--plugin")
        .arg(project.join("kit.wasm"))
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
fn a_project_without_its_kit_is_told_how_to_get_it() {
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

/// The run succeeded with the summary the model gave, trimmed, and the
/// template's output (the summary's word count).
fn ran_once(report: &serde_json::Value, summary: &str, words: u64) {
    assert_eq!(report["status"], "succeeded", "{report}");
    let outcome = &report["tasks"][0]["outcome"];
    assert_eq!(outcome["summary"], summary, "{report}");
    assert_eq!(outcome["output"], serde_json::json!({ "words": words }));
}

#[test]
fn the_role_templates_run_as_a_workflow_in_rust_python_and_javascript() {
    let s = Scratch::new();
    let dir = s.cwd.path();
    let fake = FakeLlm::start();
    let llm = dir.join("llm.toml");
    std::fs::write(&llm, fake.config()).unwrap();

    // Python.
    let out = s.run(&[
        "plugin", "new", "pyrole", "--lang", "python", "--role", "--sdk", PYTHON_KIT,
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let project = dir.join("pyrole");
    native_tests(&PYTHON, &project);
    let out = build(&s, "pyrole");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    fake.push(LlmReply::openai_text("  Sandboxes keep code apart.  "));
    ran_once(
        &run_workflow(&s, &project, &llm),
        "Sandboxes keep code apart.",
        4,
    );

    // Rust, in the target dir the tool template's test builds in.
    let sdk = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk");
    let out = s.run(&["plugin", "new", "rsrole", "--role", "--sdk", sdk]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let project = dir.join("rsrole");
    let out = crate::build_rust_template(&s, "rsrole");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    fake.push(LlmReply::openai_text("Rust says the same."));
    ran_once(&run_workflow(&s, &project, &llm), "Rust says the same.", 4);

    // JavaScript.
    let out = s.run(&[
        "plugin", "new", "jsrole", "--lang", "js", "--role", "--sdk", JS_KIT,
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let project = dir.join("jsrole");
    native_tests(&JS, &project);
    let out = build(&s, "jsrole");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    fake.push(LlmReply::openai_text("JavaScript agrees."));
    ran_once(&run_workflow(&s, &project, &llm), "JavaScript agrees.", 2);

    // All asked the model with the task's brief.
    let asked = fake.requests();
    assert_eq!(asked.len(), 3);
    for request in asked {
        let body = request.body.to_string();
        assert!(body.contains("Answer the goal in two sentences."), "{body}");
        assert!(
            body.contains("Explain in two sentences what a sandbox is."),
            "{body}"
        );
    }
}
