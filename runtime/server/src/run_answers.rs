//! What a server's runs answer, on one node or a cluster: why a run was not
//! started, and what following a run's journal yields.

use warden_run::{Record, RunError, RunStatus};

/// What following a run's journal yields.
#[derive(Debug, Clone)]
pub enum Followed {
    Record(Box<Record>),
    /// The last: how the run ended, or `None` when it is not running here
    /// and has not ended (it can be resumed); and the last record's
    /// sequence number.
    End {
        status: Option<RunStatus>,
        last: Option<u64>,
    },
}

/// Why a run was not started.
#[derive(Debug)]
pub enum Submission {
    /// The tenant has as many runs going as its quota allows.
    Busy,
    Refused(RunError),
}
