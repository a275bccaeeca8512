//! The run journal on a real nats-server (Debian's 2.9, JetStream on, on
//! 127.0.0.1): a run written there reads back as the same records and
//! folds to the same state as on the file journal, runs stay apart, a node
//! whose task another node took over cannot write to it any more, and a
//! retried append is written once.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use serde_json::json;
use warden_cluster::Nats;
use warden_cluster::journal::{JetStreamJournal, ensure_stream, read_run};
use warden_core::{Outcome, TenantId, ToolCallKey};
use warden_run::journal::Journal;
use warden_run::workflow::{TaskSpec, Workflow};
use warden_run::{Event, JournalWriter, RunState, RunStatus, report};
use warden_tests::nats::NatsServer;

fn task(id: &str, depends_on: &[&str]) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        role: "worker".into(),
        instructions: format!("do {id}"),
        depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
        priority: 0,
        max_retries: 1,
        timeout: None,
        tokens: None,
        input: json!(null),
        parent: None,
    }
}

fn done(summary: &str) -> Outcome {
    Outcome {
        summary: summary.into(),
        output: json!({"accepted": true}),
        artifacts: vec![],
        follow_ups: vec![],
    }
}

/// A run of two tasks, `b` after `a`, `b` failing once: every kind of
/// event a run writes.
fn events(run: &str) -> Vec<Event> {
    let workflow = Workflow::parse(
        "version = 1\nname = \"w\"\n[roles.worker]\nplugin = \"caller\"\n[[tasks]]\nid = \"a\"\nrole = \"worker\"\nprompt = \"do a\"\n",
        "test",
    )
    .unwrap();
    vec![
        Event::RunStarted {
            run: run.into(),
            workflow,
            goal: "two tasks".into(),
            workspace: "/w".into(),
            base_dir: "/b".into(),
            tenant: TenantId::new("acme").unwrap(),
        },
        Event::TaskQueued {
            task: task("a", &[]),
        },
        Event::TaskQueued {
            task: task("b", &["a"]),
        },
        Event::TaskStarted {
            task: "a".into(),
            role: "worker".into(),
            attempt: 1,
            node: None,
        },
        Event::ToolCall {
            task: "a".into(),
            attempt: 1,
            key: ToolCallKey {
                seq: 0,
                tool: "fs.write_file".into(),
                arguments_sha256: "00".into(),
            },
            arguments: "{\"path\":\"/w/x\"}".into(),
            ok: true,
            result: "{}".into(),
            truncated: false,
            replayed: false,
            fuel_used: 10,
            ms: 1,
        },
        Event::LlmCall {
            task: "a".into(),
            provider: "tape".into(),
            model: "m".into(),
            input_tokens: 12,
            output_tokens: 5,
            cost: 0.25,
        },
        Event::TaskFinished {
            task: "a".into(),
            attempt: 1,
            outcome: done("a done"),
            fuel_used: 100,
            ms: 3,
        },
        Event::TaskStarted {
            task: "b".into(),
            role: "worker".into(),
            attempt: 1,
            node: None,
        },
        Event::TaskFailed {
            task: "b".into(),
            attempt: 1,
            error: "flaky".into(),
            retry_in_ms: Some(1000),
            fuel_used: 7,
            ms: 2,
        },
        Event::TaskStarted {
            task: "b".into(),
            role: "worker".into(),
            attempt: 2,
            node: None,
        },
        Event::TaskFinished {
            task: "b".into(),
            attempt: 2,
            outcome: done("b done"),
            fuel_used: 50,
            ms: 4,
        },
        Event::RunFinished {
            status: RunStatus::Succeeded,
        },
    ]
}

async fn connect(server: &NatsServer) -> Nats {
    let url = server.url.clone();
    let nats = tokio::task::spawn_blocking(move || Nats::connect(&url))
        .await
        .unwrap()
        .unwrap();
    ensure_stream(&nats, 1).await.unwrap();
    nats
}

/// Appends from a blocking thread, as the scheduler's own thread does.
async fn append(journal: JetStreamJournal, events: Vec<Event>) -> (JetStreamJournal, Vec<String>) {
    tokio::task::spawn_blocking(move || {
        let mut journal = journal;
        let errors = events
            .into_iter()
            .filter_map(|e| journal.append(e).err().map(|e| e.to_string()))
            .collect();
        (journal, errors)
    })
    .await
    .unwrap()
}

/// The report a state gives, without what depends on the clock.
fn report_of(state: &RunState) -> serde_json::Value {
    let mut report = report::json(state);
    report.as_object_mut().unwrap().remove("active_ms");
    report
}

#[tokio::test]
async fn a_run_on_jetstream_reads_back_and_folds_as_on_the_file_journal() {
    let server = NatsServer::start();
    let nats = connect(&server).await;

    // The same run on both journals, with another run written in between.
    let dir = tempfile::tempdir().unwrap();
    let mut file = Journal::create(&dir.path().join("journal.jsonl")).unwrap();
    let on_stream = JetStreamJournal::create(&nats, "acme", "run-1");
    let other = JetStreamJournal::create(&nats, "acme", "run-2");
    let (_, errors) = append(on_stream, events("run-1")[..6].to_vec()).await;
    assert!(errors.is_empty(), "{errors:?}");
    let (_, errors) = append(other, events("run-2")).await;
    assert!(errors.is_empty(), "{errors:?}");
    // Opened again (another node, or after a restart), it goes on.
    let (on_stream, written) = JetStreamJournal::open(&nats, "acme", "run-1")
        .await
        .unwrap();
    assert_eq!(written.len(), 6);
    let (_, errors) = append(on_stream, events("run-1")[6..].to_vec()).await;
    assert!(errors.is_empty(), "{errors:?}");
    for event in events("run-1") {
        file.append(event).unwrap();
    }

    let records = read_run(&nats, "acme", "run-1").await.unwrap();
    let from_file = warden_run::journal::read(&dir.path().join("journal.jsonl")).unwrap();
    let kinds = |records: &[warden_run::Record]| -> Vec<Event> {
        records.iter().map(|r| r.event.clone()).collect()
    };
    assert_eq!(
        kinds(&records),
        kinds(&from_file),
        "the same events, in order"
    );
    assert!(
        records.windows(2).all(|w| w[0].seq < w[1].seq),
        "sequences increase"
    );
    let state = RunState::replay(&records);
    assert_eq!(state.status, Some(RunStatus::Succeeded));
    assert_eq!(report_of(&state), report_of(&RunState::replay(&from_file)));
    // Run 2's records are its own, and a run never written has none.
    assert_eq!(read_run(&nats, "acme", "run-2").await.unwrap().len(), 12);
    assert!(read_run(&nats, "bolt", "run-1").await.unwrap().is_empty());
}

/// Node A works task `a`; it goes quiet, node B takes the task over (reads
/// the journal, starts attempt 2). When A wakes up, its next write to the
/// task is refused and its journal of the run is closed; B's record is the
/// journal's.
#[tokio::test]
async fn a_node_whose_task_was_taken_over_cannot_write_to_it() {
    let server = NatsServer::start();
    let nats = connect(&server).await;
    let start = events("run-1")[..4].to_vec(); // ... a started, attempt 1
    let (node_a, errors) = append(JetStreamJournal::create(&nats, "acme", "run-1"), start).await;
    assert!(errors.is_empty(), "{errors:?}");

    let (node_b, _) = JetStreamJournal::open(&nats, "acme", "run-1")
        .await
        .unwrap();
    let takeover = vec![Event::TaskStarted {
        task: "a".into(),
        role: "worker".into(),
        attempt: 2,
        node: None,
    }];
    let (_, errors) = append(node_b, takeover).await;
    assert!(errors.is_empty(), "{errors:?}");

    // A's tool call of attempt 1, then anything else it tries.
    let late = events("run-1")[4..6].to_vec();
    let (_, errors) = append(node_a, late).await;
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].contains("journal.acme.run-1.task.a")
            && errors[0].contains("another node has taken this task over"),
        "{errors:?}"
    );
    assert!(errors[1].contains("closed"), "{errors:?}");

    let records = read_run(&nats, "acme", "run-1").await.unwrap();
    assert_eq!(records.len(), 5);
    let state = RunState::replay(&records);
    let a = state.task("a").unwrap();
    assert_eq!(a.attempt, 2, "the journal has B's attempt");
    assert_eq!(a.usage.tool_calls, 0, "and none of A's late calls");
}

/// What the journal's appends rely on, checked on the server itself: the
/// same message id sent again at the same position (a retry after a lost
/// acknowledgement) is one message, while another writer's append at that
/// position is refused rather than taken for the retry.
#[tokio::test]
async fn the_server_dedups_a_retry_and_refuses_another_writer() {
    use async_nats::jetstream::message::PublishMessage;
    let server = NatsServer::start();
    let nats = connect(&server).await;
    let (journal, errors) = append(
        JetStreamJournal::create(&nats, "acme", "run-1"),
        events("run-1")[..1].to_vec(),
    )
    .await;
    assert!(errors.is_empty(), "{errors:?}");
    drop(journal);
    let jetstream = nats.jetstream().clone();
    let send = |id: &'static str| {
        let jetstream = jetstream.clone();
        async move {
            let message = PublishMessage::build()
                .payload(
                    serde_json::to_vec(
                        &json!({"ts": 1, "event": "task-queued", "task": task("a", &[])}),
                    )
                    .unwrap()
                    .into(),
                )
                .message_id(id)
                .expected_last_subject_sequence(0);
            jetstream
                .send_publish("journal.acme.run-1.task.a", message)
                .await
                .unwrap()
                .await
        }
    };
    let first = send("w1:a:0").await.unwrap();
    let again = send("w1:a:0").await.unwrap();
    assert!(again.duplicate && again.sequence == first.sequence);
    let other = send("w2:a:0").await;
    assert!(
        other.is_err(),
        "another writer at the same position is refused"
    );
    assert_eq!(read_run(&nats, "acme", "run-1").await.unwrap().len(), 2);
}
