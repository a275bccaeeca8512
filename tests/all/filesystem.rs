//! The filesystem sandbox: only granted directories, in the granted mode.
//! These use the hostile guest, which goes straight at `std::fs` without the
//! fs plugin's own path checks, so what refuses is the sandbox.

use serde_json::json;
use warden_core::ToolError;
use warden_tests::artifacts::{FS, HOSTILE};

use crate::*;

const CANARY: &str = "CANARY-7f3a9c-never-readable";

/// A mounted `data/` next to a `canary.txt` outside every mount, with a
/// symlink inside the mount pointing at the canary.
struct Layout {
    root: tempfile::TempDir,
}

impl Layout {
    fn new() -> Layout {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("data")).unwrap();
        std::fs::write(root.path().join("data/ok.txt"), "inside").unwrap();
        std::fs::write(root.path().join("canary.txt"), CANARY).unwrap();
        std::os::unix::fs::symlink(
            root.path().join("canary.txt"),
            root.path().join("data/escape"),
        )
        .unwrap();
        std::os::unix::fs::symlink("../canary.txt", root.path().join("data/escape-rel")).unwrap();
        Layout { root }
    }

    fn data(&self) -> String {
        format!("{}::/data", self.root.path().join("data").display())
    }

    fn canary_path(&self) -> String {
        self.root.path().join("canary.txt").display().to_string()
    }
}

/// The hostile guest writes `content` to `path` with `std::fs`.
async fn write(
    path: &str,
    content: &str,
    o: &warden_core::CallOptions,
) -> warden_core::CallOutcome<Result<String, ToolError>> {
    call(
        HOSTILE,
        "write",
        json!({"path": path, "content": content}),
        o,
    )
    .await
}

fn assert_no_canary(out: &warden_core::CallOutcome<Result<String, ToolError>>) {
    let everything = format!(
        "{:?} {} {}",
        out.result,
        out.stdout.to_text(),
        out.stderr.to_text()
    );
    assert!(!everything.contains(CANARY), "canary leaked: {everything}");
}

#[tokio::test]
async fn reads_inside_a_grant_work() {
    let l = Layout::new();
    let out = call(
        HOSTILE,
        "read",
        json!({"path": "/data/ok.txt"}),
        &options(dirs(vec![ro(&l.data())])),
    )
    .await;
    assert_eq!(ok_json(&out), json!("inside"));
}

#[tokio::test]
async fn escapes_are_refused_and_the_canary_is_never_read() {
    let l = Layout::new();
    let o = options(dirs(vec![ro(&l.data())]));
    let attempts = [
        "/data/../canary.txt".to_string(),
        "/data/../../../../../../etc/passwd".to_string(),
        "/data/escape".to_string(),
        "/data/escape-rel".to_string(),
        l.canary_path(),
        "/etc/passwd".to_string(),
        "/".to_string(),
        "canary.txt".to_string(),
        "../canary.txt".to_string(),
    ];
    for path in attempts {
        let out = call(HOSTILE, "read", json!({"path": path}), &o).await;
        failed(&out);
        assert_no_canary(&out);
    }
    // Listing the parent of the mount is refused too.
    let out = call(HOSTILE, "list", json!({"path": "/data/.."}), &o).await;
    failed(&out);
    assert!(!format!("{:?}", out.result).contains("canary.txt"));
}

#[tokio::test]
async fn the_fs_plugin_refuses_the_same_escapes() {
    let l = Layout::new();
    let o = options(dirs(vec![ro(&l.data())]));
    for path in [
        "/data/../canary.txt",
        "/data/escape",
        "/etc/passwd",
        l.canary_path().as_str(),
    ] {
        let out = call(FS, "read_file", json!({"path": path}), &o).await;
        denied(&out);
        assert_no_canary(&out);
    }
    let out = call(
        FS,
        "search",
        json!({"path": "/data", "pattern": "CANARY"}),
        &o,
    )
    .await;
    assert_eq!(ok_json(&out)["matches"], json!([]));
    assert_no_canary(&out);
}

#[tokio::test]
async fn writes_to_a_read_only_grant_are_refused() {
    let l = Layout::new();
    let o = options(dirs(vec![ro(&l.data())]));
    let out = write("/data/ok.txt", "overwritten", &o).await;
    failed(&out);
    let out = write("/data/new.txt", "x", &o).await;
    failed(&out);
    assert_eq!(
        std::fs::read_to_string(l.root.path().join("data/ok.txt")).unwrap(),
        "inside"
    );
    assert!(!l.root.path().join("data/new.txt").exists());

    // The same write with a read-write grant goes through.
    let o = options(dirs(vec![rw(&l.data())]));
    let out = write("/data/new.txt", "x", &o).await;
    assert_eq!(ok_json(&out), json!(true));
    assert_eq!(
        std::fs::read_to_string(l.root.path().join("data/new.txt")).unwrap(),
        "x"
    );
}

#[tokio::test]
async fn writes_through_a_symlink_out_of_a_read_write_grant_are_refused() {
    let l = Layout::new();
    let o = options(dirs(vec![rw(&l.data())]));
    let out = write("/data/escape", "pwned", &o).await;
    failed(&out);
    assert_eq!(
        std::fs::read_to_string(l.root.path().join("canary.txt")).unwrap(),
        CANARY
    );
}

#[tokio::test]
async fn with_no_grant_nothing_is_visible() {
    let l = Layout::new();
    let o = options(Grant::default());
    for path in ["/data/ok.txt", l.canary_path().as_str(), "/etc/passwd", "."] {
        let out = call(HOSTILE, "read", json!({"path": path}), &o).await;
        failed(&out);
        assert_no_canary(&out);
    }
    let out = call(HOSTILE, "list", json!({"path": "/"}), &o).await;
    failed(&out);
}

#[tokio::test]
async fn the_guest_sees_no_environment_and_no_arguments() {
    let out = call(HOSTILE, "env", json!({}), &options(Grant::default())).await;
    // This test process has PATH, HOME and more; none of it may show.
    assert!(std::env::vars().count() > 0);
    assert_eq!(ok_json(&out), json!({"vars": [], "args": []}));
}
