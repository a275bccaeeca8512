//! The open-file gate in front of `wasi:filesystem`: every descriptor a
//! guest opens is a real host file descriptor, so a call may hold at most
//! its own share open at once, and all calls together at most what the
//! process can spare (its `RLIMIT_NOFILE` less a reserve for warden itself).
//! An open past either is refused with the `quota` error code, which the
//! guest sees as an ordinary failed open; the host, and every other call,
//! keeps its descriptors.
//!
//! wasmtime-wasi does the opening; this module shadows its
//! `[method]descriptor.open-at` (to count and refuse) and the `descriptor`
//! resource's destructor (to count a close), and passes both on.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::filesystem::WasiFilesystemView;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self, Descriptor, DescriptorFlags, ErrorCode, HostDescriptor, OpenFlags, PathFlags,
};

/// The interface whose functions are shadowed: the WASI 0.2 version that
/// wasmtime-wasi links.
const INTERFACE: &str = "wasi:filesystem/types@0.2.12";

/// Descriptors warden holds for guests across all calls, and the most it
/// may: one per engine.
#[derive(Debug)]
pub(crate) struct FileBudget {
    held: AtomicUsize,
    max: usize,
}

impl FileBudget {
    pub(crate) fn new(max: usize) -> Arc<FileBudget> {
        Arc::new(FileBudget {
            held: AtomicUsize::new(0),
            max,
        })
    }

    /// Takes one descriptor, if any is left.
    fn take(&self) -> bool {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held < self.max).then_some(held + 1)
            })
            .is_ok()
    }

    fn give_back(&self, count: usize) {
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                Some(held.saturating_sub(count))
            });
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }
}

/// One call's open descriptors.
#[derive(Debug)]
pub(crate) struct FilesContext {
    budget: Arc<FileBudget>,
    /// The most this call may hold open at once.
    max: usize,
    /// Table slots of the descriptors this call opened and still holds.
    open: HashSet<u32>,
}

impl FilesContext {
    /// `preopens` are already open (the granted directories) and count
    /// against `max`, not against the engine's budget (which reserved them
    /// with the call).
    pub(crate) fn new(budget: Arc<FileBudget>, max: usize, preopens: usize) -> Self {
        FilesContext {
            budget,
            max: max.saturating_sub(preopens),
            open: HashSet::new(),
        }
    }

    /// Whether one more may be opened; takes it from the engine's budget.
    fn admit(&mut self) -> Result<(), ErrorCode> {
        if self.open.len() >= self.max {
            tracing::info!(
                open = self.open.len(),
                "open refused: the call's open-file limit"
            );
            return Err(ErrorCode::Quota);
        }
        if !self.budget.take() {
            tracing::warn!("open refused: the process's open-file budget is spent");
            return Err(ErrorCode::Quota);
        }
        Ok(())
    }
}

impl Drop for FilesContext {
    /// What the call still holds is closed with its store.
    fn drop(&mut self) {
        self.budget.give_back(self.open.len());
    }
}

/// A store whose guests open files through WASI.
pub(crate) trait FilesView: WasiView + 'static {
    fn files(&mut self) -> &mut FilesContext;
}

/// Shadows wasmtime-wasi's `open-at` and `descriptor` destructor; call
/// after `wasmtime_wasi::p2::add_to_linker_async`.
pub(crate) fn add_to_linker<T: FilesView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut instance = linker.instance(INTERFACE)?;
    instance.resource(
        "descriptor",
        ResourceType::host::<Descriptor>(),
        |mut store: StoreContextMut<'_, T>, rep: u32| {
            let state = store.data_mut();
            let files = state.files();
            if files.open.remove(&rep) {
                files.budget.give_back(1);
            }
            HostDescriptor::drop(&mut state.filesystem(), Resource::new_own(rep))
        },
    )?;
    instance.func_wrap_async(
        "[method]descriptor.open-at",
        |mut store: StoreContextMut<'_, T>,
         (dir, path_flags, path, open_flags, flags): (
            Resource<Descriptor>,
            PathFlags,
            String,
            OpenFlags,
            DescriptorFlags,
        )| {
            Box::new(async move {
                let result = open_at(&mut store, dir, path_flags, path, open_flags, flags).await?;
                Ok((result,))
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

async fn open_at<T: FilesView>(
    store: &mut StoreContextMut<'_, T>,
    dir: Resource<Descriptor>,
    path_flags: PathFlags,
    path: String,
    open_flags: OpenFlags,
    flags: DescriptorFlags,
) -> wasmtime::Result<Result<Resource<Descriptor>, ErrorCode>> {
    if let Err(refused) = store.data_mut().files().admit() {
        return Ok(Err(refused));
    }
    let state = store.data_mut();
    let mut view = state.filesystem();
    let opened = HostDescriptor::open_at(&mut view, dir, path_flags, path, open_flags, flags).await;
    match opened {
        Ok(descriptor) => {
            state.files().open.insert(descriptor.rep());
            Ok(Ok(descriptor))
        }
        Err(error) => {
            state.files().budget.give_back(1);
            // A trap stays a trap; an error code goes to the guest.
            let code = types::Host::convert_error_code(&mut state.filesystem(), error)?;
            Ok(Err(code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_and_the_engine_each_have_a_cap() {
        let budget = FileBudget::new(5);
        let mut one = FilesContext::new(budget.clone(), 4, 1);
        for rep in 0..3 {
            one.admit().unwrap();
            one.open.insert(rep);
        }
        assert_eq!(one.admit(), Err(ErrorCode::Quota), "3 + 1 preopen = 4");
        let mut two = FilesContext::new(budget.clone(), 10, 0);
        two.admit().unwrap();
        two.open.insert(0);
        two.admit().unwrap();
        two.open.insert(1);
        assert_eq!(
            two.admit(),
            Err(ErrorCode::Quota),
            "the engine's 5 are held"
        );
        drop(one);
        assert_eq!(
            budget.held(),
            2,
            "a finished call gives its descriptors back"
        );
        two.admit().unwrap();
    }
}
