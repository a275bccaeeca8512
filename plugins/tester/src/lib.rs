//! The `tester` role: gathers the Python files its dependencies wrote (or
//! every `.py` in the workspace), runs their unittest tests through the
//! `exec` tool — a fresh sandbox with only those files, no network — and
//! reports pass or fail with the output. It asks no model: a test result is
//! a fact, not an opinion. Without an `exec` tool it says so and runs
//! nothing.

use warden_sdk::role::{Outcome, Role, RoleError, RoleSpec, Task};
use warden_sdk::serde_json::{Map, Value, json};
use warden_sdk::tools;

const WORKSPACE: &str = "/workspace";
/// Characters of output kept in the outcome.
const MAX_OUTPUT: usize = 4000;

/// Runs every test module under /work and prints a machine-readable last
/// line.
const RUNNER: &str = r#"
import sys, unittest
sys.path.insert(0, "/work")
loader = unittest.defaultTestLoader
suite = unittest.TestSuite()
for pattern in ("test*.py", "*_test.py"):
    suite.addTests(loader.discover("/work", pattern=pattern, top_level_dir="/work"))
result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
print("WARDEN-TESTS run=%d failures=%d errors=%d" % (result.testsRun, len(result.failures), len(result.errors)))
sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
"#;

struct Tester;

impl Role for Tester {
    fn describe() -> RoleSpec {
        RoleSpec::new(
            "tester",
            "Runs the Python unittest tests in the workspace and reports pass or fail with the output",
        )
        .tool("fs")
        .tool("exec")
    }

    fn run(task: Task) -> Result<Outcome, RoleError> {
        let paths = python_files(&task)?;
        let tests: Vec<&String> = paths.iter().filter(|p| is_test(p)).collect();
        if tests.is_empty() {
            return Outcome::new("no test files to run (test_*.py or *_test.py)").output(&json!({
                "passed": false,
                "ran": false,
                "files": paths,
            }));
        }
        if !tools::has("exec.run_python") {
            return Outcome::new("tests found but not run: no exec tool is granted to the tester")
                .output(&json!({"passed": Value::Null, "ran": false, "tests": tests}));
        }
        let mut files = Map::new();
        for path in &paths {
            let read = tools::call(
                "fs.read_file",
                &json!({"path": format!("{WORKSPACE}/{path}"), "max_bytes": 262144}),
            )?;
            files.insert(
                path.clone(),
                Value::String(read["content"].as_str().unwrap_or_default().to_string()),
            );
        }
        let ran = tools::call("exec.run_python", &json!({"code": RUNNER, "files": files}))?;
        let stdout = ran["stdout"].as_str().unwrap_or_default();
        let stderr = ran["stderr"].as_str().unwrap_or_default();
        let exit_code = ran["exit_code"].as_i64();
        let counts = counts(stdout);
        let passed = exit_code == Some(0);
        let summary = match (&counts, ran["limit"].as_str()) {
            (_, Some(limit)) => format!("tests stopped by the {limit} limit"),
            (Some((run, failures, errors)), _) => format!(
                "{} — {run} test(s), {failures} failure(s), {errors} error(s)",
                if passed { "passed" } else { "failed" }
            ),
            (None, _) => format!("tests did not run (exit code {exit_code:?})"),
        };
        Outcome::new(summary).output(&json!({
            "passed": passed,
            "ran": true,
            "exit_code": exit_code,
            "tests_run": counts.map(|c| c.0),
            "failures": counts.map(|c| c.1),
            "errors": counts.map(|c| c.2),
            "stdout": clip(stdout),
            "stderr": clip(stderr),
            "tests": tests,
        }))
    }
}

warden_sdk::export_role!(Tester);
warden_sdk::embed_manifest!("../warden.toml");

/// The `.py` files the dependencies produced, else every `.py` at the top
/// of the workspace.
fn python_files(task: &Task) -> Result<Vec<String>, RoleError> {
    let mut paths: Vec<String> = task
        .dependency_artifacts()
        .into_iter()
        .filter(|p| p.ends_with(".py"))
        .collect();
    if paths.is_empty() {
        let listed = tools::call("fs.list_dir", &json!({"path": WORKSPACE}))?;
        for entry in listed["entries"].as_array().into_iter().flatten() {
            let path = entry["path"].as_str().unwrap_or_default();
            let name = path.trim_start_matches(WORKSPACE).trim_start_matches('/');
            if entry["kind"] == "file" && name.ends_with(".py") {
                paths.push(name.to_string());
            }
        }
    }
    Ok(paths)
}

fn is_test(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with("test") || name.ends_with("_test.py")
}

/// `(run, failures, errors)` from the runner's last line.
fn counts(stdout: &str) -> Option<(u64, u64, u64)> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("WARDEN-TESTS "))?;
    let mut values = line.split_whitespace().skip(1).map(|kv| {
        kv.split_once('=')
            .and_then(|(_, v)| v.parse::<u64>().ok())
            .unwrap_or(0)
    });
    Some((values.next()?, values.next()?, values.next()?))
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_OUTPUT) {
        Some((at, _)) => format!("{}… [cut]", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runner_line_is_read_and_test_files_recognised() {
        let out = "test_a (t.T) ... ok\n\nOK\nWARDEN-TESTS run=3 failures=1 errors=0\n";
        assert_eq!(counts(out), Some((3, 1, 0)));
        assert_eq!(counts("no line"), None);
        assert!(is_test("test_stats.py"));
        assert!(is_test("pkg/stats_test.py"));
        assert!(!is_test("stats.py"));
    }
}
