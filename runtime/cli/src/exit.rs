//! The exit codes of `warden` (a contract) and the failure that carries one.

use warden_core::{CallError, LoadError};

pub const PLUGIN_ERROR: u8 = 1;
pub const BAD_INPUT: u8 = 2;
pub const LIMIT: u8 = 3;
pub const TRAP: u8 = 4;
/// `warden run`: every task finished, but the last verdict (a reviewer's)
/// did not accept the work.
pub const NOT_ACCEPTED: u8 = 5;
/// The host itself failed (cannot start a runtime); not a plugin's doing.
pub const INTERNAL: u8 = 70;

/// A message for stderr and the exit code that goes with it.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn bad_input(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: BAD_INPUT,
            message: message.to_string(),
        }
    }

    pub fn internal(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: INTERNAL,
            message: message.to_string(),
        }
    }
}

impl From<LoadError> for Failure {
    fn from(e: LoadError) -> Failure {
        Failure::bad_input(e.to_string())
    }
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Failure {
        let code = match &e {
            CallError::Limit { .. } => LIMIT,
            CallError::Trap(_) | CallError::Contract(_) => TRAP,
            CallError::Setup(_) => BAD_INPUT,
        };
        let message = match &e {
            CallError::Limit { kind, detail } => format!("limit exceeded: {kind}: {detail}"),
            other => other.to_string(),
        };
        Failure { code, message }
    }
}
