//! The `reviewer` role: accepts the work of the tasks it depends on, or
//! returns concrete fixes as follow-up tasks — a coder task to fix, a tester
//! task to check the fix, and another review — for at most `max_rounds`
//! rounds (task input, default 1). Passing tests are accepted as they are;
//! failing ones are never accepted, and the model only words the fixes.

use serde::Deserialize;
use warden_sdk::llm::{self, Message, Request};
use warden_sdk::role::{NewTask, Outcome, Role, RoleError, RoleSpec, Task};
use warden_sdk::serde_json::{self, Value, json};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Input {
    round: u32,
    max_rounds: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct Review {
    fixes: Vec<String>,
}

struct Reviewer;

impl Role for Reviewer {
    fn describe() -> RoleSpec {
        RoleSpec::new(
            "reviewer",
            "Accepts finished work, or returns concrete fixes as new tasks for the coder and tester",
        )
    }

    fn run(task: Task) -> Result<Outcome, RoleError> {
        let input: Input = if task.input == "null" {
            Input::default()
        } else {
            task.input_as()?
        };
        let round = input.round.max(1);
        let max_rounds = input.max_rounds.unwrap_or(1);
        let results: Vec<Value> = task
            .context
            .dependencies
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(&d.output).ok())
            .filter(|o| o.get("ran").is_some())
            .collect();
        let failing: Vec<&Value> = results.iter().filter(|r| r["passed"] != true).collect();
        if results.is_empty() {
            return Outcome::new("accepted: no test results to review")
                .output(&json!({"accepted": true, "round": round, "tested": false}));
        }
        if failing.is_empty() {
            return Outcome::new(format!("accepted: the tests pass (round {round})"))
                .output(&json!({"accepted": true, "round": round, "tested": true}));
        }
        let evidence: String = failing
            .iter()
            .map(|r| {
                format!(
                    "{}\n{}\n",
                    r["stdout"].as_str().unwrap_or_default(),
                    r["stderr"].as_str().unwrap_or_default()
                )
            })
            .collect();
        if round >= max_rounds {
            return Outcome::new(format!(
                "not accepted: the tests still fail after {round} round(s)"
            ))
            .output(&json!({"accepted": false, "round": round, "evidence": evidence}));
        }
        let fixes = ask_fixes(&task, &evidence)?;
        let coder = task
            .context
            .dependencies
            .iter()
            .find(|d| d.role == "coder")
            .map(|d| d.task_id.clone());
        let n = round + 1;
        let fix_id = format!("fix-{n}");
        let test_id = format!("retest-{n}");
        let mut fix = NewTask::new(
            &fix_id,
            "coder",
            &format!(
                "Fix the code so that the tests pass. {}\nFailing output:\n{}",
                fixes.join(" "),
                clip(&evidence, 1500)
            ),
        );
        if let Some(coder) = &coder {
            fix = fix.after(coder);
        }
        let retest =
            NewTask::new(&test_id, "tester", "Run the tests again after the fix.").after(&fix_id);
        let review = NewTask::new(&format!("review-{n}"), "reviewer", "Review the fix.")
            .after(&test_id)
            .input(&json!({"round": n, "max_rounds": max_rounds}));
        Outcome::new(format!(
            "not accepted: {} fix(es) requested for round {n}",
            fixes.len()
        ))
        .output(&json!({"accepted": false, "round": round, "fixes": fixes}))
        .map(|o| o.follow_up(fix).follow_up(retest).follow_up(review))
    }
}

warden_sdk::export_role!(Reviewer);
warden_sdk::embed_manifest!("../warden.toml");

fn ask_fixes(task: &Task, evidence: &str) -> Result<Vec<String>, RoleError> {
    let schema = json!({
        "type": "object",
        "properties": {
            "fixes": {
                "type": "array",
                "minItems": 1,
                "maxItems": 3,
                "items": {"type": "string", "maxLength": 200}
            }
        },
        "required": ["fixes"],
        "additionalProperties": false
    });
    let request = Request::new(vec![
        Message::system(
            "You review code. The tests failed. Name at most three concrete fixes, one sentence each. Answer with JSON.",
        ),
        Message::user(format!("{}\nTest output:\n{}", task.brief(), clip(evidence, 3000))),
    ])
    .max_tokens(300)
    .temperature(0.0);
    let answer = llm::ask_schema(request, &schema)?;
    let review: Review = serde_json::from_value(answer)
        .map_err(|e| RoleError::Failed(format!("the review has the wrong shape: {e}")))?;
    let fixes: Vec<String> = review
        .fixes
        .into_iter()
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .collect();
    Ok(if fixes.is_empty() {
        vec!["Make the failing tests pass.".to_string()]
    } else {
        fixes
    })
}

fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}
