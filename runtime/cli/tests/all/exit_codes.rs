//! Every exit code of the contract: 0 · 1 · 2 · 3 (naming the limit) · 4.

use warden_tests::artifacts::{FS, HELLO, HOSTILE};

use crate::*;

#[test]
fn the_documented_fs_example_works() {
    let s = Scratch::new();
    std::fs::create_dir(s.cwd.path().join("data")).unwrap();
    std::fs::write(s.cwd.path().join("data/notes.txt"), "buy milk\n").unwrap();
    let out = s.run(&[
        "tool",
        "call",
        FS,
        "read_file",
        "--args",
        r#"{"path":"/data/notes.txt"}"#,
        "--dir",
        "./data::/data",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["content"], "buy milk\n");
}

#[test]
fn success_is_0_and_prints_the_result() {
    let s = Scratch::new();
    let out = s.run(&[
        "tool",
        "call",
        HELLO,
        "greet",
        "--args",
        r#"{"name":"world"}"#,
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), r#"{"message":"Hello, world!"}"#);
    // The compiled artifact was cached in the data dir (beside the
    // cache's key).
    let cached = std::fs::read_dir(s.data.path().join("cache/compiled"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        })
        .count();
    assert_eq!(cached, 1);
    let again = s.run(&[
        "tool",
        "call",
        HELLO,
        "greet",
        "--args",
        r#"{"name":"cache"}"#,
    ]);
    assert_eq!(stdout(&again).trim(), r#"{"message":"Hello, cache!"}"#);
}

#[test]
fn a_tool_error_is_1_with_a_json_error() {
    let s = Scratch::new();
    let out = s.run(&["tool", "call", HELLO, "greet", "--args", r#"{"name":""}"#]);
    assert_eq!(code(&out), 1);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["error"]["kind"], "invalid-arguments");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`name` is empty")
    );

    let out = s.run(&[
        "tool",
        "call",
        FS,
        "read_file",
        "--args",
        r#"{"path":"/etc/passwd"}"#,
    ]);
    assert_eq!(code(&out), 1);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["error"]["kind"], "denied");
}

#[test]
fn bad_input_is_2_with_a_message_that_says_what_to_fix() {
    let s = Scratch::new();
    std::fs::write(s.cwd.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(
        s.cwd.path().join("empty-component.wasm"),
        b"\0asm\x0d\0\x01\0",
    )
    .unwrap();
    std::fs::write(s.cwd.path().join("text.wasm"), b"hello").unwrap();
    std::fs::write(
        s.cwd.path().join("bad-policy.toml"),
        "version = 1\n[grant]\nallow-hosts = [\"nope\"]\n",
    )
    .unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["tool", "call", HELLO, "greet", "--args", "{not json"],
            "--args is not valid JSON",
        ),
        (
            &["tool", "call", "missing.wasm", "greet"],
            "cannot read plugin missing.wasm",
        ),
        (
            &["tool", "call", "text.wasm", "greet"],
            "is not a WebAssembly file",
        ),
        (
            &["tool", "call", "core.wasm", "greet"],
            "is a core wasm module, not a component",
        ),
        (
            &["tool", "call", "empty-component.wasm", "greet"],
            "does not export warden:plugin/tool@0.1.0",
        ),
        (
            &["tool", "call", HELLO, "greet", "--dir", "./nowhere::/data"],
            "is not a directory on this host",
        ),
        (
            &[
                "tool",
                "call",
                HELLO,
                "greet",
                "--allow-host",
                "example.com",
            ],
            "has no scheme",
        ),
        (
            &[
                "tool",
                "call",
                HELLO,
                "greet",
                "--policy",
                "bad-policy.toml",
            ],
            "policy field `grant.allow-hosts[0]`",
        ),
        (
            &["tool", "call", HELLO, "greet", "--policy", "nope.toml"],
            "cannot read policy file nope.toml",
        ),
        (
            &["tool", "call", HELLO, "greet", "--memory", "99999"],
            "above the 4096 MiB",
        ),
        (
            &["tool", "call", HELLO, "greet", "--fuel", "0"],
            "--fuel none turns fuel metering off, which only `warden exec` does",
        ),
        (
            &["tool", "call", HELLO, "greet", "--tenant", "../x"],
            "is not a tenant id",
        ),
        (&["tool", "call"], "required"),
        (&["tool", "frobnicate"], "unrecognized subcommand"),
        (
            &["mcp"],
            "no plugins to serve; pass --plugin FILE or --plugins-dir DIR",
        ),
        (
            &["mcp", "--plugins-dir", "nowhere"],
            "--plugins-dir nowhere",
        ),
    ];
    for (args, expected) in cases {
        assert_exit(&s.run(args), 2, expected, args);
    }
}

#[test]
fn a_limit_is_3_and_stderr_names_it() {
    let s = Scratch::new();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "tool",
                "call",
                HOSTILE,
                "spin",
                "--fuel",
                "20000000",
                "--timeout",
                "20000",
            ],
            "limit exceeded: fuel",
        ),
        (
            &["tool", "call", HOSTILE, "spin", "--timeout", "300"],
            "limit exceeded: deadline",
        ),
        (
            &[
                "tool",
                "call",
                HOSTILE,
                "sleep",
                "--args",
                r#"{"ms":20000}"#,
                "--timeout",
                "300",
            ],
            "limit exceeded: deadline",
        ),
        (
            &[
                "tool",
                "call",
                HOSTILE,
                "alloc",
                "--args",
                r#"{"mib":64}"#,
                "--memory",
                "32",
            ],
            "limit exceeded: memory",
        ),
        (
            &[
                "tool",
                "call",
                HOSTILE,
                "big_output",
                "--args",
                r#"{"mib":2}"#,
                "--output-kib",
                "1024",
            ],
            "limit exceeded: output",
        ),
    ];
    for (args, expected) in cases {
        assert_exit(&s.run(args), 3, expected, args);
    }
}

#[test]
fn with_no_flags_a_runaway_loop_stops_within_about_five_seconds() {
    let s = Scratch::new();
    let started = std::time::Instant::now();
    let out = s.run(&["tool", "call", HOSTILE, "spin"]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    // The default fuel is sized so the 5 s deadline is what stops a loop.
    assert!(
        stderr(&out).contains("limit exceeded: deadline: the call ran longer than 5000 ms"),
        "{}",
        stderr(&out)
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn any_other_trap_is_4() {
    let s = Scratch::new();
    for tool in ["panic", "abort", "bad_json"] {
        let out = s.run(&["tool", "call", HOSTILE, tool]);
        assert_eq!(code(&out), 4, "{tool}: {}", stderr(&out));
    }
    let out = s.run(&["tool", "call", HOSTILE, "panic"]);
    // The guest's own panic message is passed on.
    assert!(
        stderr(&out).contains("hostile guest panicked on purpose"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_secret_in_the_host_environment_is_invisible_to_the_guest() {
    let s = Scratch::new();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .current_dir(s.cwd.path())
        .env("WARDEN_DATA_DIR", s.data.path())
        .env("OPENAI_API_KEY", "sk-canary-5d1e")
        .args(["tool", "call", HOSTILE, "env"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stdout(&out).contains("sk-canary-5d1e"));
    assert_eq!(stdout(&out).trim(), r#"{"vars":[],"args":[]}"#);
}

#[test]
fn tool_list_prints_the_tools_as_json() {
    let s = Scratch::new();
    let out = s.run(&["tool", "list", FS]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["read_file", "write_file", "list_dir", "stat", "search"]
    );
    assert_eq!(v[0]["inputSchema"]["required"], serde_json::json!(["path"]));
}
