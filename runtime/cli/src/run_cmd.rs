//! `warden run` (a workflow, a goal, `--resume RUN_ID` or `--retry RUN_ID`) and `warden runs
//! list|show`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use warden_core::TenantId;
use warden_run::workflow::Workflow;
use warden_run::{
    Event, EventSink, JsonLines, Record, RunEnv, RunError, RunState, RunStatus, Runs, report,
};

use crate::Dirs;
use crate::exit::{BAD_INPUT, Failure, NOT_ACCEPTED, PLUGIN_ERROR};
use crate::terminal;

/// Sandboxes a run may have going at once (roles and their tools).
const RUN_SLOTS: u32 = 64;

#[derive(Args)]
pub struct RunArgs {
    /// The workflow file (TOML). Without one, `--goal` runs the built-in
    /// workflow: planner, coder, tester, reviewer and researcher.
    workflow: Option<PathBuf>,

    /// What the run is for; replaces the workflow's goal. A workflow
    /// without tasks starts with its planner.
    #[arg(long)]
    goal: Option<String>,

    /// Take up a stopped run again (see `warden runs list`).
    #[arg(long, value_name = "RUN_ID", conflicts_with_all = ["workflow", "goal"])]
    resume: Option<String>,

    /// Take up a failed run again: its dead tasks, and the tasks skipped
    /// because of them, run once more (finished ones stay finished).
    #[arg(long, value_name = "RUN_ID", conflicts_with_all = ["workflow", "goal", "resume"])]
    retry: Option<String>,

    /// Events as JSON lines on stdout, then the report as JSON.
    #[arg(long)]
    json: bool,

    /// Also write every event as a JSON line to this file.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,

    /// The tenant the run works for (memory, usage).
    #[arg(long, default_value = "default")]
    tenant: String,

    /// Where to look for plugins a workflow names (before
    /// $WARDEN_PLUGIN_DIR, DATA_DIR/plugins and target/plugins).
    #[arg(long, value_name = "DIR")]
    plugin_dir: Vec<PathBuf>,
}

#[derive(Subcommand)]
pub enum RunsCommand {
    /// Every run in the data dir.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One run's report: tasks, usage, artifacts, dead letters.
    Show {
        run: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(args: RunArgs, dirs: &Dirs) -> Result<ExitCode, Failure> {
    let data = dirs.data.as_deref().ok_or_else(|| {
        Failure::bad_input("runs live in the data dir: set --data-dir or $WARDEN_DATA_DIR")
    })?;
    let tenant = TenantId::new(&args.tenant).map_err(|e| Failure::bad_input(e.to_string()))?;
    let (engine, memory) = dirs.engine_with_services(crate::Capacity::serving(RUN_SLOTS))?;
    let plugin_dirs = crate::plugin_files::plugin_dirs(&args.plugin_dir, data);
    let env_for = |base_dir: &Path| RunEnv {
        engine: engine.clone(),
        tenant: tenant.clone(),
        plugin_dirs: plugin_dirs.clone(),
        base_dir: base_dir.to_path_buf(),
        ceiling: None,
        quota: warden_run::Quota::default(),
    };
    let sinks = sinks(&args)?;
    let runs = Runs::new(data);
    let finished = match (&args.resume, &args.retry) {
        (Some(id), _) => runs.resume(id, env_for, sinks).await,
        (None, Some(id)) => runs.retry(id, env_for, sinks).await,
        (None, None) => {
            let (workflow, base_dir) = workflow(&args)?;
            runs.start(workflow, args.goal.clone(), &env_for(&base_dir), sinks)
                .await
        }
    };
    if let Some(memory) = &memory
        && let Err(e) = memory.settle().await
    {
        tracing::warn!(error = %e, "memory upkeep did not finish");
    }
    let finished = finished.map_err(run_failure)?;
    if args.json {
        println!(
            "{}",
            terminal::escape_json(&report::json(&finished.state).to_string())
        );
    } else {
        eprintln!();
        print!("{}", terminal::escape(&report::text(&finished.state)));
    }
    Ok(match finished.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::NotAccepted => ExitCode::from(NOT_ACCEPTED),
        RunStatus::Failed | RunStatus::Cancelled => ExitCode::from(PLUGIN_ERROR),
    })
}

pub fn runs(cmd: RunsCommand, dirs: &Dirs) -> Result<ExitCode, Failure> {
    let data = dirs.data.as_deref().ok_or_else(|| {
        Failure::bad_input("runs live in the data dir: set --data-dir or $WARDEN_DATA_DIR")
    })?;
    let runs = Runs::new(data);
    match cmd {
        RunsCommand::List { json } => {
            let all = runs.list();
            if json {
                let rows: Vec<_> = all.iter().map(report::json).collect();
                let rows = serde_json::Value::Array(rows).to_string();
                println!("{}", terminal::escape_json(&rows));
            } else if all.is_empty() {
                eprintln!("no runs yet; start one with `warden run WORKFLOW.toml`");
            } else {
                println!(
                    "{:<24} {:<20} {:<10} {:>6}  goal",
                    "run", "workflow", "status", "tasks"
                );
                for s in &all {
                    println!(
                        "{:<24} {:<20} {:<10} {:>6}  {}",
                        s.run,
                        s.workflow.as_ref().map_or("", |w| w.name.as_str()),
                        status_word(s),
                        s.tasks.len(),
                        terminal::escape(&ellipsis(&s.goal, 60))
                    );
                }
            }
        }
        RunsCommand::Show { run, json } => {
            let state = runs.load(&run).map_err(run_failure)?;
            if json {
                println!(
                    "{}",
                    terminal::escape_json(&report::json(&state).to_string())
                );
            } else {
                print!("{}", terminal::escape(&report::text(&state)));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn status_word(s: &RunState) -> &'static str {
    match warden_run::ended(s) {
        Some(RunStatus::Succeeded) => "succeeded",
        Some(RunStatus::NotAccepted) => "not accepted",
        Some(RunStatus::Failed) => "failed",
        Some(RunStatus::Cancelled) => "cancelled",
        None => "stopped",
    }
}

fn ellipsis(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

fn run_failure(e: RunError) -> Failure {
    let code = match e {
        RunError::Workflow(_) | RunError::Plugin(_) | RunError::NotFound(_) | RunError::Busy(_) => {
            BAD_INPUT
        }
        RunError::Journal(_) | RunError::Files(_) => crate::exit::INTERNAL,
    };
    Failure {
        code,
        message: e.to_string(),
    }
}

/// The workflow to run and the directory its relative paths start from.
fn workflow(args: &RunArgs) -> Result<(Workflow, PathBuf), Failure> {
    match &args.workflow {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::bad_input(format!("cannot read workflow {}: {e}", path.display()))
            })?;
            let workflow =
                Workflow::parse(&text, &path.display().to_string()).map_err(Failure::bad_input)?;
            let base = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            Ok((workflow, base))
        }
        None if args.goal.is_some() => {
            let workflow = Workflow::goal().map_err(Failure::internal)?;
            Ok((workflow, PathBuf::from(".")))
        }
        None => Err(Failure::bad_input(
            "give a workflow file, --goal \"...\", --resume RUN_ID or --retry RUN_ID",
        )),
    }
}

fn sinks(args: &RunArgs) -> Result<Vec<Box<dyn EventSink>>, Failure> {
    let mut sinks: Vec<Box<dyn EventSink>> = Vec::new();
    if let Some(path) = &args.events {
        let file = std::fs::File::create(path).map_err(|e| {
            Failure::bad_input(format!("cannot write events to {}: {e}", path.display()))
        })?;
        sinks.push(Box::new(JsonLines::new(Box::new(file))));
    }
    if args.json {
        sinks.push(Box::new(JsonLines::new(Box::new(std::io::stdout()))));
    } else {
        sinks.push(Box::new(Progress::new()));
    }
    Ok(sinks)
}

/// The live view: a line per task on a terminal (indicatif), or one line
/// per event on stderr otherwise.
struct Progress {
    bars: MultiProgress,
    tasks: Mutex<Vec<(String, ProgressBar)>>,
    terminal: bool,
}

impl Progress {
    fn new() -> Progress {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        Progress {
            bars: MultiProgress::new(),
            tasks: Mutex::new(Vec::new()),
            terminal,
        }
    }

    fn bar(&self, task: &str) -> Option<ProgressBar> {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks
            .iter()
            .find(|(id, _)| id == task)
            .map(|(_, b)| b.clone())
    }
}

impl EventSink for Progress {
    fn event(&self, record: &Record, _state: &RunState) {
        let line = match &record.event {
            Event::RunStarted { run, .. } => format!("run {run} started"),
            Event::RunResumed { run, retry: false } => format!("run {run} resumed"),
            Event::RunResumed { run, retry: true } => {
                format!("run {run} resumed to retry its failed tasks")
            }
            Event::TaskQueued { task } => {
                if self.terminal {
                    let bar = self.bars.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {prefix:<18} {wide_msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(task.id.clone());
                    bar.set_message(format!("{} · queued", task.role));
                    let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
                    tasks.push((task.id.clone(), bar));
                }
                format!("task {} ({}) queued", task.id, task.role)
            }
            Event::TaskStarted {
                task,
                role,
                attempt,
                ..
            } => {
                if let Some(bar) = self.bar(task) {
                    bar.enable_steady_tick(std::time::Duration::from_millis(120));
                    bar.set_message(format!("{role} · running, attempt {attempt}"));
                }
                format!("task {task} started (attempt {attempt})")
            }
            Event::ToolCall {
                task,
                key,
                ok,
                replayed,
                ..
            } => {
                let how = match (ok, replayed) {
                    (_, true) => "replayed from the journal",
                    (true, false) => "ok",
                    (false, false) => "failed",
                };
                if let Some(bar) = self.bar(task) {
                    bar.set_message(format!("called {} ({how})", key.tool));
                }
                format!("task {task} called {} ({how})", key.tool)
            }
            Event::LlmCall {
                task,
                model,
                input_tokens,
                output_tokens,
                ..
            } => {
                if let Some(bar) = self.bar(task) {
                    bar.set_message(format!("asked {model}"));
                }
                format!("task {task} asked {model} ({input_tokens} in, {output_tokens} out)")
            }
            Event::TaskFinished { task, outcome, .. } => {
                if let Some(bar) = self.bar(task) {
                    bar.finish_with_message(format!(
                        "done · {}",
                        safe(&ellipsis(&outcome.summary, 60))
                    ));
                }
                format!(
                    "task {task} done: {}",
                    safe(&ellipsis(&outcome.summary, 100))
                )
            }
            Event::TaskFailed {
                task,
                error,
                retry_in_ms,
                ..
            } => {
                let next = match retry_in_ms {
                    Some(ms) => format!("; retrying in {} ms", ms),
                    None => String::new(),
                };
                if let Some(bar) = self.bar(task) {
                    bar.set_message(format!("failed{next}: {}", safe(&ellipsis(error, 60))));
                }
                format!("task {task} failed{next}: {error}")
            }
            Event::TaskDead { task, error, .. } => {
                if let Some(bar) = self.bar(task) {
                    bar.abandon_with_message(format!("dead: {}", safe(&ellipsis(error, 60))));
                }
                format!("task {task} is dead: {error}")
            }
            Event::TaskSkipped { task, because } => {
                if let Some(bar) = self.bar(task) {
                    bar.abandon_with_message(format!("skipped: {}", safe(because)));
                }
                format!("task {task} skipped: {because}")
            }
            Event::RunFinished { status } => format!("run finished: {status:?}"),
        };
        if !self.terminal {
            eprintln!("{}", terminal::escape(&line));
        }
    }
}

/// Guest-written text for a progress line.
fn safe(text: &str) -> String {
    terminal::escape(text).into_owned()
}
