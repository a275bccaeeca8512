//! The host survives: after a guest fails every way it can, a normal call on
//! the same engine, and on the same compiled plugin, still succeeds.

use std::time::Duration;

use serde_json::json;
use warden_tests::artifacts::{HELLO, HOSTILE};

use crate::*;

#[tokio::test]
pub(crate) async fn every_failure_leaves_the_host_able_to_serve() {
    let tight = with_limits(Grant::default(), |l| {
        l.timeout = Duration::from_millis(300);
        l.memory_bytes = 32 * 1024 * 1024;
        l.fuel = 2_000_000_000;
        l.output_bytes = 1024 * 1024;
    });
    let failures = [
        ("spin", json!({})),
        ("sleep", json!({"ms": 10_000})),
        ("alloc", json!({"mib": 100})),
        ("recurse", json!({"depth": 100_000_000u64})),
        ("big_output", json!({"mib": 8})),
        ("panic", json!({})),
        ("abort", json!({})),
        ("exit", json!({"code": 7})),
        ("bad_json", json!({})),
        ("print", json!({"mib": 2})),
        ("no_such_tool", json!({})),
        ("alloc", json!({"mib": "not a number"})),
    ];
    for (tool, args) in failures {
        let out = call(HOSTILE, tool, args.clone(), &tight).await;
        assert!(
            !matches!(out.result, Ok(Ok(_))) || tool == "print",
            "{tool} {args} should fail"
        );
        // The same compiled plugin, right after.
        let ok = call(HOSTILE, "echo", json!({"after": tool}), &tight).await;
        assert_eq!(ok_json(&ok), json!({"after": tool}), "after {tool}");
    }
    let out = call(
        HELLO,
        "greet",
        json!({"name": "still here"}),
        &options(Grant::default()),
    )
    .await;
    assert_eq!(ok_json(&out)["message"], "Hello, still here!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_each_get_their_own_sandbox() {
    let mut tasks = Vec::new();
    for i in 0..16 {
        tasks.push(tokio::spawn(async move {
            let o = with_limits(Grant::default(), |l| l.timeout = Duration::from_millis(300));
            if i % 4 == 0 {
                let out = call(HOSTILE, "spin", json!({}), &o).await;
                assert_eq!(limit(&out), warden_core::LimitKind::Deadline);
            } else {
                let out = call(HOSTILE, "echo", json!({"i": i}), &o).await;
                assert_eq!(ok_json(&out), json!({"i": i}));
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
}
