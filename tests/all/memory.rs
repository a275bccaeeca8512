//! Memory through a real guest (the first-party `memory` plugin calling
//! `warden:plugin/memory`) on a real LanceDB store in a temp dir, embedding
//! with the local MiniLM: every operation, every filter field, injection
//! attempts, grants across namespaces and tenants, a dimension mismatch,
//! concurrent writers, and whether meaning beats words on a labelled set.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::{Value, json};
use warden_api::memory::{Filter, MemoryError, Meta, SearchMode};
use warden_core::{
    CallOptions, CallOutcome, CompiledPlugin, Engine, EngineConfig, Grant, NamespaceGrant,
    TenantId, ToolError,
};
use warden_memory::embed::{Embedder, LocalEmbedder, OpenAiEmbedder};
use warden_memory::{Limits, Memory};
use warden_tests::artifacts::{CACHE_DIR, MEMORY};
use warden_tests::fake_llm::{EMBEDDING_DIMENSION, FakeLlm};

use crate::models_dir;

pub(crate) fn minilm() -> Arc<dyn Embedder> {
    static E: OnceLock<Arc<LocalEmbedder>> = OnceLock::new();
    E.get_or_init(|| Arc::new(LocalEmbedder::load(models_dir()).expect("load MiniLM")))
        .clone()
}

/// A store in a temp dir, an engine serving it, and the memory plugin.
struct Fixture {
    memory: Arc<Memory>,
    plugin: CompiledPlugin,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_limits(Limits::default())
    }

    fn with_limits(limits: Limits) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let memory = Arc::new(Memory::with_embedder(dir.path(), minilm(), limits));
        let engine = Engine::new(&EngineConfig {
            cache_dir: Some(CACHE_DIR.into()),
            max_concurrent_calls: 32,
            memory: Some(memory.clone() as Arc<dyn warden_api::memory::Memories>),
            ..EngineConfig::default()
        })
        .unwrap();
        let plugin = engine.load_file(MEMORY.as_ref()).unwrap();
        Fixture {
            memory,
            plugin,
            dir,
        }
    }

    async fn call(
        &self,
        tenant: &str,
        grants: &[&str],
        tool: &str,
        args: Value,
    ) -> CallOutcome<Result<String, ToolError>> {
        let options = CallOptions {
            tenant: TenantId::new(tenant).unwrap(),
            grant: Grant {
                memory: grants
                    .iter()
                    .map(|g| NamespaceGrant::parse(g).unwrap())
                    .collect(),
                ..Grant::default()
            },
            ..CallOptions::default()
        };
        self.plugin
            .call_tool(&options, tool, &args.to_string())
            .await
    }

    /// The tool's JSON result for tenant "t" with `notes` granted rw.
    async fn ok(&self, tool: &str, args: Value) -> Value {
        let outcome = self.call("t", &["notes:rw"], tool, args).await;
        crate::ok_json(&outcome)
    }

    async fn store(&self, content: &str, meta: Value) -> String {
        let mut args = json!({"namespace": "notes", "content": content});
        for (k, v) in meta.as_object().unwrap() {
            args[k] = v.clone();
        }
        self.ok("store", args).await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn search(&self, query: &str, mode: &str, filter: Value) -> Vec<String> {
        let hits = self
            .ok(
                "search",
                json!({"namespace": "notes", "query": query, "mode": mode, "top_k": 10, "filter": filter}),
            )
            .await;
        contents(&hits)
    }

    async fn find(&self, filter: Value) -> Vec<String> {
        let found = self
            .ok(
                "find",
                json!({"namespace": "notes", "filter": filter, "limit": 100}),
            )
            .await;
        let mut c = contents(&found);
        c.sort();
        c
    }
}

fn contents(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"].as_str().unwrap().to_string())
        .collect()
}

fn sorted(items: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[tokio::test]
pub(crate) async fn every_operation_through_a_guest() {
    let f = Fixture::new();
    let pg = f
        .store(
            "Postgres listens on port 5432 on the database host.",
            json!({"kind": "note", "source": "ops/db.md", "tags": ["db", "ports"], "extra": {"owner": "ops", "n": 3}}),
        )
        .await;
    let cake = f
        .store(
            "Bake the cake at 180 degrees for forty minutes.",
            json!({"kind": "recipe"}),
        )
        .await;
    assert_eq!(pg.len(), 32);
    assert_ne!(pg, cake);

    // get: everything as stored, host-set times.
    let entry = f.ok("get", json!({"namespace": "notes", "id": pg})).await;
    assert_eq!(
        entry["content"],
        "Postgres listens on port 5432 on the database host."
    );
    assert_eq!(entry["meta"]["kind"], "note");
    assert_eq!(entry["meta"]["source"], "ops/db.md");
    assert_eq!(entry["meta"]["tags"], json!(["db", "ports"]));
    assert_eq!(entry["meta"]["extra"], json!({"owner": "ops", "n": 3}));
    let created = entry["created_at"].as_i64().unwrap();
    assert!(created > 1_700_000_000_000, "{created}");
    assert_eq!(entry["updated_at"], entry["created_at"]);

    // search by meaning (no shared words), by words, by both.
    let vector = f
        .search(
            "which TCP port does the SQL server use?",
            "vector",
            json!({}),
        )
        .await;
    assert_eq!(
        vector[0],
        "Postgres listens on port 5432 on the database host."
    );
    let hits = f
        .ok(
            "search",
            json!({"namespace": "notes", "query": "oven temperature for baking", "top_k": 1}),
        )
        .await;
    assert_eq!(hits.as_array().unwrap().len(), 1, "top_k is honoured");
    assert_eq!(
        hits[0]["content"],
        "Bake the cake at 180 degrees for forty minutes."
    );
    let score = hits[0]["score"].as_f64().unwrap();
    assert!(
        score > 0.2 && score <= 1.0,
        "cosine similarity, got {score}"
    );
    let text = f.search("forty minutes", "text", json!({})).await;
    assert_eq!(
        text,
        vec!["Bake the cake at 180 degrees for forty minutes."]
    );
    let hybrid = f.search("database port 5432", "hybrid", json!({})).await;
    assert_eq!(
        hybrid[0],
        "Postgres listens on port 5432 on the database host."
    );

    // A store after the full-text index exists is found by words at once.
    f.store(
        "Redis keeps its data in memory and listens on 6379.",
        json!({"kind": "note"}),
    )
    .await;
    let text = f.search("6379", "text", json!({})).await;
    assert_eq!(
        text,
        vec!["Redis keeps its data in memory and listens on 6379."]
    );

    // find: metadata only.
    assert_eq!(
        f.find(json!({"kind": "note"})).await,
        sorted(&[
            "Postgres listens on port 5432 on the database host.",
            "Redis keeps its data in memory and listens on 6379."
        ])
    );

    // update: content is re-embedded, metadata replaced as a whole.
    let updated = f
        .ok(
            "update",
            json!({"namespace": "notes", "id": cake, "content": "Water boils at 100 degrees Celsius at sea level.", "meta": {"kind": "fact", "tags": ["physics"]}}),
        )
        .await;
    assert_eq!(updated["id"], cake);
    assert_eq!(updated["meta"]["kind"], "fact");
    assert!(updated["updated_at"].as_i64() >= updated["created_at"].as_i64());
    let vector = f
        .search("boiling point of water", "vector", json!({}))
        .await;
    assert_eq!(
        vector[0],
        "Water boils at 100 degrees Celsius at sea level."
    );
    assert!(
        !vector.iter().any(|c| c.contains("cake")),
        "the old text is gone: {vector:?}"
    );
    assert!(f.find(json!({"kind": "recipe"})).await.is_empty());
    // Only the metadata: the content stays.
    let meta_only = f
        .ok(
            "update",
            json!({"namespace": "notes", "id": cake, "meta": {"kind": "physics"}}),
        )
        .await;
    assert_eq!(
        meta_only["content"],
        "Water boils at 100 degrees Celsius at sea level."
    );
    assert_eq!(meta_only["meta"]["tags"], json!([]));

    // delete, then it is gone everywhere.
    let deleted = f
        .ok("delete", json!({"namespace": "notes", "id": pg}))
        .await;
    assert_eq!(deleted["deleted"], pg);
    let gone = f
        .call(
            "t",
            &["notes:rw"],
            "get",
            json!({"namespace": "notes", "id": pg}),
        )
        .await;
    assert!(crate::failed(&gone).contains("not found"), "{gone:?}");
    let again = f
        .call(
            "t",
            &["notes:rw"],
            "delete",
            json!({"namespace": "notes", "id": pg}),
        )
        .await;
    assert!(crate::failed(&again).contains("not found"));
    assert!(
        !f.search("5432", "text", json!({}))
            .await
            .iter()
            .any(|c| c.contains("5432"))
    );
    assert_eq!(f.memory.stats("t", "notes").await.unwrap().entries, 2);

    // Bad requests name the field.
    let bad = f
        .call(
            "t",
            &["notes:rw"],
            "get",
            json!({"namespace": "notes", "id": "x"}),
        )
        .await;
    match crate::tool_error(&bad) {
        ToolError::InvalidArguments(m) => assert!(m.contains("`id`"), "{m}"),
        other => panic!("{other:?}"),
    }
    let bad = f
        .call(
            "t",
            &["notes:rw"],
            "search",
            json!({"namespace": "notes", "query": "x", "top_k": 1000}),
        )
        .await;
    match crate::tool_error(&bad) {
        ToolError::InvalidArguments(m) => {
            assert!(m.contains("`top-k`") && m.contains("1 to 100"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    let bad = f
        .call(
            "t",
            &["notes:rw"],
            "store",
            json!({"namespace": "notes", "content": "  "}),
        )
        .await;
    match crate::tool_error(&bad) {
        ToolError::InvalidArguments(m) => assert!(m.contains("`content`"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn every_filter_field_and_their_combinations() {
    let f = Fixture::new();
    let rows = [
        (
            "a",
            json!({"kind": "code", "source": "src/a.rs", "task_id": "T1", "version": "v1", "platform": "linux", "tags": ["x", "y"]}),
        ),
        (
            "b",
            json!({"kind": "code", "source": "src/b.rs", "task_id": "T2", "version": "v2", "platform": "macos", "tags": ["y"]}),
        ),
        (
            "c",
            json!({"kind": "test", "source": "src/a.rs", "task_id": "T1", "version": "v2", "platform": "linux", "tags": ["z"]}),
        ),
        ("d", json!({})),
    ];
    let mut created = Vec::new();
    for (content, meta) in &rows {
        let id = f.store(&format!("entry {content}"), meta.clone()).await;
        let e = f.memory.get("t", "notes", &id).await.unwrap();
        created.push(e.created_at);
        // Distinct creation times for the time filters.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let e = |names: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = names.iter().map(|n| format!("entry {n}")).collect();
        v.sort();
        v
    };
    let cases = [
        (json!({}), e(&["a", "b", "c", "d"])),
        (json!({"kind": "code"}), e(&["a", "b"])),
        (json!({"source": "src/a.rs"}), e(&["a", "c"])),
        (json!({"task_id": "T1"}), e(&["a", "c"])),
        (json!({"version": "v2"}), e(&["b", "c"])),
        (json!({"platform": "macos"}), e(&["b"])),
        (json!({"tags": ["y"]}), e(&["a", "b"])),
        (json!({"tags": ["x", "z"]}), e(&["a", "c"])),
        (json!({"tags": ["nope"]}), e(&[])),
        (json!({"kind": "code", "platform": "linux"}), e(&["a"])),
        (
            json!({"source": "src/a.rs", "version": "v2", "tags": ["z"]}),
            e(&["c"]),
        ),
        (json!({"kind": "test", "platform": "macos"}), e(&[])),
        (json!({"created_after": created[1]}), e(&["c", "d"])),
        (json!({"created_before": created[1]}), e(&["a"])),
        (
            json!({"created_after": created[0], "created_before": created[3]}),
            e(&["b", "c"]),
        ),
        (
            json!({"kind": "code", "created_after": created[0]}),
            e(&["b"]),
        ),
    ];
    for (filter, want) in &cases {
        assert_eq!(&f.find(filter.clone()).await, want, "find {filter}");
        // The same filter narrows each search mode.
        for mode in ["vector", "text", "hybrid"] {
            let mut got = f.search("entry", mode, filter.clone()).await;
            got.sort();
            assert_eq!(&got, want, "search {mode} {filter}");
        }
    }
}

/// Strings that would change a predicate built by pasting text together.
const HOSTILE: [&str; 7] = [
    "' OR 1=1 --",
    "x' OR 'a'='a",
    "\"; DROP TABLE notes; --",
    "back\\slash\\",
    "it's",
    "%_*",
    "a'); DELETE FROM notes WHERE ('1'='1",
];

#[tokio::test]
async fn injection_attempts_are_only_data() {
    let f = Fixture::new();
    f.store(
        "plain entry",
        json!({"kind": "note", "source": "s", "tags": ["t"]}),
    )
    .await;
    for (i, bad) in HOSTILE.iter().enumerate() {
        let meta = json!({"kind": bad, "source": bad, "task_id": bad, "version": bad, "platform": bad, "tags": [bad]});
        f.store(&format!("hostile {i}: {bad}"), meta).await;
    }
    let all = f.find(json!({})).await;
    assert_eq!(
        all.len(),
        HOSTILE.len() + 1,
        "nothing deleted or duplicated"
    );
    for (i, bad) in HOSTILE.iter().enumerate() {
        let want = vec![format!("hostile {i}: {bad}")];
        for field in ["kind", "source", "task_id", "version", "platform"] {
            assert_eq!(
                f.find(json!({ field: bad })).await,
                want,
                "{field} = {bad:?}"
            );
        }
        assert_eq!(f.find(json!({"tags": [bad]})).await, want, "tags {bad:?}");
        for mode in ["vector", "text", "hybrid"] {
            let got = f.search(bad, mode, json!({"kind": bad})).await;
            // Words only: a query of punctuation alone has no words to match.
            if mode == "text" && got.is_empty() {
                continue;
            }
            assert_eq!(got, want, "search {mode} with {bad:?}");
        }
    }
    // A NUL is refused, naming the field; in content it is just text.
    for field in ["kind", "source", "task_id", "version", "platform"] {
        let args = json!({"namespace": "notes", "content": "x", field: "a\0b"});
        let outcome = f.call("t", &["notes:rw"], "store", args).await;
        match crate::tool_error(&outcome) {
            ToolError::InvalidArguments(m) => {
                assert!(m.contains(&format!("`{}`", field.replace('_', "-"))), "{m}")
            }
            other => panic!("{field}: {other:?}"),
        }
        let args = json!({"namespace": "notes", "query": "x", "filter": { field: "a\0b" }});
        let outcome = f.call("t", &["notes:rw"], "search", args).await;
        assert!(matches!(
            crate::tool_error(&outcome),
            ToolError::InvalidArguments(_)
        ));
    }
    let outcome = f
        .call(
            "t",
            &["notes:rw"],
            "store",
            json!({"namespace": "notes", "content": "x", "tags": ["a\0"]}),
        )
        .await;
    match crate::tool_error(&outcome) {
        ToolError::InvalidArguments(m) => assert!(m.contains("`tags[0]`"), "{m}"),
        other => panic!("{other:?}"),
    }
    let id = f.store("nul \0 inside", json!({})).await;
    let e = f.ok("get", json!({"namespace": "notes", "id": id})).await;
    assert_eq!(e["content"], "nul \0 inside");
    // Hostile namespace names and ids never reach the store.
    for ns in ["../other", "a/b", "notes' OR '1'='1", ""] {
        let outcome = f
            .call("t", &["*:rw"], "find", json!({"namespace": ns}))
            .await;
        match crate::tool_error(&outcome) {
            ToolError::InvalidArguments(m) => assert!(m.contains("`namespace`"), "{ns:?}: {m}"),
            other => panic!("{ns:?}: {other:?}"),
        }
    }
    let outcome = f
        .call(
            "t",
            &["notes:rw"],
            "delete",
            json!({"namespace": "notes", "id": "' OR 1=1 --"}),
        )
        .await;
    assert!(matches!(
        crate::tool_error(&outcome),
        ToolError::InvalidArguments(_)
    ));
    assert_eq!(f.find(json!({})).await.len(), HOSTILE.len() + 2);
}

#[tokio::test]
async fn grants_decide_namespaces_and_tenants_never_meet() {
    let f = Fixture::new();
    let id = f.store("a secret of tenant t", json!({})).await;

    // No grant, or another namespace: denied, naming the fix.
    let none = f
        .call("t", &[], "find", json!({"namespace": "notes"}))
        .await;
    let m = crate::denied(&none);
    assert!(
        m.contains("\"notes\"") && m.contains("--memory-ns notes"),
        "{m}"
    );
    let other = f
        .call(
            "t",
            &["docs:rw"],
            "get",
            json!({"namespace": "notes", "id": id}),
        )
        .await;
    crate::denied(&other);

    // Read-only: reading works, every write is denied.
    let ro = ["notes"];
    let found = f
        .call("t", &ro, "find", json!({"namespace": "notes"}))
        .await;
    assert_eq!(
        contents(&crate::ok_json(&found)),
        vec!["a secret of tenant t"]
    );
    let search = f
        .call(
            "t",
            &ro,
            "search",
            json!({"namespace": "notes", "query": "secret"}),
        )
        .await;
    assert_eq!(crate::ok_json(&search).as_array().unwrap().len(), 1);
    for (tool, args) in [
        ("store", json!({"namespace": "notes", "content": "x"})),
        (
            "update",
            json!({"namespace": "notes", "id": id, "content": "x"}),
        ),
        ("delete", json!({"namespace": "notes", "id": id})),
    ] {
        let outcome = f.call("t", &ro, tool, args).await;
        let m = crate::denied(&outcome);
        assert!(m.contains("notes:rw"), "{tool}: {m}");
    }

    // Another tenant with the same grant sees its own, empty namespace.
    let found = f
        .call("u", &["notes:rw"], "find", json!({"namespace": "notes"}))
        .await;
    assert!(crate::ok_json(&found).as_array().unwrap().is_empty());
    let get = f
        .call(
            "u",
            &["notes:rw"],
            "get",
            json!({"namespace": "notes", "id": id}),
        )
        .await;
    assert!(crate::failed(&get).contains("not found"));
    let del = f
        .call(
            "u",
            &["*:rw"],
            "delete",
            json!({"namespace": "notes", "id": id}),
        )
        .await;
    assert!(crate::failed(&del).contains("not found"));
    let search = f
        .call(
            "u",
            &["*"],
            "search",
            json!({"namespace": "notes", "query": "secret"}),
        )
        .await;
    assert!(crate::ok_json(&search).as_array().unwrap().is_empty());
    f.call(
        "u",
        &["notes:rw"],
        "store",
        json!({"namespace": "notes", "content": "tenant u's"}),
    )
    .await;
    // ...and tenant t's is untouched.
    assert_eq!(f.find(json!({})).await, vec!["a secret of tenant t"]);
    assert!(f.dir.path().join("t").join("notes.lance").is_dir());
    assert!(f.dir.path().join("u").join("notes.lance").is_dir());
}

#[tokio::test]
async fn a_namespace_made_by_another_embedder_is_refused() {
    let server = FakeLlm::start();
    let dir = tempfile::tempdir().unwrap();
    let remote = OpenAiEmbedder::new(
        &format!("{}/v1", server.origin()),
        None,
        "fake-embed",
        EMBEDDING_DIMENSION,
        Duration::from_secs(5),
    )
    .unwrap();
    let small = Memory::with_embedder(dir.path(), Arc::new(remote), Limits::default());
    small
        .store(
            "t",
            "notes",
            "made with 8 dimensions".into(),
            Meta::default(),
        )
        .await
        .unwrap();
    small.settle().await.unwrap();
    drop(small);

    let local = Memory::with_embedder(dir.path(), minilm(), Limits::default());
    let err = local
        .store("t", "notes", "384 dimensions".into(), Meta::default())
        .await
        .unwrap_err();
    match &err {
        MemoryError::Unavailable(m) => {
            assert!(
                m.contains("openai/fake-embed") && m.contains("(8 dimensions)"),
                "{m}"
            );
            assert!(
                m.contains("local/all-minilm-l6-v2") && m.contains("384"),
                "{m}"
            );
        }
        other => panic!("{other:?}"),
    }
    let err = local
        .search("t", "notes", "x", 3, &Filter::default(), SearchMode::Vector)
        .await
        .unwrap_err();
    assert!(matches!(err, MemoryError::Unavailable(_)), "{err:?}");
    // Reading by metadata or words needs no embedder and still works.
    let found = local
        .find("t", "notes", &Filter::default(), 10)
        .await
        .unwrap();
    assert_eq!(found[0].content, "made with 8 dimensions");
    let text = local
        .search(
            "t",
            "notes",
            "dimensions",
            3,
            &Filter::default(),
            SearchMode::Text,
        )
        .await
        .unwrap();
    assert_eq!(text.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_nothing() {
    const WRITERS: usize = 8;
    const EACH: usize = 500;
    let f = Arc::new(Fixture::new());
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                let args = json!({"namespace": "notes", "content": format!("writer {w} note {i}"), "tags": [format!("w{w}")], "task_id": format!("{w}-{i}")});
                let outcome = f.call("t", &["notes:rw"], "store", args).await;
                ids.push(crate::ok_json(&outcome)["id"].as_str().unwrap().to_string());
            }
            ids
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    assert_eq!(ids.len(), WRITERS * EACH, "every store got its own id");
    let stats = f.memory.stats("t", "notes").await.unwrap();
    assert_eq!(stats.entries, (WRITERS * EACH) as u64);
    // Each row is there once, with its own content.
    for w in 0..WRITERS {
        for i in (0..EACH).step_by(50) {
            let filter = Filter {
                task_id: Some(format!("{w}-{i}")),
                ..Filter::default()
            };
            let found = f.memory.find("t", "notes", &filter, 10).await.unwrap();
            assert_eq!(found.len(), 1, "{w}-{i}");
            assert_eq!(found[0].content, format!("writer {w} note {i}"));
        }
    }
    // Group commits: far fewer versions than stores.
    assert!(
        stats.version < (WRITERS * EACH / 2) as u64,
        "version {}",
        stats.version
    );
}

#[tokio::test]
async fn a_vector_index_is_built_and_keeps_search_exact_enough() {
    let f = Fixture::with_limits(Limits {
        index_threshold: 300,
        ..Limits::default()
    });
    let topics = [
        "cooking",
        "networking",
        "gardening",
        "astronomy",
        "finance",
        "music",
    ];
    let items: Vec<(String, Meta)> = (0..360)
        .map(|i| {
            let topic = topics[i % topics.len()];
            (
                format!("note {i} about {topic}: item number {i} in the {topic} notebook"),
                Meta::default(),
            )
        })
        .collect();
    for chunk in items.chunks(60) {
        f.memory
            .store_many("t", "notes", chunk.to_vec())
            .await
            .unwrap();
    }
    let stats = f.memory.stats("t", "notes").await.unwrap();
    assert_eq!(stats.entries, 360);
    assert!(
        stats.indices.iter().any(|i| i.contains("vector")),
        "a vector index once past the threshold: {:?}",
        stats.indices
    );
    // With the index, a stored text is still its own best match.
    for i in [0, 7, 133, 359] {
        let topic = topics[i % topics.len()];
        let query = format!("note {i} about {topic}: item number {i} in the {topic} notebook");
        let hits = f
            .memory
            .search(
                "t",
                "notes",
                &query,
                5,
                &Filter::default(),
                SearchMode::Vector,
            )
            .await
            .unwrap();
        assert_eq!(hits[0].entry.content, query);
    }
}

/// About fifty texts on twenty subjects, and twenty questions asked in
/// other words: (text, subject) and (question, subject).
const CORPUS: [(&str, u32); 50] = [
    (
        "To reset your password, open Settings, choose Security and click 'Forgot password'.",
        0,
    ),
    (
        "Account credentials can be changed from the security page of your profile.",
        0,
    ),
    (
        "Lost login details are recovered through the link sent to your e-mail.",
        0,
    ),
    (
        "The cafeteria serves lunch from noon until two in the afternoon.",
        1,
    ),
    ("Hot meals are available in the canteen at midday.", 1),
    ("Our office is closed on public holidays and weekends.", 2),
    (
        "Staff do not work on Saturdays, Sundays or national holidays.",
        2,
    ),
    ("Invoices are paid within thirty days of receipt.", 3),
    ("Suppliers receive payment one month after billing.", 3),
    (
        "Accounts payable settles bills at the end of each month.",
        3,
    ),
    ("The server room is cooled to eighteen degrees.", 4),
    ("Air conditioning keeps the data centre cold.", 4),
    (
        "Employees get twenty-five days of paid vacation per year.",
        5,
    ),
    ("Annual leave allowance is five weeks.", 5),
    (
        "Parking spaces are in the underground garage below the building.",
        6,
    ),
    ("Cars can be left in the basement car park.", 6),
    ("The Wi-Fi network name is GuestNet and needs no key.", 7),
    ("Visitors connect wirelessly to the open guest network.", 7),
    ("Fire exits are at both ends of every corridor.", 8),
    (
        "In an emergency, leave by the stairs marked with green signs.",
        8,
    ),
    ("Evacuation drills take place twice a year.", 8),
    ("Printers on each floor accept badges to release jobs.", 9),
    (
        "Documents are printed after you tap your access card on the copier.",
        9,
    ),
    ("The dog is a loyal animal that loves long walks.", 10),
    ("Puppies need training and plenty of exercise.", 10),
    ("Cats sleep for most of the day and groom themselves.", 11),
    ("A kitten purrs when it is content.", 11),
    (
        "Python lists grow dynamically and keep insertion order.",
        12,
    ),
    ("Arrays in Python are resizable sequences.", 12),
    (
        "Rust's borrow checker prevents data races at compile time.",
        13,
    ),
    (
        "Ownership rules let the compiler reject unsafe memory access.",
        13,
    ),
    (
        "The Eiffel Tower stands in Paris and was finished in 1889.",
        14,
    ),
    (
        "France's capital has an iron lattice landmark from the 19th century.",
        14,
    ),
    ("Mount Everest is the highest mountain above sea level.", 15),
    ("The tallest peak on Earth lies in the Himalayas.", 15),
    (
        "Photosynthesis turns sunlight, water and carbon dioxide into sugar.",
        16,
    ),
    ("Plants make their food from light in their leaves.", 16),
    (
        "The stock market fell sharply after the interest rate rise.",
        17,
    ),
    (
        "Shares dropped when the central bank increased borrowing costs.",
        17,
    ),
    ("Regular exercise lowers the risk of heart disease.", 18),
    (
        "Physical activity keeps the cardiovascular system healthy.",
        18,
    ),
    ("Jogging three times a week improves stamina.", 18),
    ("Chess is a board game of strategy for two players.", 19),
    (
        "Players move kings, queens and pawns on a checkered board.",
        19,
    ),
    ("The library lends books for three weeks.", 20),
    (
        "Borrowed novels must be returned within twenty-one days.",
        20,
    ),
    ("Coffee contains caffeine, a mild stimulant.", 21),
    ("Espresso gives you an energy boost.", 21),
    ("Tomatoes ripen faster next to bananas.", 22),
    ("Ethylene from fruit speeds up ripening.", 22),
];

const QUESTIONS: [(&str, u32); 20] = [
    ("I forgot how to sign in, how do I get a new one?", 0),
    ("When can I eat at work?", 1),
    ("Which days is the company shut?", 2),
    ("How long until a vendor gets its money?", 3),
    ("How cold is it where the machines are?", 4),
    ("How much time off do workers have?", 5),
    ("Where should I put my vehicle?", 6),
    ("How do guests get internet access?", 7),
    ("What is the way out if there is a fire?", 8),
    ("How do I collect my print-outs?", 9),
    ("Tell me about canine pets", 10),
    ("What are felines like?", 11),
    (
        "How do growable sequences work in that snake-named language?",
        12,
    ),
    (
        "How does that systems language stop threads clobbering memory?",
        13,
    ),
    ("Famous metal monument in the French capital", 14),
    ("Which summit is the loftiest in the world?", 15),
    ("How do green plants feed themselves?", 16),
    ("Why did equities decline?", 17),
    ("Does working out help your heart?", 18),
    ("A strategic game with a king", 19),
];

async fn recall_at_5(memory: &Memory, mode: SearchMode, ids: &[(String, u32)]) -> f64 {
    let mut total = 0.0;
    for (question, subject) in QUESTIONS {
        let relevant: HashSet<&String> = ids
            .iter()
            .filter(|(_, s)| *s == subject)
            .map(|(id, _)| id)
            .collect();
        let hits = match memory
            .search("t", "labelled", question, 5, &Filter::default(), mode)
            .await
        {
            Ok(hits) => hits,
            Err(e) => panic!("{mode:?} {question:?}: {e}"),
        };
        let found = hits
            .iter()
            .filter(|h| relevant.contains(&h.entry.id))
            .count();
        total += found as f64 / relevant.len() as f64;
    }
    total / QUESTIONS.len() as f64
}

#[tokio::test]
async fn meaning_finds_more_than_words_on_a_labelled_set() {
    let f = Fixture::new();
    let items: Vec<(String, Meta)> = CORPUS
        .iter()
        .map(|(t, _)| (t.to_string(), Meta::default()))
        .collect();
    let stored = f.memory.store_many("t", "labelled", items).await.unwrap();
    let ids: Vec<(String, u32)> = stored
        .into_iter()
        .zip(CORPUS.iter().map(|(_, s)| *s))
        .collect();
    let vector = recall_at_5(&f.memory, SearchMode::Vector, &ids).await;
    let text = recall_at_5(&f.memory, SearchMode::Text, &ids).await;
    let hybrid = recall_at_5(&f.memory, SearchMode::Hybrid, &ids).await;
    println!("recall@5: vector {vector:.2}, text {text:.2}, hybrid {hybrid:.2}");
    assert!(
        vector > text,
        "vector {vector:.2} should beat text {text:.2}"
    );
    assert!(vector >= 0.6, "vector recall@5 {vector:.2}");
}
