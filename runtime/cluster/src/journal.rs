//! A run's journal on JetStream: the same events as the file journal, on
//! one subject per task (`journal.TENANT.RUN.task.ID`) and one for the run
//! itself (`journal.TENANT.RUN.run`), all in one stream. A run's records
//! are its subjects' messages in stream order, and its state is their fold,
//! exactly as for the file journal; a record's `seq` is its stream
//! sequence (increasing within a run, with gaps where other runs wrote).
//!
//! Every append says which sequence it expects its subject to end at (what
//! this writer last read or wrote there): once another node has written to
//! the task (it took the task over after this node went quiet), the append
//! is refused, and this node's journal for the run is closed for good.
//! Each append also carries a message id of its writer and position, so a
//! retry after a lost acknowledgement is written once.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream;
use serde::{Deserialize, Serialize};
use warden_run::journal::now_ms;
use warden_run::{Event, JournalWriter, Record};

use crate::nats::{ClusterError, Nats, jetstream_error, read_stream};

/// The stream every run's journal is on.
pub const STREAM: &str = "WARDEN_JOURNAL";

/// How long JetStream remembers a message id, so that a retried append
/// within it is written once.
const DEDUP_WINDOW: Duration = Duration::from_secs(120);

/// Tries of an append whose acknowledgement did not come.
const PUBLISH_TRIES: u32 = 3;

/// One message: a record without its sequence (the stream gives it).
#[derive(Serialize, Deserialize)]
struct Entry {
    ts: u64,
    #[serde(flatten)]
    event: Event,
}

/// Creates the journal stream if it is missing: `replicas` copies (1 on a
/// single NATS server, 3 in a NATS cluster).
pub async fn ensure_stream(nats: &Nats, replicas: usize) -> Result<(), ClusterError> {
    nats.ensure_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec!["journal.>".into()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        num_replicas: replicas.max(1),
        duplicate_window: DEDUP_WINDOW,
        ..Default::default()
    })
    .await
}

/// The subjects of `tenant`'s run `run` start with this. (Tenant names, run
/// ids and task ids are letters, digits, `-` and `_`: never a subject's
/// `.`, `*` or `>`.)
fn run_prefix(tenant: &str, run: &str) -> String {
    format!("journal.{tenant}.{run}")
}

/// The subject `event` belongs on, under `prefix`.
fn subject(prefix: &str, event: &Event) -> String {
    let task = match event {
        Event::RunStarted { .. } | Event::RunResumed { .. } | Event::RunFinished { .. } => {
            return format!("{prefix}.run");
        }
        Event::TaskQueued { task } => &task.id,
        Event::TaskStarted { task, .. }
        | Event::ToolCall { task, .. }
        | Event::LlmCall { task, .. }
        | Event::TaskFinished { task, .. }
        | Event::TaskFailed { task, .. }
        | Event::TaskDead { task, .. }
        | Event::TaskSkipped { task, .. } => task,
    };
    format!("{prefix}.task.{task}")
}

/// Every record of `tenant`'s run `run`, in order, with the subject each
/// is on.
async fn read_entries(
    nats: &Nats,
    tenant: &str,
    run: &str,
) -> Result<Vec<(String, Record)>, ClusterError> {
    let jetstream = nats.jetstream().clone();
    let filter = format!("{}.>", run_prefix(tenant, run));
    nats.run(async move {
        let stream = jetstream
            .get_stream(STREAM)
            .await
            .map_err(jetstream_error)?;
        let mut entries = Vec::new();
        for (seq, message) in read_stream(&stream, filter, DeliverPolicy::All).await? {
            let entry: Entry = serde_json::from_slice(&message.payload).map_err(|e| {
                ClusterError::JetStream(format!(
                    "{} sequence {seq} is not a journal record: {e}",
                    message.subject
                ))
            })?;
            entries.push((
                message.subject.to_string(),
                Record {
                    seq,
                    ts: entry.ts,
                    event: entry.event,
                },
            ));
        }
        Ok(entries)
    })
    .await?
}

/// Every record of `tenant`'s run `run`, in order (none for a run that
/// does not exist).
pub async fn read_run(nats: &Nats, tenant: &str, run: &str) -> Result<Vec<Record>, ClusterError> {
    Ok(read_entries(nats, tenant, run)
        .await?
        .into_iter()
        .map(|(_, record)| record)
        .collect())
}

/// One node's writer of one run's journal.
pub struct JetStreamJournal {
    nats: Nats,
    prefix: String,
    /// Tells this writer's retries from another writer's appends.
    writer: u64,
    /// Per subject, the sequence its last message had when this writer
    /// last read or wrote it.
    last: HashMap<String, u64>,
    /// The first refused or failed append: nothing more is written.
    closed: Option<String>,
}

impl std::fmt::Debug for JetStreamJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamJournal")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl JetStreamJournal {
    /// The journal of a new run: an append to a subject that holds
    /// anything already is refused.
    pub fn create(nats: &Nats, tenant: &str, run: &str) -> JetStreamJournal {
        JetStreamJournal {
            nats: nats.clone(),
            prefix: run_prefix(tenant, run),
            writer: rand::random(),
            last: HashMap::new(),
            closed: None,
        }
    }

    /// The journal of an existing run, to go on writing it, with its
    /// records so far.
    pub async fn open(
        nats: &Nats,
        tenant: &str,
        run: &str,
    ) -> Result<(JetStreamJournal, Vec<Record>), ClusterError> {
        let mut journal = JetStreamJournal::create(nats, tenant, run);
        let entries = read_entries(nats, tenant, run).await?;
        let mut records = Vec::with_capacity(entries.len());
        for (subject, record) in entries {
            journal.last.insert(subject, record.seq);
            records.push(record);
        }
        Ok((journal, records))
    }

    /// Publishes `payload` on `subject` if the subject still ends at
    /// `expected`; the new message's sequence.
    fn publish(&self, subject: &str, expected: u64, payload: Vec<u8>) -> Result<u64, ClusterError> {
        let jetstream = self.nats.jetstream().clone();
        let id = format!("{:016x}:{subject}:{expected}", self.writer);
        let to = subject.to_string();
        let acked = self.nats.block_on(async move {
            let mut tries = 0;
            loop {
                tries += 1;
                let message = PublishMessage::build()
                    .payload(payload.clone().into())
                    .message_id(&id)
                    .expected_last_subject_sequence(expected);
                let acked = match jetstream.send_publish(to.clone(), message).await {
                    Ok(ack) => ack.await,
                    Err(e) => Err(e),
                };
                match acked {
                    Err(e) if e.kind() == PublishErrorKind::TimedOut && tries < PUBLISH_TRIES => {
                        tracing::warn!(subject = %to, "no acknowledgement from JetStream; appending again");
                    }
                    other => return other,
                }
            }
        })?;
        match acked {
            Ok(ack) => Ok(ack.sequence),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                Err(ClusterError::Fenced {
                    subject: subject.to_string(),
                    expected,
                })
            }
            Err(e) => Err(jetstream_error(e)),
        }
    }
}

impl JournalWriter for JetStreamJournal {
    fn append(&mut self, event: Event) -> std::io::Result<Record> {
        if let Some(first) = &self.closed {
            return Err(std::io::Error::other(format!(
                "this node's journal of the run is closed ({first})"
            )));
        }
        let subject = subject(&self.prefix, &event);
        let expected = self.last.get(&subject).copied().unwrap_or(0);
        let entry = Entry {
            ts: now_ms(),
            event,
        };
        let payload = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        match self.publish(&subject, expected, payload) {
            Ok(seq) => {
                self.last.insert(subject, seq);
                Ok(Record {
                    seq,
                    ts: entry.ts,
                    event: entry.event,
                })
            }
            Err(e) => {
                self.closed = Some(e.to_string());
                Err(std::io::Error::other(e))
            }
        }
    }
}

/// The last run-level record (start, resume or end) of each of
/// `tenant`'s runs, with the run's id, oldest first (`None` for a message
/// that is not a record): one message per run, not whole journals.
async fn run_heads(
    nats: &Nats,
    tenant: &str,
) -> Result<Vec<(String, Option<Event>)>, ClusterError> {
    let jetstream = nats.jetstream().clone();
    let filter = format!("journal.{tenant}.*.run");
    let found = nats
        .run(async move {
            let stream = jetstream
                .get_stream(STREAM)
                .await
                .map_err(jetstream_error)?;
            read_stream(&stream, filter, DeliverPolicy::LastPerSubject).await
        })
        .await??;
    Ok(found
        .into_iter()
        .filter_map(|(_, message)| {
            let run = message.subject.split('.').nth(2)?.to_string();
            let entry = serde_json::from_slice::<Entry>(&message.payload).ok();
            Some((run, entry.map(|entry| entry.event)))
        })
        .collect())
}

/// The ids of `tenant`'s runs, oldest first (by their last run-level
/// record).
pub async fn run_ids(nats: &Nats, tenant: &str) -> Result<Vec<String>, ClusterError> {
    Ok(run_heads(nats, tenant)
        .await?
        .into_iter()
        .map(|(run, _)| run)
        .collect())
}

/// How many of `tenant`'s runs have not ended: those whose last run-level
/// record is not their end.
pub async fn runs_going(nats: &Nats, tenant: &str) -> Result<usize, ClusterError> {
    Ok(run_heads(nats, tenant)
        .await?
        .iter()
        .filter(|(_, event)| !matches!(event, Some(Event::RunFinished { .. })))
        .count())
}

/// `tenant`'s run `run`'s records from stream sequence `from` on, as they
/// are written, until the run's end has been sent or the receiver is
/// dropped. Any node follows any run: a client that reconnects elsewhere
/// with the last sequence it saw goes on with no gap and no repeat.
pub fn follow(
    nats: &Nats,
    tenant: &str,
    run: &str,
    from: u64,
) -> tokio::sync::mpsc::Receiver<Result<Record, ClusterError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let jetstream = nats.jetstream().clone();
    let filter = format!("{}.>", run_prefix(tenant, run));
    let keep = nats.clone();
    nats.spawn(async move {
        let _connection = keep;
        let sent = async {
            let stream = jetstream
                .get_stream(STREAM)
                .await
                .map_err(jetstream_error)?;
            let consumer = stream
                .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
                    filter_subject: filter,
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: from.max(1),
                    },
                    ..Default::default()
                })
                .await
                .map_err(jetstream_error)?;
            let mut messages = consumer.messages().await.map_err(jetstream_error)?;
            while let Some(message) = futures::StreamExt::next(&mut messages).await {
                let message = message.map_err(jetstream_error)?;
                let seq = message.info().map_err(jetstream_error)?.stream_sequence;
                let entry: Entry = serde_json::from_slice(&message.payload).map_err(|e| {
                    ClusterError::JetStream(format!(
                        "{} sequence {seq} is not a journal record: {e}",
                        message.subject
                    ))
                })?;
                let last = matches!(entry.event, Event::RunFinished { .. });
                let record = Record {
                    seq,
                    ts: entry.ts,
                    event: entry.event,
                };
                if tx.send(Ok(record)).await.is_err() || last {
                    return Ok(());
                }
            }
            Ok(())
        };
        let ended = tokio::select! {
            ended = sent => ended,
            () = tx.closed() => Ok(()),
        };
        if let Err(e) = ended {
            let _ = tx.send(Err(e)).await;
        }
    });
    rx
}
