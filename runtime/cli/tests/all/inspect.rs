//! `warden plugin inspect` and `warden plugin pack`.

use warden_tests::artifacts::{FS, HOSTILE};

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
