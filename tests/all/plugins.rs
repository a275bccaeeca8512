//! Every first-party tool's happy path and its argument errors.

use serde_json::json;
use warden_core::ToolError;
use warden_tests::artifacts::{FETCH, FS, HELLO, TEXT_STATS};
use warden_tests::server::{RecordingServer, Reply};

use crate::*;

#[tokio::test]
pub(crate) async fn hello_greets_and_rejects_bad_arguments() {
    let o = options(Grant::default());
    let out = call(HELLO, "greet", json!({"name": "world"}), &o).await;
    assert_eq!(ok_json(&out), json!({"message": "Hello, world!"}));

    let out = call(HELLO, "greet", json!({"name": ""}), &o).await;
    assert!(
        matches!(tool_error(&out), ToolError::InvalidArguments(m) if m.contains("`name` is empty"))
    );

    let out = call(HELLO, "greet", json!({"nome": "x"}), &o).await;
    assert!(
        matches!(tool_error(&out), ToolError::InvalidArguments(m) if m.contains("unknown field `nome`"))
    );

    let out = call(HELLO, "shout", json!({}), &o).await;
    assert!(matches!(tool_error(&out), ToolError::UnknownTool(m) if m.contains("greet")));
}

#[tokio::test]
async fn every_first_party_plugin_carries_a_valid_manifest_and_schemas() {
    for (path, name, tools) in [
        (HELLO, "hello", vec!["greet"]),
        (
            FS,
            "fs",
            vec!["read_file", "write_file", "list_dir", "stat", "search"],
        ),
        (FETCH, "fetch", vec!["fetch_url"]),
        (TEXT_STATS, "text-stats", vec!["count", "top_words"]),
    ] {
        let p = plugin(path);
        let manifest = p
            .manifest()
            .unwrap_or_else(|| panic!("{path} has no manifest"));
        assert_eq!(manifest.name, name);
        let listed = p.list_tools(&options(Grant::default())).await;
        let listed = listed.result.expect("list-tools");
        let names: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, tools, "{path}");
        for tool in &listed {
            assert_eq!(tool.input_schema["type"], "object", "{path} {}", tool.name);
            assert!(!tool.description.is_empty());
        }
    }
}

#[tokio::test]
pub(crate) async fn fs_reads_writes_lists_stats_and_searches() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("notes.txt"),
        "alpha\nbeta gamma\nGamma ray\n",
    )
    .unwrap();
    std::fs::create_dir(data.path().join("sub")).unwrap();
    std::fs::write(data.path().join("sub/deep.txt"), "gamma deep\n").unwrap();
    let spec = format!("{}::/data", data.path().display());
    let o = options(dirs(vec![rw(&spec)]));

    let out = call(FS, "read_file", json!({"path": "/data/notes.txt"}), &o).await;
    let v = ok_json(&out);
    assert_eq!(v["content"], "alpha\nbeta gamma\nGamma ray\n");
    assert_eq!(v["size"], 27);
    assert_eq!(v["truncated"], false);

    let out = call(
        FS,
        "read_file",
        json!({"path": "/data/notes.txt", "max_bytes": 5, "encoding": "base64"}),
        &o,
    )
    .await;
    let v = ok_json(&out);
    assert_eq!(v["content"], "YWxwaGE=");
    assert_eq!(v["truncated"], true);

    let out = call(
        FS,
        "write_file",
        json!({"path": "/data/new/out.txt", "content": "written", "create_dirs": true}),
        &o,
    )
    .await;
    assert_eq!(ok_json(&out)["bytes_written"], 7);
    assert_eq!(
        std::fs::read_to_string(data.path().join("new/out.txt")).unwrap(),
        "written"
    );
    let out = call(
        FS,
        "write_file",
        json!({"path": "/data/new/out.txt", "content": "+more", "append": true}),
        &o,
    )
    .await;
    ok_json(&out);
    assert_eq!(
        std::fs::read_to_string(data.path().join("new/out.txt")).unwrap(),
        "written+more"
    );

    let out = call(
        FS,
        "list_dir",
        json!({"path": "/data", "recursive": true}),
        &o,
    )
    .await;
    let v = ok_json(&out);
    let paths: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    for expected in [
        "/data/notes.txt",
        "/data/sub",
        "/data/sub/deep.txt",
        "/data/new/out.txt",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }

    let out = call(FS, "stat", json!({"path": "/data/sub"}), &o).await;
    assert_eq!(ok_json(&out)["kind"], "dir");

    let out = call(
        FS,
        "search",
        json!({"path": "/data", "pattern": "gamma"}),
        &o,
    )
    .await;
    let v = ok_json(&out);
    let hits: Vec<(String, u64)> = v["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["path"].as_str().unwrap().to_string(),
                m["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        hits,
        vec![
            ("/data/notes.txt".into(), 2),
            ("/data/sub/deep.txt".into(), 1)
        ]
    );

    let out = call(FS, "search", json!({"path": "/data/notes.txt", "pattern": "^g\\w+ ray$", "regex": true, "case_insensitive": true}), &o).await;
    assert_eq!(ok_json(&out)["matches"][0]["line"], 3);
}

#[tokio::test]
async fn fs_argument_errors() {
    let data = tempfile::tempdir().unwrap();
    let o = options(dirs(vec![rw(&format!("{}::/data", data.path().display()))]));
    let cases = [
        ("read_file", json!({}), "missing field `path`"),
        (
            "read_file",
            json!({"path": "relative.txt"}),
            "is not absolute",
        ),
        (
            "read_file",
            json!({"path": "/data/x", "encoding": "latin1"}),
            "unknown variant `latin1`",
        ),
        (
            "write_file",
            json!({"path": "/data/x", "content": "%%", "encoding": "base64"}),
            "not base64",
        ),
        (
            "search",
            json!({"path": "/data", "pattern": ""}),
            "`pattern` is empty",
        ),
        (
            "search",
            json!({"path": "/data", "pattern": "(", "regex": true}),
            "bad regex",
        ),
    ];
    for (tool, args, expected) in cases {
        let out = call(FS, tool, args.clone(), &o).await;
        match tool_error(&out) {
            ToolError::InvalidArguments(m) => assert!(m.contains(expected), "{tool} {args}: {m}"),
            other => panic!("{tool} {args}: {other:?}"),
        }
    }
    let out = call(FS, "read_file", json!({"path": "/data/missing.txt"}), &o).await;
    assert!(matches!(tool_error(&out), ToolError::Failed(m) if m.contains("not found")));
}

#[tokio::test]
pub(crate) async fn fetch_gets_a_granted_url_as_text_and_rejects_bad_arguments() {
    let server = RecordingServer::start(Reply::Body(
        "<html><body><h1>Title</h1><p>Some text.</p></body></html>".into(),
    ));
    let o = options(hosts(&[&server.origin()]));
    let url = format!("{}/page", server.origin());

    let out = call(FETCH, "fetch_url", json!({"url": url}), &o).await;
    let v = ok_json(&out);
    assert_eq!(v["status"], 200);
    assert!(v["body"].as_str().unwrap().contains("<h1>Title</h1>"));
    assert_eq!(v["headers"]["content-type"], "text/html");

    let out = call(FETCH, "fetch_url", json!({"url": url, "as_text": true}), &o).await;
    let body = ok_json(&out)["body"].as_str().unwrap().to_string();
    assert!(
        body.contains("Title") && body.contains("Some text.") && !body.contains('<'),
        "{body}"
    );

    let out = call(FETCH, "fetch_url", json!({"url": url, "max_bytes": 10}), &o).await;
    let v = ok_json(&out);
    assert_eq!(v["body"].as_str().unwrap().len(), 10);
    assert_eq!(v["truncated"], true);
    assert_eq!(server.hits().len(), 3);

    for (args, expected) in [
        (json!({"url": "not a url"}), "relative URL without a base"),
        (
            json!({"url": "ftp://example.com/"}),
            "scheme \"ftp\" is not supported",
        ),
        (json!({}), "missing field `url`"),
    ] {
        let out = call(FETCH, "fetch_url", args.clone(), &o).await;
        match tool_error(&out) {
            ToolError::InvalidArguments(m) => assert!(m.contains(expected), "{args}: {m}"),
            other => panic!("{args}: {other:?}"),
        }
    }
}

#[tokio::test]
pub(crate) async fn text_stats_example_plugin_works() {
    let o = options(Grant::default());
    let out = call(
        TEXT_STATS,
        "top_words",
        json!({"text": "a b a c a b", "n": 2}),
        &o,
    )
    .await;
    assert_eq!(
        ok_json(&out),
        json!([{"word": "a", "count": 3}, {"word": "b", "count": 2}])
    );
    // Its manifest lowers the defaults.
    let limits = plugin(TEXT_STATS)
        .limits(Default::default(), Default::default())
        .unwrap();
    assert_eq!(limits.timeout, std::time::Duration::from_millis(2000));
    assert_eq!(limits.memory_bytes, 64 * 1024 * 1024);
}
