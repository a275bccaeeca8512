//! warden's memory: texts stored with metadata in LanceDB, one table per
//! (tenant, namespace), searched by meaning, by words, or both.
//!
//! - [`embed`]: text into vectors behind one [`embed::Embedder`] trait — the
//!   local all-MiniLM-L6-v2 run in-process with candle (the default: no
//!   network, no key) or any OpenAI-compatible `/v1/embeddings` endpoint.
//! - [`store::Memory`]: the store. Plugins reach it only through the host's
//!   `warden:plugin/memory` interface, which checks the namespace grants
//!   first; the CLI (`warden memory ...`) uses it directly.
//!
//! ```no_run
//! use std::sync::Arc;
//! use warden_api::memory::{Filter, Meta, SearchMode};
//! use warden_memory::embed::LocalEmbedder;
//! use warden_memory::{Limits, Memory};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let data = std::path::Path::new("/var/lib/warden");
//! let memory = Memory::with_embedder(
//!     &data.join("memory"),
//!     Arc::new(LocalEmbedder::load(data)?),
//!     Limits::default(),
//! );
//! let meta = Meta { kind: Some("note".into()), ..Meta::default() };
//! memory.store("acme", "notes", "the cat sat on the mat".into(), meta).await?;
//! let hits = memory
//!     .search("acme", "notes", "where is the cat?", 5, &Filter::default(), SearchMode::Vector)
//!     .await?;
//! println!("{}", hits[0].entry.content);
//! # Ok(())
//! # }
//! ```

pub mod chunk;
pub mod config;
pub mod embed;
mod record;
pub mod store;

pub use config::MemoryConfig;
pub use record::Limits;
pub use store::{Location, Memory, NamespaceStats};

use warden_api::memory::MemoryError;

/// A request that is wrong, naming the field.
pub(crate) fn invalid(field: &str, message: impl std::fmt::Display) -> MemoryError {
    MemoryError::Invalid(format!("`{field}` {message}"))
}
