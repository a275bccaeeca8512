//! `warden memory ...` end to end: each command in its own process over the
//! same data dir (so every step is also a restart), import with chunking,
//! the memory plugin under `--memory-ns` and the policy file's `memory`.

use serde_json::Value;
use warden_tests::artifacts::MEMORY;

use crate::*;

/// A scratch data dir that sees the suite's fetched models.
fn scratch() -> Scratch {
    let s = Scratch::new();
    std::os::unix::fs::symlink(
        crate::llm::fetched().join("models"),
        s.data.path().join("models"),
    )
    .unwrap();
    s
}

fn json(out: &std::process::Output) -> Value {
    assert_eq!(code(out), 0, "{}", stderr(out));
    json_any(out)
}

fn json_any(out: &std::process::Output) -> Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
}

#[test]
fn add_search_get_find_delete_each_in_a_new_process() {
    let s = scratch();
    let add = |args: &[&str]| {
        let out = s.run(args);
        assert_eq!(code(&out), 0, "{args:?}: {}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    let pg = add(&[
        "memory",
        "add",
        "--namespace",
        "ops",
        "--kind",
        "note",
        "--source",
        "db.md",
        "--tag",
        "db",
        "--extra",
        r#"{"owner":"ops"}"#,
        "Postgres listens on port 5432.",
    ]);
    assert_eq!(pg.len(), 32, "{pg}");
    add(&[
        "memory",
        "add",
        "-n",
        "ops",
        "--kind",
        "recipe",
        "Bake the bread for forty minutes.",
    ]);

    let hits = json(&s.run(&[
        "memory",
        "search",
        "-n",
        "ops",
        "--json",
        "-k",
        "1",
        "which port is the SQL database on?",
    ]));
    assert_eq!(hits[0]["entry"]["id"], pg.as_str());
    assert!(hits[0]["score"].as_f64().unwrap() > 0.2);
    let text = s.run(&[
        "memory",
        "search",
        "-n",
        "ops",
        "--mode",
        "text",
        "forty minutes",
    ]);
    assert!(
        stdout(&text).contains("Bake the bread") && !stdout(&text).contains("Postgres"),
        "{}",
        stdout(&text)
    );
    let filtered = json(&s.run(&[
        "memory",
        "search",
        "-n",
        "ops",
        "--json",
        "--kind",
        "recipe",
        "database port",
    ]));
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    assert_eq!(filtered[0]["entry"]["meta"]["kind"], "recipe");

    let entry = json(&s.run(&["memory", "get", "-n", "ops", "--json", &pg]));
    assert_eq!(entry["meta"]["extra"]["owner"], "ops");
    assert_eq!(entry["meta"]["tags"][0], "db");
    let found = json(&s.run(&["memory", "find", "-n", "ops", "--json", "--tag", "db"]));
    assert_eq!(found.as_array().unwrap().len(), 1);

    let stats = json(&s.run(&["memory", "stats", "--json"]));
    assert_eq!(stats[0]["namespace"], "ops");
    assert_eq!(stats[0]["entries"], 2);
    assert_eq!(stats[0]["dimension"], 384);

    let del = s.run(&["memory", "delete", "-n", "ops", &pg]);
    assert_eq!(code(&del), 0, "{}", stderr(&del));
    let gone = s.run(&["memory", "get", "-n", "ops", &pg]);
    assert_exit(&gone, 1, "not found", &"get after delete");
    let stats = json(&s.run(&["memory", "stats", "-n", "ops", "--json"]));
    assert_eq!(stats[0]["entries"], 1);
    // Other tenants see nothing of it.
    let other = json(&s.run(&["memory", "find", "-n", "ops", "--tenant", "acme", "--json"]));
    assert!(other.as_array().unwrap().is_empty());
}

#[test]
fn bad_input_names_the_problem() {
    let s = scratch();
    let cases: [(&[&str], &str); 5] = [
        (&["memory", "add", "-n", "../etc", "x"], "`namespace`"),
        (
            &["memory", "search", "-n", "ops", "-k", "0", "x"],
            "`top-k`",
        ),
        (
            &["memory", "search", "-n", "ops", "--mode", "fuzzy", "x"],
            "not a search mode",
        ),
        (
            &["memory", "add", "-n", "ops", "--extra", "{nope", "x"],
            "--extra is not JSON",
        ),
        (&["memory", "get", "-n", "ops", "1234"], "`id`"),
    ];
    for (args, expected) in cases {
        assert_exit(&s.run(args), 2, expected, &args);
    }
    // Reading a namespace that does not exist is empty, not an error.
    let out = s.run(&["memory", "find", "-n", "nothing", "--json"]);
    assert_eq!(stdout(&out).trim(), "[]", "{}", stderr(&out));
}

#[test]
fn import_chunks_files_with_their_source() {
    let s = scratch();
    let docs = s.cwd.path().join("docs");
    std::fs::create_dir_all(docs.join("sub")).unwrap();
    let long: String = (0..600)
        .map(|i| format!("Sentence {i} of the long guide about configuring the widget. "))
        .collect();
    std::fs::write(docs.join("guide.md"), &long).unwrap();
    std::fs::write(
        docs.join("sub").join("short.txt"),
        "The widget's port is 8443.",
    )
    .unwrap();
    std::fs::write(docs.join(".hidden"), "never imported").unwrap();
    let out = s.run(&[
        "memory", "import", "-n", "docs", "--kind", "api-doc", "docs",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("from 2 file(s)"), "{said}");
    let chunks: usize = said.split_whitespace().nth(1).unwrap().parse().unwrap();
    // ~37 000 characters at ~2 000 a chunk, with overlap.
    assert!((15..=30).contains(&chunks), "{chunks} chunks: {said}");

    let found = json(&s.run(&[
        "memory", "find", "-n", "docs", "--json", "--limit", "100", "--kind", "api-doc",
    ]));
    let found = found.as_array().unwrap();
    assert_eq!(found.len(), chunks, "every chunk stored");
    let sources: std::collections::HashSet<&str> = found
        .iter()
        .map(|e| e["meta"]["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources.len(), 2, "{sources:?}");
    assert!(
        sources.iter().all(|s| s.starts_with("docs/")),
        "{sources:?}"
    );
    let hit = json(&s.run(&[
        "memory",
        "search",
        "-n",
        "docs",
        "--json",
        "-k",
        "1",
        "which port does the widget use?",
    ]));
    assert_eq!(hit[0]["entry"]["content"], "The widget's port is 8443.");
    assert_exit(
        &s.run(&["memory", "import", "-n", "docs", "missing"]),
        2,
        "missing",
        &"missing path",
    );
}

#[test]
fn the_memory_plugin_under_flags_and_policy() {
    let s = scratch();
    let call = |extra: &[&str], tool: &str, args: &str| {
        let mut a = vec!["tool", "call", MEMORY, tool, "--args", args];
        a.extend_from_slice(extra);
        s.run(&a)
    };
    let stored = call(
        &["--memory-ns", "notes:rw"],
        "store",
        r#"{"namespace":"notes","content":"the deploy key rotates monthly"}"#,
    );
    let id = json(&stored)["id"].as_str().unwrap().to_string();
    // The CLI sees what the plugin stored (same data dir, another process).
    let entry = json(&s.run(&["memory", "get", "-n", "notes", "--json", &id]));
    assert_eq!(entry["content"], "the deploy key rotates monthly");

    // A tool's own error is JSON on stdout, exit 1.
    let refused = |out: &std::process::Output, expected: &str| {
        assert_eq!(code(out), 1, "{}", stderr(out));
        let e = &json_any(out)["error"];
        assert_eq!(e["kind"], "denied", "{e}");
        assert!(e["message"].as_str().unwrap().contains(expected), "{e}");
    };
    let read_only = call(
        &["--memory-ns", "notes"],
        "store",
        r#"{"namespace":"notes","content":"x"}"#,
    );
    refused(&read_only, "notes:rw");
    let none = call(&[], "find", r#"{"namespace":"notes"}"#);
    refused(&none, "not granted");
    assert_exit(
        &call(
            &["--memory-ns", "notes:xx"],
            "find",
            r#"{"namespace":"notes"}"#,
        ),
        2,
        "not an access mode",
        &"bad flag",
    );

    let policy = s.cwd.path().join("policy.toml");
    std::fs::write(
        &policy,
        "version = 1\n[plugins.memory]\nmemory = [\"notes\"]\n",
    )
    .unwrap();
    let policy = policy.to_str().unwrap();
    let found = call(
        &["--policy", policy],
        "search",
        r#"{"namespace":"notes","query":"key rotation schedule"}"#,
    );
    assert_eq!(json(&found)[0]["id"], id.as_str());
    let denied = call(
        &["--policy", policy],
        "delete",
        &format!(r#"{{"namespace":"notes","id":"{id}"}}"#),
    );
    refused(&denied, "notes:rw");
    std::fs::write(
        s.cwd.path().join("bad.toml"),
        "version = 1\n[grant]\nmemory = [\"a b\"]\n",
    )
    .unwrap();
    let bad = call(
        &["--policy", "bad.toml"],
        "find",
        r#"{"namespace":"notes"}"#,
    );
    assert_exit(&bad, 2, "`grant.memory[0]`", &"bad policy");
}
