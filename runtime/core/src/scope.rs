//! Who a call runs for and what it works for: the labels every trace and
//! denial carries, and the run and task its model calls are charged to.

use std::sync::Arc;

use warden_api::budget::Allowance;

use crate::grant::TenantId;

/// Who a call runs for and what it runs: the fields every trace and denial
/// carries.
#[derive(Debug, Clone)]
pub(crate) struct CallLabels {
    pub(crate) tenant: TenantId,
    pub(crate) plugin: Arc<str>,
}

/// The run and task a call works for.
#[derive(Debug, Clone)]
pub struct RunScope {
    pub run: String,
    pub task: String,
    /// The role (for its default model).
    pub role: String,
    /// The task's token and cost budget, charged up to the run's.
    pub allowance: Option<Arc<Allowance>>,
}
