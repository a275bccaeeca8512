//! Effective capability = manifest ceiling ∩ operator grant. The hostile
//! guest has no manifest; here it gets one with `manifest::pack`, as
//! `warden plugin pack` gives one to any component.

use std::path::Path;

use serde_json::json;
use warden_core::ToolError;
use warden_core::manifest::{self, Manifest};
use warden_tests::artifacts::HOSTILE;
use warden_tests::server::{RecordingServer, Reply};

use crate::*;

fn packed(manifest_toml: &str) -> warden_core::CompiledPlugin {
    let manifest = Manifest::from_toml(manifest_toml).expect("manifest");
    let bytes = std::fs::read(HOSTILE).unwrap();
    assert!(manifest::scan(&bytes).unwrap().manifest.is_none());
    let packed = manifest::pack(&bytes, &manifest).expect("pack");
    let scan = manifest::scan(&packed).unwrap();
    assert_eq!(scan.manifest.as_ref(), Some(&manifest));
    engine()
        .load_bytes(&packed, Path::new("hostile-packed.wasm"))
        .expect("load packed")
}

#[tokio::test]
async fn packing_replaces_an_earlier_manifest() {
    let bytes = std::fs::read(HOSTILE).unwrap();
    let first = Manifest::from_toml("manifest-version = 1\nname = \"one\"\nversion = \"0.1.0\"\nkind = \"tool\"\ndescription = \"d\"").unwrap();
    let second = Manifest::from_toml("manifest-version = 1\nname = \"two\"\nversion = \"0.2.0\"\nkind = \"tool\"\ndescription = \"d\"").unwrap();
    let once = manifest::pack(&bytes, &first).unwrap();
    let twice = manifest::pack(&once, &second).unwrap();
    assert_eq!(manifest::scan(&twice).unwrap().manifest, Some(second));
    assert!(twice.len() < once.len() + 200, "the old section was kept");
    engine()
        .load_bytes(&twice, Path::new("x.wasm"))
        .expect("still a valid component");
}

#[tokio::test]
async fn the_manifest_narrows_a_read_write_grant_and_drops_undeclared_dirs() {
    let p = packed(
        r#"
manifest-version = 1
name = "narrow"
version = "0.1.0"
kind = "tool"
description = "reads /data only"
[[capabilities.fs]]
path = "/data"
mode = "ro"
reason = "reads its input"
"#,
    );
    let data = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("in.txt"), "input").unwrap();
    std::fs::write(other.path().join("x.txt"), "other").unwrap();
    let o = options(dirs(vec![
        rw(&format!("{}::/data", data.path().display())),
        rw(&format!("{}::/other", other.path().display())),
    ]));

    let out = p.call_tool(&o, "read", r#"{"path":"/data/in.txt"}"#).await;
    assert_eq!(ok_json(&out), json!("input"));
    assert_eq!(out.narrowed.len(), 2, "{:?}", out.narrowed);

    let out = p
        .call_tool(
            &o,
            "write",
            r#"{"path":"/data/in.txt","content":"changed"}"#,
        )
        .await;
    failed(&out);
    assert_eq!(
        std::fs::read_to_string(data.path().join("in.txt")).unwrap(),
        "input"
    );

    let out = p.call_tool(&o, "read", r#"{"path":"/other/x.txt"}"#).await;
    failed(&out);
}

#[tokio::test]
async fn the_manifest_limits_outbound_hosts_within_the_grant() {
    let declared = RecordingServer::start(Reply::Body("ok".into()));
    let undeclared = RecordingServer::start(Reply::Body("no".into()));
    let p = packed(&format!(
        r#"
manifest-version = 1
name = "narrow-net"
version = "0.1.0"
kind = "tool"
description = "talks to one server"
[[capabilities.http]]
host = "{}"
reason = "its API"
"#,
        declared.origin()
    ));
    // The operator grants both servers; the manifest declares one.
    let o = options(hosts(&[&declared.origin(), &undeclared.origin()]));
    let get = |port: u16| format!(r#"{{"scheme":"http","authority":"127.0.0.1:{port}"}}"#);

    let out = p.call_tool(&o, "http", &get(declared.port())).await;
    assert_eq!(ok_json(&out), json!("status 200"));
    let out = p.call_tool(&o, "http", &get(undeclared.port())).await;
    assert!(matches!(tool_error(&out), ToolError::Denied(m) if m.contains("HttpRequestDenied")));
    assert_eq!(undeclared.hits(), Vec::<String>::new());
}

#[tokio::test]
async fn manifest_defaults_apply_but_never_exceed_the_operator() {
    let p = packed(
        "manifest-version = 1\nname = \"slow\"\nversion = \"0.1.0\"\nkind = \"tool\"\ndescription = \"d\"\n[limits]\ntimeout-ms = 100000\nmemory-mib = 16\n",
    );
    let limits = p.limits(Default::default(), Default::default()).unwrap();
    assert_eq!(
        limits.timeout,
        Limits::default().timeout,
        "raised above the operator's default"
    );
    assert_eq!(
        limits.memory_bytes,
        16 * 1024 * 1024,
        "a lower request applies"
    );
    let explicit = warden_core::LimitSettings {
        timeout_ms: Some(100_000),
        ..Default::default()
    };
    let limits = p.limits(Default::default(), explicit).unwrap();
    assert_eq!(
        limits.timeout,
        std::time::Duration::from_secs(100),
        "an explicit flag wins"
    );
}
