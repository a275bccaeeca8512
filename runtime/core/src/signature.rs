//! Signed plugins: an Ed25519 signature inside the component, in a
//! top-level custom section named [`SECTION`], over the component's bytes
//! without that section.
//!
//! What is signed is `DOMAIN || SHA-256(component without its signature
//! sections)`, so a signature cannot be replayed as one over anything
//! else, and verifying a large component costs one hash. The section says
//! which key signed it (the whole public key, `ed25519:BASE64`), so a
//! policy can name the keys it trusts (`trust = [...]`) and require a
//! signature (`require-signature = true`). The signature travels with the
//! file: through a copy, a registry pull or an air gap, with no service
//! to ask.
//!
//! Any change to the component after signing (a byte of code, a repacked
//! manifest) makes the signature fail, and a component whose signature
//! fails is refused at load, whatever the policy.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::manifest::ScanError;
use crate::sections::{self, without_top_level};

/// The custom section that holds a component's signature.
pub const SECTION: &str = sections::SIGNATURE;

/// Prefixed to the digest that is signed.
const DOMAIN: &[u8] = b"warden plugin signature v1\0";

/// How a secret key file starts; the rest is its PKCS#8 document, base64.
const SECRET_PREFIX: &str = "warden-secret-key:ed25519:";

/// How a public key is written: `ed25519:` and its 32 bytes, base64.
const PUBLIC_PREFIX: &str = "ed25519:";

/// Why signing or checking a signature failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(
        "the signature does not match the component: it was changed after it was signed (by {key}); sign it again or get the original"
    )]
    Mismatch { key: String },
    #[error("the component's warden:signature section is not a warden signature: {0}")]
    Malformed(String),
    #[error("the component carries {0} signatures; warden reads one")]
    Several(usize),
    #[error("{0}")]
    Key(String),
}

/// A public key: who signed a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Parses `ed25519:BASE64`.
    pub fn parse(text: &str) -> Result<PublicKey, SignatureError> {
        let bad = || {
            SignatureError::Key(format!(
                "{text:?} is not a public key: write it as `ed25519:` and 32 bytes in base64, as `warden plugin keygen` prints it"
            ))
        };
        let encoded = text.trim().strip_prefix(PUBLIC_PREFIX).ok_or_else(bad)?;
        let bytes = BASE64.decode(encoded).map_err(|_| bad())?;
        Ok(PublicKey(bytes.try_into().map_err(|_| bad())?))
    }

    /// A short name for the key in messages: the first 8 bytes of its
    /// SHA-256, hex.
    pub fn id(&self) -> String {
        hex::encode(&Sha256::digest(self.0)[..8])
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{PUBLIC_PREFIX}{}", BASE64.encode(self.0))
    }
}

/// A secret key that signs plugins.
pub struct SecretKey(Ed25519KeyPair);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey({})", self.public().id())
    }
}

impl SecretKey {
    /// A new random key and its file text.
    pub fn generate() -> Result<(SecretKey, String), SignatureError> {
        let rng = ring::rand::SystemRandom::new();
        let document = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| SignatureError::Key("the system gave no randomness for a key".into()))?;
        let text = format!("{SECRET_PREFIX}{}\n", BASE64.encode(document.as_ref()));
        Ok((SecretKey::parse(&text)?, text))
    }

    /// Reads a key file's text.
    pub fn parse(text: &str) -> Result<SecretKey, SignatureError> {
        let bad = |why: &str| {
            SignatureError::Key(format!(
                "not a warden secret key ({why}); make one with `warden plugin keygen --out FILE`"
            ))
        };
        let encoded = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or_else(|| bad("it does not start with warden-secret-key:ed25519:"))?;
        let document = BASE64.decode(encoded).map_err(|_| bad("bad base64"))?;
        Ed25519KeyPair::from_pkcs8(&document)
            .map(SecretKey)
            .map_err(|e| bad(&e.to_string()))
    }

    /// Its public key.
    pub fn public(&self) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(self.0.public_key().as_ref());
        PublicKey(bytes)
    }
}

/// The section's content.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    version: u32,
    key: String,
    signature: String,
}

fn signed_message(unsigned: &[u8]) -> Vec<u8> {
    let mut message = DOMAIN.to_vec();
    message.extend_from_slice(&Sha256::digest(unsigned));
    message
}

/// `component` signed by `key` (any earlier signature replaced).
pub fn sign(component: &[u8], key: &SecretKey) -> Result<Vec<u8>, SignatureError> {
    let (mut out, _) = without_top_level(component, &[SECTION]).map_err(ScanError::Invalid)?;
    let signature = key.0.sign(&signed_message(&out));
    let section = Section {
        version: 1,
        key: key.public().to_string(),
        signature: BASE64.encode(signature.as_ref()),
    };
    let data =
        serde_json::to_vec(&section).map_err(|e| SignatureError::Malformed(e.to_string()))?;
    let section = wasm_encoder::CustomSection {
        name: SECTION.into(),
        data: data.into(),
    };
    wasm_encoder::Section::append_to(&section, &mut out);
    Ok(out)
}

/// Who signed `component`: `None` when it is not signed, an error when
/// its signature does not hold.
pub fn signer(component: &[u8]) -> Result<Option<PublicKey>, SignatureError> {
    let (unsigned, found) = without_top_level(component, &[SECTION]).map_err(ScanError::Invalid)?;
    let data = match found.as_slice() {
        [] => return Ok(None),
        [data] => *data,
        many => return Err(SignatureError::Several(many.len())),
    };
    let section: Section =
        serde_json::from_slice(data).map_err(|e| SignatureError::Malformed(e.to_string()))?;
    if section.version != 1 {
        return Err(SignatureError::Malformed(format!(
            "version {} (this warden reads version 1); upgrade warden",
            section.version
        )));
    }
    let key = PublicKey::parse(&section.key)?;
    let signature = BASE64
        .decode(&section.signature)
        .map_err(|e| SignatureError::Malformed(format!("signature: {e}")))?;
    UnparsedPublicKey::new(&ED25519, key.0)
        .verify(&signed_message(&unsigned), &signature)
        .map_err(|_| SignatureError::Mismatch {
            key: format!("{} ({key})", key.id()),
        })?;
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: the preamble of the component encoding.
    fn component() -> Vec<u8> {
        let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
        let section = wasm_encoder::CustomSection {
            name: "code".into(),
            data: b"the plugin's code".as_slice().into(),
        };
        wasm_encoder::Section::append_to(&section, &mut bytes);
        bytes
    }

    #[test]
    fn a_signed_component_names_its_signer_and_any_change_breaks_it() {
        let (key, text) = SecretKey::generate().unwrap();
        assert_eq!(SecretKey::parse(&text).unwrap().public(), key.public());
        let plain = component();
        assert_eq!(signer(&plain).unwrap(), None);

        let signed = sign(&plain, &key).unwrap();
        assert_eq!(signer(&signed).unwrap(), Some(key.public()));
        // Signing again replaces the signature.
        let (other, _) = SecretKey::generate().unwrap();
        let resigned = sign(&signed, &other).unwrap();
        assert_eq!(signer(&resigned).unwrap(), Some(other.public()));

        // A byte of the code changed.
        let at = signed.windows(4).position(|w| w == b"code").unwrap();
        let mut tampered = signed.clone();
        tampered[at + 10] ^= 1;
        let error = signer(&tampered).unwrap_err();
        assert!(matches!(error, SignatureError::Mismatch { .. }), "{error}");
        assert!(error.to_string().contains(&key.public().id()), "{error}");

        // Another key's signature pasted onto the component.
        let mut forged = plain.clone();
        let section = wasm_encoder::CustomSection {
            name: SECTION.into(),
            data: serde_json::to_vec(&Section {
                version: 1,
                key: key.public().to_string(),
                signature: BASE64.encode(other.0.sign(&signed_message(&plain)).as_ref()),
            })
            .unwrap()
            .into(),
        };
        wasm_encoder::Section::append_to(&section, &mut forged);
        assert!(matches!(
            signer(&forged),
            Err(SignatureError::Mismatch { .. })
        ));
    }

    #[test]
    fn a_malformed_or_doubled_signature_section_is_refused() {
        let with = |data: &[u8]| {
            let mut bytes = component();
            let section = wasm_encoder::CustomSection {
                name: SECTION.into(),
                data: data.into(),
            };
            wasm_encoder::Section::append_to(&section, &mut bytes);
            bytes
        };
        for junk in [&b"not json"[..], b"{}", &[0xff; 4096]] {
            assert!(
                matches!(signer(&with(junk)), Err(SignatureError::Malformed(_))),
                "{junk:?}"
            );
        }
        let (key, _) = SecretKey::generate().unwrap();
        let mut twice = sign(&component(), &key).unwrap();
        let section = wasm_encoder::CustomSection {
            name: SECTION.into(),
            data: b"{}".as_slice().into(),
        };
        wasm_encoder::Section::append_to(&section, &mut twice);
        assert_eq!(signer(&twice), Err(SignatureError::Several(2)));
        let newer = br#"{"version":2,"key":"ed25519:AAAA","signature":""}"#;
        assert!(
            signer(&with(newer))
                .unwrap_err()
                .to_string()
                .contains("upgrade warden")
        );
    }

    #[test]
    fn keys_read_back_and_bad_ones_say_how_to_make_one() {
        let (key, _) = SecretKey::generate().unwrap();
        let public = key.public().to_string();
        assert_eq!(PublicKey::parse(&public).unwrap(), key.public());
        assert_eq!(key.public().id().len(), 16);
        assert!(
            PublicKey::parse("ed25519:AAAA")
                .unwrap_err()
                .to_string()
                .contains("32 bytes")
        );
        assert!(
            SecretKey::parse("hello")
                .unwrap_err()
                .to_string()
                .contains("warden plugin keygen")
        );
    }
}
