//! Memory that nodes share through an S3 bucket: LanceDB on a real
//! S3-compatible server (moto) on loopback, each "node" a store with its
//! own connection and writer, as two `warden serve` processes would have.

use std::collections::HashSet;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode};
use warden_api::memory::{Filter, Meta};
use warden_memory::{Limits, Location, Memory};
use warden_tests::moto::MotoServer;

use crate::memory::minilm;

const BUCKET: &str = "shared";

/// `s3://shared/PREFIX` on `moto`, as a memory.toml `[store]` would give it.
fn location(moto: &MotoServer, prefix: &str) -> Location {
    let options = [
        ("aws_endpoint", moto.endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_region", "us-east-1"),
        ("aws_access_key_id", "test"),
        ("aws_secret_access_key", "test"),
    ];
    Location::Store {
        uri: format!("s3://{BUCKET}/{prefix}"),
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// A node's store at `location`; it may list up to 1000 entries at once.
fn node(location: &Location) -> Arc<Memory> {
    let embedder = minilm();
    Arc::new(Memory::at(
        location.clone(),
        Box::new(move || Ok(embedder.clone())),
        Limits {
            max_top_k: 1000,
            ..Limits::default()
        },
    ))
}

/// What a LanceDB commit on S3 stands on: a put of a manifest that must not
/// exist yet is refused when another writer put it first.
#[tokio::test]
async fn the_object_store_refuses_a_conditional_put_that_must_fail() {
    let moto = MotoServer::start();
    moto.bucket(BUCKET);
    let s3 = AmazonS3Builder::new()
        .with_endpoint(&moto.endpoint)
        .with_allow_http(true)
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap();
    let manifest = Path::from("t/_versions/1.manifest");
    s3.put_opts(&manifest, "first".into(), PutMode::Create.into())
        .await
        .unwrap();
    let second = s3
        .put_opts(&manifest, "second".into(), PutMode::Create.into())
        .await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "{second:?}"
    );
    let kept = s3.get(&manifest).await.unwrap().bytes().await.unwrap();
    assert_eq!(&kept[..], b"first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_storing_into_one_namespace_at_once_lose_no_row_and_a_removed_tenant_goes() {
    const EACH: usize = 40;
    let moto = MotoServer::start();
    moto.bucket(BUCKET);
    let at = location(&moto, "cluster");
    // Each node commits its stores one by one, racing the other's commits.
    let mut writers = Vec::new();
    for n in 0..2 {
        let memory = node(&at);
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                let meta = Meta {
                    task_id: Some(format!("{n}-{i}")),
                    ..Meta::default()
                };
                let id = memory
                    .store("acme", "notes", format!("node {n} note {i}"), meta)
                    .await
                    .unwrap_or_else(|e| panic!("node {n} store {i}: {e}"));
                ids.push(id);
            }
            memory.settle().await.unwrap();
            ids
        }));
    }
    let mut stored = HashSet::new();
    for w in writers {
        stored.extend(w.await.unwrap());
    }
    assert_eq!(stored.len(), 2 * EACH);

    // A third node, a fresh connection, finds every row once.
    let reader = node(&at);
    let found = reader
        .find("acme", "notes", &Filter::default(), 1000)
        .await
        .unwrap();
    let ids: HashSet<String> = found.iter().map(|e| e.id.clone()).collect();
    assert_eq!(found.len(), 2 * EACH, "no row twice");
    assert_eq!(ids, stored, "no row lost");
    for e in &found {
        let (n, i) = e.meta.task_id.as_deref().unwrap().split_once('-').unwrap();
        assert_eq!(e.content, format!("node {n} note {i}"));
    }
    assert_eq!(
        reader.stats("acme", "notes").await.unwrap().entries,
        (2 * EACH) as u64
    );
    assert_eq!(reader.namespaces("acme").await.unwrap(), ["notes"]);
    // Another tenant's prefix holds nothing of acme's.
    assert!(reader.namespaces("acme-2").await.unwrap().is_empty());
    assert!(
        reader
            .find("acme-2", "notes", &Filter::default(), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A removed tenant's tables go from the bucket, and only its own: a
    // tenant added again under its name starts empty on every node.
    reader
        .store("acme-2", "notes", "kept".into(), Meta::default())
        .await
        .unwrap();
    reader.settle().await.unwrap();
    reader.remove_tenant("acme").await.unwrap();
    let later = node(&at);
    assert!(later.namespaces("acme").await.unwrap().is_empty());
    assert!(
        later
            .find("acme", "notes", &Filter::default(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let kept = later
        .find("acme-2", "notes", &Filter::default(), 10)
        .await
        .unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].content, "kept");
}
