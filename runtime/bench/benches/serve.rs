//! Tool calls over HTTP against the same call in process, in one run.
//!
//! ```text
//! cargo bench -p warden-bench --bench serve
//! ```
//!
//! 1. In process: `hello__greet` through the tenant's catalog (a fresh
//!    sandbox per call, as the server makes it), one caller, then as many
//!    callers as cores.
//! 2. Over HTTP/1.1 keep-alive on loopback: the same call through
//!    `POST /v1/tools/hello__greet/call` (key check, rate and call quotas,
//!    the daily-quota hold, the audit entry), at 1, 16 and 64 clients
//!    sharing a pool of keep-alive connections. The clients run on their
//!    own runtime in this process, so they share the machine's cores with
//!    the server.
//! 3. A quiet tenant's calls (one client, on a thread of its own) alone,
//!    then beside a tenant flooding the server with 64 clients: the quiet
//!    tenant's p99 both times.
//!
//! Each figure is calls per second and p50/p99 latency from the client's
//! side; the ratios compare HTTP with the in-process call measured here.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use warden_bench::Sample;
use warden_core::{Engine, EngineConfig};
use warden_server::operator::{Actor, KeySpec, NewTenant, Operator};
use warden_server::tenant::Quotas;
use warden_server::{Hosted, Scope, Server};
use warden_tests::artifacts::{CACHE_DIR, HELLO, RUNTIME_DIR};

const ARGS: &str = r#"{"name":"bench"}"#;
const PHASE: Duration = Duration::from_secs(4);

fn generous() -> Quotas {
    Quotas {
        requests_per_second: 1_000_000,
        burst: 1_000_000,
        concurrent_calls: 64,
        queued_calls: 1024,
        ..Quotas::default()
    }
}

fn main() {
    let data = tempfile::tempdir().expect("a temp dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the server's runtime");
    let (base, keys) = runtime.block_on(start(data.path()));

    let in_process = runtime.block_on(in_process());

    let clients = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the clients' runtime");
    let mut http = Vec::new();
    for n in [1, 16, 64] {
        http.push((n, clients.block_on(load(&base, &keys[0], n, PHASE))));
    }
    // The quiet tenant's client has a thread of its own, as a client on
    // another machine would: on the flood's runtime it would wait behind
    // the flood's own clients.
    let quiet = || {
        let (base, key) = (base.clone(), keys[1].clone());
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the quiet client's runtime")
                .block_on(load(&base, &key, 1, PHASE))
        })
    };
    let quiet_alone = quiet().join().expect("the quiet client");
    let beside = quiet();
    let flood = clients.block_on(load(&base, &keys[2], 64, PHASE));
    let quiet_flooded = beside.join().expect("the quiet client");
    let beside = quiet();
    let capped = clients.block_on(load(&base, &keys[3], 64, PHASE));
    let quiet_capped = beside.join().expect("the quiet client");
    let ((one, one_time), (all, all_time), cores) = in_process;
    println!();
    println!("hello__greet, a fresh sandbox per call");
    println!("{}", one.line("in process, 1 caller", one_time));
    println!(
        "{}",
        all.line(&format!("in process, {cores} callers"), all_time)
    );
    for (n, (sample, elapsed)) in &http {
        println!("{}", sample.line(&format!("HTTP, {n} client(s)"), *elapsed));
    }
    let (_, (http_one, _)) = &http[0];
    println!(
        "HTTP over in process, 1 caller: p50 ×{:.2}, p99 ×{:.2}",
        http_one.percentile(0.5) / one.percentile(0.5),
        http_one.percentile(0.99) / one.percentile(0.99)
    );
    let (_, (http_most, most_time)) = &http[2];
    println!(
        "HTTP at 64 clients over in process at {cores} callers, calls/s: ×{:.2}",
        (http_most.len() as f64 / most_time.as_secs_f64())
            / (all.len() as f64 / all_time.as_secs_f64())
    );
    println!();
    println!(
        "{}",
        quiet_alone.0.line("quiet tenant alone", quiet_alone.1)
    );
    println!(
        "{}",
        quiet_flooded
            .0
            .line("quiet tenant beside a flood", quiet_flooded.1)
    );
    println!(
        "{}",
        flood.0.line("the flooding tenant, 64 clients", flood.1)
    );
    println!(
        "quiet tenant's p99 under the flood: ×{:.2} its p99 alone",
        quiet_flooded.0.percentile(0.99) / quiet_alone.0.percentile(0.99)
    );
    println!(
        "{}",
        quiet_capped
            .0
            .line("quiet tenant beside a capped flood", quiet_capped.1)
    );
    println!(
        "{}",
        capped
            .0
            .line("flooding tenant at 2 sandboxes, 64 cl.", capped.1)
    );
    println!(
        "quiet tenant's p99 under the capped flood: ×{:.2} its p99 alone",
        quiet_capped.0.percentile(0.99) / quiet_alone.0.percentile(0.99)
    );
}

/// A server with the hello plugin and four tenants (`bench`, `quiet`,
/// `flood`, `capped`); its base URL and their keys.
async fn start(data: &Path) -> (String, Vec<String>) {
    let operator = Operator::open(data).expect("the control store");
    let mut keys = Vec::new();
    for name in ["bench", "quiet", "flood", "capped"] {
        // `capped` floods too, but its quota gives it the machine's two
        // sandboxes at once; its other calls wait their turn.
        let quotas = match name {
            "capped" => Quotas {
                concurrent_calls: 2,
                ..generous()
            },
            _ => generous(),
        };
        operator
            .add_tenant(
                NewTenant {
                    name: name.into(),
                    policy: None,
                    plugins: vec!["hello".into()],
                    quotas: Some(quotas),
                },
                Actor::Shell,
            )
            .await
            .expect("a tenant");
        let spec = KeySpec {
            tenant: Some(name.into()),
            scopes: vec![Scope::ToolsCall],
            ..KeySpec::default()
        };
        keys.push(
            operator
                .create_key(spec, Actor::Shell)
                .await
                .expect("a key")
                .0
                .token,
        );
    }
    let engine = engine();
    let hello = engine.load_file(Path::new(HELLO)).expect("hello loads");
    let hosted = Hosted {
        engine,
        plugins: vec![hello],
        plugin_dirs: Vec::new(),
        memory: None,
        cluster: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("its address"));
    tokio::spawn(Server::new(operator, hosted).serve(listener, std::future::pending()));
    (base, keys)
}

fn engine() -> Engine {
    Engine::new(&EngineConfig {
        cache_dir: Some(CACHE_DIR.into()),
        runtime_dir: Some(RUNTIME_DIR.into()),
        max_concurrent_calls: 256,
        ..EngineConfig::default()
    })
    .expect("the engine")
}

type Timed = (Sample, Duration);

/// The same call in process: one caller, then one per core.
async fn in_process() -> (Timed, Timed, usize) {
    let engine = engine();
    let hello = engine.load_file(Path::new(HELLO)).expect("hello loads");
    let catalog = Arc::new(
        warden_mcp::Catalog::new(
            vec![warden_mcp::Plugin {
                plugin: hello,
                options: warden_core::CallOptions::default(),
            }],
            256,
        )
        .await
        .expect("the catalog"),
    );
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let one = drive(1, PHASE, {
        let catalog = catalog.clone();
        move || {
            let catalog = catalog.clone();
            async move {
                let outcome = catalog.call_outcome("hello__greet", ARGS).await;
                assert!(matches!(outcome.map(|o| o.result), Some(Ok(Ok(_)))));
            }
        }
    })
    .await;
    let all = drive(cores, PHASE, move || {
        let catalog = catalog.clone();
        async move {
            let outcome = catalog.call_outcome("hello__greet", ARGS).await;
            assert!(matches!(outcome.map(|o| o.result), Some(Ok(Ok(_)))));
        }
    })
    .await;
    (one, all, cores)
}

/// `clients` loops of `call` for `phase` (after a short warm-up), each
/// call timed.
async fn drive<F, Fut>(clients: usize, phase: Duration, call: F) -> Timed
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let warm_until = Instant::now() + Duration::from_millis(300);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < warm_until {
                call().await;
            }
            let end = Instant::now() + phase;
            let mut times = Vec::new();
            while Instant::now() < end {
                let at = Instant::now();
                call().await;
                times.push(at.elapsed().as_secs_f64() * 1e6);
            }
            times
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("a client"));
    }
    (Sample::new(all), phase)
}

/// `clients` HTTP clients, each on its own keep-alive connection, calling
/// as `key` for `phase`.
async fn load(base: &str, key: &str, clients: usize, phase: Duration) -> Timed {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("a client");
    let url = format!("{base}/v1/tools/hello__greet/call");
    let key = key.to_string();
    drive(clients, phase, move || {
        let (http, url, key) = (http.clone(), url.clone(), key.clone());
        async move {
            let response = http
                .post(&url)
                .bearer_auth(&key)
                .header("content-type", "application/json")
                .body(ARGS)
                .send()
                .await
                .expect("the server answers");
            assert!(response.status().is_success(), "{}", response.status());
            let _ = response.bytes().await;
        }
    })
    .await
}
