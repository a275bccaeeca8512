//! `warden:plugin/exec`: a plugin runs code in a fresh sandbox of its own.
//!
//! The program gets a new scratch directory at `/work` with the files the
//! plugin passed, no network, no environment, and the calling plugin's limits
//! with the deadline cut to what is left of the caller's own.

use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker};

use crate::bindings::warden::plugin::exec::{self, ExecError as WitError, File, RunResult};
use crate::call::{CallError, CallOptions, CallOutcome};
use crate::engine::Engine;
use crate::exec::{ExecError, Language, Scratch, run_code};
use crate::limits::Limits;
use crate::policy::{Grant, TenantId};
use crate::state::CallState;

/// What a call's exec interface needs from the call.
pub(crate) struct ExecContext {
    engine: Engine,
    tenant: TenantId,
    limits: Limits,
    deadline: Instant,
}

impl ExecContext {
    pub(crate) fn new(
        engine: &Engine,
        tenant: TenantId,
        limits: Limits,
        deadline: Instant,
    ) -> Self {
        ExecContext {
            engine: engine.clone(),
            tenant,
            limits,
            deadline,
        }
    }
}

struct HasExec;

impl HasData for HasExec {
    type Data<'a> = &'a ExecContext;
}

pub(crate) fn add_to_linker(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    exec::add_to_linker::<CallState, HasExec>(linker, |state| &state.exec)
}

impl exec::Host for &ExecContext {
    async fn run(
        &mut self,
        language: String,
        code: String,
        stdin: Vec<u8>,
        files: Vec<File>,
    ) -> Result<RunResult, WitError> {
        let Some(language) = Language::parse(&language) else {
            return Err(WitError::Unsupported(format!(
                "language {language:?} is not supported; use \"python\" or \"js\""
            )));
        };
        let scratch = Scratch::new().map_err(wit_error)?;
        for file in &files {
            scratch
                .write(&file.path, &file.contents)
                .map_err(wit_error)?;
        }
        // The program must stop a little before its caller does, so the
        // caller gets the result back instead of its own deadline.
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let margin = (remaining / 4).min(Duration::from_millis(100));
        let mut limits = self.limits;
        limits.timeout = limits
            .timeout
            .min(remaining - margin)
            .max(Duration::from_millis(1));
        let options = CallOptions {
            tenant: self.tenant.clone(),
            grant: Grant::default(),
            limits,
            ..CallOptions::default()
        };
        let engine = self.engine.clone();
        let outcome = run_code(&engine, language, &code, &scratch, stdin, &[], &options)
            .await
            .map_err(wit_error)?;
        Ok(run_result(outcome))
    }
}

fn wit_error(e: ExecError) -> WitError {
    match e {
        ExecError::Unsupported(m) => WitError::Unsupported(m),
        ExecError::Invalid(m) => WitError::Invalid(m),
        ExecError::Io(m) => WitError::Failed(m),
    }
}

fn run_result(outcome: CallOutcome<i32>) -> RunResult {
    let (exit_code, limit, trap) = match &outcome.result {
        Ok(code) => (Some(*code), None, None),
        Err(CallError::Limit { kind, .. }) => (None, Some(kind.to_string()), None),
        Err(other) => (None, None, Some(other.to_string())),
    };
    RunResult {
        stdout: outcome.stdout.to_text(),
        stderr: outcome.stderr.to_text(),
        exit_code,
        limit,
        trap,
        duration_ms: outcome.usage.duration.as_millis() as u64,
        fuel_used: outcome.usage.fuel_used,
    }
}
