//! Tasks through a cluster of `warden serve` nodes on one nats-server, in
//! one run: the same load with 1, 2 and 3 nodes, then how long after a
//! node's death its task starts again on another node.
//!
//! ```text
//! cargo bench -p warden-bench --bench cluster
//! ```
//!
//! Each node is a whole server (API, control state on JetStream KV,
//! journal on JetStream, the work-queue worker) on a tokio runtime of its
//! own with two threads, as a process would have; the nodes and the
//! nats-server share this machine's cores. The role is trivial (the
//! `caller` test role with nothing to call), so what is measured is the
//! cluster's own work per task: pulling it, folding the run's journal,
//! recording start and end, enqueuing what is ready, acking.
//!
//! A node is killed by dropping its runtime and its NATS connection (its
//! sockets close, as a `kill -9` would close them).

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use warden_cluster::Nats;
use warden_cluster::work::QueueSettings;
use warden_core::{Engine, EngineConfig};
use warden_server::cluster::ClusterConfig;
use warden_server::operator::{Actor, KeySpec, NewTenant, Operator};
use warden_server::tenant::Quotas;
use warden_server::{Hosted, Scope, Server};
use warden_tests::artifacts::{CACHE_DIR, CALLER, HOSTILE, RUNTIME_DIR};
use warden_tests::nats::NatsServer;

const RUNS: usize = 150;
const TASKS: usize = 5;
const ACK_WAIT: Duration = Duration::from_secs(2);

/// A node: its runtime (dropped to kill it) and its address.
struct Node {
    runtime: Option<tokio::runtime::Runtime>,
    base: String,
    name: String,
}

impl Node {
    fn start(url: &str, data: &Path, name: &str) -> Node {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a node's runtime");
        let nats = Nats::connect(url).expect("NATS");
        let base = runtime.block_on(async {
            let operator = Operator::open_cluster(data, &nats, 1)
                .await
                .expect("the cluster's control state");
            let engine = Engine::new(&EngineConfig {
                cache_dir: Some(CACHE_DIR.into()),
                runtime_dir: Some(RUNTIME_DIR.into()),
                max_concurrent_calls: 64,
                ..EngineConfig::default()
            })
            .expect("the engine");
            let plugins = [CALLER, HOSTILE]
                .iter()
                .map(|p| engine.load_file(Path::new(p)).expect("a plugin loads"))
                .collect();
            let hosted = Hosted {
                engine,
                plugins,
                plugin_dirs: vec![Path::new(CALLER).parent().expect("a dir").into()],
                memory: None,
                cluster: Some(ClusterConfig {
                    nats,
                    node: name.to_string(),
                    queue: QueueSettings {
                        ack_wait: ACK_WAIT,
                        ..QueueSettings::default()
                    },
                    slots: 16,
                }),
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a loopback port");
            let base = format!("http://{}", listener.local_addr().expect("its address"));
            tokio::spawn(Server::new(operator, hosted).serve(listener, std::future::pending()));
            base
        });
        Node {
            runtime: Some(runtime),
            base,
            name: name.to_string(),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn trivial_workflow() -> String {
    let mut workflow = String::from(
        "version = 1\nname = \"trivial\"\n[run]\nconcurrency = 5\n[roles.caller]\nplugin = \"caller\"\n",
    );
    for n in 0..TASKS {
        workflow.push_str(&format!(
            "[[tasks]]\nid = \"t{n}\"\nrole = \"caller\"\nprompt = \"nothing\"\n"
        ));
    }
    workflow
}

const SLEEPY: &str = r#"
version = 1
name = "sleepy"
[roles.caller]
plugin = "caller"
tools = ["hostile"]
[[tasks]]
id = "a"
role = "caller"
prompt = "sleep"
input = { calls = [{ tool = "hostile.sleep", arguments = { ms = 1000 } }] }
"#;

async fn submit(client: &reqwest::Client, base: &str, key: &str, workflow: &str) -> String {
    let answer = client
        .post(format!("{base}/v1/runs"))
        .bearer_auth(key)
        .header("content-type", "application/toml")
        .body(workflow.to_string())
        .send()
        .await
        .expect("a submission");
    assert_eq!(answer.status(), 202, "{:?}", answer.text().await);
    let body: serde_json::Value = answer.json().await.expect("JSON");
    body["id"].as_str().expect("an id").to_string()
}

fn main() {
    let nats = NatsServer::start();
    let data = tempfile::tempdir().expect("a data dir");
    let driver = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("the driver's runtime");
    let watch = Nats::connect(&nats.url).expect("NATS");
    let operator = driver.block_on(async {
        warden_cluster::journal::ensure_stream(&watch, 1)
            .await
            .expect("the journal");
        warden_cluster::work::ensure_dead_letters(&watch, 1)
            .await
            .expect("dead letters");
        Operator::open_cluster(data.path(), &watch, 1)
            .await
            .expect("the control state")
    });
    // A tenant per phase, so that no phase reads the runs of the one
    // before.
    let keys: Vec<String> = ["bench1", "bench2", "bench3", "bench"]
        .iter()
        .map(|name| driver.block_on(tenant(&operator, name)))
        .collect();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let workflow = trivial_workflow();

    let mut rates = Vec::new();
    for count in 1..=3 {
        let nodes: Vec<Node> = (1..=count)
            .map(|n| Node::start(&nats.url, data.path(), &format!("n{n}")))
            .collect();
        // Each node takes up the tenant within its first sweep.
        std::thread::sleep(Duration::from_millis(2500));
        let key = &keys[count - 1];
        let elapsed = driver.block_on(async {
            // Every run's end, as the journal records it.
            let mut ends = watch
                .client()
                .subscribe(format!("journal.bench{count}.*.run"))
                .await
                .expect("a subscription");
            let started = Instant::now();
            let cpu = (cpu_seconds("self"), cpu_seconds(&nats.pid().to_string()));
            for n in 0..RUNS {
                submit(&client, &nodes[n % count].base, key, &workflow).await;
            }
            let mut finished = 0;
            while finished < RUNS {
                let message = tokio::time::timeout(Duration::from_secs(120), ends.next())
                    .await
                    .expect("the runs end within two minutes")
                    .expect("the subscription stays");
                if String::from_utf8_lossy(&message.payload).contains("\"run-finished\"") {
                    finished += 1;
                }
            }
            let warden = cpu_seconds("self") - cpu.0;
            let server = cpu_seconds(&nats.pid().to_string()) - cpu.1;
            (started.elapsed(), warden, server)
        });
        let (elapsed, warden_cpu, nats_cpu) = elapsed;
        let tasks_per_second = (RUNS * TASKS) as f64 / elapsed.as_secs_f64();
        let per_task = |cpu: f64| cpu * 1000.0 / (RUNS * TASKS) as f64;
        println!(
            "{count} node(s): {} runs of {TASKS} trivial tasks in {:.2} s: {tasks_per_second:.1} tasks/s; CPU per task: {:.2} ms in warden (nodes and client), {:.2} ms in nats-server",
            RUNS,
            elapsed.as_secs_f64(),
            per_task(warden_cpu),
            per_task(nats_cpu),
        );
        rates.push(tasks_per_second);
        drop(nodes);
    }
    println!(
        "tasks/s with 2 nodes over 1: ×{:.2}; with 3 nodes over 1: ×{:.2}",
        rates[1] / rates[0],
        rates[2] / rates[0]
    );

    // A node dies mid-task: when does the task start again elsewhere?
    let mut nodes: Vec<Node> = ["k1", "k2"]
        .iter()
        .map(|name| Node::start(&nats.url, data.path(), name))
        .collect();
    std::thread::sleep(Duration::from_millis(2500));
    let mut resumes = Vec::new();
    for _ in 0..3 {
        let run = driver.block_on(submit(&client, &nodes[0].base, &keys[3], SLEEPY));
        let owner = driver.block_on(started_on(&watch, &run, 1));
        let at = nodes.iter().position(|n| n.name == owner).expect("a node");
        let killed_ms = now_ms();
        drop(nodes.remove(at));
        let _ = driver.block_on(started_on(&watch, &run, 2));
        let records = driver.block_on(warden_cluster::read_run(&watch, "bench", &run));
        let again = records
            .expect("the journal")
            .iter()
            .filter(|r| matches!(r.event, warden_run::Event::TaskStarted { .. }))
            .nth(1)
            .map(|r| r.ts)
            .expect("a second start");
        let resumed = Duration::from_millis(again.saturating_sub(killed_ms));
        println!(
            "killed the node running a task; it started again on another node after {:.2} s (ack wait {:.0} s: ×{:.2})",
            resumed.as_secs_f64(),
            ACK_WAIT.as_secs_f64(),
            resumed.as_secs_f64() / ACK_WAIT.as_secs_f64()
        );
        resumes.push(resumed);
        // A fresh node in place of the dead one.
        nodes.push(Node::start(
            &nats.url,
            data.path(),
            &format!("k{}", 3 + resumes.len()),
        ));
        std::thread::sleep(Duration::from_millis(2500));
    }
}

/// A tenant `name` with room for the benchmark; a key for its runs.
async fn tenant(operator: &Operator, name: &str) -> String {
    operator
        .add_tenant(
            NewTenant {
                name: name.into(),
                policy: None,
                plugins: vec!["*".into()],
                quotas: Some(Quotas {
                    requests_per_second: 100_000,
                    burst: 100_000,
                    concurrent_calls: 16,
                    queued_calls: 1024,
                    runs_in_flight: 10_000,
                    ..Quotas::default()
                }),
            },
            Actor::Shell,
        )
        .await
        .expect("the tenant");
    let spec = KeySpec {
        tenant: Some(name.into()),
        scopes: vec![Scope::RunsWrite, Scope::RunsRead],
        ..KeySpec::default()
    };
    operator
        .create_key(spec, Actor::Shell)
        .await
        .expect("a key")
        .0
        .token
}

/// The node that started `run`'s task the `nth` time (1 for the first),
/// once it has.
async fn started_on(nats: &Nats, run: &str, nth: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let records = warden_cluster::read_run(nats, "bench", run)
            .await
            .expect("the journal");
        let node = records
            .iter()
            .filter_map(|r| match &r.event {
                warden_run::Event::TaskStarted { node, .. } => node.clone(),
                _ => None,
            })
            .nth(nth - 1);
        if let Some(node) = node {
            return node;
        }
        assert!(Instant::now() < deadline, "the task did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn now_ms() -> u64 {
    warden_run::journal::now_ms()
}

/// User and system CPU time process `pid` (or `self`) has used, in
/// seconds, every thread together.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the line, in clock ticks
    // (100 a second on Linux).
    let ticks: u64 = fields[11..13]
        .iter()
        .map(|f| f.parse::<u64>().expect("a tick count"))
        .sum();
    ticks as f64 / 100.0
}
