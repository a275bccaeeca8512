//! Embedders: the local MiniLM (meaning, batching, truncation, unit length)
//! and an OpenAI-compatible endpoint on a loopback server (order, checked
//! dimension, the key kept out of errors).

use std::time::Duration;

use warden_memory::embed::{
    EmbedError, Embedder, LocalEmbedder, MAX_TOKENS, OpenAiEmbedder, similarity,
};
use warden_tests::fake_llm::{EMBEDDING_DIMENSION, FakeLlm, Reply, fake_embedding};

use crate::models_dir;

fn local() -> LocalEmbedder {
    LocalEmbedder::load(models_dir()).expect("load MiniLM")
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| t.to_string()).collect()
}

#[tokio::test]
async fn local_vectors_carry_meaning() {
    let e = local();
    assert_eq!(e.dimension(), 384);
    assert_eq!(e.name(), "local/all-minilm-l6-v2");
    let v = e
        .embed(&strings(&[
            "How do I reset my password?",
            "I forgot my login credentials and need to change them.",
            "The recipe needs two cups of flour and an egg.",
            "Bake the cake at 180 degrees for forty minutes.",
        ]))
        .await
        .unwrap();
    for x in &v {
        let norm: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
    }
    let (same_topic, other_topic) = (similarity(&v[0], &v[1]), similarity(&v[0], &v[2]));
    assert!(
        same_topic > other_topic + 0.2,
        "{same_topic} vs {other_topic}"
    );
    assert!(similarity(&v[2], &v[3]) > similarity(&v[1], &v[3]));
}

#[tokio::test]
async fn a_batch_gives_what_each_text_gives_alone() {
    let e = local();
    // More than one internal batch, of different lengths (padding).
    let texts: Vec<String> = (0..40)
        .map(|i| format!("note {i}: {}", "word ".repeat(i % 7)))
        .collect();
    let together = e.embed(&texts).await.unwrap();
    assert_eq!(together.len(), 40);
    for i in [0, 5, 31, 32, 39] {
        let alone = e.embed(&texts[i..=i]).await.unwrap();
        let distance: f32 = alone[0]
            .iter()
            .zip(&together[i])
            .map(|(a, b)| (a - b).abs())
            .sum();
        assert!(distance < 1e-3, "text {i} differs by {distance}");
    }
    assert!(e.embed(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn long_texts_are_cut_at_the_token_limit() {
    let e = local();
    let head = "lorem ipsum dolor sit amet ".repeat(MAX_TOKENS);
    let v = e
        .embed(&[
            format!("{head} the tail about whales"),
            format!("{head} a different tail about taxes"),
        ])
        .await
        .unwrap();
    assert!(
        similarity(&v[0], &v[1]) > 0.9999,
        "only the first {MAX_TOKENS} tokens count"
    );
}

#[tokio::test]
async fn an_openai_endpoint_is_ordered_checked_and_keeps_its_key() {
    let fake = FakeLlm::start();
    let key = "sk-embed-5511";
    let e = OpenAiEmbedder::new(
        &format!("{}/v1", fake.origin()),
        Some(key.into()),
        "text-embedding-test",
        EMBEDDING_DIMENSION,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(e.name(), "openai/text-embedding-test");
    let texts = strings(&["banana", "aeiou aeiou", "x"]);
    let v = e.embed(&texts).await.unwrap();
    // The fake answers in reverse order; the index puts each back.
    for (text, vector) in texts.iter().zip(&v) {
        let want = fake_embedding(text);
        let norm = want.iter().map(|x| x * x).sum::<f64>().sqrt();
        for (a, b) in vector.iter().zip(&want) {
            assert!((f64::from(*a) - b / norm).abs() < 1e-6, "{text}");
        }
    }
    let seen = &fake.requests()[0];
    assert_eq!(seen.path, "/v1/embeddings");
    assert_eq!(seen.body["model"], "text-embedding-test");
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {key}").as_str())
    );

    let wrong = OpenAiEmbedder::new(
        &format!("{}/v1", fake.origin()),
        None,
        "m",
        384,
        Duration::from_secs(5),
    )
    .unwrap();
    let err = wrong.embed(&texts).await.unwrap_err();
    assert!(
        matches!(&err, EmbedError::Invalid(m) if m.contains("returned 8 dimensions, not the configured 384")),
        "{err}"
    );

    fake.push(Reply::status(401, &format!("bad key {key}")));
    let err = e.embed(&texts).await.unwrap_err();
    assert!(matches!(&err, EmbedError::Unavailable(_)), "{err}");
    assert!(
        err.to_string().contains("[redacted]") && !err.to_string().contains(key),
        "{err}"
    );
}
