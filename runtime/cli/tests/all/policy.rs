//! Grants from a policy file, per plugin, with flags on top.

use warden_tests::artifacts::{FS, HELLO, HOSTILE};

use crate::*;

#[test]
fn a_policy_file_grants_directories_to_one_plugin_by_name() {
    let s = Scratch::new();
    std::fs::create_dir(s.cwd.path().join("notes")).unwrap();
    std::fs::write(s.cwd.path().join("notes/a.txt"), "from policy").unwrap();
    std::fs::write(
        s.cwd.path().join("policy.toml"),
        "version = 1\n[plugins.fs]\ndirs = [{ host = \"notes\", guest = \"/notes\", mode = \"ro\" }]\n",
    )
    .unwrap();
    let out = s.run(&[
        "tool",
        "call",
        FS,
        "read_file",
        "--args",
        r#"{"path":"/notes/a.txt"}"#,
        "--policy",
        "policy.toml",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("from policy"));

    // The hostile guest (a different plugin name) gets nothing from it.
    let out = s.run(&[
        "tool",
        "call",
        HOSTILE,
        "read",
        "--args",
        r#"{"path":"/notes/a.txt"}"#,
        "--policy",
        "policy.toml",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
}

#[test]
fn policy_limits_apply_and_flags_override_them() {
    let s = Scratch::new();
    std::fs::write(
        s.cwd.path().join("policy.toml"),
        "version = 1\n[limits]\nfuel = 10000000\n",
    )
    .unwrap();
    let out = s.run(&["tool", "call", HOSTILE, "spin", "--policy", "policy.toml"]);
    assert_eq!(code(&out), 3);
    assert!(
        stderr(&out).contains("limit exceeded: fuel: the guest used all 10000000"),
        "{}",
        stderr(&out)
    );
    let out = s.run(&[
        "tool",
        "call",
        HELLO,
        "greet",
        "--args",
        r#"{"name":"x"}"#,
        "--policy",
        "policy.toml",
        "--fuel",
        "50000000",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
}

#[test]
fn a_narrowed_grant_is_reported_on_stderr() {
    let s = Scratch::new();
    std::fs::create_dir(s.cwd.path().join("d")).unwrap();
    std::fs::write(
        s.cwd.path().join("warden.toml"),
        "manifest-version = 1\nname = \"ro-only\"\nversion = \"0.1.0\"\nkind = \"tool\"\ndescription = \"d\"\n[[capabilities.fs]]\npath = \"/d\"\nmode = \"ro\"\nreason = \"reads\"\n",
    )
    .unwrap();
    let out = s.run(&[
        "plugin",
        "pack",
        HOSTILE,
        "--manifest",
        "warden.toml",
        "-o",
        "p.wasm",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = s.run(&[
        "tool",
        "call",
        "p.wasm",
        "write",
        "--args",
        r#"{"path":"/d/x","content":"y"}"#,
        "--dir-rw",
        "./d::/d",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("warning: dir ./d (as /d) narrowed to read-only"),
        "{}",
        stderr(&out)
    );
    assert!(!s.cwd.path().join("d/x").exists());
}

#[test]
fn a_section_pinned_to_another_build_is_refused() {
    let s = Scratch::new();
    std::fs::write(
        s.cwd.path().join("policy.toml"),
        format!(
            "version = 1\n[plugins.hello]\nsha256 = \"{}\"\n",
            "0".repeat(64)
        ),
    )
    .unwrap();
    let out = s.run(&[
        "tool",
        "call",
        HELLO,
        "greet",
        "--args",
        r#"{"name":"x"}"#,
        "--policy",
        "policy.toml",
    ]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the policy pins plugin hello to sha256 0000"),
        "{}",
        stderr(&out)
    );
}
