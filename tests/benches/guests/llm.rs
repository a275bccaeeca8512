//! The model layer's speed: the local model's prompt and generation tokens
//! per second on this machine, and what the host interface adds to a call
//! (a guest asking through `warden:plugin/llm` against asking the router
//! directly, both answered by the loopback OpenAI-compatible server).
//!
//! ```text
//! WARDEN_BENCH=llm cargo bench -p warden-tests --bench guests
//! ```
//!
//! The local part needs the model files (`warden models fetch`, or the test
//! suite's fetch) under `WARDEN_DATA_DIR` or the suites' data dir.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use warden_api::llm::{Caller, ChatRequest, Message, Role};
use warden_core::{CallOptions, Engine, EngineConfig, Grant};
use warden_llm::local::LocalModel;
use warden_llm::models::{self, SMOLLM2};
use warden_llm::router::{LlmConfig, Router};
use warden_tests::artifacts::{CACHE_DIR, DATA_DIR, THINKER};
use warden_tests::fake_llm::FakeLlm;

pub fn main() {
    local_model();
    host_overhead();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn local_model() {
    let data = std::env::var_os("WARDEN_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DATA_DIR));
    let python = std::env::var("WARDEN_PYTHON").unwrap_or_else(|_| "python3".into());
    models::fetch(&data, &SMOLLM2, &python).expect("fetch the local model");
    let path = models::model_dir(&data, &SMOLLM2).join("model.gguf");
    let started = Instant::now();
    let model = LocalModel::load(&path, SMOLLM2.name).expect("load the model");
    println!("local: load {:.2} s", started.elapsed().as_secs_f64());

    // Prompt: a long user turn and a single new token.
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(40);
    let request = ChatRequest {
        messages: vec![Message::new(Role::User, long)],
        max_tokens: Some(1),
        ..ChatRequest::default()
    };
    model.complete(&request).expect("warm up");
    let mut rates = Vec::new();
    let mut prompt_time = Duration::ZERO;
    let mut prompt_tokens = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let c = model.complete(&request).expect("complete");
        let took = started.elapsed();
        prompt_time += took;
        prompt_tokens = c.usage.input_tokens;
        rates.push(c.usage.input_tokens as f64 / took.as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "local: prompt {} tokens: median {:.0} tokens/s",
        prompt_tokens,
        rates[rates.len() / 2]
    );
    let per_prompt = prompt_time / 5;

    // The same long system turn again (a schema, an agent's rules): its
    // state is kept, so only the new user turn is read.
    let with_system = |question: &str| ChatRequest {
        messages: vec![
            Message::new(Role::System, "You plan software work. ".repeat(60)),
            Message::new(Role::User, question),
        ],
        max_tokens: Some(1),
        ..ChatRequest::default()
    };
    let started = Instant::now();
    model
        .complete(&with_system("First question?"))
        .expect("complete");
    let first = started.elapsed();
    let mut again = Vec::new();
    for i in 0..5 {
        let started = Instant::now();
        model
            .complete(&with_system(&format!("Question {i}?")))
            .expect("complete");
        again.push(started.elapsed());
    }
    again.sort();
    println!(
        "local: a 400-token system turn: first request {:.0} ms, later ones (new user turn) median {:.0} ms",
        first.as_secs_f64() * 1e3,
        again[2].as_secs_f64() * 1e3
    );

    // Generation: a short prompt and 128 new tokens (unless it stops).
    let request = ChatRequest {
        messages: vec![Message::new(
            Role::User,
            "Write a long story about a lighthouse keeper.",
        )],
        max_tokens: Some(128),
        ..ChatRequest::default()
    };
    let short_prompt = ChatRequest {
        max_tokens: Some(1),
        ..request.clone()
    };
    let mut rates = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        model.complete(&short_prompt).expect("complete");
        let prompt_only = started.elapsed();
        let started = Instant::now();
        let c = model.complete(&request).expect("complete");
        let took = started.elapsed().saturating_sub(prompt_only);
        rates.push((c.usage.output_tokens - 1) as f64 / took.as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "local: generation: median {:.1} tokens/s (min {:.1}, max {:.1}); a {}-token prompt takes {:.0} ms",
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1],
        prompt_tokens,
        per_prompt.as_secs_f64() * 1e3
    );
}

fn host_overhead() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let fake = FakeLlm::start();
    let config = LlmConfig::parse(
        &format!(
            "version = 1\ndefault = \"fast\"\n[providers.openai]\nkind = \"openai\"\nbase-url = \"{}/v1\"\n[aliases]\nfast = \"openai/gpt-test\"\n",
            fake.origin()
        ),
        "bench",
    )
    .expect("config");
    let router = Arc::new(Router::new(config, None).expect("router"));
    let engine = Engine::new(&EngineConfig {
        cache_dir: Some(CACHE_DIR.into()),
        llm: Some(router.clone() as Arc<dyn warden_api::llm::Models>),
        ..EngineConfig::default()
    })
    .expect("engine");
    let plugin = engine.load_file(THINKER.as_ref()).expect("thinker");
    let options = CallOptions {
        grant: Grant {
            models: vec![warden_core::ModelName::new("fast").expect("model name")],
            ..Grant::default()
        },
        ..CallOptions::default()
    };
    let args = serde_json::json!({"messages": [{"role": "user", "content": "ping"}]}).to_string();
    let request = ChatRequest {
        messages: vec![Message::new(Role::User, "ping")],
        ..ChatRequest::default()
    };
    let caller = Caller {
        tenant: "default".into(),
        plugin: "bench".into(),
        ..Caller::default()
    };
    const N: usize = 2000;
    let mut direct = Vec::with_capacity(N);
    let mut guest = Vec::with_capacity(N);
    rt.block_on(async {
        for i in 0..N + 200 {
            let started = Instant::now();
            router.complete(&request, &caller).await.expect("direct");
            let d = started.elapsed();
            let started = Instant::now();
            let out = plugin.call_tool(&options, "complete", &args).await;
            let g = started.elapsed();
            assert!(matches!(out.result, Ok(Ok(_))), "{:?}", out.result);
            // The first calls warm the connection pool and caches.
            if i >= 200 {
                direct.push(d);
                guest.push(g);
            }
        }
    });
    direct.sort();
    guest.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "host path: router direct p50 {:.0} µs p99 {:.0} µs; through a guest p50 {:.0} µs p99 {:.0} µs; overhead p50 {:.0} µs",
        us(percentile(&direct, 0.5)),
        us(percentile(&direct, 0.99)),
        us(percentile(&guest, 0.5)),
        us(percentile(&guest, 0.99)),
        us(percentile(&guest, 0.5)) - us(percentile(&direct, 0.5)),
    );
}
