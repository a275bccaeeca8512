//! Plugins in an OCI registry: `warden plugin push|pull`, and
//! `oci://REGISTRY/REPOSITORY@sha256:…` wherever a plugin file is named.
//!
//! The layout is the CNCF Wasm OCI artifact one (what wasm-pkg-tools'
//! `oci-wasm` writes): an OCI image manifest whose config has media type
//! `application/vnd.wasm.config.v0+json` and whose one layer is the
//! component, `application/wasm`. The protocol is oci-client's, which
//! checks every manifest and blob it downloads against its digest.
//!
//! A plugin named by a pinned reference is pulled once into
//! `DATA_DIR/oci/sha256-HEX/` (the manifest and the component) and checked
//! again on every use: the manifest's SHA-256 must be the pin and the
//! component's the manifest's layer digest, so a file changed on disk is
//! refused like one changed in the registry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

use crate::exit::Failure;

/// The scheme of a plugin in a registry.
pub const SCHEME: &str = "oci://";

/// The config and layer media types of a Wasm OCI artifact.
const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
const LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The layer media type oci-client's own Wasm examples use, read too.
const OLD_LAYER_MEDIA_TYPE: &str = oci_client::manifest::WASM_LAYER_MEDIA_TYPE;

fn parse(reference: &str) -> Result<Reference, Failure> {
    let text = reference.strip_prefix(SCHEME).unwrap_or(reference);
    text.parse::<Reference>().map_err(|e| {
        Failure::bad_input(format!(
            "{reference:?} is not an OCI reference ({e}); write REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST, e.g. 127.0.0.1:5000/tools/hello:1.0"
        ))
    })
}

/// A client for `reference`'s registry: plain HTTP for a registry on this
/// machine's loopback, HTTPS for any other.
fn client(reference: &Reference) -> Client {
    // reqwest is built without a crypto provider; ring is warden's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let registry = reference.resolve_registry();
    let host = registry.rsplit_once(':').map_or(registry, |(host, _)| host);
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
    Client::new(ClientConfig {
        protocol: if loopback {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        ..ClientConfig::default()
    })
}

/// Basic credentials from `WARDEN_OCI_USERNAME` and `WARDEN_OCI_PASSWORD`,
/// else anonymous.
fn auth() -> RegistryAuth {
    match (
        std::env::var("WARDEN_OCI_USERNAME"),
        std::env::var("WARDEN_OCI_PASSWORD"),
    ) {
        (Ok(user), Ok(password)) => RegistryAuth::Basic(user, password),
        _ => RegistryAuth::Anonymous,
    }
}

fn registry_error(reference: &str, e: impl std::fmt::Display) -> Failure {
    Failure::bad_input(format!("the registry refused or failed {reference}: {e}"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Pushes the component at `file` as `reference`; returns the pinned
/// reference (`…@sha256:MANIFEST`) to pull it by.
pub async fn push(file: &Path, reference: &str) -> Result<String, Failure> {
    let parsed = parse(reference)?;
    let bytes = warden_core::engine::read_component(file)?;
    let layer_digest = format!("sha256:{}", sha256_hex(&bytes));
    let config = serde_json::json!({
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer_digest],
    });
    let config = Config::new(
        serde_json::to_vec(&config).unwrap_or_default(),
        CONFIG_MEDIA_TYPE.to_string(),
        None,
    );
    let title = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin.wasm".into());
    let layers = vec![ImageLayer::new(
        bytes,
        LAYER_MEDIA_TYPE.to_string(),
        Some(BTreeMap::from([(
            "org.opencontainers.image.title".to_string(),
            title,
        )])),
    )];
    let manifest = OciImageManifest::build(&layers, &config, None);
    let client = client(&parsed);
    client
        .push(&parsed, &layers, config, &auth(), Some(manifest))
        .await
        .map_err(|e| registry_error(reference, e))?;
    let digest = client
        .fetch_manifest_digest(&parsed, &auth())
        .await
        .map_err(|e| registry_error(reference, e))?;
    Ok(format!(
        "{}/{}@{digest}",
        parsed.registry(),
        parsed.repository()
    ))
}

/// Pulls `reference` (pinned or by tag) and checks what arrived; returns
/// the manifest's digest and the component.
async fn fetch(reference: &str) -> Result<(String, Vec<u8>, Vec<u8>), Failure> {
    let parsed = parse(reference)?;
    let client = client(&parsed);
    let auth = auth();
    // oci-client checks the manifest against a pinned digest, and every
    // blob against the digest the manifest gives it.
    let (manifest_bytes, digest) = client
        .pull_manifest_raw(&parsed, &auth, &[OCI_IMAGE_MEDIA_TYPE])
        .await
        .map_err(|e| registry_error(reference, e))?;
    let manifest: OciImageManifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
        Failure::bad_input(format!(
            "{reference}: its manifest is not an OCI image manifest: {e}"
        ))
    })?;
    let layer = match manifest.layers.as_slice() {
        [layer]
            if layer.media_type == LAYER_MEDIA_TYPE || layer.media_type == OLD_LAYER_MEDIA_TYPE =>
        {
            layer
        }
        layers => {
            return Err(Failure::bad_input(format!(
                "{reference} is not a Wasm artifact: a plugin is one layer of type {LAYER_MEDIA_TYPE}, and it has {}",
                layers
                    .iter()
                    .map(|l| l.media_type.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let mut component = Vec::new();
    client
        .pull_blob(&parsed, layer, &mut component)
        .await
        .map_err(|e| registry_error(reference, e))?;
    Ok((digest, manifest_bytes.to_vec(), component))
}

/// `warden plugin pull REFERENCE`: the component, and the digest that pins
/// it.
pub async fn pull(reference: &str) -> Result<(String, Vec<u8>), Failure> {
    let (digest, _, component) = fetch(reference).await?;
    Ok((digest, component))
}

/// The local file of a plugin named `oci://…@sha256:…`, pulled into
/// `DATA_DIR/oci` the first time and checked on every use. Any other path
/// is itself.
pub async fn local(path: &Path, data: Option<&Path>) -> Result<PathBuf, Failure> {
    let Some(reference) = path.to_str().filter(|p| p.starts_with(SCHEME)) else {
        return Ok(path.to_path_buf());
    };
    let parsed = parse(reference)?;
    let Some(pin) = parsed.digest().map(str::to_string) else {
        return Err(Failure::bad_input(format!(
            "{reference} names a tag, which the registry may move: pin the build with @sha256:… (`warden plugin pull` prints it)"
        )));
    };
    let Some(hex) = pin.strip_prefix("sha256:") else {
        return Err(Failure::bad_input(format!(
            "{reference}: only sha256 digests are read"
        )));
    };
    let Some(data) = data else {
        return Err(Failure::bad_input(
            "there is no data dir to keep pulled plugins in; pass --data-dir or set WARDEN_DATA_DIR",
        ));
    };
    let dir = data.join("oci").join(format!("sha256-{hex}"));
    let manifest_path = dir.join("manifest.json");
    let component_path = dir.join("component.wasm");
    if !manifest_path.is_file() || !component_path.is_file() {
        let (digest, manifest, component) = fetch(reference).await?;
        if digest != pin {
            return Err(Failure::bad_input(format!(
                "{reference}: the registry answered with manifest {digest}, not the pinned one"
            )));
        }
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| write_whole(&dir, &component_path, &component))
            .and_then(|()| write_whole(&dir, &manifest_path, &manifest));
        written.map_err(|e| {
            Failure::internal(format!("cannot keep {reference} in {}: {e}", dir.display()))
        })?;
    }
    check_local(reference, hex, &manifest_path, &component_path)?;
    Ok(component_path)
}

/// The pulled files still are what the pin names.
fn check_local(
    reference: &str,
    pin: &str,
    manifest_path: &Path,
    component_path: &Path,
) -> Result<(), Failure> {
    let read =
        |p: &Path| std::fs::read(p).map_err(|e| Failure::internal(format!("{}: {e}", p.display())));
    let manifest = read(manifest_path)?;
    let changed = |what: &str| {
        Failure::bad_input(format!(
            "{reference}: the pulled {what} in {} changed on disk since it was pulled; remove that directory to pull it again",
            manifest_path.parent().unwrap_or(manifest_path).display()
        ))
    };
    if sha256_hex(&manifest) != pin {
        return Err(changed("manifest"));
    }
    let parsed: OciImageManifest =
        serde_json::from_slice(&manifest).map_err(|_| changed("manifest"))?;
    let layer = parsed.layers.first().ok_or_else(|| changed("manifest"))?;
    if layer.digest != format!("sha256:{}", sha256_hex(&read(component_path)?)) {
        return Err(changed("component"));
    }
    Ok(())
}

fn write_whole(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
