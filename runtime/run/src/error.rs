//! Why a run could not start or go on: the one error of this crate.

use crate::workflow::WorkflowError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The workflow cannot be run as written (exit 2).
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    /// A plugin the workflow names cannot be used (exit 2).
    #[error("{0}")]
    Plugin(String),
    /// No run of that id.
    #[error("{0}")]
    NotFound(String),
    /// Another process is working on the run.
    #[error("{0}")]
    Busy(String),
    /// The journal could not be written: the run stops rather than go on
    /// with steps it could not record.
    #[error("cannot write the run journal: {0}")]
    Journal(#[from] std::io::Error),
    /// The run's files could not be read or set up.
    #[error("{0}")]
    Files(String),
}
