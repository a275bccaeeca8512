//! `warden plugin push` and `pull` against a real OCI registry (Debian's
//! docker-registry on 127.0.0.1), and plugins named
//! `oci://REGISTRY/REPOSITORY@sha256:…`.

use warden_tests::artifacts::HELLO;
use warden_tests::registry::Registry;

use crate::*;

#[test]
fn a_signed_plugin_pulled_by_digest_runs_where_signatures_are_required() {
    let registry = Registry::start();
    let s = Scratch::new();
    let dir = s.cwd.path();
    let ok = |out: &std::process::Output| {
        assert_eq!(code(out), 0, "{}", stderr(out));
        stdout(out).trim().to_string()
    };
    let key = ok(&s.run(&["plugin", "keygen", "--out", "me.key"]));
    ok(&s.run(&[
        "plugin",
        "sign",
        HELLO,
        "--key",
        "me.key",
        "-o",
        "signed.wasm",
    ]));

    let tag = format!("{}/tools/hello:1.0", registry.host);
    let signed = ok(&s.run(&["plugin", "push", "signed.wasm", &tag]));
    assert!(
        signed.starts_with(&format!("{}/tools/hello@sha256:", registry.host)),
        "{signed}"
    );
    let unsigned_tag = format!("{}/tools/plain:1.0", registry.host);
    let unsigned = ok(&s.run(&["plugin", "push", HELLO, &unsigned_tag]));

    // Pulled by tag: the same bytes, and the digest that pins them.
    let digest = ok(&s.run(&["plugin", "pull", &tag, "-o", "pulled.wasm"]));
    assert!(signed.ends_with(&digest), "{signed} vs {digest}");
    assert_eq!(
        std::fs::read(dir.join("pulled.wasm")).unwrap(),
        std::fs::read(dir.join("signed.wasm")).unwrap()
    );

    std::fs::write(
        dir.join("policy.toml"),
        format!("version = 1\nrequire-signature = true\ntrust = [\"{key}\"]\n"),
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
    let out = greet(&format!("oci://{signed}"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("Hello, Ada!"), "{}", stdout(&out));
    // Again, from what was pulled the first time.
    assert_eq!(code(&greet(&format!("oci://{signed}"))), 0);

    let out = greet(&format!("oci://{unsigned}"));
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("is not signed"), "{}", stderr(&out));

    // A tag is not a pin.
    let out = greet(&format!("oci://{tag}"));
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("pin the build with @sha256"),
        "{}",
        stderr(&out)
    );

    // A pin the registry has no manifest for.
    let wrong = format!(
        "oci://{}/tools/hello@sha256:{}",
        registry.host,
        "0".repeat(64)
    );
    let out = greet(&wrong);
    assert_eq!(code(&out), 2, "{}", stderr(&out));

    // What was pulled, changed on disk, is refused.
    let pulled = std::fs::read_dir(s.data.path().join("oci"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().join("component.wasm"))
        .find(|p| {
            p.is_file()
                && std::fs::read(p).unwrap() == std::fs::read(dir.join("signed.wasm")).unwrap()
        })
        .expect("the pulled component");
    let mut bytes = std::fs::read(&pulled).unwrap();
    bytes.extend_from_slice(&[0x00, 0x03, 0x01, b'x', b'y']);
    std::fs::write(&pulled, bytes).unwrap();
    let out = greet(&format!("oci://{signed}"));
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("changed on disk"), "{}", stderr(&out));

    // Not a reference.
    let out = s.run(&["plugin", "push", "signed.wasm", "Not A/Reference!"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("is not an OCI reference"),
        "{}",
        stderr(&out)
    );

    // Not a component.
    std::fs::write(dir.join("notes.txt"), "hello").unwrap();
    let out = s.run(&["plugin", "push", "notes.txt", &tag]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("not a WebAssembly file"),
        "{}",
        stderr(&out)
    );
}
