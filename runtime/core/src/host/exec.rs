//! `warden:plugin/exec`: a plugin runs code in a fresh sandbox of its own.
//!
//! The program gets a new scratch directory at `/work` with the files the
//! plugin passed, no network, no environment, and the calling plugin's limits
//! cut to what the caller has left: its fuel (charged back when the program
//! ends) and its deadline, less a margin so the caller gets the result back.
//!
//! Linked by hand rather than through the generated `Host` trait: charging
//! the caller's fuel needs the store, which a generated host does not get.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::StoreContextMut;
use wasmtime::component::Linker;

use crate::bindings::warden::plugin::exec::{ExecError, File, RunResult};
use crate::grant::TenantId;
use crate::limits::Limits;
use crate::nested::{self, Spent};

const INTERFACE: &str = "warden:plugin/exec@0.1.0";

/// One program a plugin asked to run, with the limits it may use.
#[derive(Debug)]
pub(crate) struct CodeRun {
    pub(crate) language: String,
    pub(crate) code: String,
    pub(crate) stdin: Vec<u8>,
    pub(crate) files: Vec<File>,
    pub(crate) tenant: TenantId,
    pub(crate) limits: Limits,
}

/// What runs a program in a fresh sandbox: the engine and its language
/// runtimes, seen from the interface that asks.
pub(crate) trait Programs: Send + Sync {
    fn run(&self, run: CodeRun) -> warden_api::BoxFuture<'_, Result<RunResult, ExecError>>;
}

/// What a call's exec interface needs from the call.
pub(crate) struct ExecContext {
    programs: Arc<dyn Programs>,
    tenant: TenantId,
    limits: Limits,
    deadline: Instant,
}

impl ExecContext {
    pub(crate) fn new(
        programs: Arc<dyn Programs>,
        tenant: TenantId,
        limits: Limits,
        deadline: Instant,
    ) -> Self {
        ExecContext {
            programs,
            tenant,
            limits,
            deadline,
        }
    }
}

/// A store whose guests may run programs; `None` when the plugin does not
/// import `warden:plugin/exec`.
pub(crate) trait ExecView: Send + 'static {
    fn exec(&mut self) -> Option<&ExecContext>;
}

impl Spent for Result<RunResult, ExecError> {
    fn fuel_used(&self) -> u64 {
        self.as_ref().map_or(0, |r| r.fuel_used)
    }
}

pub(crate) fn add_to_linker<T: ExecView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let mut instance = linker.instance(INTERFACE)?;
    instance.func_wrap_async(
        "run",
        |mut store: StoreContextMut<'_, T>,
         (language, code, stdin, files): (String, String, Vec<u8>, Vec<File>)| {
            Box::new(async move {
                let result = run(&mut store, language, code, stdin, files).await?;
                Ok((result,))
            })
        },
    )?;
    Ok(())
}

async fn run<T: ExecView>(
    store: &mut StoreContextMut<'_, T>,
    language: String,
    code: String,
    stdin: Vec<u8>,
    files: Vec<File>,
) -> wasmtime::Result<Result<RunResult, ExecError>> {
    let Some(context) = store.data_mut().exec() else {
        return Ok(Err(ExecError::Failed(
            "this call was set up without warden:plugin/exec".into(),
        )));
    };
    let programs = context.programs.clone();
    let (tenant, limits, deadline) = (context.tenant.clone(), context.limits, context.deadline);
    nested::run_child(store, deadline, |allotment| {
        programs.run(CodeRun {
            language,
            code,
            stdin,
            files,
            tenant,
            limits: allotment.cap(limits, true),
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use wasmtime::{AsContextMut, Config, Engine, Store};

    use super::*;

    /// Runs nothing; says each run used 400 fuel.
    #[derive(Default)]
    struct Counted {
        seen: Mutex<Vec<Limits>>,
    }

    impl Programs for Counted {
        fn run(&self, run: CodeRun) -> warden_api::BoxFuture<'_, Result<RunResult, ExecError>> {
            self.seen.lock().unwrap().push(run.limits);
            Box::pin(async {
                Ok(RunResult {
                    stdout: String::new(),
                    stderr: String::new(),
                    exit_code: Some(0),
                    limit: None,
                    trap: None,
                    duration_ms: 1,
                    fuel_used: 400,
                })
            })
        }
    }

    struct State(Option<ExecContext>);

    impl ExecView for State {
        fn exec(&mut self) -> Option<&ExecContext> {
            self.0.as_ref()
        }
    }

    #[tokio::test]
    async fn a_program_runs_on_what_its_caller_has_left_and_is_charged_back() {
        let programs = Arc::new(Counted::default());
        let mut config = Config::new();
        config.consume_fuel(true);
        let engine = Engine::new(&config).unwrap();
        let limits = Limits {
            fuel: 1_000_000,
            timeout: Duration::from_secs(30),
            ..Limits::default()
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        let context = ExecContext::new(programs.clone(), TenantId::default(), limits, deadline);
        let mut store = Store::new(&engine, State(Some(context)));
        store.set_fuel(1_000).unwrap();
        let unlinked = run(
            &mut Store::new(&engine, State(None)).as_context_mut(),
            "python".into(),
            String::new(),
            Vec::new(),
            Vec::new(),
        )
        .await
        .unwrap();
        assert!(matches!(unlinked, Err(ExecError::Failed(_))));

        for expected_left in [600, 200] {
            run(
                &mut store.as_context_mut(),
                "python".into(),
                "print(1)".into(),
                Vec::new(),
                Vec::new(),
            )
            .await
            .unwrap()
            .unwrap();
            assert_eq!(store.get_fuel().unwrap(), expected_left);
        }
        let seen = programs.seen.lock().unwrap();
        assert_eq!(
            (seen[0].fuel, seen[1].fuel),
            (875, 525),
            "what the caller has left, less an eighth for the caller; never its full --fuel"
        );
        assert!(
            seen[0].timeout < Duration::from_secs(2),
            "{:?}",
            seen[0].timeout
        );
    }
}
