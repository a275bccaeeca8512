//! warden's sandbox core: load a WebAssembly plugin once, then run each call
//! in a fresh sandbox with a fuel budget, a wall-clock deadline, a memory cap
//! and only the directories, hosts, models and memory namespaces the
//! operator granted.
//!
//! ```no_run
//! use warden_core::{CallOptions, Engine, EngineConfig, Grant, DirGrant, DirMode};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::new(&EngineConfig::default())?;
//! let plugin = engine.load_file("target/plugins/fs.wasm".as_ref())?;
//!
//! let options = CallOptions {
//!     grant: Grant {
//!         dirs: vec![DirGrant::parse("./data::/data", DirMode::ReadOnly)?],
//!         ..Grant::default()
//!     },
//!     limits: plugin.limits(Default::default(), Default::default())?,
//!     ..CallOptions::default()
//! };
//! let outcome = plugin
//!     .call_tool(&options, "read_file", r#"{"path":"/data/notes.txt"}"#)
//!     .await;
//! match outcome.result {
//!     Ok(Ok(json)) => println!("{json}"),
//!     Ok(Err(tool_error)) => eprintln!("the tool failed: {tool_error}"),
//!     Err(call_error) => eprintln!("the sandbox stopped it: {call_error}"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The pieces, from the top down (each file imports only files below it):
//! [`engine`] (the process-wide engine, linker, compiled-artifact cache and
//! language runtimes), [`tools`] (the tools granted to a role), [`exec`]
//! (running untrusted code), [`plugin`] (a compiled plugin and its calls),
//! [`role`], [`call`] (one call's options, outcome and sandbox), the
//! per-call store state and the host side of each interface under `host/`
//! (one file each, owning its context and its view of the store),
//! [`policy`] (policy files and the effective capability: manifest ∩
//! grant), [`manifest`], and the leaves: [`grant`], [`limits`], [`net`],
//! [`tool`], [`stdio`], [`field`], [`document`] (guest JSON, checked before
//! it is parsed). The services behind `llm` and `memory`
//! are traits from `warden-api`, so this crate compiles no model runtime
//! and no vector database.

mod bindings;
pub mod call;
pub mod datadir;
pub mod document;
pub mod engine;
mod epoch;
pub mod exec;
pub mod field;
pub mod grant;
mod host;
pub mod limits;
pub mod manifest;
mod nested;
pub mod net;
pub mod plugin;
pub mod policy;
pub mod role;
mod scope;
mod sections;
pub mod signature;
mod snapshot;
mod state;
pub mod stdio;
pub mod tool;
pub mod tools;
mod warm;

pub use call::{CALL_KEY_VAR, CallError, CallOptions, CallOutcome, Phases, RunInput, Usage};
pub use engine::{Engine, EngineConfig, EngineError, LoadError, SlowCompile};
pub use epoch::EPOCH_TICK;
pub use exec::{ExecError, Language, Scratch};
pub use field::FieldError;
pub use grant::{DirGrant, DirMode, Grant, GrantError, ModelName, NamespaceGrant, TenantId};
pub use host::tools::{ToolBox, ToolInvocation, ToolReturn};
pub use limits::{LimitKind, LimitSettings, Limits};
pub use manifest::{Manifest, PluginKind};
pub use net::HostPattern;
pub use plugin::{CompiledPlugin, ComponentKind};
pub use policy::{Policy, PolicyError};
pub use role::{Dependency, NewTask, Outcome, RoleError, RoleSpec, Task, TaskContext};
pub use scope::RunScope;
pub use tool::{ToolCallKey, ToolCallReport, ToolError, ToolObserver, ToolSpec};
pub use tools::{ToolSet, ToolSetError};
