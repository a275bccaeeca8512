//! Each limit stops the guest and is reported as that limit.

use std::time::{Duration, Instant};

use serde_json::json;
use warden_core::{CallError, LimitKind};
use warden_tests::artifacts::HOSTILE;

use crate::*;

#[tokio::test]
async fn an_infinite_loop_is_stopped_by_fuel() {
    let o = with_limits(Grant::default(), |l| {
        l.fuel = 50_000_000;
        l.timeout = Duration::from_secs(30);
    });
    let out = call(HOSTILE, "spin", json!({}), &o).await;
    assert_eq!(limit(&out), LimitKind::Fuel);
    assert_eq!(out.usage.fuel_used, 50_000_000);
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_by_the_deadline() {
    let o = with_limits(Grant::default(), |l| l.timeout = SHORT);
    let started = Instant::now();
    let out = call(HOSTILE, "spin", json!({}), &o).await;
    assert_eq!(limit(&out), LimitKind::Deadline);
    // Stopped at the deadline, not by running out of the default fuel.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_guest_blocked_in_the_host_is_stopped_by_the_deadline() {
    let o = with_limits(Grant::default(), |l| l.timeout = SHORT);
    let started = Instant::now();
    let out = call(HOSTILE, "sleep", json!({"ms": 20_000}), &o).await;
    assert_eq!(limit(&out), LimitKind::Deadline);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn allocation_past_the_cap_is_the_memory_limit() {
    let o = with_limits(Grant::default(), |l| l.memory_bytes = 32 * 1024 * 1024);
    let out = call(HOSTILE, "alloc", json!({"mib": 64}), &o).await;
    assert_eq!(limit(&out), LimitKind::Memory);
    // The Rust guest aborted after the refusal; its own message shows that.
    assert!(
        out.stderr.to_text().contains("memory allocation"),
        "{}",
        out.stderr.to_text()
    );
    // Under the cap the same tool succeeds.
    let out = call(HOSTILE, "alloc", json!({"mib": 8}), &o).await;
    assert_eq!(ok_json(&out), json!(8 * 1024 * 1024));
}

#[tokio::test]
async fn deep_recursion_traps_cleanly() {
    let o = options(Grant::default());
    let out = call(HOSTILE, "recurse", json!({"depth": 100_000_000u64}), &o).await;
    match &out.result {
        Err(CallError::Trap(message)) => assert!(
            message.contains("recurse")
                && (message.contains("out of bounds") || message.contains("stack overflow")),
            "{message}"
        ),
        other => panic!("expected a trap, got {other:?}"),
    }
    let out = call(HOSTILE, "recurse", json!({"depth": 1000}), &o).await;
    assert_eq!(ok_json(&out), json!(1000));
}

#[tokio::test]
async fn a_result_over_the_output_limit_is_refused() {
    let o = with_limits(Grant::default(), |l| l.output_bytes = 1024 * 1024);
    let out = call(HOSTILE, "big_output", json!({"mib": 2}), &o).await;
    assert_eq!(limit(&out), LimitKind::Output);
    let out = call(HOSTILE, "echo", json!({"small": true}), &o).await;
    assert_eq!(ok_json(&out), json!({"small": true}));
}

#[tokio::test]
async fn stdout_is_capped_and_marked_truncated() {
    let o = with_limits(Grant::default(), |l| l.stdio_bytes = 64 * 1024);
    let out = call(HOSTILE, "print", json!({"mib": 4}), &o).await;
    assert_eq!(ok_json(&out), json!(4));
    assert_eq!(out.stdout.bytes.len(), 64 * 1024);
    assert_eq!(out.stdout.dropped, 4 * 1024 * 1024 - 64 * 1024);
    assert!(out.stdout.to_text().ends_with("more bytes dropped]\n"));
}

#[tokio::test]
async fn log_lines_past_the_budget_are_dropped() {
    let o = options(Grant::default());
    let out = call(HOSTILE, "log_flood", json!({"lines": 10_500}), &o).await;
    assert_eq!(ok_json(&out), json!(10_500));
    assert_eq!(out.usage.log_lines_dropped, 500);
}

#[tokio::test]
async fn a_result_that_is_not_json_breaks_the_contract() {
    let out = call(HOSTILE, "bad_json", json!({}), &options(Grant::default())).await;
    assert!(
        matches!(&out.result, Err(CallError::Contract(m)) if m.contains("not JSON")),
        "{:?}",
        out.result
    );
}
