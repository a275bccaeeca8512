//! Key-value buckets on JetStream, made so that nats-server 2.9 takes them:
//! async-nats' `create_key_value` first asks for account fields only 2.10.8
//! sends, so the bucket's stream is made here, as a bucket's stream is,
//! and opened as a bucket. On 2.9.10 a compare-and-set (`update` with a
//! revision) holds on a bucket of one replica; on a replicated one two
//! writers can both win (nats-server #4320, fixed in 2.9.21).

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::{kv, stream};
use bytes::Bytes;

use crate::nats::{ClusterError, Nats, jetstream_error, read_stream};

/// A bucket and the stream under it (for reading many keys at once).
#[derive(Clone)]
pub struct Bucket {
    pub store: kv::Store,
    name: String,
    stream: stream::Stream,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Bucket {
    /// Opens bucket `name` (letters, digits, `-` and `_`), making it with
    /// `replicas` copies and one value per key if it is missing.
    pub async fn open(nats: &Nats, name: &str, replicas: usize) -> Result<Bucket, ClusterError> {
        let jetstream = nats.jetstream().clone();
        let name = name.to_string();
        nats.run(async move {
            let stream = jetstream
                .get_or_create_stream(stream::Config {
                    name: format!("KV_{name}"),
                    subjects: vec![format!("$KV.{name}.>")],
                    max_messages_per_subject: 1,
                    discard: stream::DiscardPolicy::New,
                    allow_rollup: true,
                    deny_delete: true,
                    allow_direct: true,
                    num_replicas: replicas.max(1),
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(jetstream_error)?;
            let store = jetstream
                .get_key_value(name.as_str())
                .await
                .map_err(jetstream_error)?;
            Ok(Bucket {
                store,
                name,
                stream,
            })
        })
        .await?
    }

    /// Every live key starting with `prefix`, with its value, in key order.
    pub async fn scan(&self, prefix: &str) -> Result<Vec<(String, Bytes)>, ClusterError> {
        let subjects = format!("$KV.{}.", self.name);
        let filter = format!("{subjects}{prefix}>");
        let mut found = Vec::new();
        for (_, message) in read_stream(&self.stream, filter, DeliverPolicy::LastPerSubject).await?
        {
            let removed = message
                .headers
                .as_ref()
                .and_then(|h| h.get("KV-Operation"))
                .is_some_and(|op| op.as_str() != "PUT");
            if !removed && let Some(key) = message.subject.strip_prefix(subjects.as_str()) {
                found.push((key.to_string(), message.payload.clone()));
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }
}
