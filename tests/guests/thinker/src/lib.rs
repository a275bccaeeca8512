//! Forwards one completion request, given as JSON, to the host's
//! `warden:plugin/llm` and returns the completion, or the error's kind and
//! message, as JSON: the LLM suites drive every provider through a real
//! guest with it.

use warden_sdk::llm::{self, Completion, FinishReason, Function, LlmError, Message, MessageRole};
use warden_sdk::serde_json::{Value, json};
use warden_sdk::{Deserialize, JsonSchema, ToolError, Toolbox};

#[derive(Deserialize, JsonSchema)]
struct CallArgs {
    id: String,
    name: String,
    arguments: Value,
}

#[derive(Deserialize, JsonSchema)]
struct MessageArgs {
    /// system, user, assistant or tool.
    role: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    tool_calls: Vec<CallArgs>,
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
struct FunctionArgs {
    name: String,
    #[serde(default)]
    description: String,
    parameters: Value,
}

/// A completion request, as the WIT `request` record.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CompleteArgs {
    #[serde(default)]
    model: String,
    messages: Vec<MessageArgs>,
    #[serde(default)]
    tools: Vec<FunctionArgs>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    stop: Vec<String>,
    #[serde(default)]
    private: bool,
    #[serde(default)]
    response_schema: Option<Value>,
}

fn complete(args: CompleteArgs) -> Result<Value, ToolError> {
    let mut messages = Vec::new();
    for m in args.messages {
        let role = match m.role.as_str() {
            "system" => MessageRole::System,
            "user" => MessageRole::User,
            "assistant" => MessageRole::Assistant,
            "tool" => MessageRole::Tool,
            other => {
                return Err(ToolError::InvalidArguments(format!(
                    "role {other:?}: use system, user, assistant or tool"
                )));
            }
        };
        messages.push(Message {
            role,
            content: m.content,
            tool_calls: m
                .tool_calls
                .into_iter()
                .map(|c| llm::ToolCall {
                    id: c.id,
                    name: c.name,
                    arguments: c.arguments.to_string(),
                })
                .collect(),
            tool_call_id: m.tool_call_id,
        });
    }
    let mut request = llm::Request::new(messages).model(&args.model);
    request.tools = args
        .tools
        .into_iter()
        .map(|f| Function {
            name: f.name,
            description: f.description,
            parameters: f.parameters.to_string(),
        })
        .collect();
    request.max_tokens = args.max_tokens;
    request.temperature = args.temperature;
    request.stop = args.stop;
    request.private = args.private;
    request.response_schema = args.response_schema.map(|s| s.to_string());
    Ok(match llm::complete(&request) {
        Ok(c) => completion_json(c),
        Err(e) => error_json(e),
    })
}

fn completion_json(c: Completion) -> Value {
    let calls: Vec<Value> = c
        .tool_calls
        .into_iter()
        .map(|t| {
            let arguments: Value =
                serde_json::from_str(&t.arguments).unwrap_or(Value::String(t.arguments));
            json!({"id": t.id, "name": t.name, "arguments": arguments})
        })
        .collect();
    let finish = match c.finish_reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool-calls",
        FinishReason::ContentFilter => "content-filter",
    };
    json!({
        "text": c.text,
        "tool_calls": calls,
        "finish_reason": finish,
        "usage": {"input_tokens": c.usage.input_tokens, "output_tokens": c.usage.output_tokens},
        "cost": c.cost,
        "provider": c.provider,
        "model": c.model,
    })
}

fn error_json(e: LlmError) -> Value {
    let (kind, message) = match e {
        LlmError::Denied(m) => ("denied", m),
        LlmError::BudgetExceeded(m) => ("budget-exceeded", m),
        LlmError::InvalidRequest(m) => ("invalid-request", m),
        LlmError::Unavailable(m) => ("unavailable", m),
    };
    json!({"error": {"kind": kind, "message": message}})
}

fn toolbox() -> Toolbox {
    Toolbox::new().tool(
        "complete",
        "Sends a completion request to the host's model router and returns the answer or the error",
        complete,
    )
}

warden_sdk::export!(toolbox);
