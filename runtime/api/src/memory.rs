//! What a memory is, how a plugin filters and searches them, and the
//! [`Memories`] trait the sandbox core reaches the store through.

use serde::{Deserialize, Serialize};

use crate::BoxFuture;

/// Metadata a plugin attaches to a memory. Every field is optional; the host
/// adds the id and the times.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Meta {
    /// What the text is: api-doc, code, task, test, error, note, or any word.
    pub kind: Option<String>,
    /// Where it came from: a file path or a URL.
    pub source: Option<String>,
    pub task_id: Option<String>,
    /// The version it describes, e.g. a commit.
    pub version: Option<String>,
    pub platform: Option<String>,
    pub tags: Vec<String>,
    /// Free-form JSON.
    pub extra: Option<serde_json::Value>,
}

/// A stored memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub content: String,
    pub meta: Meta,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub updated_at: i64,
}

/// A search result: the entry and how well it matched (higher is better:
/// cosine similarity for vector search, BM25 for text, the fused
/// reciprocal-rank score for hybrid).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub entry: Entry,
    pub score: f32,
}

/// Which rows a search or find considers. Fields combine with AND; `tags`
/// matches an entry carrying any of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filter {
    pub kind: Option<String>,
    pub source: Option<String>,
    pub task_id: Option<String>,
    pub version: Option<String>,
    pub platform: Option<String>,
    pub tags: Vec<String>,
    /// Milliseconds since the Unix epoch, exclusive.
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// By meaning: the query's embedding against the stored ones.
    #[default]
    Vector,
    /// By words: BM25 over a full-text index.
    Text,
    /// Both, fused by reciprocal rank.
    Hybrid,
}

impl std::str::FromStr for SearchMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "vector" => Ok(SearchMode::Vector),
            "text" => Ok(SearchMode::Text),
            "hybrid" => Ok(SearchMode::Hybrid),
            other => Err(format!(
                "{other:?} is not a search mode: use vector, text or hybrid"
            )),
        }
    }
}

/// Why a memory operation failed; what a plugin sees, as
/// `warden:plugin/memory`'s `memory-error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MemoryError {
    /// Not granted, or over a quota.
    #[error("denied: {0}")]
    Denied(String),
    /// The request is wrong; the message names the field.
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The store or the embedder cannot serve now.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Tenant and namespace names become directory and table names: letters,
/// digits, `-`, `_` and `.` (not first), 1 to 64 of them.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The store behind `warden:plugin/memory`: one space of namespaces per
/// tenant. The sandbox core checks the namespace grant before it calls any
/// of these; implementations check names, sizes and quotas themselves.
pub trait Memories: Send + Sync {
    /// Stores one entry; returns its id.
    fn store<'a>(
        &'a self,
        tenant: &'a str,
        namespace: &'a str,
        content: String,
        meta: Meta,
    ) -> BoxFuture<'a, Result<String, MemoryError>>;

    fn search<'a>(
        &'a self,
        tenant: &'a str,
        namespace: &'a str,
        query: &'a str,
        top_k: u32,
        filter: &'a Filter,
        mode: SearchMode,
    ) -> BoxFuture<'a, Result<Vec<Hit>, MemoryError>>;

    fn get<'a>(
        &'a self,
        tenant: &'a str,
        namespace: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Entry, MemoryError>>;

    /// Replaces the content and/or the metadata of an entry.
    fn update<'a>(
        &'a self,
        tenant: &'a str,
        namespace: &'a str,
        id: &'a str,
        content: Option<String>,
        meta: Option<Meta>,
    ) -> BoxFuture<'a, Result<Entry, MemoryError>>;

    fn delete<'a>(
        &'a self,
        tenant: &'a str,
        namespace: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), MemoryError>>;

    /// Entries matching `filter` by metadata alone, at most `limit`.
    fn find<'a>(
        &'a self,
        tenant: &'a str,
        namespace: &'a str,
        filter: &'a Filter,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Entry>, MemoryError>>;

    /// How many entries `tenant` holds, all its namespaces together (a
    /// host's per-tenant quota starts its count here).
    fn entries<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<u64, MemoryError>>;

    /// Forgets a tenant being removed: its namespaces close, and a store
    /// several hosts share drops them, so that a tenant added later under
    /// the same name starts empty. (A store in the host's data dir leaves
    /// the files for the operator, who moves them aside.)
    fn remove_tenant<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<(), MemoryError>> {
        let _ = tenant;
        Box::pin(async { Ok(()) })
    }
}
