//! The network sandbox: a real loopback server that must never be reached
//! unless an exact `http://127.0.0.1:PORT` pattern grants it.

use serde_json::json;
use warden_core::ToolError;
use warden_tests::artifacts::{FETCH, HOSTILE};
use warden_tests::server::{RecordingServer, Reply};

use crate::*;

async fn raw_get(
    authority: &str,
    grant: &[&str],
) -> warden_core::CallOutcome<Result<String, ToolError>> {
    call(
        HOSTILE,
        "http",
        json!({"scheme": "http", "authority": authority}),
        &options(hosts(grant)),
    )
    .await
}

#[tokio::test]
async fn loopback_is_reachable_only_through_an_exact_grant() {
    let server = RecordingServer::start(Reply::Body("hi".into()));
    let port = server.port();

    // No grant at all.
    let out = raw_get(&format!("127.0.0.1:{port}"), &[]).await;
    assert!(denied(&out).contains("HttpRequestDenied"));
    // Wildcards do not open loopback.
    for wide in ["http://*:*", "*://*:*", &format!("http://*:{port}")] {
        let out = raw_get(&format!("127.0.0.1:{port}"), &[wide]).await;
        assert!(denied(&out).contains("DestinationIpProhibited"), "{wide}");
    }
    // Another port named literally does not open this one.
    let out = raw_get(
        &format!("127.0.0.1:{port}"),
        &[&format!("http://127.0.0.1:{}", port.wrapping_add(1))],
    )
    .await;
    assert!(denied(&out).contains("HttpRequestDenied"));
    assert_eq!(server.hits(), Vec::<String>::new());

    // The exact pattern does.
    let out = raw_get(&format!("127.0.0.1:{port}"), &[&server.origin()]).await;
    assert_eq!(ok_json(&out), json!("status 200"));
    assert_eq!(server.hits(), vec!["GET / HTTP/1.1".to_string()]);
}

#[tokio::test]
async fn other_spellings_of_loopback_are_refused() {
    let server = RecordingServer::start(Reply::Body("hi".into()));
    let port = server.port();
    let exact = server.origin();
    for host in [
        "localhost",
        "127.1",
        "2130706433",
        "0x7f.0.0.1",
        "[::ffff:127.0.0.1]",
        "0.0.0.0",
        "[::1]",
        "[::]",
    ] {
        let authority = format!("{host}:{port}");
        // With the exact IP pattern (a different spelling does not match it),
        // and with every host allowed (the address it resolves to is
        // refused): never a response.
        for grant in [exact.as_str(), "http://*:*"] {
            let out = raw_get(&authority, &[grant]).await;
            assert!(
                matches!(
                    &out.result,
                    Ok(Err(ToolError::Denied(_) | ToolError::InvalidArguments(_)))
                ),
                "{host} with {grant}: {:?}",
                out.result
            );
        }
    }
    assert_eq!(
        server.hits(),
        Vec::<String>::new(),
        "a spelling of loopback got through"
    );
}

#[tokio::test]
async fn the_metadata_address_and_private_ranges_are_refused() {
    for authority in [
        "169.254.169.254",
        "10.0.0.1:8080",
        "192.168.1.1",
        "[fd00:ec2::254]",
    ] {
        let out = raw_get(authority, &["http://*:*"]).await;
        assert!(
            denied(&out).contains("DestinationIpProhibited"),
            "{authority}"
        );
    }
}

#[tokio::test]
async fn a_redirect_to_an_ungranted_port_is_refused_at_the_second_hop() {
    let second = RecordingServer::start(Reply::Body("secret".into()));
    let first = RecordingServer::start(Reply::Redirect(format!("{}/next", second.origin())));
    let o = options(hosts(&[&first.origin()]));
    let out = call(
        FETCH,
        "fetch_url",
        json!({"url": format!("{}/start", first.origin())}),
        &o,
    )
    .await;
    let why = denied(&out);
    assert!(why.starts_with("redirect hop 2:"), "{why}");
    assert!(
        why.contains(&format!("--allow-host http://127.0.0.1:{}", second.port())),
        "{why}"
    );
    assert_eq!(first.hits(), vec!["GET /start HTTP/1.1".to_string()]);
    assert_eq!(second.hits(), Vec::<String>::new());

    // Granting both lets the redirect through, hop by hop.
    let o = options(hosts(&[&first.origin(), &second.origin()]));
    let out = call(
        FETCH,
        "fetch_url",
        json!({"url": format!("{}/start", first.origin())}),
        &o,
    )
    .await;
    let v = ok_json(&out);
    assert_eq!(v["body"], "secret");
    assert_eq!(v["redirects"], json!([format!("{}/next", second.origin())]));
    assert_eq!(second.hits(), vec!["GET /next HTTP/1.1".to_string()]);
}

#[tokio::test]
async fn raw_sockets_are_unavailable() {
    let server = RecordingServer::start(Reply::Body("hi".into()));
    let out = call(
        HOSTILE,
        "connect",
        json!({"addr": format!("127.0.0.1:{}", server.port())}),
        &options(hosts(&["*://*:*"])),
    )
    .await;
    failed(&out);
    assert_eq!(server.hits(), Vec::<String>::new());
}

#[tokio::test]
async fn a_response_body_over_the_cap_is_cut_off_by_the_host() {
    let server = RecordingServer::start(Reply::Body("a".repeat(64 * 1024)));
    let mut o = options(hosts(&[&server.origin()]));
    o.limits.http_body_bytes = 8 * 1024;
    let out = call(FETCH, "fetch_url", json!({"url": server.origin()}), &o).await;
    let why = failed(&out);
    assert!(
        why.contains("reading the body failed") || why.contains("larger than the host allows"),
        "{why}"
    );
    // Under the cap the same response goes through.
    o.limits.http_body_bytes = 128 * 1024;
    let out = call(FETCH, "fetch_url", json!({"url": server.origin()}), &o).await;
    assert_eq!(
        ok_json(&out)["body"].as_str().map(str::len),
        Some(64 * 1024)
    );
}
