//! The final report of a run: per task its status, attempts, usage and
//! artifacts; the dead-letter list; what was skipped and why.

use std::fmt::Write;

use crate::journal::RunStatus;
use crate::state::{RunState, TaskStatus};

/// The report as text for a terminal.
pub fn text(state: &RunState) -> String {
    let mut out = String::new();
    let status = match (state.status, state.settled()) {
        (Some(RunStatus::Succeeded), true) => "succeeded".to_string(),
        (Some(RunStatus::NotAccepted), true) => match state.verdict() {
            Some((_, t)) => format!(
                "finished, not accepted ({}: {})",
                t.spec.id,
                t.outcome.as_ref().map_or("", |o| o.summary.trim())
            ),
            None => "finished, not accepted".to_string(),
        },
        (Some(RunStatus::Failed), true) => "failed".to_string(),
        (Some(RunStatus::Cancelled), _) => "cancelled".to_string(),
        _ => "stopped (resume with `warden run --resume ID`)".into(),
    };
    let name = state.workflow.as_ref().map_or("", |w| w.name.as_str());
    let _ = writeln!(out, "run {} ({name}): {status}", state.run);
    if !state.goal.is_empty() {
        let _ = writeln!(out, "goal: {}", state.goal);
    }
    let _ = writeln!(out, "workspace: {}", state.workspace.display());
    let _ = writeln!(
        out,
        "\n{:<20} {:<10} {:<8} {:>8} {:>10} {:>12} {:>8}  artifacts",
        "task", "role", "status", "attempts", "tokens", "fuel", "ms"
    );
    for t in &state.tasks {
        let status = match t.status {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Done => "done",
            TaskStatus::Dead => "dead",
            TaskStatus::Skipped => "skipped",
        };
        let artifacts = t
            .outcome
            .as_ref()
            .map(|o| o.artifacts.join(", "))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<20} {:<10} {:<8} {:>8} {:>10} {:>12} {:>8}  {artifacts}",
            t.spec.id,
            t.spec.role,
            status,
            t.attempt,
            t.usage.input_tokens + t.usage.output_tokens,
            t.usage.fuel,
            t.usage.ms,
        );
    }
    for t in &state.tasks {
        if let Some(o) = &t.outcome {
            let _ = writeln!(out, "\n{}: {}", t.spec.id, o.summary.trim());
        }
    }
    let dead = state.dead_letters();
    if !dead.is_empty() {
        let _ = writeln!(out, "\ndead letters:");
        for (id, error) in dead {
            let _ = writeln!(out, "  {id}: {error}");
        }
    }
    for t in &state.tasks {
        if let Some(because) = &t.skipped_because {
            let _ = writeln!(out, "skipped {}: {because}", t.spec.id);
        }
    }
    let u = state.usage();
    let _ = writeln!(
        out,
        "\ntotal: {} llm calls, {} tokens in / {} out, ${:.4}, {} tool calls, {} fuel, {} ms active",
        u.llm_calls, u.input_tokens, u.output_tokens, u.cost, u.tool_calls, u.fuel, state.active_ms
    );
    out
}

/// The report as JSON.
pub fn json(state: &RunState) -> serde_json::Value {
    serde_json::json!({
        "run": state.run,
        "workflow": state.workflow.as_ref().map(|w| w.name.clone()),
        "goal": state.goal,
        "status": state.status,
        "settled": state.settled(),
        "verdict": state.verdict().map(|(accepted, t)| serde_json::json!({
            "accepted": accepted,
            "task": t.spec.id,
            "why": t.outcome.as_ref().map(|o| o.summary.clone()),
        })),
        "workspace": state.workspace,
        "active_ms": state.active_ms,
        "usage": state.usage(),
        "tasks": state.tasks.iter().map(|t| serde_json::json!({
            "id": t.spec.id,
            "role": t.spec.role,
            "status": t.status,
            "attempts": t.attempt,
            "parent": t.spec.parent,
            "depends_on": t.spec.depends_on,
            "usage": t.usage,
            "outcome": t.outcome,
            "error": t.last_error,
            "skipped_because": t.skipped_because,
        })).collect::<Vec<_>>(),
        "dead_letters": state.dead_letters().into_iter().map(|(id, e)| serde_json::json!({"task": id, "error": e})).collect::<Vec<_>>(),
    })
}
