//! The gates in front of `wasi:filesystem`, for what a guest can take from
//! the host's disk and descriptors:
//!
//! - Open files. Every descriptor a guest opens is a real host file
//!   descriptor, so a call may hold at most its own share open at once, and
//!   all calls together at most what the process can spare (its
//!   `RLIMIT_NOFILE` less a reserve for warden itself). An open past either
//!   fails with `quota`.
//! - Disk. A call may write at most `disk_bytes` (through `write`, write
//!   and append streams, or growing a file with `set-size`) and create at
//!   most `new_files` files and directories, wherever it may write. Past
//!   either, the write or create fails with `insufficient-space` (ENOSPC;
//!   a guest built on wasi-libc sees a failed stream write as EIO, since
//!   wasi-libc reports every stream error so).
//!
//! Each refusal is an ordinary failed call for the guest; the host, and
//! every other call, keeps its descriptors and its disk. wasmtime-wasi does
//! the work; this module shadows its `open-at`, `write`, `write-via-stream`,
//! `append-via-stream`, `set-size`, `create-directory-at` and the
//! `descriptor` destructor (to count a close), and passes each on.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::filesystem::WasiFilesystemView;
use wasmtime_wasi::p2::bindings::filesystem::types::{
    self, Descriptor, DescriptorFlags, ErrorCode, Filesize, HostDescriptor, OpenFlags, PathFlags,
};
use wasmtime_wasi::p2::{DynOutputStream, OutputStream, Pollable, StreamError, StreamResult};

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

/// One call's open descriptors and what it may still write.
#[derive(Debug)]
pub(crate) struct FilesContext {
    budget: Arc<FileBudget>,
    /// The most this call may hold open at once.
    max: usize,
    /// Table slots of the descriptors this call opened and still holds.
    open: HashSet<u32>,
    /// Bytes the call may still write; shared with its write streams.
    disk_left: DiskLeft,
    /// Files and directories the call may still create.
    creates_left: u32,
}

/// How much of the host's disk one call may take.
#[derive(Debug, Clone)]
pub(crate) struct DiskQuota {
    pub(crate) bytes: u64,
    pub(crate) new_files: u32,
    /// What the call's tenant may still write, all its calls together.
    pub(crate) tenant: Option<Arc<AtomicU64>>,
}

/// What a call may still write: its own bytes and, when its tenant has a
/// disk quota, the tenant's. A write takes from both or from neither.
#[derive(Debug, Clone)]
struct DiskLeft {
    call: Arc<AtomicU64>,
    tenant: Option<Arc<AtomicU64>>,
}

impl DiskLeft {
    fn take(&self, bytes: u64) -> Result<(), &'static str> {
        take(&self.call, bytes).map_err(|()| "the call's disk quota")?;
        if let Some(tenant) = &self.tenant
            && take(tenant, bytes).is_err()
        {
            self.call.fetch_add(bytes, Ordering::AcqRel);
            return Err("the tenant's workspace quota");
        }
        Ok(())
    }
}

/// The disk quotas of tenants, by name: what each may still write. A call
/// of a tenant named here spends from it besides its own `disk_bytes`.
#[derive(Debug, Default)]
pub(crate) struct TenantDisks(std::sync::Mutex<std::collections::HashMap<String, Arc<AtomicU64>>>);

impl TenantDisks {
    pub(crate) fn set(&self, tenant: &str, left: Option<Arc<AtomicU64>>) {
        let mut disks = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match left {
            Some(left) => disks.insert(tenant.to_string(), left),
            None => disks.remove(tenant),
        };
    }

    pub(crate) fn of(&self, tenant: &str) -> Option<Arc<AtomicU64>> {
        let disks = self.0.lock().unwrap_or_else(|p| p.into_inner());
        disks.get(tenant).cloned()
    }
}

impl FilesContext {
    /// `preopens` are already open (the granted directories) and count
    /// against `max`, not against the engine's budget (which reserved them
    /// with the call).
    pub(crate) fn new(
        budget: Arc<FileBudget>,
        max: usize,
        preopens: usize,
        disk: DiskQuota,
    ) -> Self {
        FilesContext {
            budget,
            max: max.saturating_sub(preopens),
            open: HashSet::new(),
            disk_left: DiskLeft {
                call: Arc::new(AtomicU64::new(disk.bytes)),
                tenant: disk.tenant,
            },
            creates_left: disk.new_files,
        }
    }

    /// Takes `bytes` from what the call may write, if that much is left.
    fn spend_disk(&self, bytes: u64) -> Result<(), ErrorCode> {
        self.disk_left.take(bytes).map_err(|quota| {
            tracing::info!(bytes, "write refused: {quota}");
            ErrorCode::InsufficientSpace
        })
    }

    /// Takes one create from what the call may create.
    fn spend_create(&mut self) -> Result<(), ErrorCode> {
        if self.creates_left == 0 {
            tracing::info!("create refused: the call's file quota");
            return Err(ErrorCode::InsufficientSpace);
        }
        self.creates_left -= 1;
        Ok(())
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

/// Takes `amount` from `left` if that much is there.
fn take(left: &AtomicU64, amount: u64) -> Result<(), ()> {
    left.fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
        now.checked_sub(amount)
    })
    .map(|_| ())
    .map_err(|_| ())
}

/// A file's write or append stream that spends the call's disk quota; a
/// write past it fails as ENOSPC (`insufficient-space` for the guest).
struct QuotaStream {
    inner: DynOutputStream,
    left: DiskLeft,
}

#[wasmtime_wasi::async_trait]
impl OutputStream for QuotaStream {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        if let Err(quota) = self.left.take(bytes.len() as u64) {
            tracing::info!(bytes = bytes.len(), "write refused: {quota}");
            let nospc = std::io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error());
            return Err(StreamError::LastOperationFailed(wasmtime::Error::new(
                nospc,
            )));
        }
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.inner.check_write()
    }

    async fn write_ready(&mut self) -> StreamResult<usize> {
        self.inner.write_ready().await
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for QuotaStream {
    async fn ready(&mut self) {
        self.inner.ready().await
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
    instance.func_wrap_async(
        "[method]descriptor.write",
        |mut store: StoreContextMut<'_, T>,
         (fd, buffer, offset): (Resource<Descriptor>, Vec<u8>, Filesize)| {
            Box::new(async move {
                let state = store.data_mut();
                if let Err(full) = state.files().spend_disk(buffer.len() as u64) {
                    return Ok((Err(full),));
                }
                let written =
                    HostDescriptor::write(&mut state.filesystem(), fd, buffer, offset).await;
                Ok((guest_result(state, written)?,))
            })
        },
    )?;
    instance.func_wrap(
        "[method]descriptor.write-via-stream",
        |mut store: StoreContextMut<'_, T>, (fd, offset): (Resource<Descriptor>, Filesize)| {
            let opened =
                HostDescriptor::write_via_stream(&mut store.data_mut().filesystem(), fd, offset);
            Ok((quota_stream(store.data_mut(), opened)?,))
        },
    )?;
    instance.func_wrap(
        "[method]descriptor.append-via-stream",
        |mut store: StoreContextMut<'_, T>, (fd,): (Resource<Descriptor>,)| {
            let opened = HostDescriptor::append_via_stream(&mut store.data_mut().filesystem(), fd);
            Ok((quota_stream(store.data_mut(), opened)?,))
        },
    )?;
    instance.func_wrap_async(
        "[method]descriptor.set-size",
        |mut store: StoreContextMut<'_, T>, (fd, size): (Resource<Descriptor>, Filesize)| {
            Box::new(async move {
                let state = store.data_mut();
                // Growing a file takes disk; shrinking it gives nothing back.
                let fd_again = Resource::new_borrow(fd.rep());
                let now = match HostDescriptor::stat(&mut state.filesystem(), fd_again).await {
                    Ok(stat) => stat.size,
                    Err(error) => return Ok((guest_result(state, Err(error))?,)),
                };
                if let Err(full) = state.files().spend_disk(size.saturating_sub(now)) {
                    return Ok((Err(full),));
                }
                let resized = HostDescriptor::set_size(&mut state.filesystem(), fd, size).await;
                Ok((guest_result(state, resized)?,))
            })
        },
    )?;
    instance.func_wrap_async(
        "[method]descriptor.create-directory-at",
        |mut store: StoreContextMut<'_, T>, (fd, path): (Resource<Descriptor>, String)| {
            Box::new(async move {
                let state = store.data_mut();
                if let Err(full) = state.files().spend_create() {
                    return Ok((Err(full),));
                }
                let created =
                    HostDescriptor::create_directory_at(&mut state.filesystem(), fd, path).await;
                Ok((guest_result(state, created)?,))
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A wasmtime-wasi result as the guest gets it: an error code, or a trap
/// (which stays a trap).
fn guest_result<T: FilesView, R>(
    state: &mut T,
    result: Result<R, wasmtime_wasi::p2::FsError>,
) -> wasmtime::Result<Result<R, ErrorCode>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(error) => Ok(Err(types::Host::convert_error_code(
            &mut state.filesystem(),
            error,
        )?)),
    }
}

/// Wraps a freshly opened write or append stream so that it spends the
/// call's disk quota.
fn quota_stream<T: FilesView>(
    state: &mut T,
    opened: Result<Resource<DynOutputStream>, wasmtime_wasi::p2::FsError>,
) -> wasmtime::Result<Result<Resource<DynOutputStream>, ErrorCode>> {
    let stream = match guest_result(state, opened)? {
        Ok(stream) => stream,
        Err(code) => return Ok(Err(code)),
    };
    let left = state.files().disk_left.clone();
    let table = state.ctx().table;
    let inner = table.delete(stream)?;
    let wrapped: DynOutputStream = Box::new(QuotaStream { inner, left });
    Ok(Ok(table.push(wrapped)?))
}

async fn open_at<T: FilesView>(
    store: &mut StoreContextMut<'_, T>,
    dir: Resource<Descriptor>,
    path_flags: PathFlags,
    path: String,
    open_flags: OpenFlags,
    flags: DescriptorFlags,
) -> wasmtime::Result<Result<Resource<Descriptor>, ErrorCode>> {
    if open_flags.contains(OpenFlags::CREATE)
        && let Err(full) = store.data_mut().files().spend_create()
    {
        return Ok(Err(full));
    }
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
        let disk = DiskQuota {
            bytes: 10,
            new_files: 1,
            tenant: None,
        };
        let mut one = FilesContext::new(budget.clone(), 4, 1, disk.clone());
        for rep in 0..3 {
            one.admit().unwrap();
            one.open.insert(rep);
        }
        assert_eq!(one.admit(), Err(ErrorCode::Quota), "3 + 1 preopen = 4");
        let mut two = FilesContext::new(budget.clone(), 10, 0, disk);
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
    #[test]
    fn calls_of_a_tenant_share_its_disk_and_a_refused_write_takes_nothing() {
        let budget = FileBudget::new(5);
        let tenant = Arc::new(AtomicU64::new(100));
        let quota = |bytes| DiskQuota {
            bytes,
            new_files: 1,
            tenant: Some(tenant.clone()),
        };
        let one = FilesContext::new(budget.clone(), 4, 0, quota(80));
        let two = FilesContext::new(budget.clone(), 4, 0, quota(80));
        one.spend_disk(70).unwrap();
        // Within its own 80, but the tenant has 30 left.
        assert_eq!(two.spend_disk(40), Err(ErrorCode::InsufficientSpace));
        two.spend_disk(30).unwrap();
        assert_eq!(tenant.load(Ordering::Acquire), 0);
        // The call's own quota refuses first and takes nothing either.
        tenant.store(1000, Ordering::Release);
        assert_eq!(one.spend_disk(11), Err(ErrorCode::InsufficientSpace));
        assert_eq!(tenant.load(Ordering::Acquire), 1000);
        one.spend_disk(10).unwrap();
        assert_eq!(tenant.load(Ordering::Acquire), 990);
    }
}
