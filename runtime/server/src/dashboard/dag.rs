//! A run's tasks drawn as a graph: SVG made here, so the page needs no
//! graph library. Each task sits in the column of its longest chain of
//! dependencies, in queueing order within it; edges run from a dependency
//! (or the task that added a follow-up) to the task. Names are text nodes,
//! escaped by maud like everything else a run's guests wrote.

use std::collections::HashMap;

use maud::{Markup, html};
use warden_run::state::TaskState;
use warden_run::{RunState, TaskStatus};

const WIDTH: i64 = 170;
const HEIGHT: i64 = 46;
const GAP_X: i64 = 50;
const GAP_Y: i64 = 18;
const MARGIN: i64 = 10;

/// The status a task's colour (its CSS class) shows.
pub fn status_class(task: &TaskState) -> &'static str {
    match task.status {
        TaskStatus::Pending if task.failures > 0 => "retrying",
        TaskStatus::Pending => "pending",
        TaskStatus::Running => "running",
        TaskStatus::Done => "done",
        TaskStatus::Dead => "dead",
        TaskStatus::Skipped => "skipped",
    }
}

/// Each task's position in the run, by id.
fn index(run: &RunState) -> HashMap<&str, usize> {
    run.tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.spec.id.as_str(), i))
        .collect()
}

/// Each task's column: the length of its longest chain of dependencies.
fn columns(run: &RunState, index: &HashMap<&str, usize>) -> Vec<usize> {
    let mut column: Vec<Option<usize>> = vec![None; run.tasks.len()];
    // Tasks arrive after what they depend on, so one pass in order is
    // enough; a reference to an unknown or later task counts as none.
    for (i, task) in run.tasks.iter().enumerate() {
        let before = task
            .spec
            .depends_on
            .iter()
            .chain(task.spec.parent.iter())
            .filter_map(|d| index.get(d.as_str()))
            .filter(|&&d| d < i)
            .filter_map(|&d| column[d])
            .max();
        column[i] = Some(before.map_or(0, |c| c + 1));
    }
    column.into_iter().map(Option::unwrap_or_default).collect()
}

/// The run's graph as an SVG element.
pub fn render(run: &RunState) -> Markup {
    let index = index(run);
    let column = columns(run, &index);
    let mut rows: HashMap<usize, i64> = HashMap::new();
    let mut at = Vec::with_capacity(run.tasks.len());
    for &c in &column {
        let row = rows.entry(c).or_insert(0);
        at.push((
            MARGIN + c as i64 * (WIDTH + GAP_X),
            MARGIN + *row * (HEIGHT + GAP_Y),
        ));
        *row += 1;
    }
    let columns_used = column.iter().max().map_or(0, |c| c + 1) as i64;
    let rows_used = rows.values().copied().max().unwrap_or(0);
    let width = (2 * MARGIN + columns_used * (WIDTH + GAP_X) - GAP_X).max(WIDTH);
    let height = (2 * MARGIN + rows_used * (HEIGHT + GAP_Y) - GAP_Y).max(HEIGHT);
    let mut edges = Vec::new();
    for (i, task) in run.tasks.iter().enumerate() {
        for (from, kind) in task
            .spec
            .depends_on
            .iter()
            .map(|d| (d, "edge"))
            .chain(task.spec.parent.iter().map(|p| (p, "edge follow-up")))
        {
            if let Some(&f) = index.get(from.as_str()) {
                let (x1, y1) = (at[f].0 + WIDTH, at[f].1 + HEIGHT / 2);
                let (x2, y2) = (at[i].0, at[i].1 + HEIGHT / 2);
                edges.push((x1, y1, x2, y2, kind));
            }
        }
    }
    html! {
        svg class="dag" xmlns="http://www.w3.org/2000/svg" role="img"
            width=(width) height=(height) viewBox=(format!("0 0 {width} {height}")) {
            title { "The run's tasks and their dependencies" }
            defs {
                marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5"
                    markerWidth="6" markerHeight="6" orient="auto-start-reverse" {
                    path d="M 0 0 L 10 5 L 0 10 z" {}
                }
            }
            @for (x1, y1, x2, y2, kind) in &edges {
                path class=(kind) marker-end="url(#arrow)"
                    d=(format!("M {x1} {y1} C {} {y1}, {} {y2}, {x2} {y2}", x1 + GAP_X / 2, x2 - GAP_X / 2)) {}
            }
            @for (task, (x, y)) in run.tasks.iter().zip(&at) {
                g class=(format!("task {}", status_class(task))) data-task=(task.spec.id) data-status=(status_class(task)) {
                    title { (about(task)) }
                    rect x=(x) y=(y) width=(WIDTH) height=(HEIGHT) rx="6" {}
                    text x=(x + 8) y=(y + 19) class="name" { (clip(&task.spec.id, 22)) }
                    text x=(x + 8) y=(y + 36) class="role" {
                        (clip(&task.spec.role, 12)) " · " (status_class(task))
                        @if task.attempt > 1 { " · try " (task.attempt) }
                    }
                }
            }
        }
    }
}

/// What a task's box says on hover: its task, then how it ended (the
/// summary, the last error or why it was skipped) or what it was asked.
fn about(task: &TaskState) -> String {
    let said = task
        .outcome
        .as_ref()
        .map(|o| o.summary.as_str())
        .or(task.skipped_because.as_deref())
        .or(task.last_error.as_deref())
        .unwrap_or(&task.spec.instructions);
    format!("{} ({}): {}", task.spec.id, task.spec.role, clip(said, 400))
}

/// `text` cut to `most` characters, with an ellipsis when cut.
pub fn clip(text: &str, most: usize) -> String {
    if text.chars().count() <= most {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(most.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_counts_characters() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcdé", 4), "abc…");
    }
}
