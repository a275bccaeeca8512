//! Append-only logs on JetStream, one subject per log, where an append
//! says which message it follows: of two writers appending after the same
//! message, one is refused and reads the log again. What the server's
//! hash-chained audit log of each tenant is kept on in a cluster.

use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream;
use bytes::Bytes;

use crate::nats::{ClusterError, Nats, jetstream_error, read_stream};

/// One stream of logs.
#[derive(Debug, Clone)]
pub struct Logs {
    nats: Nats,
    stream: String,
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
    /// The stream `name` of subjects `prefix.>`, made with `replicas`
    /// copies if missing.
    pub async fn open(
        nats: &Nats,
        name: &str,
        prefix: &str,
        replicas: usize,
    ) -> Result<Logs, ClusterError> {
        let jetstream = nats.jetstream().clone();
        let config = stream::Config {
            name: name.to_string(),
            subjects: vec![format!("{prefix}.>")],
            storage: stream::StorageType::File,
            num_replicas: replicas.max(1),
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        nats.run(async move {
            jetstream
                .get_or_create_stream(config)
                .await
                .map(drop)
                .map_err(jetstream_error)
        })
        .await??;
        Ok(Logs {
            nats: nats.clone(),
            stream: name.to_string(),
        })
    }

    /// The last message of `subject`'s log and its stream sequence.
    pub async fn last(&self, subject: &str) -> Result<Option<(u64, Bytes)>, ClusterError> {
        let jetstream = self.nats.jetstream().clone();
        let (name, subject) = (self.stream.clone(), subject.to_string());
        self.nats
            .run(async move {
                let stream = jetstream.get_stream(name).await.map_err(jetstream_error)?;
                match stream.get_last_raw_message_by_subject(&subject).await {
                    Ok(message) => Ok(Some((message.sequence, message.payload))),
                    Err(e)
                        if e.kind()
                            == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
                    {
                        Ok(None)
                    }
                    Err(e) => Err(jetstream_error(e)),
                }
            })
            .await?
    }

    /// Appends `payload` to `subject`'s log if its last message is still
    /// the one at `after` (0: the log is empty). `id` (the entry's own
    /// name) makes a retried append one message.
    pub async fn append(
        &self,
        subject: &str,
        after: u64,
        id: &str,
        payload: Bytes,
    ) -> Result<Appended, ClusterError> {
        let jetstream = self.nats.jetstream().clone();
        let subject = subject.to_string();
        let id = id.to_string();
        self.nats
            .run(async move {
                let message = PublishMessage::build()
                    .payload(payload)
                    .message_id(id)
                    .expected_last_subject_sequence(after);
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

    /// Every message of `subject`'s log, in order.
    pub async fn read(&self, subject: &str) -> Result<Vec<Bytes>, ClusterError> {
        let jetstream = self.nats.jetstream().clone();
        let (name, subject) = (self.stream.clone(), subject.to_string());
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
