//! warden's sandbox core: load a WebAssembly tool plugin once, then run each
//! call in a fresh sandbox with a fuel budget, a wall-clock deadline, a memory
//! cap and only the directories and hosts the operator granted.
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
//! The pieces, one file each: [`engine`] (the process-wide engine, linker,
//! epoch ticker and compiled-artifact cache), [`plugin`] (a compiled plugin),
//! [`call`] (one sandboxed call), [`limits`], [`manifest`], [`policy`] (grants
//! and the manifest ceiling), [`net`] (outbound HTTP policy), and the host
//! side of each interface under `host/`.

mod bindings;
pub mod call;
pub mod engine;
pub mod exec;
mod host;
pub mod limits;
pub mod manifest;
pub mod net;
pub mod plugin;
pub mod policy;
pub mod role;
mod state;
pub mod stdio;
pub mod tools;

pub use call::{CallError, CallOptions, CallOutcome, RunInput, RunScope, Usage};
pub use engine::{Engine, EngineConfig, EngineError, LoadError};
pub use exec::{ExecError, Language, Scratch};
pub use limits::{LimitKind, LimitSettings, Limits};
pub use manifest::{Manifest, PluginKind};
pub use net::HostPattern;
pub use plugin::{CompiledPlugin, ComponentKind, ToolError, ToolSpec};
pub use policy::{DirGrant, DirMode, Grant, NamespaceGrant, Policy, TenantId};
pub use role::{Dependency, NewTask, Outcome, RoleError, RoleSpec, Task, TaskContext};
pub use tools::{ToolCallKey, ToolCallReport, ToolObserver, ToolSet};
pub use warden_memory;
