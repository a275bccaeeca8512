//! Anthropic's Messages API.

use std::time::Duration;

use serde_json::{Value, json};

use warden_api::BoxFuture;
use warden_api::llm::{ChatRequest, Completion, FinishReason, Role, TokenUsage, ToolCall};

use crate::provider::{Provider, ProviderError};

const VERSION: &str = "2023-06-01";
const DEFAULT_MAX_TOKENS: u32 = 1024;
/// The tool a structured answer is forced through.
const ANSWER_TOOL: &str = "answer";

fn is_object_schema(schema: &Value) -> bool {
    schema["type"] == "object"
}

pub struct Anthropic {
    api: crate::JsonApi,
}

impl Anthropic {
    pub fn new(
        base_url: &str,
        key: Option<String>,
        timeout: Duration,
    ) -> Result<Anthropic, crate::ConfigError> {
        Ok(Anthropic {
            api: crate::JsonApi::new(base_url, key, crate::KeyHeader::Named("x-api-key"), timeout)?,
        })
    }

    fn body(model: &str, request: &ChatRequest) -> Value {
        let mut system = Vec::new();
        let mut messages: Vec<Value> = Vec::new();
        for m in &request.messages {
            match m.role {
                Role::System => system.push(m.content.clone()),
                Role::User => messages.push(json!({"role": "user", "content": m.content})),
                Role::Assistant => {
                    let mut content = Vec::new();
                    if !m.content.is_empty() {
                        content.push(json!({"type": "text", "text": m.content}));
                    }
                    for c in &m.tool_calls {
                        let input: Value = serde_json::from_str(&c.arguments).unwrap_or(json!({}));
                        content.push(
                            json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}),
                        );
                    }
                    messages.push(json!({"role": "assistant", "content": content}));
                }
                Role::Tool => messages.push(json!({
                    "role": "user",
                    "content": [{
                        "type": "tool_result",
                        "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                        "content": m.content,
                    }]
                })),
            }
        }
        let mut body = json!({
            "model": model,
            "max_tokens": request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            "messages": messages,
        });
        let mut system = system.join("\n\n");
        let mut tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
        match &request.response_schema {
            // The Messages API's native structured output: a tool whose
            // input schema is the answer's, and a forced call to it.
            Some(schema) if is_object_schema(schema) => {
                tools.push(json!({
                    "name": ANSWER_TOOL,
                    "description": "Give the answer, in the required structure.",
                    "input_schema": schema,
                }));
                body["tool_choice"] = json!({"type": "tool", "name": ANSWER_TOOL});
            }
            // A tool's input must be an object; for any other answer, say it
            // (the router validates what comes back).
            Some(schema) => system.push_str(&format!(
                "\n\nAnswer with only a JSON document that satisfies this JSON Schema:\n{schema}"
            )),
            None => {}
        }
        if !system.trim().is_empty() {
            body["system"] = json!(system.trim());
        }
        if !tools.is_empty() {
            body["tools"] = Value::Array(tools);
        }
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        if !request.stop.is_empty() {
            body["stop_sequences"] = json!(request.stop);
        }
        body
    }

    fn parse(model: &str, v: &Value, structured: bool) -> Result<Completion, ProviderError> {
        let blocks = v["content"]
            .as_array()
            .ok_or_else(|| ProviderError::fatal("the response has no content"))?;
        let mut text = String::new();
        let mut tool_calls = Vec::new();
        for block in blocks {
            match block["type"].as_str() {
                Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
                // A structured answer came as the forced tool's input.
                Some("tool_use") if structured && block["name"] == ANSWER_TOOL => {
                    text = block["input"].to_string();
                }
                Some("tool_use") => tool_calls.push(ToolCall {
                    id: block["id"].as_str().unwrap_or_default().to_string(),
                    name: block["name"].as_str().unwrap_or_default().to_string(),
                    arguments: block["input"].to_string(),
                }),
                _ => {}
            }
        }
        let finish_reason = match v["stop_reason"].as_str() {
            Some("max_tokens") => FinishReason::Length,
            Some("tool_use") if !tool_calls.is_empty() => FinishReason::ToolCalls,
            Some("refusal") => FinishReason::ContentFilter,
            _ => FinishReason::Stop,
        };
        Ok(Completion {
            text,
            tool_calls,
            finish_reason,
            usage: TokenUsage {
                input_tokens: v["usage"]["input_tokens"].as_u64().unwrap_or(0),
                output_tokens: v["usage"]["output_tokens"].as_u64().unwrap_or(0),
            },
            cost: 0.0,
            provider: String::new(),
            model: v["model"].as_str().unwrap_or(model).to_string(),
        })
    }
}

impl Provider for Anthropic {
    fn is_local(&self) -> bool {
        false
    }

    fn complete<'a>(
        &'a self,
        model: &'a str,
        request: &'a ChatRequest,
    ) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        Box::pin(async move {
            let v = self
                .api
                .post(
                    "/v1/messages",
                    &[("anthropic-version", VERSION)],
                    &Self::body(model, request),
                )
                .await?;
            let structured = request
                .response_schema
                .as_ref()
                .is_some_and(is_object_schema);
            Self::parse(model, &v, structured)
        })
    }
}
