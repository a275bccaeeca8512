//! Append-only logs on JetStream, a stream per log, where an append says
//! which message it follows (the stream's expected last sequence): of two
//! writers appending after the same message, one is refused and reads the
//! log again. The whole stream's sequence is checked where a replicated
//! stream applies the append, so this holds on three servers too (the
//! per-subject check does not, before nats-server 2.9.21). What the
//! server's hash-chained audit log of each tenant is kept on in a cluster.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind};
use bytes::Bytes;

use crate::nats::{ClusterError, Nats, jetstream_error, read_stream};

/// Logs named by a plain name (a tenant's): stream `<STREAM>_<name>`,
/// subject `<subject>.<name>`, each made on first use.
#[derive(Debug, Clone)]
pub struct Logs {
    nats: Nats,
    stream: String,
    subject: String,
    replicas: usize,
    made: Arc<Mutex<HashSet<String>>>,
}

/// What an append found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Written at this stream sequence.
    At(u64),
    /// Another writer appended first: read the log's end again.
    Behind,
}

impl Logs {
    pub fn new(nats: &Nats, stream: &str, subject: &str, replicas: usize) -> Logs {
        Logs {
            nats: nats.clone(),
            stream: stream.to_string(),
            subject: subject.to_string(),
            replicas: replicas.max(1),
            made: Arc::default(),
        }
    }

    fn stream_of(&self, log: &str) -> String {
        format!("{}_{log}", self.stream)
    }

    fn subject_of(&self, log: &str) -> String {
        format!("{}.{log}", self.subject)
    }

    /// Makes `log`'s stream if this process has not yet.
    async fn ensure(&self, log: &str) -> Result<(), ClusterError> {
        if self
            .made
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(log)
        {
            return Ok(());
        }
        self.nats
            .ensure_stream(stream::Config {
                name: self.stream_of(log),
                subjects: vec![self.subject_of(log)],
                storage: stream::StorageType::File,
                num_replicas: self.replicas,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await?;
        self.made
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(log.to_string());
        Ok(())
    }

    /// The last message of `log` and its stream sequence.
    pub async fn last(&self, log: &str) -> Result<Option<(u64, Bytes)>, ClusterError> {
        self.ensure(log).await?;
        let jetstream = self.nats.jetstream().clone();
        let (name, subject) = (self.stream_of(log), self.subject_of(log));
        self.nats
            .run(async move {
                let stream = jetstream.get_stream(name).await.map_err(jetstream_error)?;
                match stream.get_last_raw_message_by_subject(&subject).await {
                    Ok(message) => Ok(Some((message.sequence, message.payload))),
                    Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
                    Err(e) => Err(jetstream_error(e)),
                }
            })
            .await?
    }

    /// Appends `payload` to `log` if its last message is still the one at
    /// `after` (0: the log is empty). `id` (the entry's own name) makes a
    /// retried append one message.
    pub async fn append(
        &self,
        log: &str,
        after: u64,
        id: &str,
        payload: Bytes,
    ) -> Result<Appended, ClusterError> {
        self.ensure(log).await?;
        let jetstream = self.nats.jetstream().clone();
        let subject = self.subject_of(log);
        let id = id.to_string();
        self.nats
            .run(async move {
                let message = PublishMessage::build()
                    .payload(payload)
                    .message_id(id)
                    .expected_last_sequence(after);
                let acked = match jetstream.send_publish(subject, message).await {
                    Ok(ack) => ack.await,
                    Err(e) => Err(e),
                };
                match acked {
                    Ok(ack) => Ok(Appended::At(ack.sequence)),
                    Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                        Ok(Appended::Behind)
                    }
                    Err(e) => Err(jetstream_error(e)),
                }
            })
            .await?
    }

    /// Every message of `log`, in order.
    pub async fn read(&self, log: &str) -> Result<Vec<Bytes>, ClusterError> {
        self.ensure(log).await?;
        let jetstream = self.nats.jetstream().clone();
        let (name, subject) = (self.stream_of(log), self.subject_of(log));
        self.nats
            .run(async move {
                let stream = jetstream.get_stream(name).await.map_err(jetstream_error)?;
                let found = read_stream(&stream, subject, DeliverPolicy::All).await?;
                Ok(found
                    .into_iter()
                    .map(|(_, message)| message.payload.clone())
                    .collect())
            })
            .await?
    }
}
