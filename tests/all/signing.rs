//! Signed plugins, and a compiled cache that cannot be made to run code
//! other than the component that was checked.

use std::path::{Path, PathBuf};

use warden_core::signature::{self, SecretKey};
use warden_core::{Engine, EngineConfig, LoadError, Policy, PolicyError};
use warden_tests::artifacts::{HELLO, TEXT_STATS};

use crate::*;

fn engine_caching_in(dir: &Path) -> Engine {
    Engine::new(&EngineConfig {
        cache_dir: Some(dir.to_path_buf()),
        max_concurrent_calls: 4,
        ..EngineConfig::default()
    })
    .expect("an engine")
}

fn artifact_of(dir: &Path, sha256: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .expect("the cache")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(sha256))
        })
        .expect("a cached artifact")
}

async fn tool_names(engine: &Engine, path: &str) -> Vec<String> {
    let plugin = engine.load_file(Path::new(path)).expect("it loads");
    let tools = plugin.list_tools(&options(Grant::default())).await;
    tools
        .result
        .expect("list-tools")
        .into_iter()
        .map(|t| t.name)
        .collect()
}

#[tokio::test]
async fn a_cached_artifact_put_in_another_plugins_place_is_not_run() {
    let cache = tempfile::tempdir().unwrap();
    let engine = engine_caching_in(cache.path());
    let hello = engine.load_file(Path::new(HELLO)).unwrap();
    let stats = engine.load_file(Path::new(TEXT_STATS)).unwrap();
    let hello_artifact = artifact_of(cache.path(), hello.sha256());
    let stats_artifact = artifact_of(cache.path(), stats.sha256());
    drop(engine);

    // hello's compiled code where text-stats' belongs: a pin or signature
    // checked on text-stats' bytes would otherwise run hello's code.
    std::fs::copy(&hello_artifact, &stats_artifact).unwrap();
    let engine = engine_caching_in(cache.path());
    let names = tool_names(&engine, TEXT_STATS).await;
    assert!(names.contains(&"count".to_string()), "{names:?}");
    assert!(!names.contains(&"greet".to_string()), "{names:?}");

    // Bytes someone else wrote, and a file cut short.
    std::fs::write(&stats_artifact, b"\x7fELF not from warden").unwrap();
    assert!(
        tool_names(&engine_caching_in(cache.path()), TEXT_STATS)
            .await
            .contains(&"count".to_string())
    );
    let whole = std::fs::read(&hello_artifact).unwrap();
    std::fs::write(&hello_artifact, &whole[..whole.len() - 1]).unwrap();
    assert!(
        tool_names(&engine_caching_in(cache.path()), HELLO)
            .await
            .contains(&"greet".to_string())
    );
}

#[tokio::test]
async fn a_cache_key_others_can_read_turns_the_cache_off() {
    use std::os::unix::fs::PermissionsExt;
    let cache = tempfile::tempdir().unwrap();
    drop(engine_caching_in(cache.path()));
    let key = cache.path().join(".key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let engine = engine_caching_in(cache.path());
    assert!(
        tool_names(&engine, HELLO)
            .await
            .contains(&"greet".to_string())
    );
    let cached = std::fs::read_dir(cache.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .count();
    assert_eq!(cached, 0, "nothing is cached under a key others can read");
}

#[tokio::test]
async fn a_policy_that_requires_signatures_admits_only_trusted_signers() {
    let (ours, _) = SecretKey::generate().unwrap();
    let (theirs, _) = SecretKey::generate().unwrap();
    let bytes = std::fs::read(HELLO).unwrap();
    let signed = signature::sign(&bytes, &ours).unwrap();
    let engine = engine();
    let load = |bytes: &[u8]| engine.load_bytes(bytes, Path::new("hello.wasm"));

    let policy = Policy::from_toml(
        &format!(
            "version = 1\nrequire-signature = true\ntrust = [\"{}\"]\n",
            ours.public()
        ),
        Path::new("."),
    )
    .unwrap();
    let admit = |plugin: &warden_core::CompiledPlugin| {
        policy.for_plugin(plugin.name(), plugin.sha256(), plugin.signer())
    };

    let plugin = load(&signed).unwrap();
    assert_eq!(plugin.signer(), Some(&ours.public()));
    admit(&plugin).expect("our signature is trusted");
    let out = plugin
        .call_tool(&options(Grant::default()), "greet", r#"{"name":"signed"}"#)
        .await;
    assert_eq!(ok_json(&out)["message"], "Hello, signed!");

    let unsigned = load(&bytes).unwrap();
    let refused = admit(&unsigned).unwrap_err();
    assert!(matches!(refused, PolicyError::Unsigned { .. }), "{refused}");
    assert!(
        refused.to_string().contains("warden plugin sign"),
        "{refused}"
    );

    let theirs_signed = load(&signature::sign(&bytes, &theirs).unwrap()).unwrap();
    let refused = admit(&theirs_signed).unwrap_err();
    assert!(
        refused.to_string().contains(&theirs.public().id()),
        "the refusal names the key: {refused}"
    );

    // A signed component changed afterwards does not load at all.
    // (A custom section added at the end: id 0, 3 bytes, name "x", "y".)
    let mut tampered = signed.clone();
    tampered.extend_from_slice(&[0x00, 0x03, 0x01, b'x', b'y']);
    match load(&tampered) {
        Err(LoadError::Signature { error, .. }) => {
            assert!(
                error.to_string().contains("changed after it was signed"),
                "{error}"
            )
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a tampered signed component loaded"),
    }

    // Repacking a manifest drops the signature it would break.
    let manifest = unsigned.manifest().expect("hello has a manifest").clone();
    let repacked = warden_core::manifest::pack(&signed, &manifest).unwrap();
    assert_eq!(load(&repacked).unwrap().signer(), None);
}

#[tokio::test]
async fn a_cached_runtime_snapshot_warden_did_not_write_is_made_again() {
    use warden_core::{Language, Scratch};
    use warden_tests::artifacts::{PROGRAM, RUNTIME_DIR};
    let cache = tempfile::tempdir().unwrap();
    let engine_with_runtimes = || {
        Engine::new(&EngineConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            runtime_dir: Some(RUNTIME_DIR.into()),
            max_concurrent_calls: 4,
            ..EngineConfig::default()
        })
        .expect("an engine")
    };
    let answer = |engine: Engine| async move {
        let scratch = Scratch::new().unwrap();
        let out = engine
            .run_code(
                Language::Js,
                "console.log(6 * 7)",
                &scratch,
                Vec::new(),
                &[],
                &options(Grant::default()),
            )
            .await
            .expect("the runtime loads");
        (out.result, out.stdout.to_text())
    };
    assert_eq!(answer(engine_with_runtimes()).await, (Ok(0), "42\n".into()));
    let snapshot = std::fs::read_dir(cache.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".snapshot.wasm"))
        .expect("the JavaScript runtime's snapshot is cached");

    // Another program in its place, with a made-up MAC: were it trusted,
    // that program would run as the JavaScript runtime.
    let mut forged = std::fs::read(PROGRAM).unwrap();
    forged.extend_from_slice(&[0x5a; 32]);
    std::fs::write(&snapshot, &forged).unwrap();
    assert_eq!(answer(engine_with_runtimes()).await, (Ok(0), "42\n".into()));
    let made_again = std::fs::read(&snapshot).unwrap();
    assert!(made_again != forged, "the forged snapshot was kept");

    // And a snapshot cut short.
    let cut = &made_again[..made_again.len() / 2];
    std::fs::write(&snapshot, cut).unwrap();
    assert_eq!(answer(engine_with_runtimes()).await, (Ok(0), "42\n".into()));
    assert!(
        std::fs::read(&snapshot).unwrap().len() > cut.len(),
        "the cut snapshot was kept"
    );
}
