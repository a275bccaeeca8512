//! `warden serve` as a client sees it: a real server on 127.0.0.1, a real
//! HTTP client, guests built from source. Two tenants, whose keys never
//! reach each other's tools or records.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod api;
mod dashboard;
mod mcp;
mod memory;
mod runs;
mod schema;
mod tenants;
mod usage;

use std::net::SocketAddr;
use std::path::Path;

use reqwest::StatusCode;
use serde_json::{Value, json};
use warden_core::{Engine, EngineConfig};
use warden_server::memories::CountedMemories;
use warden_server::operator::{Actor, KeySpec, NewTenant, Operator};
use warden_server::tenant::Quotas;
use warden_server::{Hosted, Scope, Server};
use warden_tests::artifacts::{CACHE_DIR, RUNTIME_DIR};

/// A server on a loopback port, stopped when dropped.
pub struct TestServer {
    pub data: tempfile::TempDir,
    pub base: String,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A tenant to set up before the server starts, and the key made for it.
pub struct Tenant {
    pub name: &'static str,
    /// Its policy (TOML).
    pub policy: Option<&'static str>,
    pub plugins: &'static [&'static str],
    pub quotas: Quotas,
    pub scopes: &'static [Scope],
}

impl Tenant {
    pub fn new(name: &'static str) -> Tenant {
        Tenant {
            name,
            policy: None,
            plugins: &[],
            quotas: Quotas::default(),
            scopes: &[Scope::ToolsCall, Scope::AuditRead],
        }
    }
}

impl TestServer {
    /// Starts a server with `plugins` loaded and `tenants` added; returns it
    /// and one key per tenant, in order.
    pub async fn start(plugins: &[&str], tenants: &[Tenant]) -> (TestServer, Vec<String>) {
        TestServer::start_with_dirs(plugins, tenants, Vec::new()).await
    }

    /// The same, with runs finding plugins by name in `plugin_dirs`.
    pub async fn start_with_dirs(
        plugins: &[&str],
        tenants: &[Tenant],
        plugin_dirs: Vec<std::path::PathBuf>,
    ) -> (TestServer, Vec<String>) {
        TestServer::start_with(plugins, tenants, plugin_dirs, None).await
    }

    /// The same, with a memory store.
    pub async fn start_with(
        plugins: &[&str],
        tenants: &[Tenant],
        plugin_dirs: Vec<std::path::PathBuf>,
        memory: Option<std::sync::Arc<dyn warden_api::memory::Memories>>,
    ) -> (TestServer, Vec<String>) {
        let data = tempfile::tempdir().unwrap();
        let operator = std::sync::Arc::new(Operator::open(data.path()).unwrap());
        // As `warden serve` layers it: stores count against the quota.
        let memory = memory.map(|store| {
            std::sync::Arc::new(CountedMemories::new(store, operator.clone()))
                as std::sync::Arc<dyn warden_api::memory::Memories>
        });
        let mut keys = Vec::new();
        for t in tenants {
            operator
                .add_tenant(
                    NewTenant {
                        name: t.name.into(),
                        policy: t.policy.map(String::from),
                        plugins: t.plugins.iter().map(|p| p.to_string()).collect(),
                        quotas: Some(t.quotas),
                    },
                    Actor::Shell,
                )
                .await
                .unwrap();
            keys.push(key(&operator, Some(t.name), t.scopes).await);
        }
        let engine = Engine::new(&EngineConfig {
            cache_dir: Some(CACHE_DIR.into()),
            runtime_dir: Some(RUNTIME_DIR.into()),
            max_concurrent_calls: 16,
            // As `warden serve` makes its engine.
            warm_instances: 2,
            ..EngineConfig::default()
        })
        .unwrap();
        let loaded = plugins
            .iter()
            .map(|p| engine.load_file(Path::new(p)).unwrap())
            .collect();
        let hosted = Hosted {
            cluster: None,
            engine,
            plugins: loaded,
            plugin_dirs,
            memory,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = Server::new(operator, hosted);
        tokio::spawn(async move {
            server
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        let server = TestServer {
            data,
            base: format!("http://{addr}"),
            client: client(),
            stop: Some(stop),
        };
        (server, keys)
    }

    /// A second handle on the server's control state (SQLite is shared).
    pub fn operator(&self) -> Operator {
        Operator::open(self.data.path()).unwrap()
    }

    pub async fn get(&self, path: &str, key: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        answer(request.send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> (StatusCode, Value) {
        let mut request = self.client.post(format!("{}{path}", self.base)).json(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        answer(request.send().await.unwrap()).await
    }

    pub async fn call(&self, key: &str, tool: &str, arguments: Value) -> (StatusCode, Value) {
        self.post(&format!("/v1/tools/{tool}/call"), Some(key), &arguments)
            .await
    }
}

/// A plain-HTTP client (reqwest wants a TLS provider chosen even so).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// The status and the JSON body (`null` for an empty one).
pub async fn answer(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: not JSON ({e}): {text}"))
    };
    (status, body)
}

/// A key for `tenant` (`None`: an operator key) with `scopes`.
pub async fn key(operator: &Operator, tenant: Option<&str>, scopes: &[Scope]) -> String {
    let spec = KeySpec {
        tenant: tenant.map(String::from),
        scopes: scopes.to_vec(),
        ..KeySpec::default()
    };
    operator
        .create_key(spec, Actor::Shell)
        .await
        .unwrap()
        .0
        .token
}

/// Asserts an error answer: its status, its code, and a message saying
/// `says`.
pub fn assert_error(answer: &(StatusCode, Value), status: StatusCode, code: &str, says: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    assert_eq!(body["error"]["code"], json!(code), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{message:?} does not say {says:?}");
}
