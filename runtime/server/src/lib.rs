//! `warden serve`: one process hosting many tenants. An API key
//! (`wdn_<id>_<secret>`) decides who is calling; each tenant's policy is
//! the ceiling of what its calls may reach; quotas admit its requests and
//! calls; every decision lands in its hash-chained audit log.
//!
//! ```no_run
//! use warden_core::{Engine, EngineConfig};
//! use warden_server::operator::{Actor, KeySpec, NewTenant, Operator};
//! use warden_server::{Hosted, Scope, Server};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let data = std::path::Path::new("/var/lib/warden");
//! let operator = Operator::open(data)?;
//! let tenant = NewTenant { name: "acme".into(), ..NewTenant::default() };
//! operator.add_tenant(tenant, Actor::Shell).await?;
//! let spec = KeySpec {
//!     tenant: Some("acme".into()),
//!     scopes: vec![Scope::ToolsCall],
//!     ..KeySpec::default()
//! };
//! let (key, _) = operator.create_key(spec, Actor::Shell).await?;
//! println!("{}", key.token);
//!
//! let engine = Engine::new(&EngineConfig::default())?;
//! let fs = engine.load_file("target/plugins/fs.wasm".as_ref())?;
//! let hosted = Hosted {
//!     engine,
//!     plugins: vec![fs],
//!     plugin_dirs: vec!["target/plugins".into()],
//!     memory: None,
//!     cluster: None,
//! };
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! Server::new(operator, hosted).serve(listener, std::future::pending()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! The layers, bottom up: [`control`] (the control state's trait) and
//! [`sqlite`] (one node's), [`key`], [`tenant`] and [`audit`] (the records),
//! [`operator`] (the operations on them, shared by the CLI and the admin
//! API), [`quota`] and [`hosting`] (admission, and each tenant's tools),
//! `api` (the routes) and [`serve`].

mod api;
pub mod audit;
pub mod cluster;
pub mod control;
mod dashboard;
pub mod hosting;
pub mod key;
pub mod kv;
pub mod memories;
pub mod metrics;
pub mod operator;
pub mod quota;
mod run_answers;
pub mod runs;
pub mod serve;
pub mod sqlite;
pub mod tenant;
pub mod usage;
pub mod workspace;

pub use api::openapi::ApiDoc;
pub use key::Scope;
pub use operator::{Operator, OperatorError};
pub use serve::{Hosted, ServeError, Server};
