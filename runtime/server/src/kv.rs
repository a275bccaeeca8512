//! The control state of a cluster in a JetStream key-value bucket
//! (`WARDEN_CONTROL`), behind the same [`ControlStore`] as SQLite on one
//! node, so that every node sees one set of tenants, keys, idempotency keys,
//! usage and sessions.
//!
//! Keys: `tenant.NAME`, `key.ID`, `audit.TENANT`, `idem.TENANT.HASH` (the
//! BLAKE3 of the client's idempotency key), `usage.TENANT.DAY.KIND.MODEL`
//! (the model in hex) and `session.ID`; parts that are not plain names are
//! hex. What must not be lost to a race is a compare-and-set: a new tenant
//! or key is a create (one of two at once wins), usage is added by read and
//! update at the read revision (retried on a conflict), the first run of an
//! idempotency key stays. Removing a tenant is several steps, in an order
//! that is safe to cut: its keys are revoked before the tenant goes.

use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use warden_api::BoxFuture;
use warden_cluster::Nats;
use warden_cluster::kv::Bucket;

use crate::control::{
    AuditHead, ControlError, ControlResult, ControlStore, IdempotentRun, SessionRecord, UsageRow,
};
use crate::key::KeyRecord;
use crate::tenant::TenantRecord;

/// The bucket's name.
pub const BUCKET: &str = "WARDEN_CONTROL";

/// Where the cluster's secret is.
const SECRET_KEY: &str = "server.secret";

/// Tries of a compare-and-set that keeps losing to other writers.
const CAS_TRIES: u32 = 64;

/// The control state in a JetStream bucket.
#[derive(Debug, Clone)]
pub struct KvControl {
    bucket: Bucket,
    /// Keeps the connection up while the store is in use.
    _nats: Nats,
}

fn store_error(e: impl std::fmt::Display) -> ControlError {
    ControlError::Store(e.to_string())
}

/// `part` as one token of a key: as is when it is a plain name, else `x`
/// and its hex (so no `.` or `*` of a caller's can change which key it is,
/// and no two parts share a token).
fn token(part: &str) -> String {
    let plain = !part.is_empty()
        && !part.starts_with('x')
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        part.to_string()
    } else {
        let hex: String = part.bytes().map(|b| format!("{b:02x}")).collect();
        format!("x{hex}")
    }
}

fn encode<T: Serialize>(value: &T) -> ControlResult<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(store_error)
}

fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> ControlResult<T> {
    serde_json::from_slice(value).map_err(|e| store_error(format!("{key}: {e}")))
}

impl KvControl {
    /// Opens the bucket (making it, with `replicas` copies, if missing).
    pub async fn open(nats: &Nats, replicas: usize) -> ControlResult<KvControl> {
        let bucket = Bucket::open(nats, BUCKET, replicas)
            .await
            .map_err(store_error)?;
        Ok(KvControl {
            bucket,
            _nats: nats.clone(),
        })
    }

    /// The cluster's secret (what API keys are hashed and the audit log is
    /// chained with): made by the first node to ask, the same for every
    /// node after.
    pub async fn secret(&self) -> ControlResult<[u8; 32]> {
        let fresh: [u8; 32] = rand::random();
        let hex: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
        self.create(SECRET_KEY, &hex).await?;
        let Some((stored, _)) = self.get::<String>(SECRET_KEY).await? else {
            return Err(store_error(format!(
                "{SECRET_KEY} vanished after it was made"
            )));
        };
        let bytes: Vec<u8> = (0..stored.len())
            .step_by(2)
            .filter_map(|at| stored.get(at..at + 2))
            .filter_map(|pair| u8::from_str_radix(pair, 16).ok())
            .collect();
        bytes
            .try_into()
            .map_err(|_| store_error(format!("{SECRET_KEY} is not 32 bytes in hex")))
    }

    fn store(&self) -> &kv::Store {
        &self.bucket.store
    }

    /// The live value at `key`, and its revision.
    async fn get<T: DeserializeOwned>(&self, key: &str) -> ControlResult<Option<(T, u64)>> {
        let entry = self.store().entry(key).await.map_err(store_error)?;
        match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                Ok(Some((decode(key, &entry.value)?, entry.revision)))
            }
            _ => Ok(None),
        }
    }

    /// Every live value under `prefix` (which ends with `.`), in key order.
    async fn scan<T: DeserializeOwned>(&self, prefix: &str) -> ControlResult<Vec<(String, T)>> {
        let found = self.bucket.scan(prefix).await.map_err(store_error)?;
        found
            .into_iter()
            .map(|(key, value)| Ok((key.clone(), decode(&key, &value)?)))
            .collect()
    }

    /// Puts `value` at `key` unless something is there: `false` then.
    async fn create<T: Serialize>(&self, key: &str, value: &T) -> ControlResult<bool> {
        match self.store().create(key, encode(value)?).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(store_error(e)),
        }
    }

    async fn put<T: Serialize>(&self, key: &str, value: &T) -> ControlResult<()> {
        self.store()
            .put(key, encode(value)?)
            .await
            .map(drop)
            .map_err(store_error)
    }

    async fn delete(&self, key: &str) -> ControlResult<()> {
        self.store().delete(key).await.map_err(store_error)
    }

    /// Changes the value at `key` with `change` (`None` when there is
    /// none) and writes it back at the revision it read, again until no
    /// other writer came in between. `change` answering `None` writes
    /// nothing. What `change` made, if anything.
    async fn update<T: Serialize + DeserializeOwned>(
        &self,
        key: &str,
        change: impl Fn(Option<T>) -> Option<T>,
    ) -> ControlResult<Option<T>> {
        for _ in 0..CAS_TRIES {
            let found = self.get::<T>(key).await?;
            let (value, revision) = match found {
                Some((value, revision)) => (Some(value), Some(revision)),
                None => (None, None),
            };
            let Some(new) = change(value) else {
                return Ok(None);
            };
            let written = match revision {
                Some(revision) => match self.store().update(key, encode(&new)?, revision).await {
                    Ok(_) => true,
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => false,
                    Err(e) => return Err(store_error(e)),
                },
                None => self.create(key, &new).await?,
            };
            if written {
                return Ok(Some(new));
            }
        }
        Err(ControlError::Store(format!(
            "{key}: other writers kept changing it ({CAS_TRIES} tries); try again"
        )))
    }
}

fn tenant_key(name: &str) -> String {
    format!("tenant.{}", token(name))
}

fn key_key(id: &str) -> String {
    format!("key.{}", token(id))
}

fn idempotency_key(tenant: &str, key: &str) -> String {
    format!(
        "idem.{}.{}",
        token(tenant),
        blake3::hash(key.as_bytes()).to_hex()
    )
}

fn usage_key(tenant: &str, row: &UsageRow) -> String {
    format!(
        "usage.{}.{}.{}.{}",
        token(tenant),
        token(&row.day),
        token(&row.kind),
        token(&row.model)
    )
}

impl ControlStore for KvControl {
    fn add_tenant<'a>(&'a self, tenant: &'a TenantRecord) -> BoxFuture<'a, ControlResult<()>> {
        Box::pin(async move {
            if self.create(&tenant_key(&tenant.name), tenant).await? {
                Ok(())
            } else {
                Err(ControlError::Conflict(format!(
                    "tenant {:?} exists; remove it first, or pick another name",
                    tenant.name
                )))
            }
        })
    }

    fn tenant<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ControlResult<Option<TenantRecord>>> {
        Box::pin(async move { Ok(self.get(&tenant_key(name)).await?.map(|(t, _)| t)) })
    }

    fn tenants(&self) -> BoxFuture<'_, ControlResult<Vec<TenantRecord>>> {
        Box::pin(async move {
            let mut tenants: Vec<TenantRecord> = self
                .scan("tenant.")
                .await?
                .into_iter()
                .map(|(_, t)| t)
                .collect();
            tenants.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(tenants)
        })
    }

    fn remove_tenant<'a>(&'a self, name: &'a str, at: i64) -> BoxFuture<'a, ControlResult<bool>> {
        Box::pin(async move {
            let existed = self.tenant(name).await?.is_some();
            // Keys first: cut short here, the tenant is still there and
            // none of its keys works.
            for key in self.keys(Some(name)).await? {
                self.revoke_key(&key.id, at).await?;
            }
            self.delete(&format!("audit.{}", token(name))).await?;
            let prefix = format!("idem.{}.", token(name));
            for (key, _) in self.scan::<serde_json::Value>(&prefix).await? {
                self.delete(&key).await?;
            }
            // A tenant added later under the name starts afresh.
            let prefix = format!("usage.{}.", token(name));
            for (key, _) in self.scan::<serde_json::Value>(&prefix).await? {
                self.delete(&key).await?;
            }
            if existed {
                self.delete(&tenant_key(name)).await?;
            }
            Ok(existed)
        })
    }

    fn add_key<'a>(&'a self, key: &'a KeyRecord) -> BoxFuture<'a, ControlResult<()>> {
        Box::pin(async move {
            if self.create(&key_key(&key.id), key).await? {
                Ok(())
            } else {
                Err(ControlError::Conflict(format!(
                    "key id {} is taken",
                    key.id
                )))
            }
        })
    }

    fn key<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ControlResult<Option<KeyRecord>>> {
        Box::pin(async move { Ok(self.get(&key_key(id)).await?.map(|(k, _)| k)) })
    }

    fn keys<'a>(&'a self, tenant: Option<&'a str>) -> BoxFuture<'a, ControlResult<Vec<KeyRecord>>> {
        Box::pin(async move {
            let mut keys: Vec<KeyRecord> = self
                .scan("key.")
                .await?
                .into_iter()
                .map(|(_, k): (String, KeyRecord)| k)
                .filter(|k| tenant.is_none() || k.tenant.as_deref() == tenant)
                .collect();
            keys.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
            Ok(keys)
        })
    }

    fn revoke_key<'a>(&'a self, id: &'a str, at: i64) -> BoxFuture<'a, ControlResult<bool>> {
        Box::pin(async move {
            let changed = self
                .update(&key_key(id), |key: Option<KeyRecord>| {
                    let mut key = key?;
                    key.revoked.get_or_insert(at);
                    Some(key)
                })
                .await?;
            Ok(changed.is_some())
        })
    }

    fn audit_head<'a>(
        &'a self,
        tenant: &'a str,
    ) -> BoxFuture<'a, ControlResult<Option<AuditHead>>> {
        Box::pin(async move {
            Ok(self
                .get(&format!("audit.{}", token(tenant)))
                .await?
                .map(|(h, _)| h))
        })
    }

    fn set_audit_head<'a>(
        &'a self,
        tenant: &'a str,
        head: &'a AuditHead,
    ) -> BoxFuture<'a, ControlResult<()>> {
        Box::pin(async move { self.put(&format!("audit.{}", token(tenant)), head).await })
    }

    fn idempotent_run<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, ControlResult<Option<IdempotentRun>>> {
        Box::pin(async move {
            Ok(self
                .get(&idempotency_key(tenant, key))
                .await?
                .map(|(r, _)| r))
        })
    }

    fn set_idempotent_run<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
        run: &'a IdempotentRun,
    ) -> BoxFuture<'a, ControlResult<()>> {
        // The first record for a key stays.
        Box::pin(async move {
            self.create(&idempotency_key(tenant, key), run)
                .await
                .map(drop)
        })
    }

    fn forget_idempotent_run<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
        run: &'a str,
    ) -> BoxFuture<'a, ControlResult<()>> {
        Box::pin(async move {
            let at = idempotency_key(tenant, key);
            if let Some((found, revision)) = self.get::<IdempotentRun>(&at).await?
                && found.run == run
            {
                // At the revision read: a record made since stays.
                match self
                    .store()
                    .purge_expect_revision(&at, Some(revision))
                    .await
                {
                    Ok(()) => {}
                    Err(e) if e.kind() == kv::PurgeErrorKind::WrongLastRevision => {}
                    Err(e) => return Err(store_error(e)),
                }
            }
            Ok(())
        })
    }

    fn add_usage<'a>(
        &'a self,
        tenant: &'a str,
        row: &'a UsageRow,
    ) -> BoxFuture<'a, ControlResult<()>> {
        Box::pin(async move {
            self.update(&usage_key(tenant, row), |found: Option<UsageRow>| {
                let mut total = found.unwrap_or_else(|| UsageRow {
                    counts: Default::default(),
                    ..row.clone()
                });
                total.counts.add(&row.counts);
                Some(total)
            })
            .await
            .map(drop)
        })
    }

    fn usage<'a>(
        &'a self,
        tenant: &'a str,
        since: &'a str,
    ) -> BoxFuture<'a, ControlResult<Vec<UsageRow>>> {
        Box::pin(async move {
            let mut rows: Vec<UsageRow> = self
                .scan(&format!("usage.{}.", token(tenant)))
                .await?
                .into_iter()
                .map(|(_, row): (String, UsageRow)| row)
                .filter(|row| row.day.as_str() >= since)
                .collect();
            rows.sort_by(|a, b| (&a.day, &a.kind, &a.model).cmp(&(&b.day, &b.kind, &b.model)));
            Ok(rows)
        })
    }

    fn add_session<'a>(&'a self, session: &'a SessionRecord) -> BoxFuture<'a, ControlResult<()>> {
        Box::pin(async move {
            self.put(&format!("session.{}", token(&session.id)), session)
                .await
        })
    }

    fn session<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ControlResult<Option<SessionRecord>>> {
        Box::pin(async move {
            Ok(self
                .get(&format!("session.{}", token(id)))
                .await?
                .map(|(s, _)| s))
        })
    }

    fn remove_session<'a>(&'a self, id: &'a str, now: i64) -> BoxFuture<'a, ControlResult<()>> {
        Box::pin(async move {
            self.delete(&format!("session.{}", token(id))).await?;
            for (key, session) in self.scan::<SessionRecord>("session.").await? {
                if session.expires <= now {
                    self.delete(&key).await?;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use warden_tests::nats::NatsServer;

    use super::*;
    use crate::control::contract;

    async fn connect(url: &str) -> Nats {
        let url = url.to_string();
        tokio::task::spawn_blocking(move || Nats::connect(&url))
            .await
            .unwrap()
            .unwrap()
    }

    /// The same contract as SQLite's, on a real nats-server; what one node
    /// wrote, another (its own connection) reads.
    #[tokio::test]
    async fn holds_the_control_contract_on_jetstream() {
        let server = NatsServer::start();
        let one = KvControl::open(&connect(&server.url).await, 1)
            .await
            .unwrap();
        contract::holds(&one).await;
        let other = KvControl::open(&connect(&server.url).await, 1)
            .await
            .unwrap();
        assert_eq!(contract::names(&other).await, ["acme", "bolt"]);
        assert_eq!(
            other.key("k1").await.unwrap().unwrap().revoked,
            Some(9),
            "{:?}",
            other.keys(None).await
        );
    }

    #[test]
    fn keys_cannot_be_steered_by_what_a_caller_sends() {
        assert_eq!(token("acme-1_b"), "acme-1_b");
        assert_eq!(token("a.b"), "x612e62");
        assert_eq!(token("*"), "x2a");
        assert_eq!(token(""), "x");
        assert_eq!(token("x1"), "x7831", "a plain part that looks hexed");
        assert_ne!(token("x612e62"), token("a.b"));
        assert_ne!(idempotency_key("acme", "a.b"), idempotency_key("acme", "a"));
    }
}
