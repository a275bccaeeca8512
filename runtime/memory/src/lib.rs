//! warden's memory. This part: turning text into vectors, behind one
//! [`embed::Embedder`] trait — the local all-MiniLM-L6-v2 run in-process with
//! candle (the default: no network, no key) or any OpenAI-compatible
//! `/v1/embeddings` endpoint (OpenAI, Ollama, vLLM, TEI).
//!
//! ```no_run
//! use warden_memory::embed::{Embedder, LocalEmbedder};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let embedder = LocalEmbedder::load("/var/lib/warden".as_ref())?;
//! let vectors = embedder.embed(&["a cat sat on the mat".to_string()]).await?;
//! assert_eq!(vectors[0].len(), embedder.dimension());
//! # Ok(())
//! # }
//! ```

pub mod embed;
