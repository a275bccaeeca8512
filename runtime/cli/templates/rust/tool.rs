//! A warden tool plugin: `greet`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use warden_sdk::{ToolError, Toolbox};

/// Arguments of `greet`; doc comments become the schema's descriptions.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GreetArgs {
    /// Who to greet.
    pub name: String,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Greeting {
    pub message: String,
}

pub fn greet(args: GreetArgs) -> Result<Greeting, ToolError> {
    if args.name.is_empty() {
        // Comes back to the caller as an `invalid-arguments` tool error.
        return Err(ToolError::InvalidArguments("`name` is empty".into()));
    }
    warden_sdk::log::info(format!("greeting {}", args.name));
    Ok(Greeting {
        message: format!("Hello, {}!", args.name),
    })
}

pub fn toolbox() -> Toolbox {
    Toolbox::new().tool("greet", "Greets someone by name", greet)
}

warden_sdk::export!(toolbox);
warden_sdk::embed_manifest!("../warden.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greets_and_refuses_an_empty_name() {
        let out = toolbox().call("greet", r#"{"name":"Ada"}"#);
        assert_eq!(out.ok().as_deref(), Some(r#"{"message":"Hello, Ada!"}"#));
        assert!(matches!(
            toolbox().call("greet", r#"{"name":""}"#),
            Err(ToolError::InvalidArguments(_))
        ));
    }
}
