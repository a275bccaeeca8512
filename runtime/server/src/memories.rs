//! The memory store as the server's tenants reach it: every store counted
//! against the tenant's `memory-entries` quota, whichever way it comes (the
//! HTTP API, MCP, a role in a run). The count starts from what the store
//! holds (once per tenant) and moves with each store and delete made
//! through here; a store takes its place before it runs, so stores racing
//! for the last place cannot both have it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::OnceCell;
use warden_api::memory::{Entry, Filter, Hit, Memories, MemoryError, Meta, SearchMode};

use crate::operator::Operator;

/// A tenant, as told apart from a removed one of the same name.
type TenantKey = (String, i64);

/// A memory store whose stores count against tenants' quotas.
pub struct CountedMemories {
    inner: Arc<dyn Memories>,
    operator: Arc<Operator>,
    counts: Mutex<HashMap<TenantKey, Arc<OnceCell<AtomicU64>>>>,
}

impl std::fmt::Debug for CountedMemories {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountedMemories").finish_non_exhaustive()
    }
}

impl CountedMemories {
    pub fn new(inner: Arc<dyn Memories>, operator: Arc<Operator>) -> CountedMemories {
        CountedMemories {
            inner,
            operator,
            counts: Mutex::default(),
        }
    }

    fn cell(&self, key: &TenantKey) -> Arc<OnceCell<AtomicU64>> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.entry(key.clone()).or_default().clone()
    }

    /// The tenant's count if one has started.
    fn started(&self, key: &TenantKey) -> Option<Arc<OnceCell<AtomicU64>>> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(key).filter(|cell| cell.initialized()).cloned()
    }

    /// The tenant's key and `memory-entries` quota; `None` for a name the
    /// control state does not know (the store checks names itself).
    async fn tenant(&self, tenant: &str) -> Option<(TenantKey, Option<u64>)> {
        let record = self.operator.tenant(tenant).await.ok()?;
        Some(((record.name, record.created), record.quotas.memory_entries))
    }

    async fn store(
        &self,
        tenant: &str,
        namespace: &str,
        content: String,
        meta: Meta,
    ) -> Result<String, MemoryError> {
        let Some((key, quota)) = self.tenant(tenant).await else {
            return self.inner.store(tenant, namespace, content, meta).await;
        };
        let Some(limit) = quota else {
            let stored = self.inner.store(tenant, namespace, content, meta).await;
            if stored.is_ok()
                && let Some(cell) = self.started(&key)
                && let Some(count) = cell.get()
            {
                count.fetch_add(1, Ordering::AcqRel);
            }
            return stored;
        };
        let cell = self.cell(&key);
        let count = cell
            .get_or_try_init(|| async { self.inner.entries(tenant).await.map(AtomicU64::new) })
            .await?;
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .map_err(|held| {
                MemoryError::Denied(format!(
                    "tenant {tenant} holds {held} memories, its quota (memory-entries = {limit}); delete some, or ask the operator for a larger quota"
                ))
            })?;
        let stored = self.inner.store(tenant, namespace, content, meta).await;
        if stored.is_err() {
            count.fetch_sub(1, Ordering::AcqRel);
        }
        stored
    }

    async fn delete(&self, tenant: &str, namespace: &str, id: &str) -> Result<(), MemoryError> {
        self.inner.delete(tenant, namespace, id).await?;
        if let Some((key, _)) = self.tenant(tenant).await
            && let Some(cell) = self.started(&key)
            && let Some(count) = cell.get()
        {
            let _ = count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
        Ok(())
    }
}

impl Memories for CountedMemories {
    fn store<'a>(
        &'a self,
        tenant: &'a str,
        namespace: &'a str,
        content: String,
        meta: Meta,
    ) -> BoxFuture<'a, Result<String, MemoryError>> {
        Box::pin(CountedMemories::store(
            self, tenant, namespace, content, meta,
        ))
    }

    fn search<'a>(
        &'a self,
        tenant: &'a str,
        namespace: &'a str,
        query: &'a str,
        top_k: u32,
        filter: &'a Filter,
        mode: SearchMode,
    ) -> BoxFuture<'a, Result<Vec<Hit>, MemoryError>> {
        self.inner
            .search(tenant, namespace, query, top_k, filter, mode)
    }

    fn get<'a>(
        &'a self,
        tenant: &'a str,
        namespace: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Entry, MemoryError>> {
        self.inner.get(tenant, namespace, id)
    }

    fn update<'a>(
        &'a self,
        tenant: &'a str,
        namespace: &'a str,
        id: &'a str,
        content: Option<String>,
        meta: Option<Meta>,
    ) -> BoxFuture<'a, Result<Entry, MemoryError>> {
        self.inner.update(tenant, namespace, id, content, meta)
    }

    fn delete<'a>(
        &'a self,
        tenant: &'a str,
        namespace: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), MemoryError>> {
        Box::pin(CountedMemories::delete(self, tenant, namespace, id))
    }

    fn find<'a>(
        &'a self,
        tenant: &'a str,
        namespace: &'a str,
        filter: &'a Filter,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Entry>, MemoryError>> {
        self.inner.find(tenant, namespace, filter, limit)
    }

    fn entries<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<u64, MemoryError>> {
        self.inner.entries(tenant)
    }
}
