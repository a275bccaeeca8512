//! `warden serve --cluster`: three real server processes and one real
//! nats-server on loopback, sharing the data dir (the tenants' files and
//! run workspaces) and nothing else but NATS.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use warden_tests::artifacts::{CALLER, HELLO, HOSTILE};
use warden_tests::nats::NatsServer;

use crate::serve::{body, get, start_server, submit, wait_for};
use crate::{Scratch, assert_exit, code, stdout};

/// The first task greets (a side effect the journal records), then tallies
/// its call key in the run workspace (a side effect outside the journal)
/// and sleeps, long enough to be killed in; the second runs after it.
const WORKFLOW: &str = r#"
version = 1
name = "cluster"
[roles.caller]
plugin = "caller"
tools = ["hello", "hostile"]
[[tasks]]
id = "a"
role = "caller"
prompt = "greet, then wait"
input = { calls = [{ tool = "hello.greet", arguments = { name = "Ada" } }, { tool = "hostile.tally", arguments = { path = "/workspace/tally", ms = 2500 } }] }
[[tasks]]
id = "b"
role = "caller"
prompt = "greet again"
depends-on = ["a"]
input = { calls = [{ tool = "hello.greet", arguments = { name = "Grace" } }] }
"#;

/// Tenant acme (in `cluster`'s control state when given), a key for its
/// runs, and a plugin dir with the roles and tools of [`WORKFLOW`].
fn tenant(s: &Scratch, cluster: Option<&str>) -> (String, std::path::PathBuf) {
    let on = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = cluster
            .map(|url| vec!["--cluster".to_string(), url.to_string()])
            .unwrap_or_default();
        all.extend(args.iter().map(|a| a.to_string()));
        all
    };
    let add = on(&["tenants", "add", "acme"]);
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    assert_eq!(code(&s.run(&add)), 0);
    let create = on(&[
        "keys",
        "create",
        "--tenant",
        "acme",
        "--scope",
        "runs:write,runs:read",
    ]);
    let create: Vec<&str> = create.iter().map(String::as_str).collect();
    let out = s.run(&create);
    assert_exit(&out, 0, "", &"keys create");
    let plugins = s.cwd.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for (from, name) in [(HELLO, "hello"), (CALLER, "caller"), (HOSTILE, "hostile")] {
        std::fs::copy(from, plugins.join(format!("{name}.wasm"))).unwrap();
    }
    (stdout(&out).trim().to_string(), plugins)
}

/// A node of the cluster at `url`, named `name`.
fn node(s: &Scratch, url: &str, name: &str, plugins: &std::path::Path) -> Node {
    let plugins = plugins.to_str().unwrap();
    let (child, addr) = start_server(
        s,
        &[
            "--cluster",
            url,
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--plugin-dir",
            plugins,
            "--node-id",
            name,
            "--ack-wait",
            "2s",
        ],
    );
    Node {
        name: name.to_string(),
        child,
        addr,
    }
}

struct Node {
    name: String,
    child: std::process::Child,
    addr: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The run's journal records as `addr`'s event stream sends them, until
/// `enough` holds of those so far (or the stream ends).
fn records(
    addr: &str,
    key: &str,
    run: &str,
    enough: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    records_after(addr, key, run, None, enough)
}

/// The same, after the record with sequence `last` (`Last-Event-ID`).
fn records_after(
    addr: &str,
    key: &str,
    run: &str,
    last: Option<u64>,
    enough: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let after = last.map_or(String::new(), |seq| format!("Last-Event-ID: {seq}\r\n"));
    write!(
        stream,
        "GET /v1/runs/{run}/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n{after}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        if let Some(data) = line.strip_prefix("data: ")
            && let Ok(record) = serde_json::from_str::<serde_json::Value>(data)
            && record.get("event").is_some()
        {
            seen.push(record);
            if enough(&seen) {
                break;
            }
        }
    }
    seen
}

/// What two runs of one workflow must agree on, wherever they ran.
fn outcome(report: &serde_json::Value) -> serde_json::Value {
    let tasks: Vec<serde_json::Value> = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            serde_json::json!({
                "id": t["id"], "status": t["status"], "attempts": t["attempts"],
                "outcome": t["outcome"], "error": t["error"],
                "tool_calls": t["usage"]["tool_calls"],
            })
        })
        .collect();
    serde_json::json!({
        "status": report["status"], "verdict": report["verdict"],
        "dead_letters": report["dead_letters"], "tasks": tasks,
    })
}

#[test]
fn a_node_killed_mid_task_is_taken_over_without_repeating_its_tool_call() {
    let nats = NatsServer::start();
    let s = Scratch::new();
    let (key, plugins) = tenant(&s, Some(&nats.url));
    let mut nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .map(|name| node(&s, &nats.url, name, &plugins))
        .collect();

    let run = submit(&nodes[0].addr, &key, WORKFLOW);
    // Task a has started somewhere and made its first tool call.
    let seen = records(&nodes[1].addr, &key, &run, |seen| {
        seen.iter()
            .any(|r| r["event"] == "tool-call" && r["task"] == "a")
    });
    let started = seen
        .iter()
        .find(|r| r["event"] == "task-started" && r["task"] == "a")
        .expect("task a started");
    let owner = started["node"]
        .as_str()
        .expect("the node is named")
        .to_string();
    // …and is in the middle of its second, which has tallied its key.
    let tally = s
        .data
        .path()
        .join(format!("tenants/acme/runs/{run}/workspace/tally"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&tally).map_or(true, |t| t.is_empty()) {
        assert!(Instant::now() < deadline, "task a's second call never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let at = nodes.iter().position(|n| n.name == owner).unwrap();
    let victim = nodes.remove(at);
    let killed = Instant::now();
    drop(victim); // SIGKILL

    // Any other node answers for the run, which finishes elsewhere.
    let report = wait_for(&nodes[0].addr, &key, &run, "the run's end", |r| {
        r["status"] != "running"
    });
    let took = killed.elapsed();
    assert_eq!(report["status"], "succeeded", "{report}");
    let all = records(&nodes[1].addr, &key, &run, |_| false);
    let starts: Vec<&serde_json::Value> = all
        .iter()
        .filter(|r| r["event"] == "task-started" && r["task"] == "a")
        .collect();
    assert_eq!(starts.len(), 2, "taken up once more: {starts:?}");
    assert_ne!(starts[1]["node"], owner.as_str(), "on another node");
    let greetings: Vec<&serde_json::Value> = all
        .iter()
        .filter(|r| {
            r["event"] == "tool-call" && r["task"] == "a" && r["key"]["tool"] == "hello.greet"
        })
        .collect();
    assert_eq!(greetings.len(), 2, "{greetings:?}");
    assert_eq!(greetings[0]["replayed"], false, "greeted once…");
    assert_eq!(
        greetings[1]["replayed"], true,
        "…and the second attempt got the answer from the journal"
    );
    // The call the killed node was in the middle of ran again on the new
    // owner, with the same key: a tool keying its side effect by it does
    // the effect once.
    let tally = std::fs::read_to_string(&tally).expect("the tally tool wrote its file");
    assert_eq!(
        tally.lines().collect::<Vec<_>>(),
        [format!("{run}/a/1"), format!("{run}/a/1")],
        "one key, stable across the crash, for the second call of task a"
    );
    eprintln!("kill -9 to the end of the run on another node: {took:?}");

    followed_across_nodes(&nodes, &key, &run, &all);
    another_tenant_sees_no_such_run(&s, &nats.url, &nodes, &run);
    one_run_per_idempotency_key(&nodes, &key);
    a_paused_owner_is_fenced(&nodes, &key);

    // Every node's entries in one chain, whole.
    let verified = s.run(&[
        "--cluster",
        &nats.url,
        "audit",
        "verify",
        "--tenant",
        "acme",
    ]);
    assert_exit(&verified, 0, "", &"audit verify");
    assert!(
        stdout(&verified).contains("acme: ok"),
        "{}",
        stdout(&verified)
    );

    // The same workflow on one node ends the same way.
    let single = Scratch::new();
    let (single_key, plugins) = tenant(&single, None);
    let (mut server, addr) = start_server(
        &single,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--plugin-dir",
            plugins.to_str().unwrap(),
        ],
    );
    let alone = submit(&addr, &single_key, WORKFLOW);
    let alone = wait_for(&addr, &single_key, &alone, "the run's end", |r| {
        r["status"] != "running"
    });
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(outcome(&report), outcome(&alone));
    // Listing and reading go through any node.
    let listed = body(&get(&nodes[1].addr, &key, "/v1/runs"));
    assert!(
        listed
            .as_array()
            .is_some_and(|runs| runs.iter().any(|r| r["id"] == run)),
        "{listed}"
    );
}

/// A client that reads part of a run's events from one node and reconnects
/// to another with `Last-Event-ID` gets the rest: no gap, no repeat.
fn followed_across_nodes(nodes: &[Node], key: &str, run: &str, all: &[serde_json::Value]) {
    let first = records(&nodes[0].addr, key, run, |seen| seen.len() == 3);
    let last = first[2]["seq"].as_u64().unwrap();
    let rest = records_after(&nodes[1].addr, key, run, Some(last), |_| false);
    let seqs = |records: &[serde_json::Value]| -> Vec<u64> {
        records.iter().map(|r| r["seq"].as_u64().unwrap()).collect()
    };
    let mut joined = seqs(&first);
    joined.extend(seqs(&rest));
    assert_eq!(joined, seqs(all), "the same records, each once, in order");
}

/// One Idempotency-Key sent to two nodes at once starts one run.
fn one_run_per_idempotency_key(nodes: &[Node], key: &str) {
    let workflow = WORKFLOW.replace("ms = 2500", "ms = 10");
    let answers: Vec<String> = std::thread::scope(|scope| {
        let sent: Vec<_> = nodes[..2]
            .iter()
            .map(|node| {
                let workflow = workflow.clone();
                scope.spawn(move || {
                    crate::serve::http(
                        &node.addr,
                        &format!(
                            "POST /v1/runs HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\nIdempotency-Key: order-7\r\nContent-Type: application/toml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{workflow}",
                            node.addr,
                            workflow.len()
                        ),
                    )
                })
            })
            .collect();
        sent.into_iter().map(|s| s.join().unwrap()).collect()
    });
    let ids: Vec<String> = answers
        .iter()
        .map(|a| {
            body(a)["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{a}"))
                .to_string()
        })
        .collect();
    assert_eq!(ids[0], ids[1], "{answers:?}");
    let fresh = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 202"))
        .count();
    assert_eq!(
        fresh, 1,
        "one started it, the other answered with it: {answers:?}"
    );
    wait_for(&nodes[0].addr, key, &ids[0], "the run's end", |r| {
        r["status"] != "running"
    });
}

/// The owner of a task, paused (SIGSTOP) until another node has taken the
/// task over and woken (SIGCONT), has its writes refused: the task's steps
/// are recorded once.
fn a_paused_owner_is_fenced(nodes: &[Node], key: &str) {
    let run = submit(&nodes[0].addr, key, WORKFLOW);
    let seen = records(&nodes[0].addr, key, &run, |seen| {
        seen.iter()
            .any(|r| r["event"] == "tool-call" && r["task"] == "a")
    });
    let owner = seen
        .iter()
        .find(|r| r["event"] == "task-started" && r["task"] == "a")
        .and_then(|r| r["node"].as_str())
        .unwrap()
        .to_string();
    let paused = nodes.iter().find(|n| n.name == owner).unwrap();
    let other = nodes.iter().find(|n| n.name != owner).unwrap();
    let signal = |name: &str| {
        let sent = std::process::Command::new("kill")
            .args([name, &paused.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    signal("-STOP");
    let taken = records(&other.addr, key, &run, |seen| {
        seen.iter()
            .filter(|r| r["event"] == "task-started" && r["task"] == "a")
            .count()
            == 2
    });
    signal("-CONT");
    let taker = taken
        .iter()
        .filter(|r| r["event"] == "task-started" && r["task"] == "a")
        .nth(1)
        .unwrap();
    assert_ne!(taker["node"], owner.as_str());
    let report = wait_for(&other.addr, key, &run, "the run's end", |r| {
        r["status"] != "running"
    });
    assert_eq!(report["status"], "succeeded", "{report}");
    // The woken owner's tally ends and it tries to record it.
    std::thread::sleep(Duration::from_millis(1500));
    let all = records(&other.addr, key, &run, |_| false);
    let tallies = all
        .iter()
        .filter(|r| r["event"] == "tool-call" && r["key"]["tool"] == "hostile.tally")
        .count();
    assert_eq!(
        tallies, 1,
        "only the new owner's tally is recorded: {all:?}"
    );
    let finished = all
        .iter()
        .filter(|r| r["event"] == "task-finished" && r["task"] == "a")
        .count();
    assert_eq!(finished, 1);
}

/// Another tenant asking any node for this tenant's run, its events, or a
/// run id that is no id at all, gets exactly what a run that does not
/// exist gets.
fn another_tenant_sees_no_such_run(s: &Scratch, url: &str, nodes: &[Node], run: &str) {
    assert_eq!(
        code(&s.run(&["--cluster", url, "tenants", "add", "bolt"])),
        0
    );
    let out = s.run(&[
        "--cluster",
        url,
        "keys",
        "create",
        "--tenant",
        "bolt",
        "--scope",
        "runs:read",
    ]);
    assert_exit(&out, 0, "", &"keys create");
    let bolt = stdout(&out).trim().to_string();
    let status_and_body = |path: &str| {
        let answer = get(&nodes[1].addr, &bolt, path);
        let status = answer.lines().next().unwrap_or_default().to_string();
        (status, body(&answer))
    };
    let none = status_and_body("/v1/runs/20260101-000000-00000000");
    assert!(none.0.starts_with("HTTP/1.1 404"), "{none:?}");
    for path in [
        format!("/v1/runs/{run}"),
        format!("/v1/runs/{run}/events"),
        "/v1/runs/..%2F..%2Facme".to_string(),
        "/v1/runs/x.%3E".to_string(),
    ] {
        assert_eq!(status_and_body(&path), none, "{path}");
    }
    let listed = body(&get(&nodes[0].addr, &bolt, "/v1/runs"));
    assert_eq!(listed, serde_json::json!([]), "bolt has no runs");
}
