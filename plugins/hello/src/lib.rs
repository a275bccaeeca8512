//! The smallest warden plugin: one tool, no capabilities.
//!
//! ```text
//! warden tool call target/plugins/hello.wasm greet --args '{"name":"world"}'
//! ```

use warden_sdk::{Deserialize, JsonSchema, Serialize, ToolError, Toolbox};

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GreetArgs {
    /// Who to greet.
    pub name: String,
}

#[derive(Serialize)]
pub struct Greeting {
    pub message: String,
}

pub fn greet(args: GreetArgs) -> Result<Greeting, ToolError> {
    if args.name.trim().is_empty() {
        return Err(ToolError::InvalidArguments(
            "`name` is empty; pass {\"name\": \"...\"}".into(),
        ));
    }
    Ok(Greeting {
        message: format!("Hello, {}!", args.name),
    })
}

pub fn toolbox() -> Toolbox {
    Toolbox::new().tool("greet", "Greets someone by name", greet)
}

warden_sdk::export!(toolbox);
warden_sdk::embed_manifest!("../warden.toml");
