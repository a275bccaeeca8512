//! `warden:plugin/memory`: a plugin remembers through the host.
//!
//! Every call is checked against the namespaces granted to the plugin
//! (read, or read-write) before the store is touched, and runs in the
//! call's tenant: a plugin cannot name another tenant's table. The store
//! builds its predicates from the structured filter, so nothing a guest
//! sends is parsed as a query.

use std::sync::Arc;

use warden_memory::{Entry, Filter, Hit, Memory, MemoryError, Meta, SearchMode};
use wasmtime::component::{HasData, Linker};

use crate::bindings::warden::plugin::memory as wit;
use crate::policy::{DirMode, NamespaceGrant, TenantId};
use crate::state::CallState;

/// What a call's memory interface needs: the process's store, if any, and
/// whose call it is.
pub(crate) struct MemoryContext {
    memory: Option<Arc<Memory>>,
    tenant: TenantId,
    plugin: Arc<str>,
    granted: Vec<NamespaceGrant>,
}

impl MemoryContext {
    pub(crate) fn new(
        memory: Option<Arc<Memory>>,
        tenant: TenantId,
        plugin: Arc<str>,
        granted: Vec<NamespaceGrant>,
    ) -> Self {
        MemoryContext {
            memory,
            tenant,
            plugin,
            granted,
        }
    }

    /// The store, if `namespace` is granted for `access`.
    fn allow(&self, namespace: &str, access: DirMode) -> Result<&Memory> {
        let mode = self
            .granted
            .iter()
            .filter(|g| g.covers(namespace))
            .map(|g| g.mode)
            .max();
        let why = match mode {
            Some(mode) if mode >= access => None,
            Some(_) => Some(format!(
                "plugin {} may only read memory namespace {namespace:?}; the operator grants writing with --memory-ns {namespace}:rw (or \"{namespace}:rw\" in the policy file's `memory`)",
                self.plugin
            )),
            None => Some(format!(
                "memory namespace {namespace:?} is not granted to plugin {}; the operator grants it with --memory-ns {namespace} (read) or {namespace}:rw, or in the policy file's `memory`",
                self.plugin
            )),
        };
        if let Some(why) = why {
            tracing::info!(tenant = %self.tenant, plugin = %self.plugin, namespace, reason = %why, "memory denied");
            return Err(wit::MemoryError::Denied(why));
        }
        self.memory.as_deref().ok_or_else(|| {
            wit::MemoryError::Unavailable("this warden has no memory store configured".to_string())
        })
    }

    fn tenant(&self) -> &str {
        self.tenant.as_str()
    }
}

struct HasMemory;

impl HasData for HasMemory {
    type Data<'a> = &'a MemoryContext;
}

pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<CallState, HasMemory>(linker, |state| &state.memory)
}

type Result<T> = std::result::Result<T, wit::MemoryError>;

impl wit::Host for &MemoryContext {
    async fn store(
        &mut self,
        namespace: String,
        content: String,
        meta: wit::Meta,
    ) -> Result<String> {
        let memory = self.allow(&namespace, DirMode::ReadWrite)?;
        let meta = from_wit_meta(meta)?;
        memory
            .store(self.tenant(), &namespace, content, meta)
            .await
            .map_err(to_wit_error)
    }

    async fn search(
        &mut self,
        namespace: String,
        query: String,
        top_k: u32,
        filter: wit::Filter,
        mode: wit::SearchMode,
    ) -> Result<Vec<wit::Hit>> {
        let memory = self.allow(&namespace, DirMode::ReadOnly)?;
        let mode = match mode {
            wit::SearchMode::Vector => SearchMode::Vector,
            wit::SearchMode::Text => SearchMode::Text,
            wit::SearchMode::Hybrid => SearchMode::Hybrid,
        };
        let hits = memory
            .search(
                self.tenant(),
                &namespace,
                &query,
                top_k,
                &from_wit_filter(filter),
                mode,
            )
            .await
            .map_err(to_wit_error)?;
        Ok(hits.into_iter().map(to_wit_hit).collect())
    }

    async fn get(&mut self, namespace: String, id: String) -> Result<wit::Entry> {
        let memory = self.allow(&namespace, DirMode::ReadOnly)?;
        let entry = memory
            .get(self.tenant(), &namespace, &id)
            .await
            .map_err(to_wit_error)?;
        Ok(to_wit_entry(entry))
    }

    async fn update(
        &mut self,
        namespace: String,
        id: String,
        content: Option<String>,
        meta: Option<wit::Meta>,
    ) -> Result<wit::Entry> {
        let memory = self.allow(&namespace, DirMode::ReadWrite)?;
        let meta = meta.map(from_wit_meta).transpose()?;
        let entry = memory
            .update(self.tenant(), &namespace, &id, content, meta)
            .await
            .map_err(to_wit_error)?;
        Ok(to_wit_entry(entry))
    }

    async fn delete(&mut self, namespace: String, id: String) -> Result<()> {
        let memory = self.allow(&namespace, DirMode::ReadWrite)?;
        memory
            .delete(self.tenant(), &namespace, &id)
            .await
            .map_err(to_wit_error)
    }

    async fn find(
        &mut self,
        namespace: String,
        filter: wit::Filter,
        limit: u32,
    ) -> Result<Vec<wit::Entry>> {
        let memory = self.allow(&namespace, DirMode::ReadOnly)?;
        let entries = memory
            .find(self.tenant(), &namespace, &from_wit_filter(filter), limit)
            .await
            .map_err(to_wit_error)?;
        Ok(entries.into_iter().map(to_wit_entry).collect())
    }
}

fn from_wit_meta(m: wit::Meta) -> Result<Meta> {
    let extra = match m.extra {
        Some(text) => Some(
            serde_json::from_str(&text)
                .map_err(|e| wit::MemoryError::Invalid(format!("`meta.extra` is not JSON: {e}")))?,
        ),
        None => None,
    };
    Ok(Meta {
        kind: m.kind,
        source: m.source,
        task_id: m.task_id,
        version: m.version,
        platform: m.platform,
        tags: m.tags,
        extra,
    })
}

fn to_wit_meta(m: Meta) -> wit::Meta {
    wit::Meta {
        kind: m.kind,
        source: m.source,
        task_id: m.task_id,
        version: m.version,
        platform: m.platform,
        tags: m.tags,
        extra: m.extra.map(|v| v.to_string()),
    }
}

fn from_wit_filter(f: wit::Filter) -> Filter {
    Filter {
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

fn to_wit_entry(e: Entry) -> wit::Entry {
    wit::Entry {
        id: e.id,
        content: e.content,
        meta: to_wit_meta(e.meta),
        created_at: e.created_at,
        updated_at: e.updated_at,
    }
}

pub(crate) fn to_wit_hit(h: Hit) -> wit::Hit {
    wit::Hit {
        entry: to_wit_entry(h.entry),
        score: h.score,
    }
}

fn to_wit_error(e: MemoryError) -> wit::MemoryError {
    match e {
        MemoryError::Denied(m) => wit::MemoryError::Denied(m),
        MemoryError::Invalid(m) => wit::MemoryError::Invalid(m),
        MemoryError::NotFound(m) => wit::MemoryError::NotFound(m),
        MemoryError::Unavailable(m) => wit::MemoryError::Unavailable(m),
    }
}
