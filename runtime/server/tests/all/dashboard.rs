//! The dashboard as an HTTP client sees it (the browser suite drives it in
//! Chromium): sign-in with a key and its form token, cookies that scripts
//! and other sites cannot use, forms refused without their token, another
//! tenant's run exactly like none, and what a guest wrote shown as text.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use warden_server::Scope;
use warden_tests::artifacts::{CALLER, HELLO, PLUGIN_DIR};

use crate::{Tenant, TestServer};

const RUNNER: &[Scope] = &[
    Scope::RunsWrite,
    Scope::RunsRead,
    Scope::AuditRead,
    Scope::ToolsCall,
];

/// A tool result no page may run: the name is greeted back.
const HOSTILE_NAME: &str = "<script>window.owned=1</script><img src=x onerror=\"window.owned=2\">";
/// A task summary no page may run.
const HOSTILE_SUMMARY: &str =
    "<script>window.owned=4</script><img src=x onerror=\"window.owned=5\"> greeted";

fn workflow() -> String {
    format!(
        r#"
version = 1
name = "greetings"
[roles.caller]
plugin = "caller"
tools = ["hello"]
[[tasks]]
id = "a"
role = "caller"
prompt = "greet"
input = {{ calls = [{{ tool = "hello.greet", arguments = {{ name = {name:?} }} }}], summary = {summary:?} }}
"#,
        name = HOSTILE_NAME,
        summary = HOSTILE_SUMMARY
    )
}

/// A form post's body, as a browser sends it.
trait FormBody {
    fn form_body(self, fields: &[(&str, &str)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body(self, fields: &[(&str, &str)]) -> Self {
        let encode = |text: &str| -> String {
            text.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect()
        };
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }
}

/// A client that keeps redirects and cookies to itself.
fn browser() -> reqwest::Client {
    let _ = crate::client();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// `name`'s value among `set`, as `name=value`.
fn cookie(set: &[String], name: &str) -> String {
    set.iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {set:?}"))
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// The hidden form token in a page.
fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form token") + 19;
    html[at..].split('"').next().unwrap().to_string()
}

/// Signs in with `key`: the session cookie (`warden_session=…`).
async fn sign_in(server: &TestServer, key: &str) -> String {
    let client = browser();
    let form = client
        .get(format!("{}/sign-in", server.base))
        .send()
        .await
        .unwrap();
    let set = cookies(form.headers());
    let token = csrf(&form.text().await.unwrap());
    let signed = client
        .post(format!("{}/sign-in", server.base))
        .header("cookie", cookie(&set, "warden_sign_in"))
        .form_body(&[("key", key), ("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let set = cookies(signed.headers());
    let session = set
        .iter()
        .find(|c| c.starts_with("warden_session="))
        .unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(attribute), "{session}");
    }
    cookie(&set, "warden_session")
}

async fn get(server: &TestServer, path: &str, session: &str) -> (StatusCode, String) {
    let answer = browser()
        .get(format!("{}{path}", server.base))
        .header("cookie", session)
        .send()
        .await
        .unwrap();
    (answer.status(), answer.text().await.unwrap())
}

async fn start() -> (TestServer, Vec<String>) {
    let acme = Tenant {
        scopes: RUNNER,
        plugins: &["*"],
        ..Tenant::new("acme")
    };
    let bolt = Tenant {
        scopes: RUNNER,
        ..Tenant::new("bolt")
    };
    let dirs = vec![
        PLUGIN_DIR.into(),
        Path::new(CALLER).parent().unwrap().to_path_buf(),
    ];
    TestServer::start_with_dirs(&[HELLO, CALLER], &[acme, bolt], dirs).await
}

#[tokio::test]
async fn signing_in_takes_a_key_and_the_forms_token() {
    let (server, keys) = start().await;
    let client = browser();

    // Not signed in: every page leads to the sign-in page.
    let home = client
        .get(format!("{}/", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), StatusCode::SEE_OTHER);
    assert_eq!(home.headers()[LOCATION], "/sign-in");
    let csp = home.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");

    // A sign-in post without the form's token (another site's form) is
    // refused before the key is even looked at.
    let forged = client
        .post(format!("{}/sign-in", server.base))
        .form_body(&[("key", keys[0].as_str()), ("csrf", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(cookies(forged.headers()).is_empty());

    // A wrong key with a good token: 401, no session.
    let form = client
        .get(format!("{}/sign-in", server.base))
        .send()
        .await
        .unwrap();
    let set = cookies(form.headers());
    assert!(set[0].contains("HttpOnly") && set[0].contains("SameSite=Strict"));
    let token = csrf(&form.text().await.unwrap());
    let wrong = client
        .post(format!("{}/sign-in", server.base))
        .header("cookie", cookie(&set, "warden_sign_in"))
        .form_body(&[("key", "wdn_0000000000000000_0"), ("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.text().await.unwrap().contains("not valid"));

    let session = sign_in(&server, &keys[0]).await;
    let (status, home) = get(&server, "/", &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(home.contains("Runs of acme"), "{home}");

    // Signing out needs the session's form token; then the session is gone.
    let forged = client
        .post(format!("{}/sign-out", server.base))
        .header("cookie", &session)
        .form_body(&[("csrf", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(get(&server, "/", &session).await.0, StatusCode::OK);
    let token = csrf(&home);
    let out = client
        .post(format!("{}/sign-out", server.base))
        .header("cookie", &session)
        .form_body(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(get(&server, "/", &session).await.0, StatusCode::SEE_OTHER);

    // An operator's key sees tenants, their quotas and keys (never a
    // secret).
    let admin = crate::key(&server.operator(), None, &[Scope::Admin]).await;
    let operator = sign_in(&server, &admin).await;
    let (status, tenants) = get(&server, "/", &operator).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        tenants.contains("data-tenant=\"acme\"") && tenants.contains("data-tenant=\"bolt\""),
        "{tenants}"
    );
    assert!(tenants.contains(&keys[1][4..20]), "{tenants}");
    assert!(
        !tenants.contains(&keys[1][21..]),
        "a key's secret is never shown"
    );

    // A session ends with its key.
    let session = sign_in(&server, &keys[0]).await;
    let id = keys[0][4..20].to_string();
    server
        .operator()
        .revoke_key(&id, None, warden_server::operator::Actor::Shell)
        .await
        .unwrap();
    assert_eq!(get(&server, "/", &session).await.0, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_run_page_shows_what_guests_wrote_as_text_and_only_to_its_tenant() {
    let (server, keys) = start().await;
    let run = submit(&server, &keys[0]).await;

    let acme = sign_in(&server, &keys[0]).await;
    let (status, page) = get(&server, &format!("/runs/{run}"), &acme).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("sse-connect"), "{page}");

    // The live stream's first event holds the whole timeline; once the run
    // has ended it carries the greeting, escaped.
    let mut timeline = String::new();
    for _ in 0..100 {
        let answer = browser()
            .get(format!("{}/runs/{run}/live", server.base))
            .header("cookie", &acme)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let body = tokio::time::timeout(Duration::from_secs(30), answer.text())
            .await
            .expect("the stream ends with the run")
            .unwrap();
        if body.contains("event: end\ndata: succeeded") {
            timeline = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(timeline.contains("tool-call"), "{timeline}");
    assert!(
        timeline.contains("&lt;script&gt;window.owned=1&lt;/script&gt;"),
        "{timeline}"
    );
    assert!(timeline.contains("&lt;img src=x"), "{timeline}");
    assert!(!timeline.contains("<script>window"), "{timeline}");
    assert!(!timeline.contains("<img src=x"), "{timeline}");
    assert!(timeline.contains("data-status=\"done\""), "{timeline}");
    // So is the task's summary, on the timeline and on its box.
    assert!(
        timeline.contains("a finished (attempt 1, ")
            && timeline
                .contains("&lt;script&gt;window.owned=4&lt;/script&gt;&lt;img src=x onerror="),
        "{timeline}"
    );
    assert!(
        timeline.contains("<title>a (caller): &lt;script&gt;window.owned=4"),
        "{timeline}"
    );
    assert!(!timeline.contains("<script>window.owned=4"), "{timeline}");
    // The call's arguments are on the timeline too, escaped.
    assert!(
        timeline.contains("hello.greet({&quot;name&quot;:&quot;&lt;script&gt;"),
        "{timeline}"
    );

    // Bolt's session: acme's run is exactly like a run that does not exist.
    let bolt = sign_in(&server, &keys[1]).await;
    let theirs = get(&server, &format!("/runs/{run}"), &bolt).await;
    let none = get(&server, "/runs/00000000000000000000000000000000", &bolt).await;
    assert_eq!(theirs.0, StatusCode::NOT_FOUND);
    assert_eq!(theirs, none);
    let live = get(&server, &format!("/runs/{run}/live"), &bolt).await;
    assert_eq!(live.0, StatusCode::NOT_FOUND);
    let (_, list) = get(&server, "/parts/runs", &bolt).await;
    assert!(!list.contains(&run), "{list}");
    let (_, list) = get(&server, "/parts/runs", &acme).await;
    assert!(list.contains(&run), "{list}");
}

#[tokio::test]
async fn a_run_started_from_the_page_shows_in_usage_and_audit() {
    let (server, keys) = start().await;
    let acme = sign_in(&server, &keys[0]).await;
    let (status, form) = get(&server, "/runs/new", &acme).await;
    assert_eq!(status, StatusCode::OK);
    let token = csrf(&form);
    let post = |fields: Vec<(&'static str, String)>| {
        let acme = acme.clone();
        let url = format!("{}/runs/new", server.base);
        async move {
            let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            browser()
                .post(url)
                .header("cookie", acme)
                .form_body(&pairs)
                .send()
                .await
                .unwrap()
        }
    };

    // Without the session's token nothing starts.
    let forged = post(vec![("workflow", workflow())]).await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(
        forged
            .text()
            .await
            .unwrap()
            .contains("not from this session")
    );
    let (_, list) = get(&server, "/parts/runs", &acme).await;
    assert!(list.contains("No runs yet."), "{list}");

    // A broken workflow is shown the API's own error.
    let broken = post(vec![
        ("csrf", token.clone()),
        ("workflow", "version = 1\n[[tasks]]\n".into()),
    ])
    .await;
    assert_eq!(broken.status(), StatusCode::BAD_REQUEST);
    assert!(broken.text().await.unwrap().contains("Refused"));

    let started = post(vec![("csrf", token.clone()), ("workflow", workflow())]).await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let location = started.headers()[LOCATION].to_str().unwrap().to_string();
    let run = location.strip_prefix("/runs/").unwrap().to_string();
    let (status, _) = get(&server, &location, &acme).await;
    assert_eq!(status, StatusCode::OK);

    let (status, usage) = get(&server, "/usage", &acme).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        usage.contains("Usage of acme") && usage.contains("<svg"),
        "{usage}"
    );
    let (status, audit) = get(&server, "/audit", &acme).await;
    assert_eq!(status, StatusCode::OK);
    assert!(audit.contains("is whole"), "{audit}");
    assert!(
        audit.contains("run.submit") && audit.contains(&run),
        "{audit}"
    );
    let (status, tools) = get(&server, "/tools", &acme).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        tools.contains("hello__greet") && tools.contains("Manifest"),
        "{tools}"
    );
    let (_, filtered) = get(&server, "/audit?q=session.start", &acme).await;
    assert!(
        filtered.contains("session.start") && !filtered.contains("run.submit"),
        "{filtered}"
    );
}

#[tokio::test]
async fn artifacts_are_shown_as_text_and_links_lead_nowhere() {
    let (server, keys) = start().await;
    let run = submit(&server, &keys[0]).await;
    let workspace = workspace(&server, &run);
    std::fs::create_dir_all(workspace.join("out")).unwrap();
    std::fs::write(
        workspace.join("out/report.md"),
        "# Done\n<script>window.owned=3</script>\n",
    )
    .unwrap();
    // What a guest could leave behind: links to the host's files.
    let secret = server.data.path().join("host-secret.txt");
    std::fs::write(&secret, "the host's own").unwrap();
    std::os::unix::fs::symlink(&secret, workspace.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(server.data.path(), workspace.join("up")).unwrap();

    let acme = sign_in(&server, &keys[0]).await;
    let (_, page) = get(&server, &format!("/runs/{run}"), &acme).await;
    assert!(page.contains("out/report.md"), "{page}");
    assert!(!page.contains("leak.txt"), "{page}");
    let (status, shown) = get(&server, &format!("/runs/{run}/files/out/report.md"), &acme).await;
    assert_eq!(status, StatusCode::OK);
    assert!(shown.contains("&lt;script&gt;window.owned=3"), "{shown}");
    assert!(!shown.contains("<script>window"), "{shown}");
    for path in [
        "leak.txt",
        "up/host-secret.txt",
        "../../../../host-secret.txt",
        "%2e%2e/%2e%2e/host-secret.txt",
        "out",
    ] {
        let (status, body) = get(&server, &format!("/runs/{run}/files/{path}"), &acme).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(!body.contains("the host's own"), "{path}: {body}");
    }
    let bolt = sign_in(&server, &keys[1]).await;
    let (status, _) = get(&server, &format!("/runs/{run}/files/out/report.md"), &bolt).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Polls acme's run `run` until the API says it has `status`.
async fn wait_for(server: &TestServer, key: &str, run: &str, status: &str) {
    for _ in 0..600 {
        let (_, report) = server.get(&format!("/v1/runs/{run}"), Some(key)).await;
        if report["status"] == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("run {run} never became {status}");
}

/// A failed run's page offers to resume it; the button (with the
/// session's token, never without) retries its dead task, and the run
/// succeeds. The form that starts runs offers the server's workflows by
/// name, and only those.
#[tokio::test]
async fn a_failed_run_is_resumed_from_its_page() {
    let (server, keys) = start().await;
    let (status, body) = crate::answer(
        server
            .client
            .post(format!("{}/v1/runs", server.base))
            .bearer_auth(&keys[0])
            .header("content-type", "application/toml")
            .body(crate::runs::FLAKY)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let run = body["id"].as_str().unwrap().to_string();
    wait_for(&server, &keys[0], &run, "failed").await;

    let acme = sign_in(&server, &keys[0]).await;
    let (_, page) = get(&server, &format!("/runs/{run}"), &acme).await;
    let action = format!("action=\"/runs/{run}/resume\"");
    assert!(page.contains(&action), "{page}");
    assert!(
        !page.contains("/cancel\""),
        "an ended run has no cancel: {page}"
    );
    let resume = |token: &'static str| {
        let url = format!("{}/runs/{run}/resume", server.base);
        let acme = acme.clone();
        let token = if token.is_empty() {
            csrf(&page)
        } else {
            token.to_string()
        };
        async move {
            browser()
                .post(url)
                .header("cookie", acme)
                .form_body(&[("csrf", token.as_str())])
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(resume("guess").await.status(), StatusCode::FORBIDDEN);
    let (_, report) = server.get(&format!("/v1/runs/{run}"), Some(&keys[0])).await;
    assert_eq!(report["status"], "failed", "nothing was resumed: {report}");
    let resumed = resume("").await;
    assert_eq!(resumed.status(), StatusCode::SEE_OTHER);
    assert_eq!(resumed.headers()[LOCATION], format!("/runs/{run}").as_str());
    wait_for(&server, &keys[0], &run, "succeeded").await;
    let (_, page) = get(&server, &format!("/runs/{run}"), &acme).await;
    assert!(!page.contains(&action), "{page}");
    // Resuming what succeeded is refused, with the reason.
    let late = resume("").await;
    assert_eq!(late.status(), StatusCode::CONFLICT);
    assert!(late.text().await.unwrap().contains("ended succeeded"));
    // Bolt cannot resume acme's run: it does not exist for bolt.
    let bolt = sign_in(&server, &keys[1]).await;
    let (_, bolt_page) = get(&server, "/runs/new", &bolt).await;
    let theirs = browser()
        .post(format!("{}/runs/{run}/resume", server.base))
        .header("cookie", &bolt)
        .form_body(&[("csrf", csrf(&bolt_page).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), StatusCode::NOT_FOUND);

    // The operator's own workflows are offered beside the examples; a link
    // in that dir is not followed.
    let offered = server.data.path().join("workflows");
    std::fs::create_dir_all(&offered).unwrap();
    std::fs::write(offered.join("greetings.toml"), workflow()).unwrap();
    let secret = server.data.path().join("host-secret.toml");
    std::fs::write(&secret, "version = 1\n").unwrap();
    std::os::unix::fs::symlink(&secret, offered.join("leak.toml")).unwrap();
    let (_, form) = get(&server, "/runs/new", &acme).await;
    assert!(form.contains("<option value=\"python-module\">"), "{form}");
    assert!(form.contains("<option value=\"greetings\">"), "{form}");
    assert!(!form.contains("leak"), "{form}");
    let picked = browser()
        .post(format!("{}/runs/new", server.base))
        .header("cookie", &acme)
        .form_body(&[("csrf", csrf(&form).as_str()), ("pick", "greetings")])
        .send()
        .await
        .unwrap();
    assert_eq!(picked.status(), StatusCode::SEE_OTHER);
    let started = picked.headers()[LOCATION]
        .to_str()
        .unwrap()
        .replace("/runs/", "");
    wait_for(&server, &keys[0], &started, "succeeded").await;
    for name in ["leak", "../host-secret"] {
        let refused = browser()
            .post(format!("{}/runs/new", server.base))
            .header("cookie", &acme)
            .form_body(&[("csrf", csrf(&form).as_str()), ("pick", name)])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{name}");
    }
    let unknown = browser()
        .post(format!("{}/runs/new", server.base))
        .header("cookie", &acme)
        .form_body(&[("csrf", csrf(&form).as_str()), ("pick", "../../etc/passwd")])
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    assert!(
        unknown
            .text()
            .await
            .unwrap()
            .contains("no workflow of that name")
    );
}

/// Where acme's run `run` keeps its files.
fn workspace(server: &TestServer, run: &str) -> std::path::PathBuf {
    server
        .data
        .path()
        .join(format!("tenants/acme/runs/{run}/workspace"))
}

/// Submits the hostile workflow for tenant `key`; its run id.
async fn submit(server: &TestServer, key: &str) -> String {
    let (status, submitted) = crate::answer(
        server
            .client
            .post(format!("{}/v1/runs", server.base))
            .bearer_auth(key)
            .header("content-type", "application/toml")
            .body(workflow())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
    submitted["id"].as_str().unwrap().to_string()
}

/// `tests/browser/dashboard.py` drives Chromium through the pages: sign
/// in, start a run from its form and watch its graph reach its final
/// colours live, the tool's markup shown as text and run nowhere, usage
/// and audit, a form without its token refused, the other tenant kept out.
#[tokio::test]
async fn the_dashboard_works_in_chromium() {
    let (server, keys) = start().await;
    let run = submit(&server, &keys[0]).await;
    let workspace = workspace(&server, &run);
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::write(workspace.join("notes.txt"), "written by the run\n").unwrap();
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.py");
    let mut command = std::process::Command::new(crate::mcp::python());
    command
        .arg(script)
        .env("WARDEN_BASE", &server.base)
        .env("WARDEN_KEY_A", &keys[0])
        .env("WARDEN_KEY_B", &keys[1])
        .env("WARDEN_RUN", &run)
        .env("WARDEN_WORKFLOW", workflow())
        .env("WARDEN_SHOTS", &shots);
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run the browser suite (scripts/dev setup installs selenium and chromium)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    assert!(said.contains("dashboard: ok"), "{said}");
    assert!(shots.join("run.png").is_file());
    assert!(shots.join("usage.png").is_file());
    eprintln!("screenshots in {}", shots.display());
}
