//! `warden:plugin/memory`: a plugin remembers through the host.
//!
//! Every call is checked against the namespaces granted to the plugin
//! (read, or read-write) before the store is touched, and runs in the
//! call's tenant: a plugin cannot name another tenant's table. The store
//! builds its predicates from the structured filter, so nothing a guest
//! sends is parsed as a query.

use std::sync::Arc;

use warden_api::memory::{Entry, Filter, Hit, Memories, MemoryError, Meta, SearchMode};
use wasmtime::component::{HasData, Linker};

use crate::bindings::warden::plugin::memory as wit;
use crate::document;
use crate::grant::{DirMode, NamespaceGrant};
use crate::scope::CallLabels;

/// What a call's memory interface needs: the process's store, if any, whose
/// call it is, and the namespaces granted to it (manifest ∩ grant).
pub(crate) struct MemoryContext {
    memory: Option<Arc<dyn Memories>>,
    labels: CallLabels,
    granted: Vec<NamespaceGrant>,
}

impl MemoryContext {
    pub(crate) fn new(
        memory: Option<Arc<dyn Memories>>,
        labels: CallLabels,
        granted: Vec<NamespaceGrant>,
    ) -> Self {
        MemoryContext {
            memory,
            labels,
            granted,
        }
    }

    /// The gate: the store, if `namespace` is granted for `access`.
    fn allow(&self, namespace: &str, access: DirMode) -> Result<&dyn Memories> {
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
                self.labels.plugin
            )),
            None => Some(format!(
                "memory namespace {namespace:?} is not granted to plugin {}; the operator grants it with --memory-ns {namespace} (read) or {namespace}:rw, or in the policy file's `memory`",
                self.labels.plugin
            )),
        };
        if let Some(why) = why {
            tracing::info!(tenant = %self.labels.tenant, plugin = %self.labels.plugin, namespace, reason = %why, "memory denied");
            return Err(wit::MemoryError::Denied(why));
        }
        self.memory.as_deref().ok_or_else(|| {
            wit::MemoryError::Unavailable("this warden has no memory store configured".to_string())
        })
    }

    fn tenant(&self) -> &str {
        self.labels.tenant.as_str()
    }

    /// Up to `top_k` memories relevant to `query` from every namespace this
    /// call may read by name (a `*` grant names none), best first, each
    /// through the same gate as a guest's own search. A namespace that
    /// cannot be searched is skipped with a warning.
    pub(crate) async fn recall(&self, query: &str, top_k: u32) -> Vec<Hit> {
        let mut hits = Vec::new();
        for grant in &self.granted {
            if grant.namespace == "*" {
                continue;
            }
            let namespace = grant.namespace.as_str();
            let found = match self.allow(namespace, DirMode::ReadOnly) {
                Ok(memory) => {
                    memory
                        .search(
                            self.tenant(),
                            namespace,
                            query,
                            top_k,
                            &Filter::default(),
                            SearchMode::Hybrid,
                        )
                        .await
                }
                Err(_) => continue,
            };
            match found {
                Ok(found) => hits.extend(found),
                Err(e) => {
                    tracing::warn!(tenant = %self.labels.tenant, plugin = %self.labels.plugin, namespace, error = %e, "recall failed")
                }
            }
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(top_k as usize);
        hits
    }
}

/// A store whose guests may remember; `None` when the plugin does not
/// import `warden:plugin/memory`.
pub(crate) trait MemoryView: Send + 'static {
    fn memory(&mut self) -> Option<&MemoryContext>;
}

struct HasMemory;

impl HasData for HasMemory {
    type Data<'a> = Memory<'a>;
}

/// The memory interface of one call.
pub(crate) struct Memory<'a>(Option<&'a MemoryContext>);

impl Memory<'_> {
    fn context(&self) -> Result<&MemoryContext> {
        self.0.ok_or_else(|| {
            wit::MemoryError::Unavailable(
                "this call was set up without warden:plugin/memory".into(),
            )
        })
    }

    fn allow(&self, namespace: &str, access: DirMode) -> Result<(&MemoryContext, &dyn Memories)> {
        let context = self.context()?;
        Ok((context, context.allow(namespace, access)?))
    }
}

pub(crate) fn add_to_linker<T: MemoryView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasMemory>(linker, |state| Memory(state.memory()))
}

type Result<T> = std::result::Result<T, wit::MemoryError>;

impl wit::Host for Memory<'_> {
    async fn store(
        &mut self,
        namespace: String,
        content: String,
        meta: wit::Meta,
    ) -> Result<String> {
        let (context, memory) = self.allow(&namespace, DirMode::ReadWrite)?;
        let meta = from_wit_meta(meta)?;
        memory
            .store(context.tenant(), &namespace, content, meta)
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
        let (context, memory) = self.allow(&namespace, DirMode::ReadOnly)?;
        let mode = match mode {
            wit::SearchMode::Vector => SearchMode::Vector,
            wit::SearchMode::Text => SearchMode::Text,
            wit::SearchMode::Hybrid => SearchMode::Hybrid,
        };
        let hits = memory
            .search(
                context.tenant(),
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
        let (context, memory) = self.allow(&namespace, DirMode::ReadOnly)?;
        let entry = memory
            .get(context.tenant(), &namespace, &id)
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
        let (context, memory) = self.allow(&namespace, DirMode::ReadWrite)?;
        let meta = meta.map(from_wit_meta).transpose()?;
        let entry = memory
            .update(context.tenant(), &namespace, &id, content, meta)
            .await
            .map_err(to_wit_error)?;
        Ok(to_wit_entry(entry))
    }

    async fn delete(&mut self, namespace: String, id: String) -> Result<()> {
        let (context, memory) = self.allow(&namespace, DirMode::ReadWrite)?;
        memory
            .delete(context.tenant(), &namespace, &id)
            .await
            .map_err(to_wit_error)
    }

    async fn find(
        &mut self,
        namespace: String,
        filter: wit::Filter,
        limit: u32,
    ) -> Result<Vec<wit::Entry>> {
        let (context, memory) = self.allow(&namespace, DirMode::ReadOnly)?;
        let entries = memory
            .find(
                context.tenant(),
                &namespace,
                &from_wit_filter(filter),
                limit,
            )
            .await
            .map_err(to_wit_error)?;
        Ok(entries.into_iter().map(to_wit_entry).collect())
    }
}

fn from_wit_meta(m: wit::Meta) -> Result<Meta> {
    let extra = match m.extra {
        Some(text) => {
            Some(document::parse("`meta.extra`", &text).map_err(wit::MemoryError::Invalid)?)
        }
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use warden_api::BoxFuture;

    use super::*;
    use crate::bindings::warden::plugin::memory::Host as _;
    use crate::grant::TenantId;

    /// A store that remembers what it was asked, keyed by tenant and
    /// namespace.
    #[derive(Default)]
    struct Recorded {
        stored: Mutex<Vec<(String, String, String)>>,
    }

    fn hit(content: &str, score: f32) -> Hit {
        Hit {
            entry: Entry {
                id: "0".repeat(32),
                content: content.into(),
                meta: Meta::default(),
                created_at: 0,
                updated_at: 0,
            },
            score,
        }
    }

    impl Memories for Recorded {
        fn store<'a>(
            &'a self,
            tenant: &'a str,
            namespace: &'a str,
            content: String,
            _meta: Meta,
        ) -> BoxFuture<'a, std::result::Result<String, MemoryError>> {
            self.stored
                .lock()
                .unwrap()
                .push((tenant.into(), namespace.into(), content));
            Box::pin(async { Ok("1".repeat(32)) })
        }

        fn search<'a>(
            &'a self,
            _tenant: &'a str,
            namespace: &'a str,
            _query: &'a str,
            _top_k: u32,
            _filter: &'a Filter,
            _mode: SearchMode,
        ) -> BoxFuture<'a, std::result::Result<Vec<Hit>, MemoryError>> {
            let score = if namespace == "a" { 0.9 } else { 0.5 };
            Box::pin(async move {
                Ok(vec![
                    hit(&format!("{namespace} best"), score),
                    hit(&format!("{namespace} worse"), score - 0.4),
                ])
            })
        }

        fn get<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, std::result::Result<Entry, MemoryError>> {
            Box::pin(async { Err(MemoryError::NotFound("none".into())) })
        }

        fn update<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: &'a str,
            _: Option<String>,
            _: Option<Meta>,
        ) -> BoxFuture<'a, std::result::Result<Entry, MemoryError>> {
            Box::pin(async { Err(MemoryError::NotFound("none".into())) })
        }

        fn delete<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: &'a str,
        ) -> BoxFuture<'a, std::result::Result<(), MemoryError>> {
            Box::pin(async { Ok(()) })
        }

        fn find<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
            _: &'a Filter,
            _: u32,
        ) -> BoxFuture<'a, std::result::Result<Vec<Entry>, MemoryError>> {
            Box::pin(async { Ok(Vec::new()) })
        }

        fn entries<'a>(
            &'a self,
            _: &'a str,
        ) -> BoxFuture<'a, std::result::Result<u64, MemoryError>> {
            let stored = self.stored.lock().unwrap().len() as u64;
            Box::pin(async move { Ok(stored) })
        }
    }

    fn context(store: &Arc<Recorded>, grants: &[&str]) -> MemoryContext {
        MemoryContext::new(
            Some(store.clone()),
            CallLabels {
                tenant: TenantId::new("acme").unwrap(),
                plugin: "p".into(),
            },
            grants
                .iter()
                .map(|g| NamespaceGrant::parse(g).unwrap())
                .collect(),
        )
    }

    fn meta() -> wit::Meta {
        wit::Meta {
            kind: None,
            source: None,
            task_id: None,
            version: None,
            platform: None,
            tags: Vec::new(),
            extra: None,
        }
    }

    #[tokio::test]
    async fn the_gate_decides_before_the_store_is_touched() {
        let store = Arc::new(Recorded::default());
        let ctx = context(&store, &["notes", "log:rw"]);
        let mut memory = Memory(Some(&ctx));

        let denied = memory.store("other".into(), "x".into(), meta()).await;
        assert!(
            matches!(&denied, Err(wit::MemoryError::Denied(m)) if m.contains("not granted")),
            "{denied:?}"
        );
        let read_only = memory.store("notes".into(), "x".into(), meta()).await;
        assert!(
            matches!(&read_only, Err(wit::MemoryError::Denied(m)) if m.contains("only read")),
            "{read_only:?}"
        );
        assert!(store.stored.lock().unwrap().is_empty());

        memory
            .store("log".into(), "kept".into(), meta())
            .await
            .unwrap();
        assert_eq!(
            store.stored.lock().unwrap()[0],
            ("acme".into(), "log".into(), "kept".into()),
            "the call's own tenant, whatever the guest says"
        );
    }

    /// `meta.extra` is guest JSON: a flat 8 MiB array of zeros would be a
    /// tree of 32-byte values ~64× its size in host memory, so it is
    /// measured before it is parsed.
    #[tokio::test]
    async fn oversized_extra_is_refused_before_it_is_parsed() {
        let store = Arc::new(Recorded::default());
        let ctx = context(&store, &["log:rw"]);
        let mut memory = Memory(Some(&ctx));
        let zeros = format!("[{}0]", "0,".repeat(4 * 1024 * 1024));
        let refused = memory
            .store(
                "log".into(),
                "x".into(),
                wit::Meta {
                    extra: Some(zeros),
                    ..meta()
                },
            )
            .await;
        assert!(
            matches!(&refused, Err(wit::MemoryError::Invalid(m)) if m.contains("`meta.extra` is") && m.contains("bytes")),
            "{refused:?}"
        );
        assert!(store.stored.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_call_without_the_interface_or_a_store_is_unavailable() {
        let mut none = Memory(None);
        assert!(matches!(
            none.delete("notes".into(), "1".repeat(32)).await,
            Err(wit::MemoryError::Unavailable(_))
        ));
        let no_store = MemoryContext::new(
            None,
            CallLabels {
                tenant: TenantId::default(),
                plugin: "p".into(),
            },
            vec![NamespaceGrant::parse("notes").unwrap()],
        );
        assert!(matches!(
            Memory(Some(&no_store))
                .find(
                    "notes".into(),
                    wit::Filter {
                        kind: None,
                        source: None,
                        task_id: None,
                        version: None,
                        platform: None,
                        tags: Vec::new(),
                        created_after: None,
                        created_before: None,
                    },
                    5
                )
                .await,
            Err(wit::MemoryError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn recall_reads_only_named_granted_namespaces_best_first() {
        let store = Arc::new(Recorded::default());
        // `*` names no namespace to search; `b` and `a` are searched.
        let ctx = context(&store, &["*", "b", "a:rw"]);
        let hits = ctx.recall("anything", 3).await;
        let contents: Vec<&str> = hits.iter().map(|h| h.entry.content.as_str()).collect();
        assert_eq!(contents, ["a best", "b best", "a worse"]);
        assert!(context(&store, &[]).recall("anything", 3).await.is_empty());
    }
}
