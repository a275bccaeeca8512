//! `warden plugin`: inspect, pack, check, compile, keygen, sign and verify.

use warden_tests::artifacts::{FS, HELLO, HOSTILE};

use crate::*;

#[test]
fn inspect_shows_manifest_capabilities_and_tools() {
    let s = Scratch::new();
    let out = s.run(&["plugin", "inspect", FS]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("fs 0.1.0 (tool): Read, write"), "{text}");
    assert!(
        text.contains("fs   * (rw): works on whatever directories"),
        "{text}"
    );
    assert!(text.contains("read_file: Read a file"), "{text}");
    assert!(text.contains("path (string, required)"), "{text}");
    assert!(!stderr(&out).contains("warning"));

    let out = s.run(&["plugin", "inspect", FS, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["manifest"]["name"], "fs");
    assert_eq!(v["manifest"]["capabilities"]["fs"][0]["mode"], "rw");
    assert_eq!(v["tools"].as_array().unwrap().len(), 5);
    assert_eq!(v["warnings"], serde_json::json!([]));
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn inspect_warns_about_a_component_without_a_manifest() {
    let s = Scratch::new();
    let out = s.run(&["plugin", "inspect", HOSTILE, "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["manifest"], serde_json::Value::Null);
    assert!(v["warnings"][0].as_str().unwrap().contains("no manifest"));
    assert!(
        stderr(&out).contains("warning: this component has no manifest"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn pack_embeds_a_manifest_that_inspect_then_shows() {
    let s = Scratch::new();
    std::fs::write(
        s.cwd.path().join("warden.toml"),
        "manifest-version = 1\nname = \"hostile\"\nversion = \"1.2.3\"\nkind = \"tool\"\ndescription = \"now with a manifest\"\n",
    )
    .unwrap();
    let out = s.run(&[
        "plugin",
        "pack",
        HOSTILE,
        "--manifest",
        "warden.toml",
        "-o",
        "packed.wasm",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = s.run(&["plugin", "inspect", "packed.wasm"]);
    assert!(
        stdout(&out).starts_with("hostile 1.2.3 (tool): now with a manifest"),
        "{}",
        stdout(&out)
    );
    assert!(!stderr(&out).contains("no manifest"));

    std::fs::write(
        s.cwd.path().join("bad.toml"),
        "manifest-version = 1\nname = \"Bad Name\"\n",
    )
    .unwrap();
    let out = s.run(&[
        "plugin",
        "pack",
        HOSTILE,
        "--manifest",
        "bad.toml",
        "-o",
        "x.wasm",
    ]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("missing field") || stderr(&out).contains("manifest field `name`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_finds_a_bad_manifest_and_a_crate_that_builds_no_wasm() {
    let s = Scratch::new();
    let dir = s.cwd.path();
    let manifest = "manifest-version = 1\nname = \"greet\"\nversion = \"0.1.0\"\nkind = \"tool\"\ndescription = \"Greets\"\n";
    std::fs::write(dir.join("warden.toml"), manifest).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"greet\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[dependencies]\n",
    )
    .unwrap();

    // A library crate: cargo would build it and write no .wasm.
    let out = s.run(&["plugin", "check"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not a cdylib")
            && stderr(&out).contains("crate-type = [\"cdylib\"]"),
        "{}",
        stderr(&out)
    );

    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"greet\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n",
    )
    .unwrap();
    let out = s.run(&["plugin", "check", "."]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("greet 0.1.0 (tool) is ready to build"),
        "{}",
        stderr(&out)
    );

    // The manifest gets the message loading it would give.
    std::fs::write(
        dir.join("warden.toml"),
        format!("{manifest}[[capabilities.fs]]\npath = \"data\"\nmode = \"rw\"\nreason = \"x\"\n"),
    )
    .unwrap();
    let out = s.run(&["plugin", "check"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("warden.toml: "), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("absolute guest path"),
        "{}",
        stderr(&out)
    );

    std::fs::remove_file(dir.join("warden.toml")).unwrap();
    let out = s.run(&["plugin", "check"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("keeps its manifest in warden.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_failed_call_names_a_declared_directory_that_was_not_granted() {
    let s = Scratch::new();
    let dir = s.cwd.path();
    std::fs::write(
        dir.join("warden.toml"),
        "manifest-version = 1\nname = \"hostile\"\nversion = \"1.0.0\"\nkind = \"tool\"\ndescription = \"reads\"\n[[capabilities.fs]]\npath = \"/data\"\nmode = \"ro\"\nreason = \"reads its notes\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.join("data")).unwrap();
    std::fs::write(dir.join("data/notes.txt"), "hello").unwrap();
    let out = s.run(&[
        "plugin",
        "pack",
        HOSTILE,
        "--manifest",
        "warden.toml",
        "-o",
        "reader.wasm",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    let args = r#"{"path":"/data/notes.txt"}"#;
    let out = s.run(&["tool", "call", "reader.wasm", "read", "--args", args]);
    assert_ne!(code(&out), 0, "{}", stdout(&out));
    assert!(
        stderr(&out).contains(
            "hint: /data is declared by hostile's manifest (reads its notes) but not granted: pass --dir HOST::/data"
        ),
        "{}",
        stderr(&out)
    );

    let out = s.run(&[
        "tool",
        "call",
        "reader.wasm",
        "read",
        "--args",
        args,
        "--dir",
        "data::/data",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("hello"), "{}", stdout(&out));
    assert!(!stderr(&out).contains("hint"), "{}", stderr(&out));
}

#[test]
fn compile_fills_the_cache_that_later_loads_use() {
    let s = Scratch::new();
    let cache = s.data.path().join("cache/compiled");
    let artifacts = || {
        std::fs::read_dir(&cache).map_or(0, |d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            })
            .count()
        })
    };
    assert_eq!(artifacts(), 0);

    let out = s.run(&["plugin", "compile", HOSTILE]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("hostile"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is compiled and cached"),
        "{}",
        stderr(&out)
    );
    assert_eq!(artifacts(), 1);

    // Loaded from the cache: nothing compiles, nothing is said about it.
    let out = s.run(&["tool", "list", HOSTILE]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stderr(&out).contains("compiling"), "{}", stderr(&out));
    assert_eq!(artifacts(), 1);

    let out = s.run(&["plugin", "compile"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--runtimes"), "{}", stderr(&out));
}

#[test]
fn a_signed_plugin_runs_under_a_policy_that_requires_its_key() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    let dir = s.cwd.path();
    let out = s.run(&["plugin", "keygen", "--out", "ours.key"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let ours = stdout(&out).trim().to_string();
    assert!(ours.starts_with("ed25519:"), "{ours}");
    let mode = std::fs::metadata(dir.join("ours.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = s.run(&["plugin", "keygen", "--out", "ours.key"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("never overwritten"),
        "{}",
        stderr(&out)
    );
    let out = s.run(&["plugin", "keygen", "--out", "theirs.key"]);
    let theirs = stdout(&out).trim().to_string();

    let out = s.run(&[
        "plugin",
        "sign",
        HELLO,
        "--key",
        "ours.key",
        "-o",
        "signed.wasm",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = s.run(&["plugin", "verify", "signed.wasm"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains(&ours), "{}", stdout(&out));
    let out = s.run(&["plugin", "verify", "signed.wasm", "--trust", &theirs]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("not among the --trust keys"),
        "{}",
        stderr(&out)
    );
    let out = s.run(&["plugin", "verify", HELLO]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("is not signed"), "{}", stderr(&out));
    let out = s.run(&["plugin", "inspect", "signed.wasm"]);
    assert!(stdout(&out).contains("signed:  by "), "{}", stdout(&out));

    std::fs::write(
        dir.join("policy.toml"),
        format!("version = 1\nrequire-signature = true\ntrust = [\"{ours}\"]\n"),
    )
    .unwrap();
    let greet = |plugin: &str| {
        s.run(&[
            "tool",
            "call",
            plugin,
            "greet",
            "--args",
            r#"{"name":"Ada"}"#,
            "--policy",
            "policy.toml",
        ])
    };
    let out = greet("signed.wasm");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("Hello, Ada!"), "{}", stdout(&out));
    let out = greet(HELLO);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("is not signed, and the policy requires a signature"),
        "{}",
        stderr(&out)
    );
    let out = s.run(&[
        "plugin",
        "sign",
        HELLO,
        "--key",
        "theirs.key",
        "-o",
        "theirs.wasm",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = greet("theirs.wasm");
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("which the policy does not trust"),
        "{}",
        stderr(&out)
    );

    std::fs::write(
        dir.join("policy.toml"),
        "version = 1\nrequire-signature = true\n",
    )
    .unwrap();
    let out = greet("signed.wasm");
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("no key is trusted"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn new_writes_a_project_that_builds_into_a_working_plugin() {
    let s = Scratch::new();
    let dir = s.cwd.path();
    let sdk = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk");
    let out = s.run(&["plugin", "new", "greeter", "--sdk", sdk]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for file in [
        "Cargo.toml",
        "warden.toml",
        "src/lib.rs",
        "README.md",
        ".gitignore",
    ] {
        assert!(dir.join("greeter").join(file).is_file(), "{file}");
    }
    let cargo = std::fs::read_to_string(dir.join("greeter/Cargo.toml")).unwrap();
    assert!(
        cargo.contains("crate-type = [\"cdylib\", \"rlib\"]"),
        "{cargo}"
    );
    assert!(cargo.contains("warden-sdk = { path = "), "{cargo}");
    // What it wrote passes the checks `plugin build` makes first.
    let out = s.run(&["plugin", "check", "greeter"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("greeter 0.1.0 (tool) is ready to build"),
        "{}",
        stderr(&out)
    );

    // It builds into a component whose tool answers.
    let out = crate::build_rust_template(&s, "greeter");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "greeter/greeter.wasm");
    let out = s.run(&[
        "tool",
        "call",
        "greeter/greeter.wasm",
        "greet",
        "--args",
        r#"{"name":"Ada"}"#,
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("Hello, Ada!"), "{}", stdout(&out));
    let out = s.run(&["plugin", "inspect", "greeter/greeter.wasm"]);
    assert!(
        stdout(&out).starts_with("greeter 0.1.0 (tool)"),
        "{}",
        stdout(&out)
    );

    let out = s.run(&["plugin", "new", "greeter"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("exists"), "{}", stderr(&out));
    let out = s.run(&["plugin", "new", "Bad_Name"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("is not a plugin name"),
        "{}",
        stderr(&out)
    );
    let out = s.run(&["plugin", "new", "old", "--lang", "cobol"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("[possible values: rust, python, js]"),
        "{}",
        stderr(&out)
    );
    let out = s.run(&["plugin", "build", "nowhere"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("has no Cargo.toml"),
        "{}",
        stderr(&out)
    );
}
