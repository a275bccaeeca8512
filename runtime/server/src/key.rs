//! API keys: `wdn_<id>_<secret>`, shown once. The server keeps the id, a
//! keyed BLAKE3 hash of the secret, the tenant, the scopes and the expiry;
//! a request's key is looked up by id and its hash compared in constant
//! time, so checking a key costs one hash, not a password-hashing round.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// What every key starts with, so a leaked one is easy to recognise.
pub const PREFIX: &str = "wdn_";
const ID_HEX: usize = 16;
const SECRET_HEX: usize = 64;

/// A key as created: the whole token (shown once) and its parts.
pub struct NewKey {
    pub id: String,
    pub token: String,
    secret: String,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl NewKey {
    /// A fresh key: a 64-bit id and a 256-bit secret from a CSPRNG the OS
    /// seeded.
    pub fn generate() -> NewKey {
        let id = hex(&rand::random::<[u8; ID_HEX / 2]>());
        let secret = hex(&rand::random::<[u8; SECRET_HEX / 2]>());
        NewKey {
            token: format!("{PREFIX}{id}_{secret}"),
            id,
            secret,
        }
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }
}

/// The id and secret of a presented token, when it has the shape of a key.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.strip_prefix(PREFIX)?.split_once('_')?;
    let lower_hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    (lower_hex(id, ID_HEX) && lower_hex(secret, SECRET_HEX)).then_some((id, secret))
}

/// Whether `id` has the shape of a key id (what `keys revoke` takes).
pub fn is_id(id: &str) -> bool {
    id.len() == ID_HEX && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes secrets with a key derived from the server's secret, which is
/// kept outside the control store: a copy of the store alone cannot confirm
/// a guessed secret.
#[derive(Clone)]
pub struct KeyHasher {
    key: [u8; 32],
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHasher([redacted])")
    }
}

impl KeyHasher {
    pub fn new(server_secret: &[u8; 32]) -> KeyHasher {
        KeyHasher {
            key: blake3::derive_key("warden 2026 api key hash v1", server_secret),
        }
    }

    /// The stored form of `secret`, hex.
    pub fn hash(&self, secret: &str) -> String {
        blake3::keyed_hash(&self.key, secret.as_bytes())
            .to_hex()
            .to_string()
    }

    /// Whether `secret` hashes to `stored`, in time independent of where
    /// they differ.
    pub fn matches(&self, secret: &str, stored: &str) -> bool {
        self.hash(secret).as_bytes().ct_eq(stored.as_bytes()).into()
    }
}

/// What a key may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum Scope {
    /// List the tenant's tools and call them (REST and MCP).
    #[serde(rename = "tools:call")]
    ToolsCall,
    /// Run code through `POST /v1/exec`.
    #[serde(rename = "exec")]
    Exec,
    #[serde(rename = "runs:write")]
    RunsWrite,
    #[serde(rename = "runs:read")]
    RunsRead,
    #[serde(rename = "memory:read")]
    MemoryRead,
    #[serde(rename = "memory:write")]
    MemoryWrite,
    /// Read the tenant's audit log and usage.
    #[serde(rename = "audit:read")]
    AuditRead,
    /// Manage tenants and keys; only an operator key (one without a
    /// tenant) has it.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 8] = [
        Scope::ToolsCall,
        Scope::Exec,
        Scope::RunsWrite,
        Scope::RunsRead,
        Scope::MemoryRead,
        Scope::MemoryWrite,
        Scope::AuditRead,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ToolsCall => "tools:call",
            Scope::Exec => "exec",
            Scope::RunsWrite => "runs:write",
            Scope::RunsRead => "runs:read",
            Scope::MemoryRead => "memory:read",
            Scope::MemoryWrite => "memory:write",
            Scope::AuditRead => "audit:read",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Scope, String> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                format!("{s:?} is not a scope; use one of {}", names.join(", "))
            })
    }
}

/// A key as the control store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    /// `None` for an operator key (scope `admin`).
    pub tenant: Option<String>,
    pub hash: String,
    pub scopes: Vec<Scope>,
    /// Seconds since the Unix epoch.
    pub created: i64,
    pub expires: Option<i64>,
    pub revoked: Option<i64>,
    /// What the operator wrote to remember it by.
    pub label: Option<String>,
}

impl KeyRecord {
    /// Why the key cannot be used at `now`, if it cannot.
    pub fn refusal(&self, now: i64) -> Option<&'static str> {
        if self.revoked.is_some() {
            Some("the key was revoked")
        } else if self.expires.is_some_and(|at| at <= now) {
            Some("the key has expired")
        } else {
            None
        }
    }
}

/// `30d`, `12h`, `90m` or `3600s` as seconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not a duration; write it as 30d, 12h, 90m or 3600s");
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let unit = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(bad()),
    };
    n.checked_mul(unit).filter(|s| *s > 0).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_parses_back_and_only_its_secret_matches() {
        let key = NewKey::generate();
        assert_eq!(key.token.len(), PREFIX.len() + ID_HEX + 1 + SECRET_HEX);
        assert_eq!(parse(&key.token), Some((key.id.as_str(), key.secret())));
        let hasher = KeyHasher::new(&[7; 32]);
        let stored = hasher.hash(key.secret());
        assert!(hasher.matches(key.secret(), &stored));
        let other = NewKey::generate();
        assert!(!hasher.matches(other.secret(), &stored));
        // Another server's hasher does not confirm it.
        assert!(!KeyHasher::new(&[8; 32]).matches(key.secret(), &stored));
        for bad in [
            "",
            "wdn_",
            "Bearer x",
            &key.token.to_uppercase(),
            &key.token[..key.token.len() - 1],
            &format!("{}0", key.token),
            &key.token.replace("wdn_", "wdx_"),
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn scopes_and_durations_name_what_is_wrong() {
        assert_eq!("runs:read".parse::<Scope>(), Ok(Scope::RunsRead));
        let err = "runs".parse::<Scope>().unwrap_err();
        assert!(err.contains("\"runs\" is not a scope") && err.contains("runs:read"));
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration("90m"), Ok(5_400));
        for bad in ["", "d", "30", "-1d", "0d", "1w", "99999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
