//! Local embedding throughput: texts per second of about 20 and about 200
//! words through all-MiniLM-L6-v2 on this machine, in batches.
//!
//! ```text
//! cargo bench -p warden-memory --bench embed
//! ```
//!
//! Needs the model files (`warden models fetch`) under `WARDEN_DATA_DIR` or
//! the test suites' data dir.

use std::path::PathBuf;
use std::time::Instant;

use warden_llm::models::{self, MINILM};
use warden_memory::embed::LocalEmbedder;
use warden_tests::artifacts::DATA_DIR;

fn main() {
    let data = std::env::var_os("WARDEN_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DATA_DIR));
    let python = std::env::var("WARDEN_PYTHON").unwrap_or_else(|_| "python3".into());
    models::fetch(&data, &MINILM, &python).expect("fetch MiniLM");
    let started = Instant::now();
    let embedder = LocalEmbedder::load(&data).expect("load MiniLM");
    println!("embed: load {:.2} s", started.elapsed().as_secs_f64());
    let words = "agents remember what they read through the host memory interface ";
    for (label, repeat) in [("~20 words", 2), ("~200 words", 20)] {
        let texts: Vec<String> = (0..256)
            .map(|i| format!("{i} {}", words.repeat(repeat)))
            .collect();
        embedder.embed_blocking(&texts[..32]).expect("warm up");
        let mut rates = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let vectors = embedder.embed_blocking(&texts).expect("embed");
            assert_eq!(vectors.len(), texts.len());
            rates.push(texts.len() as f64 / started.elapsed().as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        println!("embed: {label}: median {:.0} texts/s", rates[1]);
    }
}
