//! `warden:plugin/llm`: a plugin asks a model through the host's router.
//!
//! The router holds the keys, picks the model, retries and charges the
//! budgets; this file only translates between the WIT types and the router's
//! and says who is asking (tenant, plugin, the models granted to it).

use std::sync::Arc;

use warden_api::llm::{
    Caller, ChatRequest, Completion, FinishReason, LlmError, Message, Models, Role, ToolCall,
    ToolDef,
};
use wasmtime::component::{HasData, Linker};

use crate::bindings::warden::plugin::llm as wit;
use crate::document;

/// What a call's llm interface needs: the process's models, if any, and who
/// is asking.
pub(crate) struct LlmContext {
    models: Option<Arc<dyn Models>>,
    caller: Caller,
}

impl LlmContext {
    pub(crate) fn new(models: Option<Arc<dyn Models>>, caller: Caller) -> Self {
        LlmContext { models, caller }
    }
}

/// A store whose guests may ask models; `None` when the plugin does not
/// import `warden:plugin/llm` (its functions are then never called).
pub(crate) trait LlmView: Send + 'static {
    fn llm(&mut self) -> Option<&LlmContext>;
}

struct HasLlm;

impl HasData for HasLlm {
    type Data<'a> = Llm<'a>;
}

/// The llm interface of one call.
pub(crate) struct Llm<'a>(Option<&'a LlmContext>);

pub(crate) fn add_to_linker<T: LlmView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasLlm>(linker, |state| Llm(state.llm()))
}

impl wit::Host for Llm<'_> {
    async fn complete(&mut self, request: wit::Request) -> Result<wit::Completion, wit::LlmError> {
        let Some(context) = self.0 else {
            return Err(wit::LlmError::Unavailable(
                "this call was set up without warden:plugin/llm".into(),
            ));
        };
        // The grant first: a plugin that may not ask this model (or any)
        // costs the host nothing more.
        if let Some(allowed) = &context.caller.allowed
            && (allowed.is_empty()
                || (!request.model.is_empty() && !allowed.contains(&request.model)))
        {
            return Err(wit::LlmError::Denied(format!(
                "model {:?} is not granted to plugin {} (granted: {})",
                request.model,
                context.caller.plugin,
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        let Some(models) = &context.models else {
            return Err(wit::LlmError::Unavailable(
                "this warden has no models configured; the operator sets them up with an LLM config (`--llm-config`)".into(),
            ));
        };
        let request = chat_request(request).map_err(to_wit_error)?;
        match models.complete(&request, &context.caller).await {
            Ok(completion) => Ok(to_wit_completion(completion)),
            Err(e) => Err(to_wit_error(e)),
        }
    }
}

/// The most text one request may carry, all parts together: far more than
/// any model's context, far less than would cost the host.
pub(crate) const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// The size of every part of a request a guest sent.
fn request_bytes(r: &wit::Request) -> usize {
    let messages: usize = r
        .messages
        .iter()
        .map(|m| {
            m.content.len()
                + m.tool_call_id.as_ref().map_or(0, String::len)
                + m.tool_calls
                    .iter()
                    .map(|c| c.id.len() + c.name.len() + c.arguments.len())
                    .sum::<usize>()
        })
        .sum();
    let tools: usize = r
        .tools
        .iter()
        .map(|f| f.name.len() + f.description.len() + f.parameters.len())
        .sum();
    messages
        + tools
        + r.model.len()
        + r.stop.iter().map(String::len).sum::<usize>()
        + r.response_schema.as_ref().map_or(0, String::len)
}

fn chat_request(r: wit::Request) -> Result<ChatRequest, LlmError> {
    let total = request_bytes(&r);
    if total > MAX_REQUEST_BYTES {
        return Err(LlmError::InvalidRequest(format!(
            "the request carries {total} bytes; at most {MAX_REQUEST_BYTES} are accepted"
        )));
    }
    let json =
        |what: &str, text: &str| document::parse(what, text).map_err(LlmError::InvalidRequest);
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use warden_api::BoxFuture;

    use super::*;
    use crate::bindings::warden::plugin::llm::Host as _;

    /// Answers "ok" and remembers who asked.
    #[derive(Default)]
    struct Echo {
        callers: Mutex<Vec<Caller>>,
    }

    impl Models for Echo {
        fn complete<'a>(
            &'a self,
            _request: &'a ChatRequest,
            caller: &'a Caller,
        ) -> BoxFuture<'a, Result<Completion, LlmError>> {
            self.callers.lock().unwrap().push(caller.clone());
            Box::pin(async { Ok(Completion::text("ok", "test", "m")) })
        }
    }

    fn request(parameters: &str) -> wit::Request {
        wit::Request {
            model: String::new(),
            messages: vec![wit::Message {
                role: wit::MessageRole::User,
                content: "hi".into(),
                tool_calls: Vec::new(),
                tool_call_id: None,
            }],
            tools: vec![wit::Function {
                name: "f".into(),
                description: "d".into(),
                parameters: parameters.into(),
            }],
            max_tokens: None,
            temperature: None,
            stop: Vec::new(),
            private: false,
            response_schema: None,
        }
    }

    #[tokio::test]
    async fn the_caller_is_the_hosts_and_bad_json_is_an_invalid_request() {
        let models = Arc::new(Echo::default());
        let caller = Caller {
            tenant: "acme".into(),
            plugin: "p".into(),
            allowed: Some(vec!["fast".into()]),
            ..Caller::default()
        };
        let context = LlmContext::new(Some(models.clone()), caller);
        let answer = Llm(Some(&context)).complete(request("{}")).await.unwrap();
        assert_eq!(answer.text, "ok");
        let seen = models.callers.lock().unwrap()[0].clone();
        assert_eq!(
            (seen.tenant.as_str(), seen.allowed),
            ("acme", Some(vec!["fast".to_string()]))
        );

        let bad = Llm(Some(&context)).complete(request("{not json")).await;
        assert!(
            matches!(&bad, Err(wit::LlmError::InvalidRequest(m)) if m.contains("parameters of function \"f\"")),
            "{bad:?}"
        );
        assert_eq!(models.callers.lock().unwrap().len(), 1, "never sent");
    }

    #[tokio::test]
    async fn without_models_or_the_interface_it_is_unavailable() {
        let none = LlmContext::new(None, Caller::default());
        assert!(matches!(
            Llm(Some(&none)).complete(request("{}")).await,
            Err(wit::LlmError::Unavailable(_))
        ));
        assert!(matches!(
            Llm(None).complete(request("{}")).await,
            Err(wit::LlmError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn oversized_or_deep_documents_are_refused_before_parsing() {
        let models = Arc::new(Echo::default());
        let context = LlmContext::new(Some(models.clone()), Caller::default());
        let refused = |r: Result<wit::Completion, wit::LlmError>, needle: &str| match r {
            Err(wit::LlmError::InvalidRequest(m)) => assert!(m.contains(needle), "{m}"),
            other => panic!("expected invalid-request, got {other:?}"),
        };
        let deep = "[".repeat(document::MAX_DEPTH + 1) + &"]".repeat(document::MAX_DEPTH + 1);
        refused(
            Llm(Some(&context)).complete(request(&deep)).await,
            "nests deeper",
        );
        let big = format!("{{\"d\":\"{}\"}}", "x".repeat(document::MAX_BYTES));
        refused(Llm(Some(&context)).complete(request(&big)).await, "bytes");
        let mut huge = request("{}");
        huge.messages[0].content = "x".repeat(MAX_REQUEST_BYTES);
        refused(
            Llm(Some(&context)).complete(huge).await,
            "the request carries",
        );
        assert!(models.callers.lock().unwrap().is_empty());

        // Brackets inside strings are text, not nesting.
        let text = format!("{{\"d\":\"{}\"}}", "[{".repeat(document::MAX_DEPTH));
        Llm(Some(&context)).complete(request(&text)).await.unwrap();
    }

    #[tokio::test]
    async fn an_ungranted_model_is_denied_before_anything_is_parsed() {
        let models = Arc::new(Echo::default());
        let deep = "[".repeat(document::MAX_DEPTH + 1);
        for allowed in [vec![], vec!["fast".to_string()]] {
            let caller = Caller {
                allowed: Some(allowed),
                ..Caller::default()
            };
            let context = LlmContext::new(Some(models.clone()), caller);
            let mut asked = request(&deep);
            asked.model = "slow".into();
            let denied = Llm(Some(&context)).complete(asked).await;
            assert!(
                matches!(denied, Err(wit::LlmError::Denied(_))),
                "{denied:?}"
            );
        }
        assert!(models.callers.lock().unwrap().is_empty());
    }
}
