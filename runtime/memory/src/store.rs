//! The store: one LanceDB table per (tenant, namespace) under
//! `DATA_DIR/memory/TENANT/NAMESPACE.lance`, or in an S3 bucket at
//! `s3://BUCKET[/PREFIX]/TENANT/NAMESPACE.lance` for nodes that share their
//! memory (see [`Location`]).
//!
//! Reads go straight to the table. Writes to a namespace go through one
//! writer task, which takes whatever stores are waiting, embeds them in one
//! batch and commits them as one fragment (group commit): many sandboxes
//! storing at once neither race each other's commits nor leave thousands of
//! one-row fragments behind. The writer also keeps the table healthy: it
//! builds the full-text index once there is text, a vector index once the
//! table is large enough that exact search gets slow, and compacts every few
//! commits.
//!
//! Several processes may write one namespace at once (nodes of a cluster on
//! one bucket): each commit is a conditional put of the next version's
//! manifest, and LanceDB retries a commit that lost the race on top of the
//! winner, so no process's rows are lost.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use lance_index::scalar::FullTextSearchQuery;
use lancedb::arrow::arrow_array::RecordBatchIterator;
use lancedb::database::CreateTableMode;
use lancedb::index::Index;
use lancedb::index::scalar::FtsIndexBuilder;
use lancedb::index::vector::IvfHnswSqIndexBuilder;
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use lancedb::table::OptimizeAction;
use lancedb::{Connection, DistanceType, Table};
use serde::Serialize;
use tokio::sync::{Mutex, OnceCell, mpsc, oneshot};

use warden_api::BoxFuture;
use warden_api::memory::{
    Entry, Filter, Hit, Memories, MemoryError, Meta, SearchMode, is_valid_name,
};

use crate::embed::{EmbedError, Embedder};
use crate::record::{self, CONTENT, Limits, META_EMBEDDER, READ_COLUMNS, VECTOR, internal};

/// Loads the embedder the first time one is needed, so that reads work
/// (and say what is missing) on a machine without the model files.
pub type EmbedderLoader =
    Box<dyn Fn() -> Result<Arc<dyn Embedder>, EmbedError> + Send + Sync + 'static>;

/// Commits between two compactions of a namespace.
const COMPACT_EVERY: u32 = 16;
/// Stores one group commit takes at most.
const GROUP: usize = 256;
/// How stale a read may be when another process writes the same table.
const READ_CONSISTENCY: Duration = Duration::from_secs(1);

/// Where a [`Memory`] keeps its tables.
#[derive(Clone)]
pub enum Location {
    /// A directory per tenant under this one (usually `DATA_DIR/memory`).
    Dir(PathBuf),
    /// An object store LanceDB reaches by URI, e.g. `s3://BUCKET/PREFIX`,
    /// with a prefix per tenant under it; `options` are LanceDB's storage
    /// options (`aws_endpoint`, `aws_region`, credentials…).
    Store {
        uri: String,
        options: Vec<(String, String)>,
    },
}

impl std::fmt::Debug for Location {
    /// Without the options: they hold credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dir(dir) => write!(f, "{}", dir.display()),
            Location::Store { uri, .. } => write!(f, "{uri}"),
        }
    }
}

/// All tenants' memories in one place.
pub struct Memory {
    location: Location,
    limits: Limits,
    loader: EmbedderLoader,
    embedder: OnceCell<Arc<dyn Embedder>>,
    tenants: Mutex<HashMap<String, Connection>>,
    namespaces: Mutex<HashMap<(String, String), Arc<Namespace>>>,
}

impl std::fmt::Debug for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memory")
            .field("location", &self.location)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// What `stats` reports about a namespace.
#[derive(Debug, Clone, Serialize)]
pub struct NamespaceStats {
    pub namespace: String,
    pub entries: u64,
    pub embedder: String,
    pub dimension: usize,
    pub bytes: u64,
    pub indices: Vec<String>,
    pub version: u64,
}

/// One open namespace.
struct Namespace {
    table: Table,
    name: String,
    embedder: String,
    dimension: usize,
    entries: Arc<AtomicU64>,
    /// Whether the full-text index exists (text search needs it).
    has_fts: Arc<AtomicBool>,
    writer: mpsc::Sender<Op>,
}

type Reply<T> = oneshot::Sender<Result<T, MemoryError>>;

enum Op {
    Store {
        entries: Vec<Entry>,
        embedder: Arc<dyn Embedder>,
        reply: Reply<Vec<String>>,
    },
    Update {
        id: String,
        content: Option<String>,
        /// Boxed: `Meta` is large and updates are rare next to stores.
        meta: Option<Box<Meta>>,
        embedder: Option<Arc<dyn Embedder>>,
        reply: Reply<Entry>,
    },
    Delete {
        id: String,
        reply: Reply<()>,
    },
    /// Answers once every earlier operation and its upkeep (indexes,
    /// compaction) is done.
    Settle {
        reply: Reply<()>,
    },
}

impl Memory {
    /// The memories under `root` (usually `DATA_DIR/memory`).
    pub fn new(root: &Path, loader: EmbedderLoader, limits: Limits) -> Memory {
        Memory::at(Location::Dir(root.to_path_buf()), loader, limits)
    }

    /// The memories at `location`.
    pub fn at(location: Location, loader: EmbedderLoader, limits: Limits) -> Memory {
        Memory {
            location,
            limits,
            loader,
            embedder: OnceCell::new(),
            tenants: Mutex::new(HashMap::new()),
            namespaces: Mutex::new(HashMap::new()),
        }
    }

    /// The same, with an embedder already made.
    pub fn with_embedder(root: &Path, embedder: Arc<dyn Embedder>, limits: Limits) -> Memory {
        Memory::new(root, Box::new(move || Ok(embedder.clone())), limits)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Stores one entry; returns its id.
    pub async fn store(
        &self,
        tenant: &str,
        namespace: &str,
        content: String,
        meta: Meta,
    ) -> Result<String, MemoryError> {
        let mut ids = self
            .store_many(tenant, namespace, vec![(content, meta)])
            .await?;
        ids.pop()
            .ok_or_else(|| internal("the writer returned no id"))
    }

    /// Stores entries in one commit; returns their ids in order.
    pub async fn store_many(
        &self,
        tenant: &str,
        namespace: &str,
        items: Vec<(String, Meta)>,
    ) -> Result<Vec<String>, MemoryError> {
        let now = now_ms();
        let mut entries = Vec::with_capacity(items.len());
        for (content, meta) in items {
            self.limits.check_content(&content)?;
            self.limits.check_meta(&meta)?;
            entries.push(Entry {
                id: new_id(),
                content,
                meta,
                created_at: now,
                updated_at: now,
            });
        }
        let embedder = self.embedder().await?;
        let ns = self
            .open(tenant, namespace, Some(&embedder))
            .await?
            .ok_or_else(|| internal("a namespace opened for writing was not created"))?;
        check_embedder(&ns, &embedder)?;
        let (reply, answer) = oneshot::channel();
        ns.send(Op::Store {
            entries,
            embedder,
            reply,
        })
        .await?;
        answer.await.map_err(|_| writer_gone())?
    }

    pub async fn search(
        &self,
        tenant: &str,
        namespace: &str,
        query: &str,
        top_k: u32,
        filter: &Filter,
        mode: SearchMode,
    ) -> Result<Vec<Hit>, MemoryError> {
        let k = self.limits.check_top_k("top-k", top_k)?;
        self.limits.check_filter(filter)?;
        if query.trim().is_empty() {
            return Err(crate::invalid("query", "is empty; say what to look for"));
        }
        if query.len() > self.limits.max_content_bytes {
            return Err(crate::invalid(
                "query",
                format!(
                    "is over the limit of {} bytes",
                    self.limits.max_content_bytes
                ),
            ));
        }
        let Some(ns) = self.open(tenant, namespace, None).await? else {
            return Ok(vec![]);
        };
        if ns.entries.load(Ordering::Relaxed) == 0 {
            return Ok(vec![]);
        }
        if mode != SearchMode::Vector && !ns.has_fts.load(Ordering::Relaxed) {
            // A writer that stopped before its upkeep (a process exiting
            // right after a store) leaves no full-text index: build it now.
            ns.settle().await?;
        }
        let select = Select::columns(&READ_COLUMNS);
        let predicate = record::predicate(filter);
        let text = || FullTextSearchQuery::new(query.to_string());
        let batches = match mode {
            SearchMode::Text => {
                let mut columns = READ_COLUMNS.to_vec();
                columns.push("_score");
                let mut q = ns
                    .table
                    .query()
                    .full_text_search(text())
                    .select(Select::columns(&columns))
                    .limit(k);
                if let Some(p) = predicate {
                    q = q.only_if_expr(p);
                }
                collect(q.execute().await).await?
            }
            SearchMode::Vector | SearchMode::Hybrid => {
                let embedder = self.embedder().await?;
                check_embedder(&ns, &embedder)?;
                let vector = embedder
                    .embed(&[query.to_string()])
                    .await
                    .map_err(embed_error)?
                    .pop()
                    .ok_or_else(|| internal("the embedder returned no vector"))?;
                let mut q = ns
                    .table
                    .query()
                    .nearest_to(vector)
                    .map_err(internal)?
                    .column(VECTOR)
                    .distance_type(DistanceType::Cosine)
                    .ef(EF.max(k * 4))
                    .select(select)
                    .limit(k);
                if mode == SearchMode::Hybrid {
                    q = q.full_text_search(text());
                }
                if let Some(p) = predicate {
                    q = q.only_if_expr(p);
                }
                collect(q.execute().await).await?
            }
        };
        let score_column = match mode {
            SearchMode::Vector => "_distance",
            SearchMode::Text => "_score",
            SearchMode::Hybrid => "_relevance_score",
        };
        let mut hits = Vec::new();
        for batch in &batches {
            for (entry, score) in record::from_batch(batch, Some(score_column))? {
                let score = score.unwrap_or(0.0);
                let score = if mode == SearchMode::Vector {
                    1.0 - score
                } else {
                    score
                };
                hits.push(Hit { entry, score });
            }
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(k);
        Ok(hits)
    }

    pub async fn get(&self, tenant: &str, namespace: &str, id: &str) -> Result<Entry, MemoryError> {
        check_id(id)?;
        let not_found =
            || MemoryError::NotFound(format!("no entry {id:?} in namespace {namespace:?}"));
        let Some(ns) = self.open(tenant, namespace, None).await? else {
            return Err(not_found());
        };
        read_one(&ns.table, id).await?.ok_or_else(not_found)
    }

    /// Entries matching `filter`, oldest first, at most `limit`.
    pub async fn find(
        &self,
        tenant: &str,
        namespace: &str,
        filter: &Filter,
        limit: u32,
    ) -> Result<Vec<Entry>, MemoryError> {
        let limit = self.limits.check_top_k("limit", limit)?;
        self.limits.check_filter(filter)?;
        let Some(ns) = self.open(tenant, namespace, None).await? else {
            return Ok(vec![]);
        };
        let mut q = ns.table.query().select(Select::columns(&READ_COLUMNS));
        if let Some(p) = record::predicate(filter) {
            q = q.only_if_expr(p);
        }
        // Lance returns rows in storage order, and compaction keeps it; sort
        // by creation time so that the first `limit` are the oldest.
        let batches = collect(q.execute().await).await?;
        let mut entries = Vec::new();
        for batch in &batches {
            entries.extend(record::from_batch(batch, None)?.into_iter().map(|(e, _)| e));
        }
        entries.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        entries.truncate(limit);
        Ok(entries)
    }

    /// Changes an entry's content (re-embedded) and/or its metadata
    /// (replaced as a whole); returns the entry as stored.
    pub async fn update(
        &self,
        tenant: &str,
        namespace: &str,
        id: &str,
        content: Option<String>,
        meta: Option<Meta>,
    ) -> Result<Entry, MemoryError> {
        check_id(id)?;
        if let Some(c) = &content {
            self.limits.check_content(c)?;
        }
        if let Some(m) = &meta {
            self.limits.check_meta(m)?;
        }
        let Some(ns) = self.open(tenant, namespace, None).await? else {
            return Err(MemoryError::NotFound(format!(
                "no entry {id:?} in namespace {namespace:?}"
            )));
        };
        let embedder = match content {
            Some(_) => {
                let e = self.embedder().await?;
                check_embedder(&ns, &e)?;
                Some(e)
            }
            None => None,
        };
        let (reply, answer) = oneshot::channel();
        ns.send(Op::Update {
            id: id.to_string(),
            content,
            meta: meta.map(Box::new),
            embedder,
            reply,
        })
        .await?;
        answer.await.map_err(|_| writer_gone())?
    }

    pub async fn delete(&self, tenant: &str, namespace: &str, id: &str) -> Result<(), MemoryError> {
        check_id(id)?;
        let Some(ns) = self.open(tenant, namespace, None).await? else {
            return Err(MemoryError::NotFound(format!(
                "no entry {id:?} in namespace {namespace:?}"
            )));
        };
        let (reply, answer) = oneshot::channel();
        ns.send(Op::Delete {
            id: id.to_string(),
            reply,
        })
        .await?;
        answer.await.map_err(|_| writer_gone())?
    }

    /// The tenant's namespaces, by name.
    pub async fn namespaces(&self, tenant: &str) -> Result<Vec<String>, MemoryError> {
        check_name("tenant", tenant)?;
        if let Location::Dir(root) = &self.location
            && !root.join(tenant).is_dir()
        {
            return Ok(vec![]);
        }
        let db = self.connection(tenant).await?;
        let mut names = db.table_names().execute().await.map_err(internal)?;
        names.sort();
        Ok(names)
    }

    /// Closes `tenant`'s namespaces; in a shared bucket, drops its tables
    /// too (see [`Memories::remove_tenant`]).
    pub async fn remove_tenant(&self, tenant: &str) -> Result<(), MemoryError> {
        check_name("tenant", tenant)?;
        self.namespaces.lock().await.retain(|(t, _), _| t != tenant);
        self.tenants.lock().await.remove(tenant);
        if let Location::Store { .. } = &self.location {
            let db = self.connection(tenant).await?;
            let dropped = db.drop_all_tables(&[]).await;
            self.tenants.lock().await.remove(tenant);
            dropped.map_err(|e| unavailable(&self.location, e))?;
        }
        Ok(())
    }

    /// Entries `tenant` holds in all its namespaces.
    pub async fn entries(&self, tenant: &str) -> Result<u64, MemoryError> {
        let mut entries = 0;
        for namespace in self.namespaces(tenant).await? {
            if let Some(ns) = self.open(tenant, &namespace, None).await? {
                entries += ns.entries.load(Ordering::Relaxed);
            }
        }
        Ok(entries)
    }

    pub async fn stats(
        &self,
        tenant: &str,
        namespace: &str,
    ) -> Result<NamespaceStats, MemoryError> {
        let Some(ns) = self.open(tenant, namespace, None).await? else {
            return Err(MemoryError::NotFound(format!(
                "there is no namespace {namespace:?} yet; `warden memory add` creates it"
            )));
        };
        let stats = ns.table.stats().await.map_err(internal)?;
        let indices = ns.table.list_indices().await.map_err(internal)?;
        Ok(NamespaceStats {
            namespace: ns.name.clone(),
            entries: stats.num_rows as u64,
            embedder: ns.embedder.clone(),
            dimension: ns.dimension,
            bytes: stats.total_bytes as u64,
            indices: indices
                .into_iter()
                .map(|i| {
                    format!(
                        "{} ({:?} on {})",
                        i.name,
                        i.index_type,
                        i.columns.join(", ")
                    )
                })
                .collect(),
            version: ns.table.version().await.map_err(internal)?,
        })
    }

    /// Waits until every write so far, and the upkeep after it (indexes,
    /// compaction), is done in every open namespace. A process that is about
    /// to exit calls this, so the indexes its writes called for exist.
    pub async fn settle(&self) -> Result<(), MemoryError> {
        let open: Vec<Arc<Namespace>> = self.namespaces.lock().await.values().cloned().collect();
        for ns in open {
            ns.settle().await?;
        }
        Ok(())
    }

    async fn embedder(&self) -> Result<Arc<dyn Embedder>, MemoryError> {
        self.embedder
            .get_or_try_init(|| async { (self.loader)().map_err(embed_error) })
            .await
            .cloned()
    }

    async fn connection(&self, tenant: &str) -> Result<Connection, MemoryError> {
        let mut tenants = self.tenants.lock().await;
        if let Some(c) = tenants.get(tenant) {
            return Ok(c.clone());
        }
        let connect = match &self.location {
            Location::Dir(root) => {
                let dir = root.join(tenant);
                std::fs::create_dir_all(&dir).map_err(|e| {
                    MemoryError::Unavailable(format!("cannot create {}: {e}", dir.display()))
                })?;
                let dir = std::path::absolute(&dir).map_err(internal)?;
                let uri = dir
                    .to_str()
                    .ok_or_else(|| internal(format!("{} is not UTF-8", dir.display())))?;
                lancedb::connect(uri)
            }
            Location::Store { uri, options } => {
                lancedb::connect(&format!("{}/{tenant}", uri.trim_end_matches('/')))
                    .storage_options(options.iter().cloned())
            }
        };
        let c = connect
            .read_consistency_interval(READ_CONSISTENCY)
            .execute()
            .await
            .map_err(|e| unavailable(&self.location, e))?;
        tenants.insert(tenant.to_string(), c.clone());
        Ok(c)
    }

    /// The open namespace; created (for `embedder`) when given one and it
    /// does not exist yet, else `None` when it does not exist.
    async fn open(
        &self,
        tenant: &str,
        namespace: &str,
        create_for: Option<&Arc<dyn Embedder>>,
    ) -> Result<Option<Arc<Namespace>>, MemoryError> {
        check_name("tenant", tenant)?;
        check_name("namespace", namespace)?;
        let key = (tenant.to_string(), namespace.to_string());
        let mut open = self.namespaces.lock().await;
        if let Some(ns) = open.get(&key) {
            return Ok(Some(ns.clone()));
        }
        let exists = match &self.location {
            Location::Dir(root) => Some(
                root.join(tenant)
                    .join(format!("{namespace}.lance"))
                    .exists(),
            ),
            // Asking costs a request: try to open it instead.
            Location::Store { .. } => None,
        };
        if exists == Some(false) && create_for.is_none() {
            return Ok(None);
        }
        let db = self.connection(tenant).await?;
        let opened = match exists {
            Some(false) => None,
            _ => match db.open_table(namespace).execute().await {
                Ok(table) => Some(table),
                Err(lancedb::Error::TableNotFound { .. }) => None,
                Err(e) => return Err(unavailable(&self.location, e)),
            },
        };
        let table = match (opened, create_for) {
            (Some(table), _) => table,
            (None, None) => return Ok(None),
            // Another process may create it first: then this opens that one.
            (None, Some(embedder)) => db
                .create_empty_table(
                    namespace,
                    record::schema(embedder.name(), embedder.dimension()),
                )
                .mode(CreateTableMode::exist_ok(|r| r))
                .execute()
                .await
                .map_err(|e| unavailable(&self.location, e))?,
        };
        let schema = table.schema().await.map_err(internal)?;
        let dimension = record::dimension_of(&schema)
            .ok_or_else(|| internal(format!("table {namespace:?} has no vector column")))?;
        let embedder = schema
            .metadata()
            .get(META_EMBEDDER)
            .cloned()
            .unwrap_or_else(|| "unknown".to_string());
        let entries = Arc::new(AtomicU64::new(
            table.count_rows(None).await.map_err(internal)? as u64,
        ));
        let has_fts = Arc::new(AtomicBool::new(false));
        let (writer, ops) = mpsc::channel(1024);
        let mut w = Writer {
            table: table.clone(),
            schema,
            entries: entries.clone(),
            limits: self.limits.clone(),
            namespace: namespace.to_string(),
            commits: 0,
            indexed_rows: 0,
            has_fts: has_fts.clone(),
        };
        w.read_indices().await?;
        tokio::spawn(w.run(ops));
        let ns = Arc::new(Namespace {
            table,
            name: namespace.to_string(),
            embedder,
            dimension,
            entries,
            has_fts,
            writer,
        });
        open.insert(key, ns.clone());
        Ok(Some(ns))
    }
}

/// The HNSW search breadth: candidates kept per query (at least 4 × k).
const EF: usize = 64;

impl Namespace {
    async fn send(&self, op: Op) -> Result<(), MemoryError> {
        self.writer.send(op).await.map_err(|_| writer_gone())
    }

    /// Waits for the writer to finish what it was given and its upkeep.
    async fn settle(&self) -> Result<(), MemoryError> {
        let (reply, answer) = oneshot::channel();
        self.send(Op::Settle { reply }).await?;
        answer.await.map_err(|_| writer_gone())?
    }
}

struct Writer {
    table: Table,
    schema: lancedb::arrow::arrow_schema::SchemaRef,
    entries: Arc<AtomicU64>,
    limits: Limits,
    namespace: String,
    commits: u32,
    /// Rows when the vector index was (re)built; 0 while there is none.
    indexed_rows: u64,
    has_fts: Arc<AtomicBool>,
}

impl Writer {
    async fn run(mut self, mut ops: mpsc::Receiver<Op>) {
        let mut next = None;
        loop {
            let op = match next.take() {
                Some(op) => op,
                None => match ops.recv().await {
                    Some(op) => op,
                    None => return,
                },
            };
            match op {
                Op::Store {
                    entries,
                    embedder,
                    reply,
                } => {
                    let mut group = vec![(entries, reply)];
                    let mut rows = group[0].0.len();
                    while rows < GROUP {
                        match ops.try_recv() {
                            Ok(Op::Store { entries, reply, .. }) => {
                                rows += entries.len();
                                group.push((entries, reply));
                            }
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.store(group, embedder).await;
                }
                Op::Update {
                    id,
                    content,
                    meta,
                    embedder,
                    reply,
                } => {
                    let r = self.update(&id, content, meta.map(|m| *m), embedder).await;
                    let _ = reply.send(r);
                }
                Op::Delete { id, reply } => {
                    let r = self.delete(&id).await;
                    let _ = reply.send(r);
                }
                Op::Settle { reply } => {
                    let _ = reply.send(self.maintain().await);
                    continue;
                }
            }
            if let Err(e) = self.maintain().await {
                tracing::warn!(namespace = %self.namespace, error = %e, "memory maintenance failed; will retry after the next write");
            }
        }
    }

    async fn store(
        &mut self,
        group: Vec<(Vec<Entry>, Reply<Vec<String>>)>,
        embedder: Arc<dyn Embedder>,
    ) {
        // Refuse, one by one, the stores that would pass the entry limit.
        let mut room = self
            .limits
            .max_entries
            .saturating_sub(self.entries.load(Ordering::Relaxed));
        let mut accepted = Vec::new();
        for (entries, reply) in group {
            if entries.len() as u64 > room {
                let _ = reply.send(Err(MemoryError::Denied(format!(
                    "namespace {:?} is full: it holds {} entries, the operator's limit; delete some or ask for a larger limit",
                    self.namespace, self.limits.max_entries
                ))));
            } else {
                room -= entries.len() as u64;
                accepted.push((entries, reply));
            }
        }
        if accepted.is_empty() {
            return;
        }
        let texts: Vec<String> = accepted
            .iter()
            .flat_map(|(entries, _)| entries.iter().map(|e| e.content.clone()))
            .collect();
        let result = async {
            let vectors = embedder.embed(&texts).await.map_err(embed_error)?;
            let rows: Vec<(Entry, Vec<f32>)> = accepted
                .iter()
                .flat_map(|(entries, _)| entries.iter().cloned())
                .zip(vectors)
                .collect();
            self.add(&rows).await
        }
        .await;
        for (entries, reply) in accepted {
            let _ = reply.send(
                result
                    .clone()
                    .map(|()| entries.iter().map(|e| e.id.clone()).collect()),
            );
        }
    }

    async fn add(&mut self, rows: &[(Entry, Vec<f32>)]) -> Result<(), MemoryError> {
        let batch = record::to_batch(&self.schema, rows)?;
        self.table.add(batch).execute().await.map_err(internal)?;
        // The version just committed holds what other processes added to
        // the namespace too; the limit counts those.
        match self.table.count_rows(None).await {
            Ok(entries) => self.entries.store(entries as u64, Ordering::Relaxed),
            Err(_) => {
                self.entries.fetch_add(rows.len() as u64, Ordering::Relaxed);
            }
        }
        self.commits += 1;
        Ok(())
    }

    async fn update(
        &mut self,
        id: &str,
        content: Option<String>,
        meta: Option<Meta>,
        embedder: Option<Arc<dyn Embedder>>,
    ) -> Result<Entry, MemoryError> {
        let Some((mut entry, mut vector)) = read_with_vector(&self.table, id).await? else {
            return Err(MemoryError::NotFound(format!(
                "no entry {id:?} in namespace {:?}",
                self.namespace
            )));
        };
        if let Some(content) = content {
            let embedder = embedder.ok_or_else(|| internal("update without an embedder"))?;
            vector = embedder
                .embed(std::slice::from_ref(&content))
                .await
                .map_err(embed_error)?
                .pop()
                .ok_or_else(|| internal("the embedder returned no vector"))?;
            entry.content = content;
        }
        if let Some(meta) = meta {
            entry.meta = meta;
        }
        entry.updated_at = now_ms().max(entry.updated_at);
        let batch = record::to_batch(&self.schema, &[(entry.clone(), vector)])?;
        let reader = RecordBatchIterator::new([Ok(batch)], self.schema.clone());
        // One commit replaces the row: a crash leaves the old or the new
        // entry, never neither. Writes are serialised here, so the merge
        // cannot race another one and duplicate the id.
        let mut merge = self.table.merge_insert(&["id"]);
        merge.when_matched_update_all(None);
        merge.execute(Box::new(reader)).await.map_err(internal)?;
        self.commits += 1;
        Ok(entry)
    }

    async fn delete(&mut self, id: &str) -> Result<(), MemoryError> {
        let predicate = record::id_is(id);
        let n = self
            .table
            .count_rows(Some(
                lancedb::expr::expr_to_sql_string(&predicate).map_err(internal)?,
            ))
            .await
            .map_err(internal)?;
        if n == 0 {
            return Err(MemoryError::NotFound(format!(
                "no entry {id:?} in namespace {:?}",
                self.namespace
            )));
        }
        self.table.delete(&predicate).await.map_err(internal)?;
        self.entries.fetch_sub(n as u64, Ordering::Relaxed);
        self.commits += 1;
        Ok(())
    }

    async fn read_indices(&mut self) -> Result<(), MemoryError> {
        for index in self.table.list_indices().await.map_err(internal)? {
            if index.columns.iter().any(|c| c == CONTENT) {
                self.has_fts.store(true, Ordering::Relaxed);
            }
            if index.columns.iter().any(|c| c == VECTOR) {
                self.indexed_rows = self.entries.load(Ordering::Relaxed).max(1);
            }
        }
        Ok(())
    }

    /// Indexes and compaction, after a write.
    async fn maintain(&mut self) -> Result<(), MemoryError> {
        let rows = self.entries.load(Ordering::Relaxed);
        if rows > 0 && !self.has_fts.load(Ordering::Relaxed) {
            let made = self
                .table
                .create_index(&[CONTENT], Index::FTS(FtsIndexBuilder::default()))
                .execute()
                .await;
            if let Err(e) = made {
                // Another process sharing the data dir may have built it
                // first (its commit wins, ours conflicts): look again.
                self.table.checkout_latest().await.map_err(internal)?;
                self.read_indices().await?;
                if !self.has_fts.load(Ordering::Relaxed) {
                    return Err(internal(e));
                }
            }
            self.has_fts.store(true, Ordering::Relaxed);
            self.commits = 0;
        }
        // (Re)build the vector index when the table first passes the
        // threshold and whenever it has grown fourfold since: the IVF
        // partitions are trained on the rows there are.
        let threshold = self.limits.index_threshold as u64;
        if rows >= threshold && (self.indexed_rows == 0 || rows >= self.indexed_rows * 4) {
            // HNSW searches within a partition; IVF only shards the graph.
            // LanceDB's guidance for IVF-HNSW is about one partition per
            // million rows: more partitions mean more graphs per query.
            let partitions = rows.div_ceil(1_000_000).clamp(1, 256) as u32;
            let started = std::time::Instant::now();
            self.table
                .create_index(
                    &[VECTOR],
                    Index::IvfHnswSq(
                        IvfHnswSqIndexBuilder::default()
                            .distance_type(DistanceType::Cosine)
                            .num_partitions(partitions),
                    ),
                )
                .replace(true)
                .execute()
                .await
                .map_err(internal)?;
            tracing::info!(namespace = %self.namespace, rows, partitions, ms = started.elapsed().as_millis() as u64, "built the vector index");
            self.indexed_rows = rows;
            self.commits = 0;
        }
        if self.commits >= COMPACT_EVERY {
            // Compacts small fragments, adds new rows to the indices and
            // drops old versions (kept a while for readers still on them).
            self.table
                .optimize(OptimizeAction::All)
                .await
                .map_err(internal)?;
            self.commits = 0;
        }
        Ok(())
    }
}

fn check_embedder(ns: &Namespace, embedder: &Arc<dyn Embedder>) -> Result<(), MemoryError> {
    if ns.dimension != embedder.dimension() || ns.embedder != embedder.name() {
        return Err(MemoryError::Unavailable(format!(
            "namespace {:?} holds vectors from {} ({} dimensions), but this warden embeds with {} ({} dimensions); searching one with the other gives wrong results. Use the embedder the namespace was made with, or a new namespace",
            ns.name,
            ns.embedder,
            ns.dimension,
            embedder.name(),
            embedder.dimension()
        )));
    }
    Ok(())
}

async fn read_one(table: &Table, id: &str) -> Result<Option<Entry>, MemoryError> {
    let batches = collect(
        table
            .query()
            .only_if_expr(record::id_is(id))
            .select(Select::columns(&READ_COLUMNS))
            .limit(1)
            .execute()
            .await,
    )
    .await?;
    for batch in &batches {
        if let Some((entry, _)) = record::from_batch(batch, None)?.into_iter().next() {
            return Ok(Some(entry));
        }
    }
    Ok(None)
}

async fn read_with_vector(
    table: &Table,
    id: &str,
) -> Result<Option<(Entry, Vec<f32>)>, MemoryError> {
    use lancedb::arrow::arrow_array::cast::AsArray;
    use lancedb::arrow::arrow_array::types::Float32Type;
    let batches = collect(
        table
            .query()
            .only_if_expr(record::id_is(id))
            .limit(1)
            .execute()
            .await,
    )
    .await?;
    for batch in &batches {
        if let Some((entry, _)) = record::from_batch(batch, None)?.into_iter().next() {
            let vectors = batch
                .column_by_name(VECTOR)
                .ok_or_else(|| internal("no vector column"))?
                .as_fixed_size_list();
            let vector = vectors
                .value(0)
                .as_primitive::<Float32Type>()
                .values()
                .to_vec();
            return Ok(Some((entry, vector)));
        }
    }
    Ok(None)
}

async fn collect(
    stream: lancedb::Result<lancedb::arrow::SendableRecordBatchStream>,
) -> Result<Vec<lancedb::arrow::arrow_array::RecordBatch>, MemoryError> {
    stream
        .map_err(internal)?
        .try_collect()
        .await
        .map_err(internal)
}

impl Memories for Memory {
    fn store<'a>(
        &'a self,
        tenant: &'a str,
        namespace: &'a str,
        content: String,
        meta: Meta,
    ) -> BoxFuture<'a, Result<String, MemoryError>> {
        Box::pin(Memory::store(self, tenant, namespace, content, meta))
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
        Box::pin(Memory::search(
            self, tenant, namespace, query, top_k, filter, mode,
        ))
    }

    fn get<'a>(
        &'a self,
        tenant: &'a str,
        namespace: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Entry, MemoryError>> {
        Box::pin(Memory::get(self, tenant, namespace, id))
    }

    fn update<'a>(
        &'a self,
        tenant: &'a str,
        namespace: &'a str,
        id: &'a str,
        content: Option<String>,
        meta: Option<Meta>,
    ) -> BoxFuture<'a, Result<Entry, MemoryError>> {
        Box::pin(Memory::update(self, tenant, namespace, id, content, meta))
    }

    fn delete<'a>(
        &'a self,
        tenant: &'a str,
        namespace: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), MemoryError>> {
        Box::pin(Memory::delete(self, tenant, namespace, id))
    }

    fn find<'a>(
        &'a self,
        tenant: &'a str,
        namespace: &'a str,
        filter: &'a Filter,
        limit: u32,
    ) -> BoxFuture<'a, Result<Vec<Entry>, MemoryError>> {
        Box::pin(Memory::find(self, tenant, namespace, filter, limit))
    }

    fn entries<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<u64, MemoryError>> {
        Box::pin(Memory::entries(self, tenant))
    }

    fn remove_tenant<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, Result<(), MemoryError>> {
        Box::pin(Memory::remove_tenant(self, tenant))
    }
}

fn check_name(field: &str, name: &str) -> Result<(), MemoryError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(crate::invalid(
            field,
            format!(
                "{name:?} is not a valid name: use 1 to 64 letters, digits, '-', '_' or '.' (not first)"
            ),
        ))
    }
}

fn check_id(id: &str) -> Result<(), MemoryError> {
    if id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(crate::invalid(
            "id",
            format!("{id:?} is not a memory id (32 hex digits, as `store` returned)"),
        ))
    }
}

fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn embed_error(e: EmbedError) -> MemoryError {
    match e {
        EmbedError::Unavailable(m) => MemoryError::Unavailable(m),
        EmbedError::Invalid(m) => MemoryError::Unavailable(format!("embedding failed: {m}")),
    }
}

/// A store that would not answer, named, with where to look.
fn unavailable(location: &Location, e: lancedb::Error) -> MemoryError {
    match location {
        Location::Dir(dir) => internal(format!("{}: {e}", dir.display())),
        Location::Store { uri, .. } => MemoryError::Unavailable(format!(
            "the memory store {uri} did not answer as expected: {e}; check `[store]` in memory.toml and the credentials it names"
        )),
    }
}

fn writer_gone() -> MemoryError {
    MemoryError::Unavailable("the namespace's writer stopped; see the log".into())
}
