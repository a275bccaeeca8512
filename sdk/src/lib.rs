//! Write a [warden](https://github.com/warden-rt/warden) tool plugin in a few
//! lines: typed arguments, a JSON Schema generated from them, dispatch by
//! tool name, logging into the host's trace, and a manifest embedded in the
//! `.wasm` at build time.
//!
//! ```
//! use warden_sdk::{Deserialize, JsonSchema, Serialize, ToolError, Toolbox};
//!
//! /// Arguments of `greet`; doc comments become the schema's descriptions.
//! #[derive(Deserialize, JsonSchema)]
//! struct GreetArgs {
//!     /// Who to greet.
//!     name: String,
//! }
//!
//! #[derive(Serialize)]
//! struct Greeting {
//!     message: String,
//! }
//!
//! fn greet(args: GreetArgs) -> Result<Greeting, ToolError> {
//!     if args.name.is_empty() {
//!         return Err(ToolError::InvalidArguments("`name` is empty".into()));
//!     }
//!     warden_sdk::log::info(format!("greeting {}", args.name));
//!     Ok(Greeting { message: format!("Hello, {}!", args.name) })
//! }
//!
//! fn toolbox() -> Toolbox {
//!     Toolbox::new().tool("greet", "Greets someone by name", greet)
//! }
//!
//! // Exports `warden:plugin/tool` for the component.
//! warden_sdk::export!(toolbox);
//! // Puts the manifest into the `.wasm` (path relative to this file).
//! # /*
//! warden_sdk::embed_manifest!("../warden.toml");
//! # */
//!
//! # fn main() {
//! // The toolbox is plain Rust, so it is testable natively:
//! let out = toolbox().call("greet", r#"{"name":"Ada"}"#).unwrap();
//! assert_eq!(out, r#"{"message":"Hello, Ada!"}"#);
//! # }
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2 --release`; the output is a
//! component that `warden tool call` runs directly.

// Lets the generated bindings name this crate the way plugins do.
extern crate self as warden_sdk;

use std::fmt;

pub mod agent;
pub mod exec;
pub mod http;
pub mod llm;
pub mod memory;
pub mod role;
pub mod tools;

pub use schemars::{self, JsonSchema};
pub use serde::{self, Deserialize, Serialize};
pub use serde_json;

/// The bindings of the `tool-plugin` world, generated from warden's WIT.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        // The widest tool world: a plugin that never calls `exec` does not
        // import it (unused imports are left out of the component).
        world: "tool-plugin-ext",
        pub_export_macro: true,
        export_macro_name: "__export_tool_plugin",
        default_bindings_module: "warden_sdk::bindings",
        runtime_path: "warden_sdk::__private::wit_bindgen::rt",
    });
}

/// The bindings of the `role-plugin` world. The interfaces it shares with
/// the tool worlds are the same Rust types as in [`bindings`].
#[doc(hidden)]
pub mod role_bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "role-plugin",
        with: {
            "warden:plugin/types@0.1.0": crate::bindings::warden::plugin::types,
            "warden:plugin/log@0.1.0": crate::bindings::warden::plugin::log,
            "warden:plugin/llm@0.1.0": crate::bindings::warden::plugin::llm,
            "warden:plugin/memory@0.1.0": crate::bindings::warden::plugin::memory,
        },
        pub_export_macro: true,
        export_macro_name: "__export_role_plugin",
        default_bindings_module: "warden_sdk::role_bindings",
        runtime_path: "warden_sdk::__private::wit_bindgen::rt",
    });
}

/// A tool's failure, as the host sees it. Use `?` on `std::io::Error` and
/// `serde_json::Error` for [`ToolError::Failed`].
pub use bindings::warden::plugin::types::ToolError;

impl From<std::io::Error> for ToolError {
    fn from(e: std::io::Error) -> Self {
        ToolError::Failed(e.to_string())
    }
}

impl From<serde_json::Error> for ToolError {
    fn from(e: serde_json::Error) -> Self {
        ToolError::Failed(e.to_string())
    }
}

/// This call's idempotency key when a run's task made it (`RUN/TASK/N`, N
/// the call's position in the task), `None` otherwise. It stays the same
/// when the task is retried or taken over by another node after a crash,
/// while a call the journal already answered is not made again at all: key
/// a side effect outside warden (a payment, a message) by it so that it
/// happens once.
pub fn call_key() -> Option<String> {
    std::env::var("WARDEN_CALL_KEY").ok()
}

/// Arguments of a tool that takes none.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

type Handler = Box<dyn Fn(&str) -> Result<String, ToolError>>;

struct Tool {
    name: String,
    description: String,
    schema: fn() -> schemars::Schema,
    handler: Handler,
}

/// The tools of a plugin, dispatched by name.
#[derive(Default)]
pub struct Toolbox {
    tools: Vec<Tool>,
}

impl fmt::Debug for Toolbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.tools.iter().map(|t| &t.name))
            .finish()
    }
}

impl Toolbox {
    pub fn new() -> Self {
        Toolbox::default()
    }

    /// Adds a tool. `A` is parsed from the call's JSON arguments and its JSON
    /// Schema is what `list-tools` advertises; `R` is serialised as the
    /// result.
    pub fn tool<A, R, F>(mut self, name: &str, description: &str, handler: F) -> Self
    where
        A: serde::de::DeserializeOwned + JsonSchema,
        R: Serialize,
        F: Fn(A) -> Result<R, ToolError> + 'static,
    {
        let tool_name = name.to_string();
        self.tools.push(Tool {
            name: name.to_string(),
            description: description.to_string(),
            schema: || schemars::schema_for!(A),
            handler: Box::new(move |arguments| {
                let arguments = if arguments.trim().is_empty() {
                    "{}"
                } else {
                    arguments
                };
                let args: A = serde_json::from_str(arguments)
                    .map_err(|e| ToolError::InvalidArguments(format!("{tool_name}: {e}")))?;
                let result = handler(args)?;
                serde_json::to_string(&result).map_err(|e| {
                    ToolError::Failed(format!("{tool_name}: cannot serialise the result: {e}"))
                })
            }),
        });
        self
    }

    /// Adds a tool that takes its arguments and returns its result as raw
    /// JSON text, with a hand-written JSON Schema. For tools whose input does
    /// not fit a Rust type; the host rejects a result that is not JSON.
    pub fn raw_tool<F>(
        mut self,
        name: &str,
        description: &str,
        schema: fn() -> schemars::Schema,
        handler: F,
    ) -> Self
    where
        F: Fn(&str) -> Result<String, ToolError> + 'static,
    {
        self.tools.push(Tool {
            name: name.to_string(),
            description: description.to_string(),
            schema,
            handler: Box::new(handler),
        });
        self
    }

    /// The tools' names, descriptions and input schemas (JSON).
    pub fn specs(&self) -> Vec<(String, String, String)> {
        self.tools
            .iter()
            .map(|t| {
                let schema = serde_json::to_string(&(t.schema)()).unwrap_or_else(|_| "{}".into());
                (t.name.clone(), t.description.clone(), schema)
            })
            .collect()
    }

    /// Runs the tool `name` with JSON `arguments`.
    pub fn call(&self, name: &str, arguments: &str) -> Result<String, ToolError> {
        match self.tools.iter().find(|t| t.name == name) {
            Some(tool) => (tool.handler)(arguments),
            None => {
                let known: Vec<&str> = self.tools.iter().map(|t| t.name.as_str()).collect();
                Err(ToolError::UnknownTool(format!(
                    "no tool named {name:?}; this plugin has: {}",
                    known.join(", ")
                )))
            }
        }
    }
}

/// Logging into the host's trace, tagged there with the plugin and tenant.
/// Outside wasm (a plugin's native unit tests) lines go to stderr.
pub mod log {
    use crate::bindings::warden::plugin::log::Level;

    fn log(level: Level, message: &str) {
        #[cfg(target_arch = "wasm32")]
        crate::bindings::warden::plugin::log::log(level, message);
        #[cfg(not(target_arch = "wasm32"))]
        eprintln!("[{level:?}] {message}");
    }

    pub fn trace(message: impl AsRef<str>) {
        log(Level::Trace, message.as_ref());
    }
    pub fn debug(message: impl AsRef<str>) {
        log(Level::Debug, message.as_ref());
    }
    pub fn info(message: impl AsRef<str>) {
        log(Level::Info, message.as_ref());
    }
    pub fn warn(message: impl AsRef<str>) {
        log(Level::Warn, message.as_ref());
    }
    pub fn error(message: impl AsRef<str>) {
        log(Level::Error, message.as_ref());
    }
}

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    use crate::Toolbox;
    use crate::bindings::warden::plugin::types::{ToolError, ToolSpec};

    pub fn list(toolbox: &Toolbox) -> Vec<ToolSpec> {
        toolbox
            .specs()
            .into_iter()
            .map(|(name, description, input_schema)| ToolSpec {
                name,
                description,
                input_schema,
            })
            .collect()
    }

    pub fn call(toolbox: &Toolbox, name: &str, arguments: &str) -> Result<String, ToolError> {
        toolbox.call(name, arguments)
    }
}

/// Exports `warden:plugin/tool` from a function that builds the plugin's
/// [`Toolbox`].
#[macro_export]
macro_rules! export {
    ($toolbox:path) => {
        #[doc(hidden)]
        struct __WardenToolPlugin;

        impl $crate::bindings::exports::warden::plugin::tool::Guest for __WardenToolPlugin {
            fn list_tools() -> ::std::vec::Vec<$crate::bindings::warden::plugin::types::ToolSpec> {
                $crate::__private::list(&$toolbox())
            }

            fn call_tool(
                name: ::std::string::String,
                arguments: ::std::string::String,
            ) -> ::std::result::Result<::std::string::String, $crate::ToolError> {
                $crate::__private::call(&$toolbox(), &name, &arguments)
            }
        }

        // Only wasm has the component exports; a native build (the plugin's
        // own unit tests) keeps the plain Rust functions.
        #[cfg(target_arch = "wasm32")]
        $crate::bindings::__export_tool_plugin!(__WardenToolPlugin with_types_in $crate::bindings);
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn() -> $crate::Toolbox = $toolbox;
    };
}

/// Embeds a manifest file (TOML, path relative to the invoking file) in the
/// `.wasm` as the `warden:manifest` custom section. `warden plugin inspect`
/// shows it and checks it.
#[macro_export]
macro_rules! embed_manifest {
    ($path:literal) => {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[used]
        #[unsafe(link_section = "warden:manifest")]
        static __WARDEN_MANIFEST: [u8; include_bytes!($path).len()] = *include_bytes!($path);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, JsonSchema)]
    struct Add {
        a: i64,
        b: i64,
    }

    fn toolbox() -> Toolbox {
        Toolbox::new()
            .tool("add", "Adds", |x: Add| Ok(x.a + x.b))
            .tool("nothing", "Takes nothing", |_: NoArgs| Ok("ok"))
    }

    #[test]
    fn dispatches_by_name_and_reports_bad_input() {
        let tb = toolbox();
        assert_eq!(tb.call("add", r#"{"a":2,"b":3}"#).unwrap(), "5");
        assert_eq!(tb.call("nothing", "").unwrap(), "\"ok\"");
        match tb.call("add", r#"{"a":2}"#) {
            Err(ToolError::InvalidArguments(m)) => assert!(m.contains("missing field `b`"), "{m}"),
            other => panic!("{other:?}"),
        }
        match tb.call("sub", "{}") {
            Err(ToolError::UnknownTool(m)) => {
                assert_eq!(m, "no tool named \"sub\"; this plugin has: add, nothing")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn schemas_come_from_the_argument_types() {
        let specs = toolbox().specs();
        let schema: serde_json::Value = serde_json::from_str(&specs[0].2).unwrap();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["required"], serde_json::json!(["a", "b"]));
    }
}
