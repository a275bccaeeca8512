//! What the nodes of a warden cluster share, kept in NATS JetStream
//! (Debian's nats-server 2.9): the run journal, one subject per task, each
//! append fenced by the subject's last sequence so that a node that lost
//! its claim on a task cannot write to it; and key-value buckets (the
//! server's control state), made the way a 2.9 server takes them.
//!
//! The connection runs on a thread of its own ([`Nats`]), so that the
//! journal's synchronous appends can wait for JetStream from any thread.

pub mod journal;
pub mod kv;
pub mod log;
mod nats;
pub mod work;

pub use journal::{JetStreamJournal, read_run};
pub use nats::{ClusterError, Nats};
