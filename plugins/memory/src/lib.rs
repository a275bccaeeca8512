//! The `memory` tool plugin: warden's memory as tools, for MCP clients and
//! for roles that prefer tools to the host interface.
//!
//! ```text
//! warden tool call target/plugins/memory.wasm store --memory-ns notes:rw \
//!     --args '{"namespace":"notes","content":"Postgres listens on 5432","kind":"note"}'
//! warden tool call target/plugins/memory.wasm search --memory-ns notes \
//!     --args '{"namespace":"notes","query":"database port"}'
//! ```
//!
//! Each tool is one call of `warden:plugin/memory`; the host checks the
//! namespace against the operator's grant (`--memory-ns NS` to read,
//! `NS:rw` to write) and runs it in the caller's tenant.

use serde::{Deserialize, Serialize};
use warden_sdk::memory::{self, MemoryError, SearchMode};
use warden_sdk::serde_json;
use warden_sdk::{JsonSchema, ToolError, Toolbox};

const DEFAULT_TOP_K: u32 = 5;
const DEFAULT_LIMIT: u32 = 20;

/// Metadata of a memory; every field is optional.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// What it is: api-doc, code, task, test, error, note, or any word.
    pub kind: Option<String>,
    /// Where it came from: a file path or a URL.
    pub source: Option<String>,
    pub task_id: Option<String>,
    /// The version it describes, e.g. a commit.
    pub version: Option<String>,
    pub platform: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Any JSON.
    pub extra: Option<serde_json::Value>,
}

/// Which memories to consider; fields combine with AND, `tags` matches any.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    pub kind: Option<String>,
    pub source: Option<String>,
    pub task_id: Option<String>,
    pub version: Option<String>,
    pub platform: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Milliseconds since the Unix epoch (exclusive).
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreArgs {
    pub namespace: String,
    pub content: String,
    #[serde(flatten)]
    pub meta: Meta,
}

#[derive(Deserialize, JsonSchema, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// By meaning (default).
    #[default]
    Vector,
    /// By words (BM25).
    Text,
    /// Both, fused by reciprocal rank.
    Hybrid,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchArgs {
    pub namespace: String,
    pub query: String,
    /// How many results (default 5).
    pub top_k: Option<u32>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub filter: Filter,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdArgs {
    pub namespace: String,
    /// The id `store` returned.
    pub id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateArgs {
    pub namespace: String,
    pub id: String,
    /// New text (re-embedded); leave out to keep it.
    pub content: Option<String>,
    /// New metadata, replacing the old as a whole; leave out to keep it.
    pub meta: Option<Meta>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FindArgs {
    pub namespace: String,
    #[serde(default)]
    pub filter: Filter,
    /// How many at most (default 20), oldest first.
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct Entry {
    pub id: String,
    pub content: String,
    pub meta: Meta,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Serialize)]
pub struct Hit {
    pub score: f32,
    #[serde(flatten)]
    pub entry: Entry,
}

#[derive(Debug, Serialize)]
pub struct Stored {
    pub id: String,
}

#[derive(Debug, Serialize)]
pub struct Deleted {
    pub deleted: String,
}

pub fn toolbox() -> Toolbox {
    Toolbox::new()
        .tool(
            "store",
            "Remember a text with optional metadata (kind, source, task_id, version, platform, tags, extra); returns its id",
            store,
        )
        .tool(
            "search",
            "Find the memories best matching a query: by meaning (vector, default), by words (text) or both (hybrid), optionally filtered by metadata",
            search,
        )
        .tool("get", "One memory by id", get)
        .tool(
            "update",
            "Change a memory's content and/or replace its metadata",
            update,
        )
        .tool("delete", "Forget a memory by id", delete)
        .tool(
            "find",
            "Memories matching a metadata filter, oldest first",
            find,
        )
}

warden_sdk::export!(toolbox);
warden_sdk::embed_manifest!("../warden.toml");

pub fn store(args: StoreArgs) -> Result<Stored, ToolError> {
    let meta = to_host_meta(args.meta)?;
    let id = memory::store(&args.namespace, &args.content, &meta).map_err(tool_error)?;
    Ok(Stored { id })
}

pub fn search(args: SearchArgs) -> Result<Vec<Hit>, ToolError> {
    let mode = match args.mode {
        Mode::Vector => SearchMode::Vector,
        Mode::Text => SearchMode::Text,
        Mode::Hybrid => SearchMode::Hybrid,
    };
    let hits = memory::search(
        &args.namespace,
        &args.query,
        args.top_k.unwrap_or(DEFAULT_TOP_K),
        &to_host_filter(args.filter),
        mode,
    )
    .map_err(tool_error)?;
    hits.into_iter()
        .map(|h| {
            Ok(Hit {
                score: h.score,
                entry: from_host_entry(h.entry)?,
            })
        })
        .collect()
}

pub fn get(args: IdArgs) -> Result<Entry, ToolError> {
    from_host_entry(memory::get(&args.namespace, &args.id).map_err(tool_error)?)
}

pub fn update(args: UpdateArgs) -> Result<Entry, ToolError> {
    if args.content.is_none() && args.meta.is_none() {
        return Err(ToolError::InvalidArguments(
            "give `content`, `meta` or both: there is nothing to update".into(),
        ));
    }
    let meta = args.meta.map(to_host_meta).transpose()?;
    let entry = memory::update(
        &args.namespace,
        &args.id,
        args.content.as_deref(),
        meta.as_ref(),
    )
    .map_err(tool_error)?;
    from_host_entry(entry)
}

pub fn delete(args: IdArgs) -> Result<Deleted, ToolError> {
    memory::delete(&args.namespace, &args.id).map_err(tool_error)?;
    Ok(Deleted { deleted: args.id })
}

pub fn find(args: FindArgs) -> Result<Vec<Entry>, ToolError> {
    let entries = memory::find(
        &args.namespace,
        &to_host_filter(args.filter),
        args.limit.unwrap_or(DEFAULT_LIMIT),
    )
    .map_err(tool_error)?;
    entries.into_iter().map(from_host_entry).collect()
}

fn to_host_meta(m: Meta) -> Result<memory::Meta, ToolError> {
    Ok(memory::Meta {
        kind: m.kind,
        source: m.source,
        task_id: m.task_id,
        version: m.version,
        platform: m.platform,
        tags: m.tags,
        extra: m.extra.map(|v| serde_json::to_string(&v)).transpose()?,
    })
}

fn to_host_filter(f: Filter) -> memory::Filter {
    memory::Filter {
        kind: f.kind,
        source: f.source,
        task_id: f.task_id,
        version: f.version,
        platform: f.platform,
        tags: f.tags,
        created_after: f.created_after,
        created_before: f.created_before,
    }
}

fn from_host_entry(e: memory::Entry) -> Result<Entry, ToolError> {
    let extra = match e.meta.extra {
        Some(text) => Some(serde_json::from_str(&text)?),
        None => None,
    };
    Ok(Entry {
        id: e.id,
        content: e.content,
        meta: Meta {
            kind: e.meta.kind,
            source: e.meta.source,
            task_id: e.meta.task_id,
            version: e.meta.version,
            platform: e.meta.platform,
            tags: e.meta.tags,
            extra,
        },
        created_at: e.created_at,
        updated_at: e.updated_at,
    })
}

fn tool_error(e: MemoryError) -> ToolError {
    match e {
        MemoryError::Denied(m) => ToolError::Denied(m),
        MemoryError::Invalid(m) => ToolError::InvalidArguments(m),
        MemoryError::NotFound(m) => ToolError::Failed(format!("not found: {m}")),
        MemoryError::Unavailable(m) => ToolError::Failed(format!("memory unavailable: {m}")),
    }
}
