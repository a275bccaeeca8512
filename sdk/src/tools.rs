//! Calling the tools the operator granted to a role. Each call runs the
//! tool's plugin in a sandbox of its own; names are qualified
//! `plugin.tool`.
//!
//! ```no_run
//! use warden_sdk::serde_json::json;
//! use warden_sdk::tools;
//!
//! # fn run() -> Result<(), warden_sdk::ToolError> {
//! let written = tools::call(
//!     "fs.write_file",
//!     &json!({"path": "/workspace/hello.py", "content": "print('hi')\n"}),
//! )?;
//! println!("{written}");
//! # Ok(())
//! # }
//! ```

use serde_json::Value;

use crate::ToolError;
pub use crate::bindings::warden::plugin::types::ToolSpec;

/// The tools granted to this role, with qualified names.
pub fn list() -> Vec<ToolSpec> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::role_bindings::warden::plugin::tools::list_tools()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        Vec::new()
    }
}

/// Calls the tool `name` (`plugin.tool`) with JSON arguments; its JSON
/// result.
pub fn call(name: &str, arguments: &Value) -> Result<Value, ToolError> {
    let text = call_raw(name, &arguments.to_string())?;
    serde_json::from_str(&text).map_err(|e| {
        ToolError::Failed(format!(
            "tool {name} returned a result that is not JSON: {e}"
        ))
    })
}

/// As [`call`], with the arguments and the result as JSON text.
pub fn call_raw(name: &str, arguments: &str) -> Result<String, ToolError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::role_bindings::warden::plugin::tools::call_tool(name, arguments)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = arguments;
        Err(ToolError::Denied(format!(
            "tool {name}: tools are only available inside warden (build for wasm32-wasip2)"
        )))
    }
}

/// Whether a tool of that qualified name is granted.
pub fn has(name: &str) -> bool {
    list().iter().any(|t| t.name == name)
}

/// A tool error as one line: `denied: …`, `failed: …`.
pub fn describe(e: &ToolError) -> String {
    match e {
        ToolError::InvalidArguments(m) => format!("invalid arguments: {m}"),
        ToolError::UnknownTool(m) => format!("unknown tool: {m}"),
        ToolError::Denied(m) => format!("denied: {m}"),
        ToolError::Failed(m) => format!("failed: {m}"),
    }
}
