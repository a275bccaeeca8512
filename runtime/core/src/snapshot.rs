//! Pre-initialised language runtimes. A runtime component that exports
//! [`INIT_EXPORT`] is instantiated once, that function is run, and the
//! instance's memories and globals are written back into a new component
//! (by wasmtime-wizer) whose runs all start where initialisation ended:
//! the JavaScript runtime's QuickJS context and console are made once
//! here instead of on every run.
//!
//! A runtime comes from the operator's runtime directory, as trusted as the
//! binary; what it does while initialising is sandboxed all the same (no
//! files, no network, no environment, a fuel and epoch budget), and a
//! snapshot is only ever a wasm component that is compiled and checked as
//! any other.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use wasmtime::component::{Component, Instance, Lift, Linker, ResourceTable, WasmList};
use wasmtime::{Result, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wizer::{ComponentInstanceState, Wizer};

/// The export a runtime that wants pre-initialising has: `func()`.
pub(crate) const INIT_EXPORT: &str = "wizer-initialize";

/// Fuel for initialising: far more than setting up an interpreter takes,
/// far less than running away would.
const INIT_FUEL: u64 = 10_000_000_000;

/// Epoch ticks (of the engine's ticker) initialising may take.
const INIT_TICKS: u64 = 60_000;

/// Whether `bytes` is a component that exports [`INIT_EXPORT`] itself (not
/// from a nested instance).
pub(crate) fn wants_snapshot(bytes: &[u8]) -> bool {
    use wasmparser::{Parser, Payload};
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(Payload::ModuleSection { .. } | Payload::ComponentSection { .. }) => depth += 1,
            Ok(Payload::End(_)) => depth = depth.saturating_sub(1),
            Ok(Payload::ComponentExportSection(exports)) if depth == 0 => {
                if exports
                    .into_iter()
                    .flatten()
                    .any(|export| export.name.name == INIT_EXPORT)
                {
                    return true;
                }
            }
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

/// The component `bytes` after running its [`INIT_EXPORT`] once.
pub(crate) fn snapshot(engine: &wasmtime::Engine, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut wizer = Wizer::new();
    // Dropping the export leaves the component's alias of it dangling
    // (wasmtime-wizer 48), and calling it again is harmless.
    wizer.keep_init_func(true);
    let (context, instrumented) = wizer.instrument_component(bytes)?;
    let component = Component::new(engine, &instrumented)?;
    let mut linker = Linker::<Initialising>::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    let mut store = Store::new(
        engine,
        Initialising {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        },
    );
    // Fuel exists only on an engine that meters it.
    let _ = store.set_fuel(INIT_FUEL);
    store.set_epoch_deadline(INIT_TICKS);
    let instance = linker.instantiate(&mut store, &component)?;
    instance
        .get_typed_func::<(), ()>(&mut store, INIT_EXPORT)?
        .call(&mut store, ())?;
    let mut state = Initialised {
        store,
        instance,
        failed: None,
    };
    // The state is read by plain calls: the future is ready when first
    // polled.
    let snapshot = ready(wizer.snapshot_component(&context, &mut state))?;
    match state.failed {
        Some(error) => Err(error),
        None => Ok(snapshot),
    }
}

/// The store of the instance being initialised: WASI with nothing granted.
struct Initialising {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Initialising {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The initialised instance, for wizer to read its state from through the
/// accessors it instrumented the component with.
struct Initialised {
    store: Store<Initialising>,
    instance: Instance,
    /// Why an accessor could not be called (the snapshot is then
    /// discarded).
    failed: Option<wasmtime::Error>,
}

impl Initialised {
    /// Calls the accessor `func` of the exported instance `instance`, and
    /// `read`s what it returned; on failure notes why and returns a
    /// default.
    fn get<R: Lift + 'static, T: Default>(
        &mut self,
        instance: &str,
        func: &str,
        read: impl FnOnce(&Store<Initialising>, R) -> T,
    ) -> T {
        match self.call::<R>(instance, func) {
            Ok(value) => read(&self.store, value),
            Err(error) => {
                self.failed.get_or_insert(error);
                T::default()
            }
        }
    }

    fn call<R: Lift + 'static>(&mut self, instance: &str, func: &str) -> Result<R> {
        let store = &mut self.store;
        let missing =
            || wasmtime::format_err!("the instrumented component lacks {instance}#{func}");
        let exported = self
            .instance
            .get_export_index(&mut *store, None, instance)
            .ok_or_else(missing)?;
        let index = self
            .instance
            .get_export_index(&mut *store, Some(&exported), func)
            .ok_or_else(missing)?;
        let accessor = self
            .instance
            .get_typed_func::<(), (R,)>(&mut *store, index)?;
        Ok(accessor.call(&mut *store, ())?.0)
    }
}

impl ComponentInstanceState for Initialised {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        self.get(instance, func, |store, list: WasmList<u8>| {
            contents(list.as_le_slice(store))
        })
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.get(instance, func, |_, value| value)
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.get(instance, func, |_, value| value)
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.get(instance, func, |_, value: f32| value.to_bits())
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.get(instance, func, |_, value: f64| value.to_bits())
    }
}

/// The output of a future that is ready when first polled.
fn ready<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => wasmtime::bail!("the snapshot waited on something; it never should"),
    }
}
