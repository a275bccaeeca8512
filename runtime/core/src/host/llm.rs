//! `warden:plugin/llm`: a plugin asks a model through the host's router.
//!
//! The router holds the keys, picks the model, retries and charges the
//! budgets; this file only translates between the WIT types and the router's
//! and says who is asking (tenant, plugin, the models granted to it).

use std::sync::Arc;

use warden_llm::router::{Caller, Router};
use warden_llm::{
    ChatRequest, Completion, FinishReason, LlmError, Message, Role, ToolCall, ToolDef,
};
use wasmtime::component::{HasData, Linker};

use crate::bindings::warden::plugin::llm as wit;
use crate::state::CallState;

/// What a call's llm interface needs: the process's router, if any, and who
/// is asking.
pub(crate) struct LlmContext {
    router: Option<Arc<Router>>,
    caller: Caller,
}

impl LlmContext {
    pub(crate) fn new(router: Option<Arc<Router>>, caller: Caller) -> Self {
        LlmContext { router, caller }
    }
}

struct HasLlm;

impl HasData for HasLlm {
    type Data<'a> = &'a LlmContext;
}

pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    wit::add_to_linker::<CallState, HasLlm>(linker, |state| &state.llm)
}

impl wit::Host for &LlmContext {
    async fn complete(&mut self, request: wit::Request) -> Result<wit::Completion, wit::LlmError> {
        let Some(router) = &self.router else {
            return Err(wit::LlmError::Unavailable(
                "this warden has no models configured; the operator sets them up with an LLM config (`--llm-config`)".into(),
            ));
        };
        let request = chat_request(request).map_err(to_wit_error)?;
        match router.complete(&request, &self.caller).await {
            Ok(completion) => Ok(to_wit_completion(completion)),
            Err(e) => Err(to_wit_error(e)),
        }
    }
}

fn chat_request(r: wit::Request) -> Result<ChatRequest, LlmError> {
    let json = |what: &str, text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .map_err(|e| LlmError::InvalidRequest(format!("{what} is not JSON: {e}")))
    };
    let tools = r
        .tools
        .into_iter()
        .map(|f| {
            Ok(ToolDef {
                parameters: json(
                    &format!("the parameters of function {:?}", f.name),
                    &f.parameters,
                )?,
                name: f.name,
                description: f.description,
            })
        })
        .collect::<Result<Vec<_>, LlmError>>()?;
    let response_schema = r
        .response_schema
        .as_deref()
        .map(|s| json("response-schema", s))
        .transpose()?;
    let messages = r
        .messages
        .into_iter()
        .map(|m| Message {
            role: match m.role {
                wit::MessageRole::System => Role::System,
                wit::MessageRole::User => Role::User,
                wit::MessageRole::Assistant => Role::Assistant,
                wit::MessageRole::Tool => Role::Tool,
            },
            content: m.content,
            tool_calls: m.tool_calls.into_iter().map(from_wit_call).collect(),
            tool_call_id: m.tool_call_id,
        })
        .collect();
    Ok(ChatRequest {
        model: r.model,
        messages,
        tools,
        max_tokens: r.max_tokens,
        temperature: r.temperature,
        stop: r.stop,
        private: r.private,
        response_schema,
    })
}

fn from_wit_call(c: wit::ToolCall) -> ToolCall {
    ToolCall {
        id: c.id,
        name: c.name,
        arguments: c.arguments,
    }
}

fn to_wit_completion(c: Completion) -> wit::Completion {
    wit::Completion {
        text: c.text,
        tool_calls: c
            .tool_calls
            .into_iter()
            .map(|t| wit::ToolCall {
                id: t.id,
                name: t.name,
                arguments: t.arguments,
            })
            .collect(),
        finish_reason: match c.finish_reason {
            FinishReason::Stop => wit::FinishReason::Stop,
            FinishReason::Length => wit::FinishReason::Length,
            FinishReason::ToolCalls => wit::FinishReason::ToolCalls,
            FinishReason::ContentFilter => wit::FinishReason::ContentFilter,
        },
        usage: wit::TokenUsage {
            input_tokens: c.usage.input_tokens,
            output_tokens: c.usage.output_tokens,
        },
        cost: c.cost,
        provider: c.provider,
        model: c.model,
    }
}

fn to_wit_error(e: LlmError) -> wit::LlmError {
    match e {
        LlmError::Denied(m) => wit::LlmError::Denied(m),
        LlmError::BudgetExceeded(m) => wit::LlmError::BudgetExceeded(m),
        LlmError::InvalidRequest(m) => wit::LlmError::InvalidRequest(m),
        LlmError::Unavailable(m) => wit::LlmError::Unavailable(m),
    }
}
