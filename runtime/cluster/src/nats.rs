//! The connection to NATS, driven on a thread of its own: a run's journal
//! is written synchronously (the scheduler, and the observers of tool and
//! model calls, record an event and go on only once it is durable), and a
//! synchronous wait for JetStream must not hold the thread that drives the
//! connection.

use std::future::Future;
use std::sync::Arc;

use async_nats::jetstream;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use futures::StreamExt;

/// What went wrong talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot reach NATS at {url}: {error}; is nats-server running with JetStream (-js)?")]
    Connect { url: String, error: String },
    #[error("JetStream: {0}")]
    JetStream(String),
    /// Another node wrote to the task since this one last read it: this
    /// node no longer holds the task and must stop working on it.
    #[error(
        "{subject}: another node has taken this task over (its journal moved past sequence {expected}); this node stops working on it"
    )]
    Fenced { subject: String, expected: u64 },
    #[error("the NATS connection's thread has stopped")]
    Stopped,
}

/// A connection to NATS with JetStream, driven on its own thread.
#[derive(Clone)]
pub struct Nats {
    handle: tokio::runtime::Handle,
    client: async_nats::Client,
    jetstream: async_nats::jetstream::Context,
    /// Stops the connection's thread when the last clone goes.
    _stop: Arc<Stop>,
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats").finish_non_exhaustive()
    }
}

struct Stop(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for Stop {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

impl Nats {
    /// Connects to `url` (`nats://HOST:PORT`, or several, comma-separated:
    /// the servers of a NATS cluster) on a new thread, and waits until
    /// connected. The client also learns the cluster's other servers from
    /// the one it reaches, and moves to another when that one goes.
    pub fn connect(url: &str) -> Result<Nats, ClusterError> {
        let (ready, connected) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let address = url.to_string();
        std::thread::Builder::new()
            .name("warden-nats".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready.send(Err(e.to_string()));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let client = async_nats::ConnectOptions::new()
                        .name("warden")
                        .connect(
                            address
                                .split(',')
                                .map(str::trim)
                                .filter(|url| !url.is_empty())
                                .collect::<Vec<_>>(),
                        )
                        .await;
                    let sent = match client {
                        Ok(client) => ready.send(Ok((tokio::runtime::Handle::current(), client))),
                        Err(e) => ready.send(Err(e.to_string())),
                    };
                    if sent.is_ok() {
                        let _ = stopped.await;
                    }
                });
            })
            .map_err(|e| ClusterError::Connect {
                url: url.to_string(),
                error: e.to_string(),
            })?;
        let (handle, client) = connected
            .recv()
            .map_err(|_| ClusterError::Stopped)?
            .map_err(|error| ClusterError::Connect {
                url: url.to_string(),
                error,
            })?;
        // The context starts a timer: on the connection's runtime.
        let jetstream = {
            let _on = handle.enter();
            async_nats::jetstream::new(client.clone())
        };
        Ok(Nats {
            handle,
            client,
            jetstream,
            _stop: Arc::new(Stop(Some(stop))),
        })
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &async_nats::jetstream::Context {
        &self.jetstream
    }

    /// Runs `work` on the connection's thread and waits for it here.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, ClusterError> {
        self.handle
            .spawn(work)
            .await
            .map_err(|_| ClusterError::Stopped)
    }

    /// Makes the stream `config` describes if it is missing.
    pub async fn ensure_stream(
        &self,
        config: jetstream::stream::Config,
    ) -> Result<(), ClusterError> {
        let jetstream = self.jetstream.clone();
        self.run(async move {
            jetstream
                .get_or_create_stream(config)
                .await
                .map(drop)
                .map_err(jetstream_error)
        })
        .await?
    }

    /// Publishes `message` on `subject` and waits until JetStream has it.
    pub async fn publish(
        &self,
        subject: String,
        message: jetstream::message::PublishMessage,
    ) -> Result<(), ClusterError> {
        let jetstream = self.jetstream.clone();
        self.run(async move {
            jetstream
                .send_publish(subject, message)
                .await
                .map_err(jetstream_error)?
                .await
                .map(drop)
                .map_err(jetstream_error)
        })
        .await?
    }

    /// Starts `work` on the connection's thread, to run on its own.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.handle.spawn(work);
    }

    /// Runs `work` on the connection's thread and blocks this thread until
    /// it is done. Never call it on the connection's own thread.
    pub fn block_on<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, ClusterError> {
        let (done, result) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = done.send(work.await);
        });
        result.recv().map_err(|_| ClusterError::Stopped)
    }
}

pub(crate) fn jetstream_error(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::JetStream(e.to_string())
}

/// The messages of `stream` on subjects matching `filter` as they are now
/// (all of them, or the last of each subject, as `deliver` says), in
/// stream order, each with its stream sequence.
pub(crate) async fn read_stream(
    stream: &jetstream::stream::Stream,
    filter: String,
    deliver: DeliverPolicy,
) -> Result<Vec<(u64, jetstream::Message)>, ClusterError> {
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: filter,
            deliver_policy: deliver,
            ..Default::default()
        })
        .await
        .map_err(jetstream_error)?;
    let mut found = Vec::new();
    // An empty read would wait for a message forever.
    if consumer.cached_info().num_pending == 0 {
        return Ok(found);
    }
    let mut messages = consumer.messages().await.map_err(jetstream_error)?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(jetstream_error)?;
        let info = message.info().map_err(jetstream_error)?;
        let (seq, pending) = (info.stream_sequence, info.pending);
        found.push((seq, message));
        if pending == 0 {
            break;
        }
    }
    Ok(found)
}
