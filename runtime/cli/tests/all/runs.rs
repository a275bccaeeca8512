//! `warden run` as a user runs it: a real child process killed with SIGKILL
//! in the middle of a run, then `--resume`, and `warden runs list|show`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use warden_tests::artifacts::{CALLER, PLUGIN_DIR};
use warden_tests::fake_llm::{FakeLlm, Reply};

use crate::{Scratch, code, stderr, stdout};

const WORKFLOW: &str = r#"
version = 1
name = "kill-me"
[run]
concurrency = 1
[roles.caller]
plugin = "caller"
tools = ["fs"]

[[tasks]]
id = "first"
role = "caller"
prompt = "log first"
input = { calls = [{ tool = "fs.write_file", arguments = { path = "/workspace/log.txt", content = "first\n", append = true } }] }

[[tasks]]
id = "second"
role = "caller"
prompt = "log second, then think"
depends-on = ["first"]
input = { calls = [{ tool = "fs.write_file", arguments = { path = "/workspace/log.txt", content = "second\n", append = true } }], agent = "think about it" }

[[tasks]]
id = "third"
role = "caller"
prompt = "log third"
depends-on = ["second"]
input = { calls = [{ tool = "fs.write_file", arguments = { path = "/workspace/log.txt", content = "third\n", append = true } }] }
"#;

fn events(journal: &Path) -> Vec<Value> {
    std::fs::read_to_string(journal)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn count(events: &[Value], event: &str, task: &str) -> usize {
    events
        .iter()
        .filter(|e| e["event"] == event && e["task"] == task)
        .count()
}

#[test]
fn a_run_killed_mid_task_resumes_without_repeating_finished_work() {
    let s = Scratch::new();
    let fake = FakeLlm::start();
    // The second task's model call hangs: the run is killed while it waits.
    fake.push(Reply::echo_after(Duration::from_secs(120)));
    let llm = s.cwd.path().join("llm.toml");
    std::fs::write(&llm, fake.config()).unwrap();
    std::fs::write(s.cwd.path().join("flow.toml"), WORKFLOW).unwrap();
    let caller_dir = Path::new(CALLER)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let common = [
        "--llm-config",
        llm.to_str().unwrap(),
        "--plugin-dir",
        &caller_dir,
        "--plugin-dir",
        PLUGIN_DIR,
    ];

    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(s.cwd.path())
        .env("WARDEN_DATA_DIR", s.data.path())
        .args(["run", "flow.toml", "--json"])
        .args(common)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut run = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    // Read events until the second task has made its tool call and is
    // waiting on the model.
    loop {
        assert!(
            Instant::now() < deadline,
            "the run never reached the second task"
        );
        let line = lines.next().expect("the run ended early").unwrap();
        let event: Value = serde_json::from_str(&line).unwrap();
        if event["event"] == "run-started" {
            run = event["run"].as_str().unwrap().to_string();
        }
        if event["event"] == "tool-call" && event["task"] == "second" {
            break;
        }
    }
    while fake.requests().is_empty() {
        assert!(Instant::now() < deadline, "the model was never asked");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let journal = s.data.path().join("runs").join(&run).join("journal.jsonl");
    let before = events(&journal);
    assert_eq!(count(&before, "task-finished", "first"), 1);
    assert_eq!(count(&before, "task-finished", "second"), 0);
    let listed = s.run(&["runs", "list"]);
    assert!(stdout(&listed).contains(&run), "{}", stdout(&listed));
    assert!(stdout(&listed).contains("stopped"), "{}", stdout(&listed));

    // The model answers now.
    let mut args = vec!["run", "--resume", &run, "--json"];
    args.extend(common);
    let resumed = s.run(&args);
    assert_eq!(code(&resumed), 0, "{}", stderr(&resumed));

    let after = events(&journal);
    assert_eq!(count(&after, "task-started", "first"), 1, "first ran once");
    assert_eq!(count(&after, "task-finished", "first"), 1);
    assert_eq!(count(&after, "task-finished", "second"), 1);
    assert_eq!(count(&after, "task-finished", "third"), 1);
    assert!(after.iter().any(|e| e["event"] == "run-resumed"));
    // The second task's write happened before the kill; the resumed
    // attempt got its result from the journal instead of appending again.
    let replayed: Vec<bool> = after
        .iter()
        .filter(|e| e["event"] == "tool-call" && e["task"] == "second")
        .map(|e| e["replayed"].as_bool().unwrap())
        .collect();
    assert_eq!(replayed, [false, true]);
    let workspace = s.data.path().join("runs").join(&run).join("workspace");
    assert_eq!(
        std::fs::read_to_string(workspace.join("log.txt")).unwrap(),
        "first\nsecond\nthird\n"
    );

    // The report, as JSON and as text.
    let report: Value = serde_json::from_str(stdout(&resumed).lines().last().unwrap()).unwrap();
    assert_eq!(report["status"], "succeeded");
    assert_eq!(report["tasks"].as_array().unwrap().len(), 3);
    let shown = s.run(&["runs", "show", &run]);
    assert_eq!(code(&shown), 0);
    assert!(stdout(&shown).contains("succeeded"), "{}", stdout(&shown));
    let again = s.run(&["run", "--resume", &run]);
    assert_eq!(code(&again), 0, "a finished run resumes as finished");
}

#[test]
fn bad_workflows_are_bad_input_that_names_the_problem() {
    let s = Scratch::new();
    std::fs::write(
        s.cwd.path().join("cycle.toml"),
        "version = 1\nname = \"c\"\n[roles.r]\nplugin = \"caller\"\n[[tasks]]\nid = \"a\"\nrole = \"r\"\nprompt = \"p\"\ndepends-on = [\"b\"]\n[[tasks]]\nid = \"b\"\nrole = \"r\"\nprompt = \"p\"\ndepends-on = [\"a\"]\n",
    )
    .unwrap();
    let out = s.run(&["run", "cycle.toml"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("cycle: a -> b -> a"),
        "{}",
        stderr(&out)
    );
    let out = s.run(&["run", "--resume", "20990101-000000-beef"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("no run"), "{}", stderr(&out));
    let out = s.run(&["run"]);
    assert_eq!(code(&out), 2);
    // A run id is never a path: nothing outside the runs dir is read,
    // locked or appended to.
    let outside = s.cwd.path().join("elsewhere");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("journal.jsonl"), "").unwrap();
    for id in [outside.to_str().unwrap(), "../../elsewhere", "a/b"] {
        for args in [vec!["runs", "show", id], vec!["run", "--resume", id]] {
            let out = s.run(&args);
            assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
            assert!(stderr(&out).contains("not a run id"), "{}", stderr(&out));
        }
    }
    assert!(
        !outside.join("lock").exists(),
        "nothing was locked out there"
    );
}
