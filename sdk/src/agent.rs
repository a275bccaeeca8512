//! A tool-using agent loop: the model is offered the role's granted tools as
//! functions, each call it makes runs through the host, its result goes back
//! to the model, until it answers without calling anything or the step limit
//! is reached. The whole transcript is kept.
//!
//! ```no_run
//! use warden_sdk::agent::Agent;
//! use warden_sdk::role::{Outcome, RoleError, Task};
//!
//! fn run(task: Task) -> Result<Outcome, RoleError> {
//!     let done = Agent::new("You are a careful engineer. Use the tools.")
//!         .max_steps(8)
//!         .run(&task.brief())?;
//!     Outcome::new(done.answer.clone()).output(&done.calls)
//! }
//! ```

use serde::Serialize;
use serde_json::Value;

use crate::llm::{self, Function, LlmError, Message, MessageRole, Request, TokenUsage, ToolCall};
use crate::role::RoleError;
use crate::tools::{self, ToolSpec};

/// Characters of a tool result kept in the transcript; the rest is cut (and
/// the cut marked) so one large file cannot crowd out the conversation.
const MAX_RESULT_CHARS: usize = 8000;

/// An agent: a system prompt, a model, the tools it may use and a step
/// limit.
#[derive(Debug, Clone)]
pub struct Agent {
    system: String,
    model: String,
    max_steps: u32,
    max_tokens: Option<u32>,
    temperature: Option<f32>,
    tools: Vec<ToolSpec>,
}

/// One tool call the agent made.
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    pub tool: String,
    pub arguments: Value,
    /// The result, or `{"error": "..."}`.
    pub result: Value,
    pub ok: bool,
}

/// How a loop ended well.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The model's last answer.
    pub answer: String,
    pub calls: Vec<Call>,
    pub usage: TokenUsage,
    pub transcript: Vec<Message>,
}

/// How a loop ended badly.
#[derive(Debug, Clone)]
pub enum AgentError {
    /// The model could not be asked.
    Llm(LlmError),
    /// The model was still calling tools after the last allowed step.
    StepLimit { steps: u32, calls: Vec<Call> },
}

impl From<AgentError> for RoleError {
    fn from(e: AgentError) -> Self {
        match e {
            AgentError::Llm(e) => e.into(),
            AgentError::StepLimit { steps, calls } => RoleError::Failed(format!(
                "the agent was still calling tools after {steps} steps ({} calls); raise the step limit or narrow the task",
                calls.len()
            )),
        }
    }
}

impl Agent {
    /// An agent with every granted tool, the caller's default model and
    /// at most 10 steps.
    pub fn new(system: &str) -> Agent {
        Agent {
            system: system.to_string(),
            model: String::new(),
            max_steps: 10,
            max_tokens: None,
            temperature: None,
            tools: tools::list(),
        }
    }

    /// Asks this model alias instead of the default.
    pub fn model(mut self, alias: &str) -> Agent {
        self.model = alias.to_string();
        self
    }

    pub fn max_steps(mut self, steps: u32) -> Agent {
        self.max_steps = steps.max(1);
        self
    }

    pub fn max_tokens(mut self, tokens: u32) -> Agent {
        self.max_tokens = Some(tokens);
        self
    }

    pub fn temperature(mut self, temperature: f32) -> Agent {
        self.temperature = Some(temperature);
        self
    }

    /// Offers only the granted tools whose qualified names are listed.
    pub fn only_tools(mut self, names: &[&str]) -> Agent {
        self.tools.retain(|t| names.contains(&t.name.as_str()));
        self
    }

    /// The tools offered, qualified.
    pub fn tools(&self) -> Vec<&str> {
        self.tools.iter().map(|t| t.name.as_str()).collect()
    }

    /// Runs the loop on `prompt`.
    pub fn run(&self, prompt: &str) -> Result<Finished, AgentError> {
        self.run_with(prompt, llm::complete, tools::call)
    }

    /// The loop, with the model and the tools passed in (so it can be tested
    /// natively).
    pub fn run_with(
        &self,
        prompt: &str,
        mut complete: impl FnMut(&Request) -> Result<llm::Completion, LlmError>,
        mut call: impl FnMut(&str, &Value) -> Result<Value, crate::ToolError>,
    ) -> Result<Finished, AgentError> {
        let functions: Vec<Function> = self
            .tools
            .iter()
            .map(|t| Function {
                name: function_name(&t.name),
                description: t.description.clone(),
                parameters: t.input_schema.clone(),
            })
            .collect();
        let mut transcript = vec![Message::system(&self.system), Message::user(prompt)];
        let mut calls = Vec::new();
        let mut usage = TokenUsage {
            input_tokens: 0,
            output_tokens: 0,
        };
        for _ in 0..self.max_steps {
            let mut request = Request::new(transcript.clone());
            request.model = self.model.clone();
            request.tools = functions.clone();
            request.max_tokens = self.max_tokens;
            request.temperature = self.temperature;
            let answer = complete(&request).map_err(AgentError::Llm)?;
            usage.input_tokens += answer.usage.input_tokens;
            usage.output_tokens += answer.usage.output_tokens;
            transcript.push(Message {
                role: MessageRole::Assistant,
                content: answer.text.clone(),
                tool_calls: answer.tool_calls.clone(),
                tool_call_id: None,
            });
            if answer.tool_calls.is_empty() {
                return Ok(Finished {
                    answer: answer.text,
                    calls,
                    usage,
                    transcript,
                });
            }
            for requested in &answer.tool_calls {
                let made = self.call_one(requested, &mut call);
                transcript.push(Message {
                    role: MessageRole::Tool,
                    content: clip(&made.result.to_string()),
                    tool_calls: Vec::new(),
                    tool_call_id: Some(requested.id.clone()),
                });
                calls.push(made);
            }
        }
        Err(AgentError::StepLimit {
            steps: self.max_steps,
            calls,
        })
    }

    fn call_one(
        &self,
        requested: &ToolCall,
        call: &mut impl FnMut(&str, &Value) -> Result<Value, crate::ToolError>,
    ) -> Call {
        let arguments: Value = serde_json::from_str(&requested.arguments).unwrap_or(Value::Null);
        // Function names are the qualified names made safe for APIs that
        // allow only [a-zA-Z0-9_-]; map back by lookup, never by guessing.
        let tool = self
            .tools
            .iter()
            .find(|t| function_name(&t.name) == requested.name || t.name == requested.name);
        let (tool, result) = match (tool, arguments.is_object()) {
            (None, _) => (
                requested.name.clone(),
                Err(format!(
                    "there is no tool {:?}; the tools are: {}",
                    requested.name,
                    self.tools
                        .iter()
                        .map(|t| function_name(&t.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ),
            (Some(t), false) => (
                t.name.clone(),
                Err(format!(
                    "the arguments must be a JSON object, not {}",
                    requested.arguments
                )),
            ),
            (Some(t), true) => (
                t.name.clone(),
                call(&t.name, &arguments).map_err(|e| tools::describe(&e)),
            ),
        };
        match result {
            Ok(result) => Call {
                tool,
                arguments,
                result,
                ok: true,
            },
            Err(error) => Call {
                tool,
                arguments,
                result: serde_json::json!({ "error": error }),
                ok: false,
            },
        }
    }
}

/// `fs.write_file` → `fs__write_file`.
fn function_name(qualified: &str) -> String {
    qualified.replace('.', "__")
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_RESULT_CHARS) {
        Some((at, _)) => format!("{}… [cut: {} more bytes]", &text[..at], text.len() - at),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{Completion, FinishReason};

    fn answer(text: &str, calls: Vec<ToolCall>) -> Completion {
        Completion {
            text: text.into(),
            finish_reason: if calls.is_empty() {
                FinishReason::Stop
            } else {
                FinishReason::ToolCalls
            },
            tool_calls: calls,
            usage: TokenUsage {
                input_tokens: 10,
                output_tokens: 2,
            },
            cost: 0.0,
            provider: "test".into(),
            model: "m".into(),
        }
    }

    fn agent() -> Agent {
        let mut agent = Agent::new("sys").max_steps(3);
        agent.tools = vec![ToolSpec {
            name: "fs.write_file".into(),
            description: "Write".into(),
            input_schema: r#"{"type":"object"}"#.into(),
        }];
        agent
    }

    #[test]
    fn tool_calls_run_and_their_results_go_back_to_the_model() {
        let mut step = 0;
        let mut written = Vec::new();
        let done = agent()
            .run_with(
                "write it",
                |request| {
                    step += 1;
                    assert_eq!(request.tools[0].name, "fs__write_file");
                    Ok(match step {
                        1 => answer(
                            "",
                            vec![ToolCall {
                                id: "c1".into(),
                                name: "fs__write_file".into(),
                                arguments: r#"{"path":"/w/a.py"}"#.into(),
                            }],
                        ),
                        _ => {
                            let last = request.messages.last().unwrap();
                            assert_eq!(last.role, MessageRole::Tool);
                            assert_eq!(last.tool_call_id.as_deref(), Some("c1"));
                            assert!(last.content.contains("written"));
                            answer("done", vec![])
                        }
                    })
                },
                |tool, args| {
                    written.push((tool.to_string(), args["path"].clone()));
                    Ok(serde_json::json!({"written": true}))
                },
            )
            .unwrap();
        assert_eq!(done.answer, "done");
        assert_eq!(done.calls.len(), 1);
        assert!(done.calls[0].ok);
        assert_eq!(written, vec![("fs.write_file".into(), "/w/a.py".into())]);
        assert_eq!(done.usage.input_tokens, 20);
        assert_eq!(done.transcript.len(), 5);
    }

    #[test]
    fn unknown_tools_are_errors_the_model_sees_and_the_step_limit_holds() {
        let result = agent().run_with(
            "loop",
            |_| {
                Ok(answer(
                    "",
                    vec![ToolCall {
                        id: "x".into(),
                        name: "rm_rf".into(),
                        arguments: "{}".into(),
                    }],
                ))
            },
            |_, _| panic!("an unknown tool must not be called"),
        );
        match result {
            Err(AgentError::StepLimit { steps, calls }) => {
                assert_eq!(steps, 3);
                assert_eq!(calls.len(), 3);
                assert!(!calls[0].ok);
                let error = calls[0].result["error"].as_str().unwrap();
                assert!(error.contains("fs__write_file"), "{error}");
            }
            other => panic!("{other:?}"),
        }
    }
}
