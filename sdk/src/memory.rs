//! Remembering through the host: store texts with metadata in the
//! namespaces the operator granted, and search them by meaning, by words,
//! or both. The host embeds, stores and checks every namespace; a plugin
//! never sees the database.
//!
//! ```no_run
//! use warden_sdk::memory::{self, Filter, Meta, SearchMode};
//!
//! # fn run() -> Result<(), memory::MemoryError> {
//! let meta = Meta { kind: Some("note".into()), tags: vec!["db".into()], ..Meta::default() };
//! let id = memory::store("notes", "Postgres listens on 5432", &meta)?;
//! let hits = memory::search("notes", "which port does the database use?", 3,
//!     &Filter::default(), SearchMode::Vector)?;
//! assert_eq!(hits[0].entry.id, id);
//! # Ok(())
//! # }
//! ```

pub use crate::bindings::warden::plugin::memory::{
    Entry, Filter, Hit, MemoryError, Meta, SearchMode,
};

#[allow(clippy::derivable_impls)]
impl Default for Meta {
    fn default() -> Self {
        Meta {
            kind: None,
            source: None,
            task_id: None,
            version: None,
            platform: None,
            tags: vec![],
            extra: None,
        }
    }
}

#[allow(clippy::derivable_impls)]
impl Default for Filter {
    fn default() -> Self {
        Filter {
            kind: None,
            source: None,
            task_id: None,
            version: None,
            platform: None,
            tags: vec![],
            created_after: None,
            created_before: None,
        }
    }
}

#[cfg(target_arch = "wasm32")]
use crate::bindings::warden::plugin::memory as host;

#[cfg(not(target_arch = "wasm32"))]
fn outside() -> MemoryError {
    MemoryError::Unavailable(
        "memory is only available inside warden (build for wasm32-wasip2)".into(),
    )
}

/// Stores `content`; returns its id.
pub fn store(namespace: &str, content: &str, meta: &Meta) -> Result<String, MemoryError> {
    #[cfg(target_arch = "wasm32")]
    {
        host::store(namespace, content, meta)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (namespace, content, meta);
        Err(outside())
    }
}

/// The `top_k` entries best matching `query`, best first.
pub fn search(
    namespace: &str,
    query: &str,
    top_k: u32,
    filter: &Filter,
    mode: SearchMode,
) -> Result<Vec<Hit>, MemoryError> {
    #[cfg(target_arch = "wasm32")]
    {
        host::search(namespace, query, top_k, filter, mode)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (namespace, query, top_k, filter, mode);
        Err(outside())
    }
}

pub fn get(namespace: &str, id: &str) -> Result<Entry, MemoryError> {
    #[cfg(target_arch = "wasm32")]
    {
        host::get(namespace, id)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (namespace, id);
        Err(outside())
    }
}

/// Replaces the content (re-embedded) and/or the metadata (as a whole).
pub fn update(
    namespace: &str,
    id: &str,
    content: Option<&str>,
    meta: Option<&Meta>,
) -> Result<Entry, MemoryError> {
    #[cfg(target_arch = "wasm32")]
    {
        host::update(namespace, id, content, meta)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (namespace, id, content, meta);
        Err(outside())
    }
}

pub fn delete(namespace: &str, id: &str) -> Result<(), MemoryError> {
    #[cfg(target_arch = "wasm32")]
    {
        host::delete(namespace, id)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (namespace, id);
        Err(outside())
    }
}

/// Entries matching `filter` by metadata alone, oldest first.
pub fn find(namespace: &str, filter: &Filter, limit: u32) -> Result<Vec<Entry>, MemoryError> {
    #[cfg(target_arch = "wasm32")]
    {
        host::find(namespace, filter, limit)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (namespace, filter, limit);
        Err(outside())
    }
}
