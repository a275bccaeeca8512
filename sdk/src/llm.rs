//! Asking a model through the host. The operator decides which models a
//! plugin may use (by alias), holds the keys and the budgets; the plugin only
//! sees answers.
//!
//! ```no_run
//! use warden_sdk::llm::{self, Message, Request};
//!
//! # fn run() -> Result<(), llm::LlmError> {
//! let answer = llm::complete(&Request::new(vec![
//!     Message::system("Answer in one word."),
//!     Message::user("What colour is the sky?"),
//! ]))?;
//! println!("{} ({} tokens)", answer.text, answer.usage.output_tokens);
//! # Ok(())
//! # }
//! ```

pub use crate::bindings::warden::plugin::llm::{
    Completion, FinishReason, Function, LlmError, Message, MessageRole, Request, TokenUsage,
    ToolCall,
};

/// Sends `request` to the model the host routes it to.
pub fn complete(request: &Request) -> Result<Completion, LlmError> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::warden::plugin::llm::complete(request)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = request;
        Err(LlmError::Unavailable(
            "models are only available inside warden (build for wasm32-wasip2)".into(),
        ))
    }
}

/// One question to the caller's default model; the answer's text.
pub fn ask(prompt: &str) -> Result<String, LlmError> {
    complete(&Request::new(vec![Message::user(prompt)])).map(|c| c.text)
}

/// Asks for an answer of type `T`: the request carries `T`'s JSON Schema,
/// the host makes the model follow it (constrained decoding locally, native
/// structured output remotely) and checks the answer before returning it.
pub fn ask_json<T>(mut request: Request) -> Result<T, LlmError>
where
    T: serde::de::DeserializeOwned + schemars::JsonSchema,
{
    let schema = schemars::schema_for!(T);
    request.response_schema =
        Some(serde_json::to_string(&schema).map_err(|e| {
            LlmError::InvalidRequest(format!("cannot write the answer's schema: {e}"))
        })?);
    let completion = complete(&request)?;
    serde_json::from_str(&completion.text).map_err(|e| {
        LlmError::Unavailable(format!("the answer does not fit the expected type: {e}"))
    })
}

/// Asks for an answer that satisfies a JSON Schema written by hand (for
/// schemas only known at run time, such as an `enum` of the run's roles);
/// the answer as JSON.
pub fn ask_schema(
    mut request: Request,
    schema: &serde_json::Value,
) -> Result<serde_json::Value, LlmError> {
    request.response_schema = Some(schema.to_string());
    let completion = complete(&request)?;
    serde_json::from_str(&completion.text)
        .map_err(|e| LlmError::Unavailable(format!("the answer is not JSON: {e}")))
}

impl Request {
    /// A request for the caller's default model with no tools and the
    /// host's defaults for everything else.
    pub fn new(messages: Vec<Message>) -> Request {
        Request {
            model: String::new(),
            messages,
            tools: Vec::new(),
            max_tokens: None,
            temperature: None,
            stop: Vec::new(),
            private: false,
            response_schema: None,
        }
    }

    /// Asks a specific model alias instead of the default.
    pub fn model(mut self, alias: &str) -> Request {
        self.model = alias.to_string();
        self
    }

    /// Caps the answer's length.
    pub fn max_tokens(mut self, tokens: u32) -> Request {
        self.max_tokens = Some(tokens);
        self
    }

    pub fn temperature(mut self, temperature: f32) -> Request {
        self.temperature = Some(temperature);
        self
    }
}

impl Message {
    fn of(role: MessageRole, content: impl Into<String>) -> Message {
        Message {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    pub fn system(content: impl Into<String>) -> Message {
        Message::of(MessageRole::System, content)
    }

    pub fn user(content: impl Into<String>) -> Message {
        Message::of(MessageRole::User, content)
    }

    pub fn assistant(content: impl Into<String>) -> Message {
        Message::of(MessageRole::Assistant, content)
    }

    /// The result of tool call `call_id`, for the model's next turn.
    pub fn tool_result(call_id: &str, content: impl Into<String>) -> Message {
        Message {
            tool_call_id: Some(call_id.to_string()),
            ..Message::of(MessageRole::Tool, content)
        }
    }
}

impl From<LlmError> for crate::ToolError {
    fn from(e: LlmError) -> Self {
        match e {
            LlmError::Denied(m) => crate::ToolError::Denied(m),
            LlmError::InvalidRequest(m) => crate::ToolError::InvalidArguments(m),
            LlmError::BudgetExceeded(m) => {
                crate::ToolError::Failed(format!("budget exceeded: {m}"))
            }
            LlmError::Unavailable(m) => crate::ToolError::Failed(m),
        }
    }
}
