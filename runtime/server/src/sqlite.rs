//! The control store of one node: a SQLite file in the data dir, in WAL
//! mode, so `warden keys create` in a shell and a running `warden serve`
//! share it safely. Records are JSON, as a key-value store would keep them.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use warden_api::BoxFuture;

use crate::control::{
    AuditHead, ControlError, ControlResult, ControlStore, Counts, IdempotentRun, SessionRecord,
    UsageRow,
};
use crate::key::KeyRecord;
use crate::tenant::TenantRecord;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenants (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    tenant TEXT,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS keys_by_tenant ON keys (tenant);
CREATE TABLE IF NOT EXISTS idempotency (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    run TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE TABLE IF NOT EXISTS audit_heads (
    tenant TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS usage (
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    calls INTEGER NOT NULL,
    fuel INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    PRIMARY KEY (tenant, day, kind, model)
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    expires INTEGER NOT NULL,
    record TEXT NOT NULL
);
";

/// The schema this build writes; a newer file is refused, not rewritten.
const VERSION: i64 = 1;

/// A SQLite control store. Each method holds the connection for one short
/// statement; SQLite's own lock orders writers of other processes.
pub struct SqliteControl {
    db: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteControl")
    }
}

fn store_error(e: impl std::fmt::Display) -> ControlError {
    ControlError::Store(e.to_string())
}

impl SqliteControl {
    /// Opens (creating) the store at `path`.
    pub fn open(path: &Path) -> ControlResult<SqliteControl> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| store_error(format!("{}: {e}", dir.display())))?;
        }
        let db =
            Connection::open(path).map_err(|e| store_error(format!("{}: {e}", path.display())))?;
        db.busy_timeout(Duration::from_secs(5))
            .map_err(store_error)?;
        db.pragma_update(None, "journal_mode", "WAL")
            .map_err(store_error)?;
        // WAL with NORMAL is durable across a process crash; an OS crash
        // may lose the last transactions, never corrupt the file.
        db.pragma_update(None, "synchronous", "NORMAL")
            .map_err(store_error)?;
        let version: i64 = db
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(store_error)?;
        if version > VERSION {
            return Err(store_error(format!(
                "{} was written by a newer warden (schema {version}; this one reads {VERSION}); run that warden, or restore a backup",
                path.display()
            )));
        }
        db.execute_batch(SCHEMA).map_err(store_error)?;
        db.pragma_update(None, "user_version", VERSION)
            .map_err(store_error)?;
        // Every statement is prepared once and kept (`prepare_cached`).
        db.set_prepared_statement_cache_capacity(64);
        Ok(SqliteControl { db: Mutex::new(db) })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> ControlResult<T> {
        // A panic while holding the lock cannot leave a half-done statement
        // behind (SQLite rolls it back), so a poisoned lock is still usable.
        let mut db = self
            .db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut db).map_err(store_error)
    }
}

fn decode<T: serde::de::DeserializeOwned>(text: String) -> rusqlite::Result<T> {
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn encode<T: serde::Serialize>(value: &T) -> ControlResult<String> {
    serde_json::to_string(value).map_err(store_error)
}

fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl ControlStore for SqliteControl {
    fn add_tenant<'a>(&'a self, tenant: &'a TenantRecord) -> BoxFuture<'a, ControlResult<()>> {
        let result = encode(tenant).and_then(|record| {
            let added = self.with(|db| {
                db.prepare_cached(
                    "INSERT INTO tenants (name, record) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                )?
                .execute(params![tenant.name, record])
            })?;
            if added == 0 {
                return Err(ControlError::Conflict(format!(
                    "tenant {:?} exists; remove it first, or pick another name",
                    tenant.name
                )));
            }
            Ok(())
        });
        ready(result)
    }

    fn tenant<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ControlResult<Option<TenantRecord>>> {
        ready(self.with(|db| {
            db.prepare_cached("SELECT record FROM tenants WHERE name = ?1")?
                .query_row([name], |row| decode(row.get(0)?))
                .optional()
        }))
    }

    fn tenants(&self) -> BoxFuture<'_, ControlResult<Vec<TenantRecord>>> {
        ready(self.with(|db| {
            let mut statement = db.prepare_cached("SELECT record FROM tenants ORDER BY name")?;
            let rows = statement.query_map([], |row| decode(row.get(0)?))?;
            rows.collect()
        }))
    }

    fn remove_tenant<'a>(&'a self, name: &'a str, at: i64) -> BoxFuture<'a, ControlResult<bool>> {
        ready(self.with(|db| {
            let tx = db.transaction()?;
            let removed = tx
                .prepare_cached("DELETE FROM tenants WHERE name = ?1")?
                .execute([name])?;
            let keys: Vec<(String, String)> = {
                let mut statement =
                    tx.prepare_cached("SELECT id, record FROM keys WHERE tenant = ?1")?;
                let rows = statement.query_map([name], |row| Ok((row.get(0)?, row.get(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for (id, record) in keys {
                let mut key: KeyRecord = decode(record)?;
                key.revoked.get_or_insert(at);
                let record = serde_json::to_string(&key)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                tx.prepare_cached("UPDATE keys SET record = ?2 WHERE id = ?1")?
                    .execute(params![id, record])?;
            }
            tx.prepare_cached("DELETE FROM audit_heads WHERE tenant = ?1")?
                .execute([name])?;
            tx.prepare_cached("DELETE FROM idempotency WHERE tenant = ?1")?
                .execute([name])?;
            // A tenant added later under the name starts afresh.
            tx.prepare_cached("DELETE FROM usage WHERE tenant = ?1")?
                .execute([name])?;
            tx.commit()?;
            Ok(removed > 0)
        }))
    }

    fn add_key<'a>(&'a self, key: &'a KeyRecord) -> BoxFuture<'a, ControlResult<()>> {
        let result = encode(key).and_then(|record| {
            let added = self.with(|db| {
                db.prepare_cached("INSERT INTO keys (id, tenant, record) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING")?.execute(
                    params![key.id, key.tenant, record],
                )
            })?;
            if added == 0 {
                return Err(ControlError::Conflict(format!("key id {} is taken", key.id)));
            }
            Ok(())
        });
        ready(result)
    }

    fn key<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ControlResult<Option<KeyRecord>>> {
        ready(self.with(|db| {
            db.prepare_cached("SELECT record FROM keys WHERE id = ?1")?
                .query_row([id], |row| decode(row.get(0)?))
                .optional()
        }))
    }

    fn keys<'a>(&'a self, tenant: Option<&'a str>) -> BoxFuture<'a, ControlResult<Vec<KeyRecord>>> {
        ready(self.with(|db| {
            let mut keys: Vec<KeyRecord> = match tenant {
                Some(tenant) => {
                    let mut statement =
                        db.prepare_cached("SELECT record FROM keys WHERE tenant = ?1")?;
                    let rows = statement.query_map([tenant], |row| decode(row.get(0)?))?;
                    rows.collect::<rusqlite::Result<_>>()?
                }
                None => {
                    let mut statement = db.prepare_cached("SELECT record FROM keys")?;
                    let rows = statement.query_map([], |row| decode(row.get(0)?))?;
                    rows.collect::<rusqlite::Result<_>>()?
                }
            };
            keys.sort_by(|a: &KeyRecord, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
            Ok(keys)
        }))
    }

    fn revoke_key<'a>(&'a self, id: &'a str, at: i64) -> BoxFuture<'a, ControlResult<bool>> {
        ready(self.with(|db| {
            let tx = db.transaction()?;
            let record: Option<String> = tx
                .query_row("SELECT record FROM keys WHERE id = ?1", [id], |row| {
                    row.get(0)
                })
                .optional()?;
            let Some(record) = record else {
                return Ok(false);
            };
            let mut key: KeyRecord = decode(record)?;
            key.revoked.get_or_insert(at);
            let record = serde_json::to_string(&key)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            tx.prepare_cached("UPDATE keys SET record = ?2 WHERE id = ?1")?
                .execute(params![id, record])?;
            tx.commit()?;
            Ok(true)
        }))
    }

    fn audit_head<'a>(
        &'a self,
        tenant: &'a str,
    ) -> BoxFuture<'a, ControlResult<Option<AuditHead>>> {
        ready(self.with(|db| {
            db.prepare_cached("SELECT seq, hash FROM audit_heads WHERE tenant = ?1")?
                .query_row([tenant], |row| {
                    Ok(AuditHead {
                        seq: row.get::<_, i64>(0)? as u64,
                        hash: row.get(1)?,
                    })
                })
                .optional()
        }))
    }

    fn idempotent_run<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, ControlResult<Option<IdempotentRun>>> {
        ready(self.with(|db| {
            db.prepare_cached(
                "SELECT run, body_hash FROM idempotency WHERE tenant = ?1 AND key = ?2",
            )?
            .query_row([tenant, key], |row| {
                Ok(IdempotentRun {
                    run: row.get(0)?,
                    body_hash: row.get(1)?,
                })
            })
            .optional()
        }))
    }

    fn add_usage<'a>(
        &'a self,
        tenant: &'a str,
        row: &'a UsageRow,
    ) -> BoxFuture<'a, ControlResult<()>> {
        let c = &row.counts;
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        ready(
            self.with(|db| {
                db.prepare_cached("INSERT INTO usage (tenant, day, kind, model, calls, fuel, input_tokens, output_tokens, cost)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (tenant, day, kind, model) DO UPDATE SET
                       calls = calls + excluded.calls,
                       fuel = fuel + excluded.fuel,
                       input_tokens = input_tokens + excluded.input_tokens,
                       output_tokens = output_tokens + excluded.output_tokens,
                       cost = cost + excluded.cost")?.execute(
                    params![
                        tenant,
                        row.day,
                        row.kind,
                        row.model,
                        int(c.calls),
                        int(c.fuel),
                        int(c.input_tokens),
                        int(c.output_tokens),
                        c.cost
                    ],
                )
            })
            .map(|_| ()),
        )
    }

    fn usage<'a>(
        &'a self,
        tenant: &'a str,
        since: &'a str,
    ) -> BoxFuture<'a, ControlResult<Vec<UsageRow>>> {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        ready(self.with(|db| {
            let mut statement = db.prepare_cached(
                "SELECT day, kind, model, calls, fuel, input_tokens, output_tokens, cost FROM usage
                 WHERE tenant = ?1 AND day >= ?2 ORDER BY day, kind, model",
            )?;
            let rows = statement.query_map(params![tenant, since], |row| {
                Ok(UsageRow {
                    day: row.get(0)?,
                    kind: row.get(1)?,
                    model: row.get(2)?,
                    counts: Counts {
                        calls: count(row.get(3)?),
                        fuel: count(row.get(4)?),
                        input_tokens: count(row.get(5)?),
                        output_tokens: count(row.get(6)?),
                        cost: row.get(7)?,
                    },
                })
            })?;
            rows.collect()
        }))
    }

    fn add_session<'a>(&'a self, session: &'a SessionRecord) -> BoxFuture<'a, ControlResult<()>> {
        let result = encode(session).and_then(|record| {
            self.with(|db| {
                db.prepare_cached("INSERT INTO sessions (id, expires, record) VALUES (?1, ?2, ?3)")?
                    .execute(params![session.id, session.expires, record])
            })
            .map(drop)
        });
        ready(result)
    }

    fn session<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ControlResult<Option<SessionRecord>>> {
        ready(self.with(|db| {
            db.prepare_cached("SELECT record FROM sessions WHERE id = ?1")?
                .query_row([id], |row| decode(row.get(0)?))
                .optional()
        }))
    }

    fn remove_session<'a>(&'a self, id: &'a str, now: i64) -> BoxFuture<'a, ControlResult<()>> {
        ready(self.with(|db| {
            db.prepare_cached("DELETE FROM sessions WHERE id = ?1 OR expires <= ?2")?
                .execute(params![id, now])
                .map(drop)
        }))
    }

    fn set_idempotent_run<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
        run: &'a IdempotentRun,
    ) -> BoxFuture<'a, ControlResult<()>> {
        ready(self.with(|db| {
            db.prepare_cached(
                "INSERT INTO idempotency (tenant, key, run, body_hash) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO NOTHING",
            )?
            .execute(params![tenant, key, run.run, run.body_hash])
            .map(|_| ())
        }))
    }

    fn forget_idempotent_run<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
        run: &'a str,
    ) -> BoxFuture<'a, ControlResult<()>> {
        ready(self.with(|db| {
            db.prepare_cached(
                "DELETE FROM idempotency WHERE tenant = ?1 AND key = ?2 AND run = ?3",
            )?
            .execute(params![tenant, key, run])
            .map(|_| ())
        }))
    }

    fn set_audit_head<'a>(
        &'a self,
        tenant: &'a str,
        head: &'a AuditHead,
    ) -> BoxFuture<'a, ControlResult<()>> {
        let seq = i64::try_from(head.seq).map_err(store_error);
        ready(seq.and_then(|seq| {
            self.with(|db| {
                db.prepare_cached(
                    "INSERT INTO audit_heads (tenant, seq, hash) VALUES (?1, ?2, ?3)
                     ON CONFLICT (tenant) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                )?
                .execute(params![tenant, seq, head.hash])
                .map(|_| ())
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::contract::{self, key, tenant};

    #[tokio::test]
    async fn holds_the_control_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteControl::open(&dir.path().join("control.sqlite")).unwrap();
        contract::holds(&store).await;
    }

    #[tokio::test]
    async fn tenants_and_keys_survive_reopening_and_removal_revokes_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sqlite");
        {
            let store = SqliteControl::open(&path).unwrap();
            store.add_tenant(&tenant("acme")).await.unwrap();
            let again = store.add_tenant(&tenant("acme")).await.unwrap_err();
            assert!(matches!(again, ControlError::Conflict(m) if m.contains("exists")));
            store.add_key(&key("k1", Some("acme"))).await.unwrap();
            store.add_key(&key("k2", None)).await.unwrap();
        }
        let store = SqliteControl::open(&path).unwrap();
        assert_eq!(store.tenant("acme").await.unwrap(), Some(tenant("acme")));
        assert_eq!(store.keys(Some("acme")).await.unwrap().len(), 1);
        assert_eq!(store.keys(None).await.unwrap().len(), 2);
        assert!(store.remove_tenant("acme", 9).await.unwrap());
        assert!(!store.remove_tenant("acme", 9).await.unwrap());
        assert_eq!(store.key("k1").await.unwrap().unwrap().revoked, Some(9));
        assert_eq!(store.key("k2").await.unwrap().unwrap().revoked, None);
        assert!(store.revoke_key("k2", 10).await.unwrap());
        assert!(store.revoke_key("k2", 11).await.unwrap());
        assert_eq!(store.key("k2").await.unwrap().unwrap().revoked, Some(10));
        assert!(!store.revoke_key("nope", 10).await.unwrap());
        let head = AuditHead {
            seq: 3,
            hash: "abc".into(),
        };
        store.set_audit_head("acme", &head).await.unwrap();
        assert_eq!(store.audit_head("acme").await.unwrap(), Some(head));
    }

    #[test]
    fn a_newer_schema_is_refused_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sqlite");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = SqliteControl::open(&path).unwrap_err().to_string();
        assert!(err.contains("newer warden"), "{err}");
    }
}
