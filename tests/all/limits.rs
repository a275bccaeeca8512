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

/// The output limit covers a tool's error as well as its result: a 50 MiB
/// error under a 1 KiB limit is the output limit, not 50 MiB for the host
/// to print (it once printed 314 MB, escaped).
#[tokio::test]
async fn an_error_over_the_output_limit_is_refused() {
    let o = with_limits(Grant::default(), |l| l.output_bytes = 1024);
    let out = call(HOSTILE, "big_error", json!({"mib": 50}), &o).await;
    assert_eq!(limit(&out), LimitKind::Output);
    let small = with_limits(Grant::default(), |l| l.output_bytes = 4 * 1024 * 1024);
    let out = call(HOSTILE, "big_error", json!({"mib": 1}), &small).await;
    assert_eq!(
        failed(&out).len(),
        1024 * 1024,
        "an error within the limit is the tool's"
    );
}

/// Logs count against the output limit too: lines past it are dropped,
/// however few they are.
#[tokio::test]
async fn logs_count_against_the_output_limit() {
    let o = with_limits(Grant::default(), |l| l.output_bytes = 1024);
    let out = call(HOSTILE, "log_flood", json!({"lines": 1_000}), &o).await;
    assert_eq!(ok_json(&out), json!(1_000));
    assert!(
        out.usage.log_lines_dropped > 800,
        "{}",
        out.usage.log_lines_dropped
    );
}

/// Every file a guest holds open is a host descriptor: a call that opens
/// files until it cannot is stopped at its open-file limit with an ordinary
/// error (a failed open, not a trap), and a call beside it still opens its
/// own.
#[tokio::test]
async fn an_open_file_flood_is_refused_and_other_calls_still_open_files() {
    let flood_dir = tempfile::tempdir().unwrap();
    let victim_dir = tempfile::tempdir().unwrap();
    std::fs::write(victim_dir.path().join("notes.txt"), "still readable").unwrap();
    let flood = with_limits(
        dirs(vec![rw(&format!("{}::/flood", flood_dir.path().display()))]),
        |l| l.open_files = 32,
    );
    let victim = options(dirs(vec![ro(&format!(
        "{}::/data",
        victim_dir.path().display()
    ))]));
    let (flooded, read) = tokio::join!(
        call(
            HOSTILE,
            "hold_files",
            json!({"dir": "/flood", "count": 100_000}),
            &flood
        ),
        call(HOSTILE, "read", json!({"path": "/data/notes.txt"}), &victim),
    );
    let flooded = ok_json(&flooded);
    assert_eq!(
        flooded["held"], 31,
        "32 less the granted directory: {flooded}"
    );
    assert!(flooded["error"].is_string(), "{flooded}");
    assert_eq!(ok_json(&read), json!("still readable"));

    // With the default limit the flood stops at 256 as well, and the next
    // call (the limit is per call, given back when a call ends) opens fine.
    let flood = options(dirs(vec![rw(&format!(
        "{}::/flood",
        flood_dir.path().display()
    ))]));
    let flooded = ok_json(
        &call(
            HOSTILE,
            "hold_files",
            json!({"dir": "/flood", "count": 100_000}),
            &flood,
        )
        .await,
    );
    assert_eq!(flooded["held"], 255, "{flooded}");
    let read = call(HOSTILE, "read", json!({"path": "/data/notes.txt"}), &victim).await;
    assert_eq!(ok_json(&read), json!("still readable"));
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
