//! Any OpenAI-compatible chat-completions API: OpenAI, vLLM, Ollama,
//! llama.cpp's server, LM Studio. The base URL is configurable; the key comes
//! from an environment variable and never appears in errors.

use std::time::Duration;

use serde_json::{Value, json};

use warden_api::BoxFuture;
use warden_api::llm::{ChatRequest, Completion, FinishReason, Role, TokenUsage, ToolCall};

use crate::provider::{Provider, ProviderError};

pub struct OpenAi {
    api: crate::JsonApi,
}

impl OpenAi {
    pub fn new(
        base_url: &str,
        key: Option<String>,
        timeout: Duration,
    ) -> Result<OpenAi, crate::ConfigError> {
        Ok(OpenAi {
            api: crate::JsonApi::new(base_url, key, crate::KeyHeader::Bearer, timeout)?,
        })
    }

    fn body(model: &str, request: &ChatRequest) -> Value {
        let messages: Vec<Value> = request
            .messages
            .iter()
            .map(|m| {
                let mut msg = json!({
                    "role": match m.role {
                        Role::System => "system",
                        Role::User => "user",
                        Role::Assistant => "assistant",
                        Role::Tool => "tool",
                    },
                    "content": m.content,
                });
                if !m.tool_calls.is_empty() {
                    msg["tool_calls"] = m
                        .tool_calls
                        .iter()
                        .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                        .collect();
                }
                if let Some(id) = &m.tool_call_id {
                    msg["tool_call_id"] = json!(id);
                }
                msg
            })
            .collect();
        let mut body = json!({"model": model, "messages": messages});
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
                .collect();
        }
        if let Some(n) = request.max_tokens {
            body["max_tokens"] = json!(n);
        }
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        if !request.stop.is_empty() {
            body["stop"] = json!(request.stop);
        }
        if let Some(schema) = &request.response_schema {
            body["response_format"] = json!({
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": false}
            });
        }
        body
    }

    fn parse(model: &str, v: &Value) -> Result<Completion, ProviderError> {
        let choice = v["choices"]
            .get(0)
            .ok_or_else(|| ProviderError::fatal("the response has no choices"))?;
        let message = &choice["message"];
        let tool_calls = message["tool_calls"]
            .as_array()
            .map(|calls| {
                calls
                    .iter()
                    .map(|c| ToolCall {
                        id: c["id"].as_str().unwrap_or_default().to_string(),
                        name: c["function"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                        arguments: c["function"]["arguments"]
                            .as_str()
                            .unwrap_or("{}")
                            .to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let finish_reason = match choice["finish_reason"].as_str() {
            Some("length") => FinishReason::Length,
            Some("tool_calls") => FinishReason::ToolCalls,
            Some("content_filter") => FinishReason::ContentFilter,
            _ => FinishReason::Stop,
        };
        Ok(Completion {
            text: message["content"].as_str().unwrap_or_default().to_string(),
            tool_calls,
            finish_reason,
            usage: TokenUsage {
                input_tokens: v["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
                output_tokens: v["usage"]["completion_tokens"].as_u64().unwrap_or(0),
            },
            cost: 0.0,
            provider: String::new(),
            model: v["model"].as_str().unwrap_or(model).to_string(),
        })
    }
}

impl Provider for OpenAi {
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
                .post("/chat/completions", &[], &Self::body(model, request))
                .await?;
            Self::parse(model, &v)
        })
    }
}
