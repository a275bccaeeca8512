//! The memory store at scale: 100 000 entries of 384 dimensions (synthetic,
//! clustered vectors; the text path is `embed`'s bench).
//!
//! - insert throughput through `Memory::store_many` (group commits);
//! - the time to build the vector index;
//! - vector search p50/p99 and recall@10 against exact search, through the
//!   store, through a guest (`warden:plugin/memory` from the memory plugin,
//!   a fresh sandbox per call), and against LanceDB queried directly in the
//!   same run, for the host path's overhead.
//!
//! ```text
//! WARDEN_BENCH=memory cargo bench -p warden-tests --bench guests            # 100 000 entries
//! WARDEN_BENCH_ROWS=20000 WARDEN_BENCH=memory cargo bench -p warden-tests --bench guests
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lancedb::DistanceType;
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use warden_api::memory::{Filter, Meta, SearchMode};
use warden_core::{CallOptions, Engine, EngineConfig, Grant, NamespaceGrant};
use warden_memory::embed::{EmbedError, Embedder};
use warden_memory::{Limits, Memory};
use warden_tests::artifacts::{CACHE_DIR, MEMORY};

const DIM: usize = 384;
const CLUSTERS: usize = 500;
const QUERIES: usize = 200;
const K: usize = 10;

/// Vectors by text: "item N" is the N-th stored vector, "query N" the N-th
/// query. A real `Embedder`, so the store runs its whole path.
struct Synthetic {
    items: Vec<Vec<f32>>,
    queries: Vec<Vec<f32>>,
}

impl Embedder for Synthetic {
    fn name(&self) -> &str {
        "bench/synthetic"
    }
    fn dimension(&self) -> usize {
        DIM
    }
    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> futures::future::BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            texts
                .iter()
                .map(|t| {
                    let (kind, n) = t
                        .split_once(' ')
                        .ok_or_else(|| EmbedError::Invalid(t.clone()))?;
                    let n: usize = n.parse().map_err(|_| EmbedError::Invalid(t.clone()))?;
                    let table = if kind == "query" {
                        &self.queries
                    } else {
                        &self.items
                    };
                    Ok(table[n].clone())
                })
                .collect()
        })
    }
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn gaussian(rng: &mut StdRng) -> f32 {
    // Box-Muller.
    let (u, v): (f32, f32) = (rng.random::<f32>().max(1e-9), rng.random());
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
}

fn data(rows: usize) -> Synthetic {
    let mut rng = StdRng::seed_from_u64(7);
    let centers: Vec<Vec<f32>> = (0..CLUSTERS)
        .map(|_| unit((0..DIM).map(|_| gaussian(&mut rng)).collect()))
        .collect();
    let near = |rng: &mut StdRng, c: &[f32], spread: f32| {
        unit(
            c.iter()
                .map(|x| x + spread * gaussian(rng) / (DIM as f32).sqrt())
                .collect(),
        )
    };
    let items = (0..rows)
        .map(|_| {
            let c = &centers[rng.random_range(0..CLUSTERS)];
            near(&mut rng, c, 0.8)
        })
        .collect();
    let queries = (0..QUERIES)
        .map(|_| {
            let c = &centers[rng.random_range(0..CLUSTERS)];
            near(&mut rng, c, 0.8)
        })
        .collect();
    Synthetic { items, queries }
}

/// The exact top-k item numbers of each query, by brute force.
fn exact(s: &Synthetic) -> Vec<Vec<usize>> {
    s.queries
        .iter()
        .map(|q| {
            let mut scored: Vec<(f32, usize)> = s
                .items
                .iter()
                .enumerate()
                .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum(), i))
                .collect();
            scored.select_nth_unstable_by(K, |a, b| b.0.total_cmp(&a.0));
            scored.truncate(K);
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            scored.into_iter().map(|(_, i)| i).collect()
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn report(label: &str, mut times: Vec<Duration>, recall: Option<f64>) -> Duration {
    times.sort();
    let p50 = percentile(&times, 0.5);
    println!(
        "memory: {label}: p50 {:.2} ms, p99 {:.2} ms{}",
        p50.as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        recall.map_or(String::new(), |r| format!(", recall@{K} {r:.3}"))
    );
    p50
}

pub fn main() {
    let rows: usize = std::env::var("WARDEN_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(rows));
}

async fn run(rows: usize) {
    let started = Instant::now();
    let synthetic = Arc::new(data(rows));
    let truth = exact(&synthetic);
    println!(
        "memory: {rows} × {DIM} synthetic vectors and exact answers in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let memory = Arc::new(Memory::with_embedder(
        dir.path(),
        synthetic.clone(),
        Limits {
            max_entries: rows as u64 + 1,
            // Index once, at the end of the load (the store would also build
            // it at the threshold and rebuild it at 4× that).
            index_threshold: rows,
            ..Limits::default()
        },
    ));

    // Insert.
    let started = Instant::now();
    let mut number_of: HashMap<String, usize> = HashMap::with_capacity(rows);
    const BATCH: usize = 1000;
    for start in (0..rows).step_by(BATCH) {
        let end = (start + BATCH).min(rows);
        let items = (start..end)
            .map(|i| (format!("item {i}"), Meta::default()))
            .collect();
        let ids = memory
            .store_many("bench", "vectors", items)
            .await
            .expect("store");
        number_of.extend(ids.into_iter().zip(start..end));
    }
    let inserted = started.elapsed();
    // The writer builds the index after answering the last store: wait
    // for it, so the searches below use it.
    memory.settle().await.expect("settle");
    let took = started.elapsed();
    let stats = memory.stats("bench", "vectors").await.expect("stats");
    println!(
        "memory: insert {rows} in batches of {BATCH}: {:.1} s ({:.0} entries/s), then the vector index {:.1} s; {:?}",
        inserted.as_secs_f64(),
        rows as f64 / inserted.as_secs_f64(),
        (took - inserted).as_secs_f64(),
        stats.indices
    );

    let recall = |found: &[Vec<usize>]| {
        let hits: usize = found
            .iter()
            .zip(&truth)
            .map(|(f, t)| f.iter().filter(|i| t.contains(i)).count())
            .sum();
        hits as f64 / (K * QUERIES) as f64
    };

    // Through the store.
    let mut times = Vec::new();
    let mut found = Vec::new();
    for round in 0..2 {
        times.clear();
        found.clear();
        for q in 0..QUERIES {
            let started = Instant::now();
            let hits = memory
                .search(
                    "bench",
                    "vectors",
                    &format!("query {q}"),
                    K as u32,
                    &Filter::default(),
                    SearchMode::Vector,
                )
                .await
                .expect("search");
            times.push(started.elapsed());
            found.push(
                hits.iter()
                    .map(|h| number_of[&h.entry.id])
                    .collect::<Vec<_>>(),
            );
        }
        if round == 0 {
            continue; // warm the caches
        }
    }
    let store_p50 = report(
        "search through the store",
        times.clone(),
        Some(recall(&found)),
    );

    // LanceDB directly, the same query on the same table.
    let db = lancedb::connect(dir.path().join("bench").to_str().expect("utf-8"))
        .execute()
        .await
        .expect("connect");
    let table = db.open_table("vectors").execute().await.expect("open");
    let columns = [
        "id",
        "content",
        "kind",
        "source",
        "task_id",
        "version",
        "platform",
        "tags",
        "extra",
        "created_at",
        "updated_at",
    ];
    let mut direct_times = Vec::new();
    for round in 0..2 {
        direct_times.clear();
        for q in 0..QUERIES {
            let started = Instant::now();
            let stream = table
                .query()
                .nearest_to(synthetic.queries[q].clone())
                .expect("query")
                .distance_type(DistanceType::Cosine)
                .ef(64)
                .select(Select::columns(&columns))
                .limit(K)
                .execute()
                .await
                .expect("execute");
            let batches: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(stream)
                .await
                .expect("collect");
            assert!(!batches.is_empty());
            direct_times.push(started.elapsed());
        }
        if round == 0 {
            continue;
        }
    }
    let direct_p50 = report("LanceDB directly", direct_times, None);

    // Exact search for comparison (no index).
    let mut exact_times = Vec::new();
    for q in 0..20 {
        let started = Instant::now();
        let stream = table
            .query()
            .nearest_to(synthetic.queries[q].clone())
            .expect("query")
            .distance_type(DistanceType::Cosine)
            .bypass_vector_index()
            .select(Select::columns(&columns))
            .limit(K)
            .execute()
            .await
            .expect("execute");
        let _: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(stream)
            .await
            .expect("collect");
        exact_times.push(started.elapsed());
    }
    report("exact search (no index), 20 queries", exact_times, None);

    // Through a guest: the memory plugin's `search` tool, each call in a
    // fresh sandbox.
    let engine = Engine::new(&EngineConfig {
        cache_dir: Some(CACHE_DIR.into()),
        memory: Some(memory.clone() as Arc<dyn warden_api::memory::Memories>),
        ..EngineConfig::default()
    })
    .expect("engine");
    let plugin = engine
        .load_file(MEMORY.as_ref())
        .expect("load the memory plugin");
    let options = CallOptions {
        tenant: warden_core::TenantId::new("bench").expect("tenant"),
        grant: Grant {
            memory: vec![NamespaceGrant::parse("vectors").expect("grant")],
            ..Grant::default()
        },
        ..CallOptions::default()
    };
    let mut guest_times = Vec::new();
    let mut guest_found = Vec::new();
    for round in 0..2 {
        guest_times.clear();
        guest_found.clear();
        for q in 0..QUERIES {
            let args = format!(r#"{{"namespace":"vectors","query":"query {q}","top_k":{K}}}"#);
            let started = Instant::now();
            let outcome = plugin.call_tool(&options, "search", &args).await;
            guest_times.push(started.elapsed());
            let json = match outcome.result {
                Ok(Ok(json)) => json,
                other => panic!("search through the guest: {other:?}"),
            };
            let hits: serde_json::Value = serde_json::from_str(&json).expect("json");
            guest_found.push(
                hits.as_array()
                    .expect("hits")
                    .iter()
                    .map(|h| number_of[h["id"].as_str().expect("id")])
                    .collect::<Vec<_>>(),
            );
        }
        if round == 0 {
            continue;
        }
    }
    let guest_p50 = report(
        "search through a guest",
        guest_times,
        Some(recall(&guest_found)),
    );
    println!(
        "memory: host path over LanceDB directly: store {:+.1} %, guest {:+.1} % (p50)",
        (store_p50.as_secs_f64() / direct_p50.as_secs_f64() - 1.0) * 100.0,
        (guest_p50.as_secs_f64() / direct_p50.as_secs_f64() - 1.0) * 100.0,
    );
}
