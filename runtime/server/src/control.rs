//! The server's control state — tenants, key hashes, the head of each
//! tenant's audit log, idempotency keys and usage per day — behind one
//! trait, so that one node keeps it in
//! SQLite ([`crate::sqlite::SqliteControl`]) and a cluster in a shared
//! store, with the same callers.

use serde::{Deserialize, Serialize};
use warden_api::BoxFuture;

use crate::key::KeyRecord;
use crate::tenant::TenantRecord;

/// Why the control store refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The write conflicts with what is there (a tenant that exists).
    #[error("{0}")]
    Conflict(String),
    /// The store itself failed (I/O, corruption).
    #[error("control store: {0}")]
    Store(String),
}

/// The last entry of a tenant's audit log, kept apart from the log so that
/// cutting entries off its end is found too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: String,
}

/// The run an idempotency key started, and a hash of the request that did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotentRun {
    pub run: String,
    pub body_hash: String,
}

/// What a tenant used: calls, fuel, model tokens and dollars.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counts {
    pub calls: u64,
    pub fuel: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// US dollars.
    pub cost: f64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.calls += other.calls;
        self.fuel += other.fuel;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost += other.cost;
    }
}

/// One day's usage of one kind (`tool`, `mcp`, `exec`, `run`, `llm`) and,
/// for model calls, one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageRow {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    pub kind: String,
    /// `provider/model` for `llm`, empty otherwise.
    pub model: String,
    pub counts: Counts,
}

/// A signed-in dashboard session: the key it was opened with, and a keyed
/// hash of its cookie's secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub hash: String,
    pub key_id: String,
    /// Seconds since the Unix epoch.
    pub expires: i64,
}

pub type ControlResult<T> = Result<T, ControlError>;

/// Tenants, keys and audit heads. Every method is one atomic step.
pub trait ControlStore: Send + Sync {
    /// Adds a tenant; [`ControlError::Conflict`] when the name is taken.
    fn add_tenant<'a>(&'a self, tenant: &'a TenantRecord) -> BoxFuture<'a, ControlResult<()>>;

    fn tenant<'a>(&'a self, name: &'a str) -> BoxFuture<'a, ControlResult<Option<TenantRecord>>>;

    /// Every tenant, by name.
    fn tenants(&self) -> BoxFuture<'_, ControlResult<Vec<TenantRecord>>>;

    /// Removes a tenant and revokes its keys at `at`, in one step; `false`
    /// when there was no such tenant.
    fn remove_tenant<'a>(&'a self, name: &'a str, at: i64) -> BoxFuture<'a, ControlResult<bool>>;

    fn add_key<'a>(&'a self, key: &'a KeyRecord) -> BoxFuture<'a, ControlResult<()>>;

    fn key<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ControlResult<Option<KeyRecord>>>;

    /// The keys of `tenant` (`None`: every key), oldest first.
    fn keys<'a>(&'a self, tenant: Option<&'a str>) -> BoxFuture<'a, ControlResult<Vec<KeyRecord>>>;

    /// Revokes a key at `at`; `false` when there is no such key. Revoking
    /// twice keeps the first time.
    fn revoke_key<'a>(&'a self, id: &'a str, at: i64) -> BoxFuture<'a, ControlResult<bool>>;

    fn audit_head<'a>(&'a self, tenant: &'a str)
    -> BoxFuture<'a, ControlResult<Option<AuditHead>>>;

    fn set_audit_head<'a>(
        &'a self,
        tenant: &'a str,
        head: &'a AuditHead,
    ) -> BoxFuture<'a, ControlResult<()>>;

    /// The run `key` started for `tenant`, if it did.
    fn idempotent_run<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
    ) -> BoxFuture<'a, ControlResult<Option<IdempotentRun>>>;

    /// Adds to `tenant`'s usage on `row.day` of `row.kind` and
    /// `row.model`.
    fn add_usage<'a>(
        &'a self,
        tenant: &'a str,
        row: &'a UsageRow,
    ) -> BoxFuture<'a, ControlResult<()>>;

    /// `tenant`'s usage from day `since` (`YYYY-MM-DD`) on, by day, kind
    /// and model.
    fn usage<'a>(
        &'a self,
        tenant: &'a str,
        since: &'a str,
    ) -> BoxFuture<'a, ControlResult<Vec<UsageRow>>>;

    /// Adds a dashboard session.
    fn add_session<'a>(&'a self, session: &'a SessionRecord) -> BoxFuture<'a, ControlResult<()>>;

    fn session<'a>(&'a self, id: &'a str) -> BoxFuture<'a, ControlResult<Option<SessionRecord>>>;

    /// Ends session `id`, and every session expired by `now`.
    fn remove_session<'a>(&'a self, id: &'a str, now: i64) -> BoxFuture<'a, ControlResult<()>>;

    /// Records the run `key` started; the first record for a key stays.
    fn set_idempotent_run<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
        run: &'a IdempotentRun,
    ) -> BoxFuture<'a, ControlResult<()>>;

    /// Forgets `key`'s record if it still names `run` (a run claimed for
    /// the key that then did not start).
    fn forget_idempotent_run<'a>(
        &'a self,
        tenant: &'a str,
        key: &'a str,
        run: &'a str,
    ) -> BoxFuture<'a, ControlResult<()>>;
}

/// What every [`ControlStore`] must do, checked on each of them.
#[cfg(test)]
pub(crate) mod contract {
    use super::*;
    use crate::tenant::Quotas;

    pub fn tenant(name: &str) -> TenantRecord {
        TenantRecord {
            name: name.into(),
            policy: None,
            plugins: vec!["*".into()],
            quotas: Quotas::default(),
            created: 1,
        }
    }

    pub fn key(id: &str, tenant: Option<&str>) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            tenant: tenant.map(String::from),
            hash: "h".into(),
            scopes: vec![],
            created: 2,
            expires: None,
            revoked: None,
            label: None,
        }
    }

    fn usage(day: &str, model: &str, calls: u64) -> UsageRow {
        UsageRow {
            day: day.into(),
            kind: "llm".into(),
            model: model.into(),
            counts: Counts {
                calls,
                input_tokens: 10 * calls,
                cost: 0.5 * calls as f64,
                ..Counts::default()
            },
        }
    }

    /// The names of the tenants `store` holds.
    pub async fn names(store: &dyn ControlStore) -> Vec<String> {
        let tenants = store.tenants().await.unwrap();
        tenants.into_iter().map(|t| t.name).collect()
    }

    /// Every method, and the steps that must hold when several callers
    /// (other nodes) race: one of two adds of a tenant wins, concurrent
    /// usage adds all count, the first run of an idempotency key stays.
    pub async fn holds(store: &dyn ControlStore) {
        // Tenants and keys.
        let acme = tenant("acme");
        let tries = futures::future::join_all((0..4).map(|_| store.add_tenant(&acme))).await;
        assert_eq!(tries.iter().filter(|t| t.is_ok()).count(), 1, "{tries:?}");
        assert!(
            tries
                .iter()
                .any(|t| matches!(t, Err(ControlError::Conflict(m)) if m.contains("exists")))
        );
        store.add_tenant(&tenant("bolt")).await.unwrap();
        assert_eq!(store.tenant("acme").await.unwrap(), Some(tenant("acme")));
        assert_eq!(store.tenant("nobody").await.unwrap(), None);
        assert_eq!(names(store).await, ["acme", "bolt"]);
        store.add_key(&key("k1", Some("acme"))).await.unwrap();
        store.add_key(&key("k2", None)).await.unwrap();
        store.add_key(&key("k3", Some("bolt"))).await.unwrap();
        assert!(matches!(
            store.add_key(&key("k1", Some("bolt"))).await,
            Err(ControlError::Conflict(_))
        ));
        assert_eq!(
            store.keys(Some("acme")).await.unwrap(),
            [key("k1", Some("acme"))]
        );
        assert_eq!(store.keys(None).await.unwrap().len(), 3);

        // Usage adds up, however many add at once.
        let rows: Vec<UsageRow> = (0..8).map(|_| usage("2026-12-05", "tape/m", 1)).collect();
        futures::future::join_all(rows.iter().map(|row| store.add_usage("acme", row)))
            .await
            .into_iter()
            .for_each(|r| r.unwrap());
        store
            .add_usage("acme", &usage("2026-12-06", "tape/m.2", 2))
            .await
            .unwrap();
        store
            .add_usage("acme", &usage("2026-12-01", "", 1))
            .await
            .unwrap();
        store
            .add_usage("bolt", &usage("2026-12-05", "tape/m", 5))
            .await
            .unwrap();
        let used = store.usage("acme", "2026-12-05").await.unwrap();
        assert_eq!(used.len(), 2, "{used:?}");
        assert_eq!(used[0].model, "tape/m");
        assert_eq!(used[0].counts.calls, 8);
        assert_eq!(used[0].counts.input_tokens, 80);
        assert!((used[0].counts.cost - 4.0).abs() < 1e-9);
        assert_eq!(
            (used[1].day.as_str(), used[1].counts.calls),
            ("2026-12-06", 2)
        );

        // The first run of an idempotency key stays.
        let runs: Vec<IdempotentRun> = (0..4)
            .map(|i| IdempotentRun {
                run: format!("run-{i}"),
                body_hash: "b".into(),
            })
            .collect();
        let weird = "order 7/*.>";
        futures::future::join_all(
            runs.iter()
                .map(|r| store.set_idempotent_run("acme", weird, r)),
        )
        .await
        .into_iter()
        .for_each(|r| r.unwrap());
        let first = store.idempotent_run("acme", weird).await.unwrap().unwrap();
        assert!(runs.contains(&first));
        store
            .set_idempotent_run("acme", weird, &runs[0])
            .await
            .unwrap();
        store
            .set_idempotent_run("acme", weird, &runs[1])
            .await
            .unwrap();
        assert_eq!(
            store.idempotent_run("acme", weird).await.unwrap().as_ref(),
            Some(&first)
        );
        assert_eq!(store.idempotent_run("bolt", weird).await.unwrap(), None);
        // Forgotten only by the run it names (one that did not start);
        // then the key is free for the next.
        let other = runs.iter().find(|r| **r != first).unwrap();
        store
            .forget_idempotent_run("acme", weird, &other.run)
            .await
            .unwrap();
        assert_eq!(
            store.idempotent_run("acme", weird).await.unwrap(),
            Some(first.clone())
        );
        store
            .forget_idempotent_run("acme", weird, &first.run)
            .await
            .unwrap();
        assert_eq!(store.idempotent_run("acme", weird).await.unwrap(), None);
        store
            .set_idempotent_run("acme", weird, other)
            .await
            .unwrap();
        assert_eq!(
            store.idempotent_run("acme", weird).await.unwrap().as_ref(),
            Some(other)
        );

        // Audit heads and sessions.
        let head = AuditHead {
            seq: 3,
            hash: "abc".into(),
        };
        store.set_audit_head("acme", &head).await.unwrap();
        assert_eq!(store.audit_head("acme").await.unwrap(), Some(head));
        let session = |id: &str, expires| SessionRecord {
            id: id.into(),
            hash: "h".into(),
            key_id: "k1".into(),
            expires,
        };
        store.add_session(&session("s1", 100)).await.unwrap();
        store.add_session(&session("s2", 5)).await.unwrap();
        store.add_session(&session("s3", 100)).await.unwrap();
        assert_eq!(store.session("s1").await.unwrap(), Some(session("s1", 100)));
        store.remove_session("s1", 10).await.unwrap();
        assert_eq!(store.session("s1").await.unwrap(), None);
        assert_eq!(store.session("s2").await.unwrap(), None, "expired by then");
        assert!(store.session("s3").await.unwrap().is_some());

        // Revoking keeps the first time; removing a tenant revokes its
        // keys and forgets its usage, heads and idempotency keys.
        assert!(store.revoke_key("k2", 10).await.unwrap());
        assert!(store.revoke_key("k2", 11).await.unwrap());
        assert_eq!(store.key("k2").await.unwrap().unwrap().revoked, Some(10));
        assert!(!store.revoke_key("nope", 10).await.unwrap());
        assert!(store.remove_tenant("acme", 9).await.unwrap());
        assert!(!store.remove_tenant("acme", 9).await.unwrap());
        assert_eq!(store.tenant("acme").await.unwrap(), None);
        assert_eq!(store.key("k1").await.unwrap().unwrap().revoked, Some(9));
        assert_eq!(store.key("k3").await.unwrap().unwrap().revoked, None);
        assert!(store.usage("acme", "2026-01-01").await.unwrap().is_empty());
        assert_eq!(store.usage("bolt", "2026-01-01").await.unwrap().len(), 1);
        assert_eq!(store.audit_head("acme").await.unwrap(), None);
        assert_eq!(store.idempotent_run("acme", weird).await.unwrap(), None);
        // The name can be taken again, afresh.
        store.add_tenant(&tenant("acme")).await.unwrap();
    }
}
