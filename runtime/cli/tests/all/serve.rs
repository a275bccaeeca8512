//! `warden tenants`, `warden keys`, `warden serve` and `warden audit` as an
//! operator uses them: a real server process, a raw HTTP request, a log
//! edited by hand and caught.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use warden_tests::artifacts::{
    CALLER, CODER, DATA_DIR, EXEC, FS, HELLO, HOSTILE, REVIEWER, TESTER,
};
use warden_tests::fake_llm::{FakeLlm, Reply, python_module_coder_answer};

use crate::{Scratch, assert_exit, code, stdout};

/// One HTTP/1.1 request; the whole response as text.
pub(crate) fn http(addr: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn call(addr: &str, key: &str, tool: &str, body: &str) -> String {
    http(
        addr,
        &format!(
            "POST /v1/tools/{tool}/call HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// A `warden serve` process on a loopback port, and its address.
fn serve(s: &Scratch, plugins: &std::path::Path) -> (std::process::Child, String) {
    serve_at(s, plugins, "127.0.0.1:0")
}

/// The same, listening on `listen`.
fn serve_at(s: &Scratch, plugins: &std::path::Path, listen: &str) -> (std::process::Child, String) {
    serve_with(s, plugins, listen, &[])
}

/// The same, with options before `serve` (`--llm-config FILE`).
fn serve_with(
    s: &Scratch,
    plugins: &std::path::Path,
    listen: &str,
    options: &[&str],
) -> (std::process::Child, String) {
    let plugins = plugins.to_str().unwrap();
    let mut args = options.to_vec();
    args.extend(["serve", "--listen", listen, "--plugin-dir", plugins]);
    start_server(s, &args)
}

/// `warden ARGS…` (a `serve`) in `s`'s data dir, and the address it says
/// it listens at.
pub(crate) fn start_server(s: &Scratch, args: &[&str]) -> (std::process::Child, String) {
    let mut server = Command::new(env!("CARGO_BIN_EXE_warden"))
        .env("WARDEN_DATA_DIR", s.data.path())
        .env_remove("RUST_LOG")
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server says where it listens")
            .unwrap();
        if let Some(at) = line.split("at http://").nth(1) {
            break at.trim().to_string();
        }
    };
    // Keep reading its log, so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (server, addr)
}

/// The JSON body of a response.
pub(crate) fn body(response: &str) -> serde_json::Value {
    let (_, body) = response.split_once("\r\n\r\n").expect("a body");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

pub(crate) fn get(addr: &str, key: &str, path: &str) -> String {
    http(
        addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\n\r\n"
        ),
    )
}

/// Polls run `run` until `done` holds of its report.
pub(crate) fn wait_for(
    addr: &str,
    key: &str,
    run: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    for _ in 0..600 {
        let report = body(&get(addr, key, &format!("/v1/runs/{run}")));
        if done(&report) {
            return report;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("run {run}: {what} did not happen in 60 s");
}

/// A key of tenant acme that may start and read runs.
pub(crate) fn runs_key(s: &Scratch) -> String {
    let out = s.run(&[
        "keys",
        "create",
        "--tenant",
        "acme",
        "--scope",
        "runs:write,runs:read",
    ]);
    assert_exit(&out, 0, "", &"keys create");
    stdout(&out).trim().to_string()
}

/// Tenant acme with a key that may start and read runs, and a plugin dir
/// holding the roles and tools the runs here use.
fn runner(s: &Scratch) -> (String, std::path::PathBuf) {
    assert_eq!(code(&s.run(&["tenants", "add", "acme"])), 0);
    let key = runs_key(s);
    let plugins = s.cwd.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for (from, name) in [(HELLO, "hello"), (CALLER, "caller"), (HOSTILE, "hostile")] {
        std::fs::copy(from, plugins.join(format!("{name}.wasm"))).unwrap();
    }
    (key, plugins)
}

fn browser_script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../server/tests/browser")
        .join(name)
}

/// Submits `workflow` (TOML) with `key`; the run's id.
pub(crate) fn submit(addr: &str, key: &str, workflow: &str) -> String {
    let submitted = http(
        addr,
        &format!(
            "POST /v1/runs HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/toml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{workflow}",
            workflow.len()
        ),
    );
    assert!(submitted.starts_with("HTTP/1.1 202"), "{submitted}");
    body(&submitted)["id"].as_str().unwrap().to_string()
}

#[test]
fn a_run_cut_by_kill_9_finishes_when_the_server_starts_again() {
    let s = Scratch::new();
    let (key, plugins) = runner(&s);
    let workflow = r#"
version = 1
name = "cut"
[roles.caller]
plugin = "caller"
tools = ["hello", "hostile"]
[[tasks]]
id = "a"
role = "caller"
prompt = "greet"
input = { calls = [{ tool = "hello.greet", arguments = { name = "Ada" } }] }
[[tasks]]
id = "b"
role = "caller"
prompt = "wait"
depends-on = ["a"]
input = { calls = [{ tool = "hostile.sleep", arguments = { ms = 4000 } }] }
"#;
    let (mut server, addr) = serve(&s, &plugins);
    let run = submit(&addr, &key, workflow);
    wait_for(&addr, &key, &run, "task a done, b running", |r| {
        r["tasks"][0]["status"] == "done" && r["tasks"][1]["status"] == "running"
    });
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();

    let (mut server, addr) = serve(&s, &plugins);
    let report = wait_for(&addr, &key, &run, "the run's end", |r| {
        r["status"] != "running"
    });
    assert_eq!(report["status"], "succeeded", "{report}");
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    server.wait().unwrap();
    let journal = std::fs::read_to_string(
        s.data
            .path()
            .join(format!("tenants/acme/runs/{run}/journal.jsonl")),
    )
    .unwrap();
    let events: Vec<serde_json::Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let started = |task: &str| {
        events
            .iter()
            .filter(|e| e["event"] == "task-started" && e["task"] == task)
            .count()
    };
    assert_eq!(started("a"), 1, "a finished task is not repeated");
    assert_eq!(started("b"), 2, "the cut attempt runs again");
    assert!(events.iter().any(|e| e["event"] == "run-resumed"));
}

/// The dashboard's run page in Chromium stays current while the server is
/// killed mid-run and started again on the same port: the page reconnects
/// by itself and shows the run finish, with no reload
/// (`runtime/server/tests/browser/restart.py`).
#[test]
fn a_run_page_stays_current_across_a_server_restart() {
    let s = Scratch::new();
    let (key, plugins) = runner(&s);
    let workflow = r#"
version = 1
name = "restart"
[roles.caller]
plugin = "caller"
tools = ["hello", "hostile"]
[[tasks]]
id = "a"
role = "caller"
prompt = "greet"
input = { calls = [{ tool = "hello.greet", arguments = { name = "Ada" } }] }
[[tasks]]
id = "b"
role = "caller"
prompt = "wait"
depends-on = ["a"]
input = { calls = [{ tool = "hostile.sleep", arguments = { ms = 6000 } }] }
"#;
    let (mut server, addr) = serve(&s, &plugins);
    let run = submit(&addr, &key, workflow);

    let restarted = s.cwd.path().join("restarted");
    let mut browser = Command::new(warden_tests::python())
        .arg(browser_script("restart.py"))
        .env("WARDEN_BASE", format!("http://{addr}"))
        .env("WARDEN_KEY", &key)
        .env("WARDEN_RUN", &run)
        .env("WARDEN_RESTARTED", &restarted)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the browser suite (scripts/dev setup installs selenium and chromium)");
    let mut said = BufReader::new(browser.stdout.take().unwrap()).lines();
    let ready = said.next().map(|l| l.unwrap()).unwrap_or_default();
    if ready != "ready" {
        let mut err = String::new();
        browser
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let _ = server.kill();
        panic!("the page never showed a before the restart: {ready} {err}");
    }
    server.kill().unwrap(); // SIGKILL, mid-task b
    server.wait().unwrap();
    let (mut server, again) = serve_at(&s, &plugins, &addr);
    assert_eq!(again, addr);
    std::fs::write(&restarted, "").unwrap();
    let out = browser.wait_with_output().unwrap();
    let rest: Vec<String> = said.map(|l| l.unwrap_or_default()).collect();
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    server.wait().unwrap();
    assert!(
        out.status.success() && rest.iter().any(|l| l == "restart: ok"),
        "{rest:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The python-module example started from the dashboard in Chromium, on
/// the replay model: its one model answer is recorded first (from a
/// loopback server speaking the OpenAI API) by `warden run`, then `warden
/// serve` answers from the cassette with no model at all. The page shows
/// every task reach its final colour live, and the module it wrote
/// (`runtime/server/tests/browser/example.py`).
#[test]
fn the_example_workflow_runs_from_the_dashboard_on_the_replay_model() {
    let s = Scratch::new();
    // The compiled Python runtime the exec suites share (seconds to build).
    std::fs::create_dir_all(s.data.path().join("cache")).unwrap();
    std::os::unix::fs::symlink(
        std::path::Path::new(DATA_DIR).join("cache/compiled"),
        s.data.path().join("cache/compiled"),
    )
    .unwrap();
    let plugins = s.cwd.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for (from, name) in [
        (CODER, "coder"),
        (TESTER, "tester"),
        (REVIEWER, "reviewer"),
        (FS, "fs"),
        (EXEC, "exec"),
    ] {
        std::fs::copy(from, plugins.join(format!("{name}.wasm"))).unwrap();
    }
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/workflows/python-module.toml");
    let cassette = s.cwd.path().join("python-module.jsonl");
    let fake = FakeLlm::start();
    fake.push(Reply::openai_text(&python_module_coder_answer()));
    let record = s.cwd.path().join("record.toml");
    std::fs::write(
        &record,
        format!(
            "version = 1\ndefault = \"tape/m\"\n[providers.fake]\nkind = \"openai\"\nbase-url = \"{}/v1\"\n[providers.tape]\nkind = \"record\"\ninner = \"fake\"\ncassette = \"{}\"\n",
            fake.origin(),
            cassette.display()
        ),
    )
    .unwrap();
    let recorded = s.run(&[
        "--llm-config",
        record.to_str().unwrap(),
        "run",
        example.to_str().unwrap(),
        "--plugin-dir",
        plugins.to_str().unwrap(),
    ]);
    assert_exit(&recorded, 0, "", &"recording the example");
    drop(fake);
    let replay = s.cwd.path().join("replay.toml");
    std::fs::write(
        &replay,
        format!(
            "version = 1\ndefault = \"tape/m\"\n[providers.tape]\nkind = \"replay\"\ncassette = \"{}\"\n",
            cassette.display()
        ),
    )
    .unwrap();

    let policy = s.cwd.path().join("acme.toml");
    std::fs::write(&policy, "version = 1\n[grant]\nmodels = [\"*\"]\n").unwrap();
    let added = s.run(&[
        "tenants",
        "add",
        "acme",
        "--policy",
        policy.to_str().unwrap(),
    ]);
    assert_exit(&added, 0, "", &"tenants add");
    let key = runs_key(&s);
    let (mut server, addr) = serve_with(
        &s,
        &plugins,
        "127.0.0.1:0",
        &["--llm-config", replay.to_str().unwrap()],
    );
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new(warden_tests::python())
        .arg(browser_script("example.py"))
        .env("WARDEN_BASE", format!("http://{addr}"))
        .env("WARDEN_KEY", &key)
        .env("WARDEN_SHOTS", &shots)
        .output()
        .expect("run the browser suite (scripts/dev setup installs selenium and chromium)");
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    server.wait().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.contains("example: ok"),
        "{said}"
    );
    assert!(shots.join("example-run.png").is_file());
}

#[test]
fn an_operator_adds_a_tenant_serves_it_and_verifies_its_log() {
    let s = Scratch::new();
    let out = s.run(&[
        "tenants",
        "add",
        "acme",
        "--plugins",
        "hello",
        "--rps",
        "100",
    ]);
    assert_eq!(code(&out), 0, "{}", crate::stderr(&out));
    let out = s.run(&["tenants", "add", "acme"]);
    assert_exit(&out, 2, "tenant \"acme\" exists", &"twice");
    let out = s.run(&[
        "keys",
        "create",
        "--tenant",
        "acme",
        "--scope",
        "tools:call,bogus",
    ]);
    assert_exit(&out, 2, "\"bogus\" is not a scope", &"bad scope");
    let out = s.run(&[
        "keys",
        "create",
        "--tenant",
        "nobody",
        "--scope",
        "tools:call",
    ]);
    assert_exit(&out, 2, "no tenant \"nobody\"", &"no tenant");
    let out = s.run(&[
        "keys",
        "create",
        "--tenant",
        "acme",
        "--scope",
        "tools:call,audit:read",
    ]);
    assert_eq!(code(&out), 0, "{}", crate::stderr(&out));
    let key = stdout(&out).trim().to_string();
    assert!(key.starts_with("wdn_") && key.len() == 85, "{key}");
    let listed = stdout(&s.run(&["keys", "list", "--tenant", "acme"]));
    assert!(
        listed.contains(&key[4..20]) && !listed.contains(&key[21..]),
        "{listed}"
    );

    let plugins = s.cwd.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    std::fs::copy(HELLO, plugins.join("hello.wasm")).unwrap();
    let (mut server, addr) = serve(&s, &plugins);
    let answer = call(&addr, &key, "hello__greet", r#"{"name":"cli"}"#);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("Hello, cli!"), "{answer}");
    let answer = call(&addr, "wdn_nope", "hello__greet", "{}");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // SIGTERM: the server stops cleanly.
    let stopped = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(server.wait().unwrap().success());

    let out = s.run(&["audit", "verify"]);
    assert_eq!(code(&out), 0, "{}{}", stdout(&out), crate::stderr(&out));
    assert!(
        stdout(&out).contains("acme: ok, 3 entries"),
        "{}",
        stdout(&out)
    );
    let exported = stdout(&s.run(&["audit", "export", "--tenant", "acme"]));
    let actions: Vec<String> = exported
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["action"].to_string())
        .collect();
    assert_eq!(
        actions,
        ["\"tenant.add\"", "\"key.create\"", "\"tool.call\""]
    );

    let log = s.data.path().join("tenants/acme/audit.jsonl");
    let original = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<String> = original.lines().map(String::from).collect();
    let mut third: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
    third["outcome"] = "denied".into();
    lines[2] = third.to_string();
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let out = s.run(&["audit", "verify", "--tenant", "acme"]);
    assert_exit(&out, 2, "not whole", &"edited");
    assert!(
        stdout(&out).contains("entry 3 (line 3) was edited"),
        "{}",
        stdout(&out)
    );
    let without_second: Vec<&str> = original
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(&log, without_second.join("\n") + "\n").unwrap();
    let out = s.run(&["audit", "verify", "--tenant", "acme"]);
    assert_exit(&out, 2, "not whole", &"removed");
    assert!(
        stdout(&out).contains("entry 2 was removed"),
        "{}",
        stdout(&out)
    );
}
