//! The work queue on a real nats-server: tasks of one run worked by two
//! nodes (each its own connection and runtime, as two processes would be)
//! to the run's end; a node that dies mid-task is taken over without its
//! finished tool call done again; a paused node's late writes are refused;
//! a task delivered more often than its attempts explain is dead-lettered;
//! a failure is tried again after the backoff; a tenant's concurrency of 1
//! holds across the nodes; an idle node waits at the server for work
//! rather than asking for it again and again; and on three NATS servers with replicated
//! streams, one killed mid-run, no journal event is lost.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::json;
use warden_cluster::Nats;
use warden_cluster::journal::{JetStreamJournal, ensure_stream, read_run};
use warden_cluster::work::{QueueSettings, Runner, Worker, advance, ensure_dead_letters};
use warden_core::{Outcome, TenantId, ToolCallKey};
use warden_run::scheduler::{Attempt, AttemptEnd, AttemptError, Executor};
use warden_run::workflow::{TaskSpec, Workflow};
use warden_run::{Event, EventSink, Record, Recorder, RunError, RunState, RunStatus, TaskStatus};
use warden_tests::nats::{NatsCluster, NatsServer};

const TENANT: &str = "acme";

/// What a test's tasks do, per node.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Call the tool (unless the journal answers it) and finish.
    Work,
    /// Call the tool, then never end (the node is killed).
    Hang,
    /// Call nothing; block the node's only thread until told (a paused
    /// process: no word to JetStream either), then call the tool.
    Pause,
    /// Fail, as something worth another try.
    Fail,
}

/// The side effects of the tasks' one tool call, counted by key: what a
/// tool outside the journal would have done.
#[derive(Default)]
struct World {
    effects: Mutex<HashMap<String, u32>>,
    /// Attempts running at once, and the most ever.
    running: Mutex<(u32, u32)>,
    /// Released by the test to end a pause.
    release: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    /// What a paused node's late write got.
    late_write: Mutex<Option<String>>,
    /// Every record a node was told is durable.
    durable: Mutex<Vec<Record>>,
}

/// Keeps what the journal acknowledged, to look for it afterwards.
struct Durable(Arc<World>);

impl EventSink for Durable {
    fn event(&self, record: &Record, _state: &RunState) {
        self.0.durable.lock().unwrap().push(record.clone());
    }
}

struct Script {
    mode: Mode,
    world: Arc<World>,
    work_ms: u64,
}

fn key(task: &str) -> ToolCallKey {
    ToolCallKey {
        seq: 0,
        tool: format!("side.effect-{task}"),
        arguments_sha256: "00".into(),
    }
}

/// The tool call of `attempt`: answered from the journal if an earlier
/// attempt finished it, else done (counted) and recorded.
fn call_tool(world: &World, attempt: &Attempt) -> Result<(), String> {
    let key = key(&attempt.spec.id);
    if attempt.recorded.contains_key(&key) {
        return Ok(());
    }
    *world
        .effects
        .lock()
        .unwrap()
        .entry(attempt.spec.id.clone())
        .or_default() += 1;
    attempt
        .recorder
        .record(Event::ToolCall {
            task: attempt.spec.id.clone(),
            attempt: attempt.number,
            key,
            arguments: "{}".into(),
            ok: true,
            result: "\"done\"".into(),
            truncated: false,
            replayed: false,
            fuel_used: 1,
            ms: 1,
        })
        .map_err(|e| e.to_string())
}

impl Executor for Script {
    fn run(&self, attempt: Attempt) -> BoxFuture<'static, AttemptEnd> {
        let world = self.world.clone();
        let mode = self.mode;
        let work = Duration::from_millis(self.work_ms);
        async move {
            {
                let mut running = world.running.lock().unwrap();
                running.0 += 1;
                running.1 = running.1.max(running.0);
            }
            let result = match mode {
                Mode::Work => {
                    tokio::time::sleep(work).await;
                    call_tool(&world, &attempt).map(|()| done(&attempt.spec.id))
                }
                Mode::Hang => {
                    let _ = call_tool(&world, &attempt);
                    std::future::pending().await
                }
                Mode::Pause => {
                    let release = world.release.lock().unwrap().take().unwrap();
                    // Blocks the node's one thread: no heartbeat either.
                    release.recv().unwrap();
                    let wrote = call_tool(&world, &attempt);
                    *world.late_write.lock().unwrap() =
                        Some(wrote.clone().err().unwrap_or_else(|| "accepted".into()));
                    wrote.map(|()| done(&attempt.spec.id))
                }
                Mode::Fail => Err("flaky".to_string()),
            };
            world.running.lock().unwrap().0 -= 1;
            AttemptEnd {
                result: result.map_err(|message| AttemptError {
                    message,
                    retryable: true,
                    declined: false,
                }),
                fuel_used: 1,
                duration: work,
            }
        }
        .boxed()
    }
}

fn done(task: &str) -> Outcome {
    Outcome {
        summary: format!("{task} done"),
        output: json!({"accepted": true}),
        artifacts: vec![],
        follow_ups: vec![],
    }
}

struct TestRunner(Arc<Script>);

impl Runner for TestRunner {
    fn executor(
        &self,
        _state: &RunState,
    ) -> BoxFuture<'static, Result<Arc<dyn Executor>, RunError>> {
        let executor: Arc<dyn Executor> = self.0.clone();
        async move { Ok(executor) }.boxed()
    }

    fn sinks(&self, _state: &RunState) -> Vec<Box<dyn EventSink>> {
        vec![Box::new(Durable(self.0.world.clone()))]
    }
}

fn settings(crash_allowance: u32) -> QueueSettings {
    QueueSettings {
        ack_wait: Duration::from_millis(1500),
        replicas: 1,
        crash_allowance,
        pull_wait: Duration::from_millis(500),
    }
}

/// A node: its own connection, on its own runtime of `threads` threads,
/// working `tenant`'s tasks with `mode`, until dropped ("killed").
struct Node {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Node {
    fn start(
        url: &str,
        mode: Mode,
        world: &Arc<World>,
        settings: QueueSettings,
        concurrency: u32,
        threads: usize,
    ) -> Node {
        let url = url.to_string();
        let script = Arc::new(Script {
            mode,
            world: world.clone(),
            work_ms: 150,
        });
        // Built on a thread of its own: a runtime cannot start inside the
        // test's.
        let runtime = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
                .unwrap();
            let nats = Nats::connect(&url).unwrap();
            let worker = Arc::new(Worker::new(
                nats,
                "test",
                Arc::new(TestRunner(script)),
                settings,
                4,
            ));
            runtime.block_on(async {
                worker.serve_tenant(TENANT, concurrency).await.unwrap();
            });
            runtime
        })
        .join()
        .unwrap();
        Node {
            runtime: Some(runtime),
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

fn task(id: &str, depends_on: &[&str], max_retries: u32) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        role: "worker".into(),
        instructions: format!("do {id}"),
        depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
        priority: 0,
        max_retries,
        timeout: None,
        tokens: None,
        input: json!(null),
        parent: None,
    }
}

async fn connect(url: &str) -> Nats {
    let url = url.to_string();
    let nats = tokio::task::spawn_blocking(move || Nats::connect(&url))
        .await
        .unwrap()
        .unwrap();
    ensure_stream(&nats, 1).await.unwrap();
    ensure_dead_letters(&nats, 1).await.unwrap();
    nats
}

/// Records the start of run `run` with `tasks` and enqueues what is ready.
async fn start_run(nats: &Nats, run: &str, tasks: Vec<TaskSpec>) {
    let workflow = Workflow::parse(
        "version = 1\nname = \"w\"\n[run]\nretry-base = \"200ms\"\n[roles.worker]\nplugin = \"caller\"\n[[tasks]]\nid = \"x\"\nrole = \"worker\"\nprompt = \"x\"\n",
        "test",
    )
    .unwrap();
    let journal = JetStreamJournal::create(nats, TENANT, run);
    let run_id = run.to_string();
    tokio::task::spawn_blocking(move || {
        let recorder = Recorder::new(journal, RunState::default(), Vec::new());
        recorder
            .record(Event::RunStarted {
                run: run_id,
                workflow,
                goal: "test".into(),
                workspace: "/w".into(),
                base_dir: "/b".into(),
                tenant: TenantId::new(TENANT).unwrap(),
            })
            .unwrap();
        for task in tasks {
            recorder.record(Event::TaskQueued { task }).unwrap();
        }
    })
    .await
    .unwrap();
    advance(nats, TENANT, run, Vec::new).await.unwrap();
}

/// The run's state once it has ended (or after `within`).
async fn ended(nats: &Nats, run: &str, within: Duration) -> RunState {
    let deadline = Instant::now() + within;
    loop {
        // A read may fail while a NATS server is down and the client moves
        // to another: that is "not yet".
        let state = RunState::replay(&read_run(nats, TENANT, run).await.unwrap_or_default());
        if state.status.is_some() || Instant::now() > deadline {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn started(records: &[warden_run::Record], task: &str) -> usize {
    records
        .iter()
        .filter(|r| matches!(&r.event, Event::TaskStarted { task: t, .. } if t == task))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_work_a_runs_tasks_to_its_end() {
    let server = NatsServer::start();
    let nats = connect(&server.url).await;
    let world = Arc::new(World::default());
    let a = Node::start(&server.url, Mode::Work, &world, settings(2), 4, 2);
    let b = Node::start(&server.url, Mode::Work, &world, settings(2), 4, 2);

    start_run(
        &nats,
        "r1",
        vec![
            task("a", &[], 1),
            task("b", &["a"], 1),
            task("c", &["a"], 1),
            task("d", &["b", "c"], 1),
        ],
    )
    .await;
    let state = ended(&nats, "r1", Duration::from_secs(30)).await;
    assert_eq!(state.status, Some(RunStatus::Succeeded), "{state:#?}");
    assert!(state.tasks.iter().all(|t| t.status == TaskStatus::Done));
    let records = read_run(&nats, TENANT, "r1").await.unwrap();
    for t in ["a", "b", "c", "d"] {
        assert_eq!(started(&records, t), 1, "task {t} ran once");
    }
    // `d` started only after both of its dependencies finished.
    let at = |pred: &dyn Fn(&Event) -> bool| records.iter().position(|r| pred(&r.event)).unwrap();
    let d_started = at(&|e| matches!(e, Event::TaskStarted { task, .. } if task == "d"));
    for dep in ["b", "c"] {
        let finished = at(&|e| matches!(e, Event::TaskFinished { task, .. } if task == dep));
        assert!(finished < d_started, "{dep} finished before d started");
    }
    let ends = records
        .iter()
        .filter(|r| matches!(r.event, Event::RunFinished { .. }))
        .count();
    assert_eq!(ends, 1, "the run's end is recorded once");
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_node_dies_goes_on_elsewhere_without_repeating_its_tool_call() {
    let server = NatsServer::start();
    let nats = connect(&server.url).await;
    let world = Arc::new(World::default());
    let doomed = Node::start(&server.url, Mode::Hang, &world, settings(2), 4, 2);
    start_run(&nats, "r2", vec![task("a", &[], 0)]).await;

    // The doomed node took the task and made its tool call.
    let deadline = Instant::now() + Duration::from_secs(20);
    while world.effects.lock().unwrap().get("a").is_none() {
        assert!(Instant::now() < deadline, "the task never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(doomed);
    let killed = Instant::now();
    let rescuer = Node::start(&server.url, Mode::Work, &world, settings(2), 4, 2);

    let state = ended(&nats, "r2", Duration::from_secs(30)).await;
    assert_eq!(state.status, Some(RunStatus::Succeeded), "{state:#?}");
    assert_eq!(
        world.effects.lock().unwrap()["a"],
        1,
        "the tool call of the killed attempt is answered from the journal"
    );
    let records = read_run(&nats, TENANT, "r2").await.unwrap();
    assert_eq!(started(&records, "a"), 2, "taken up once more");
    // Within two ack waits of the kill (a generous bound, not a benchmark).
    assert!(killed.elapsed() < Duration::from_secs(20));
    drop(rescuer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_nodes_late_writes_are_refused() {
    let server = NatsServer::start();
    let nats = connect(&server.url).await;
    let world = Arc::new(World::default());
    let (release, paused) = std::sync::mpsc::channel();
    *world.release.lock().unwrap() = Some(paused);
    // One thread: the pause stops its heartbeats too, as SIGSTOP would.
    let zombie = Node::start(&server.url, Mode::Pause, &world, settings(2), 4, 1);
    start_run(&nats, "r3", vec![task("a", &[], 0)]).await;

    // Another node takes the task over once the ack wait has passed.
    let rescuer = Node::start(&server.url, Mode::Work, &world, settings(2), 4, 2);
    let state = ended(&nats, "r3", Duration::from_secs(30)).await;
    assert_eq!(state.status, Some(RunStatus::Succeeded), "{state:#?}");
    let before = read_run(&nats, TENANT, "r3").await.unwrap();

    // The paused node wakes up and tries to go on with the task.
    release.send(()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while world.late_write.lock().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the paused node never woke");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let late = world.late_write.lock().unwrap().clone().unwrap();
    assert!(
        late.contains("another node has taken this task over"),
        "{late}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = read_run(&nats, TENANT, "r3").await.unwrap();
    assert_eq!(before, after, "nothing of the paused node's was written");
    drop((zombie, rescuer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_nodes_keep_dying_goes_to_the_dead_letters() {
    let server = NatsServer::start();
    let nats = connect(&server.url).await;
    let world = Arc::new(World::default());
    // No allowance for a dead node: the second delivery is one too many.
    let doomed = Node::start(&server.url, Mode::Hang, &world, settings(0), 4, 2);
    start_run(&nats, "r4", vec![task("a", &[], 0), task("b", &["a"], 0)]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while world.effects.lock().unwrap().get("a").is_none() {
        assert!(Instant::now() < deadline, "the task never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(doomed);
    let other = Node::start(&server.url, Mode::Work, &world, settings(0), 4, 2);

    let state = ended(&nats, "r4", Duration::from_secs(30)).await;
    assert_eq!(state.status, Some(RunStatus::Failed), "{state:#?}");
    let a = state.task("a").unwrap();
    assert_eq!(a.status, TaskStatus::Dead);
    assert!(
        a.last_error
            .as_deref()
            .unwrap()
            .contains("its last 1 attempt(s) started and never ended"),
        "{:?}",
        a.last_error
    );
    assert_eq!(state.task("b").unwrap().status, TaskStatus::Skipped);
    let dead = nats
        .jetstream()
        .get_stream(warden_cluster::work::DEAD_STREAM)
        .await
        .unwrap()
        .get_last_raw_message_by_subject(&format!("dead.{TENANT}.r4.a"))
        .await
        .unwrap();
    let letter: serde_json::Value = serde_json::from_slice(&dead.payload).unwrap();
    assert_eq!(letter["task"], "a");
    drop(other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_is_tried_again_after_its_backoff_then_dead() {
    let server = NatsServer::start();
    let nats = connect(&server.url).await;
    let world = Arc::new(World::default());
    let node = Node::start(&server.url, Mode::Fail, &world, settings(2), 4, 2);
    start_run(&nats, "r5", vec![task("a", &[], 2)]).await;

    let state = ended(&nats, "r5", Duration::from_secs(30)).await;
    assert_eq!(state.status, Some(RunStatus::Failed), "{state:#?}");
    let records = read_run(&nats, TENANT, "r5").await.unwrap();
    assert_eq!(started(&records, "a"), 3, "the first try and two retries");
    // Each retry waited for its backoff (200 ms, then 400 ms).
    let starts: Vec<u64> = records
        .iter()
        .filter(|r| matches!(r.event, Event::TaskStarted { .. }))
        .map(|r| r.ts)
        .collect();
    assert!(starts[1] - starts[0] >= 200, "{starts:?}");
    assert!(starts[2] - starts[1] >= 400, "{starts:?}");
    assert_eq!(state.task("a").unwrap().status, TaskStatus::Dead);
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_node_waits_at_the_server_rather_than_asking_again_and_again() {
    use futures::StreamExt;
    let server = NatsServer::start();
    let nats = connect(&server.url).await;
    let world = Arc::new(World::default());
    // Every request of the tenant's consumer for a task goes to this subject.
    let mut requests = nats
        .client()
        .subscribe(format!(
            "$JS.API.CONSUMER.MSG.NEXT.WARDEN_WORK_{TENANT}.workers"
        ))
        .await
        .unwrap();
    let node = Node::start(&server.url, Mode::Work, &world, settings(2), 2, 2);
    let mut asked = 0;
    let quiet = tokio::time::sleep(Duration::from_secs(3));
    tokio::pin!(quiet);
    loop {
        tokio::select! {
            _ = requests.next() => asked += 1,
            () = &mut quiet => break,
        }
    }
    // A request waits 500 ms at the server (`pull_wait`): about six in 3 s.
    assert!(
        asked <= 10,
        "an idle node asked for a task {asked} times in 3 s"
    );
    // And a task that comes is taken.
    start_run(&nats, "r9", vec![task("a", &[], 0)]).await;
    let state = ended(&nats, "r9", Duration::from_secs(10)).await;
    assert_eq!(state.status, Some(RunStatus::Succeeded), "{state:#?}");
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_concurrency_of_one_holds_across_nodes() {
    let server = NatsServer::start();
    let nats = connect(&server.url).await;
    let world = Arc::new(World::default());
    let a = Node::start(&server.url, Mode::Work, &world, settings(2), 1, 2);
    let b = Node::start(&server.url, Mode::Work, &world, settings(2), 1, 2);
    start_run(
        &nats,
        "r6",
        (0..4).map(|n| task(&format!("t{n}"), &[], 0)).collect(),
    )
    .await;
    let state = ended(&nats, "r6", Duration::from_secs(30)).await;
    assert_eq!(state.status, Some(RunStatus::Succeeded), "{state:#?}");
    assert_eq!(
        world.running.lock().unwrap().1,
        1,
        "never two of the tenant's tasks at once"
    );
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_journal_loses_no_event_when_a_nats_server_dies() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut cluster = NatsCluster::start();
    let url = cluster.url();
    let nats = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || Nats::connect(&url))
            .await
            .unwrap()
            .unwrap()
    };
    // The cluster elects its JetStream leader a moment after it starts.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let made = async {
            ensure_stream(&nats, 3).await?;
            ensure_dead_letters(&nats, 3).await
        };
        match made.await {
            Ok(()) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "no JetStream: {e}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    let world = Arc::new(World::default());
    let replicated = QueueSettings {
        replicas: 3,
        ..settings(2)
    };
    let a = Node::start(&url, Mode::Work, &world, replicated.clone(), 4, 2);
    let b = Node::start(&url, Mode::Work, &world, replicated, 4, 2);
    let chain: Vec<TaskSpec> = std::iter::once(task("a", &[], 3))
        .chain(
            ["a", "b", "c", "d", "e", "f"]
                .windows(2)
                .map(|w| task(w[1], &[w[0]], 3)),
        )
        .collect();
    start_run(&nats, "r7", chain).await;

    // Half way through, one of the three servers dies.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !world
        .durable
        .lock()
        .unwrap()
        .iter()
        .any(|r| matches!(&r.event, Event::TaskFinished { task, .. } if task == "c"))
    {
        assert!(Instant::now() < deadline, "the run did not get half way");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.kill(1);

    let state = ended(&nats, "r7", Duration::from_secs(90)).await;
    assert_eq!(state.status, Some(RunStatus::Succeeded), "{state:#?}");
    let mut tries = 0;
    let records = loop {
        tries += 1;
        match read_run(&nats, TENANT, "r7").await {
            Ok(records) => break records,
            // The cluster's JetStream may still be electing a leader.
            Err(e) if tries < 20 => eprintln!("reading again: {e}"),
            Err(e) => panic!("{e}"),
        }
    };
    let durable = world.durable.lock().unwrap().clone();
    assert!(durable.len() >= 6 * 3, "{}", durable.len());
    for record in &durable {
        assert!(
            records.contains(record),
            "acknowledged but gone: {record:?}"
        );
    }
    drop((a, b));
}
