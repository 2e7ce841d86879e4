//! Device choice and backend dispatch.
//!
//! Invariants:
//! - the training code is generic over `B: TrainBackend` (autodiff + the fused kernels); [`dispatch`] is the one place that
//!   names concrete backends (`Autodiff<Flex>` on CPU, `Autodiff<Cuda>` with the `cuda` feature,
//!   `Autodiff<Wgpu>` with the `wgpu` feature);
//! - `auto` picks CUDA, then a hardware wgpu adapter, then the CPU; a software adapter (Mesa's
//!   lavapipe, say) is only used when `--device wgpu[:N]` names it;
//! - a wgpu adapter is enumerated and given one tensor sum under `catch_unwind` before training,
//!   so a missing or broken driver is an `ExecError`, never a panic;
//! - CUDA is only used after a probe that cannot panic: `libcuda.so.1` is dlopen'ed, `cuInit` and
//!   `cuDeviceGetCount` are called through it, NVRTC must be loadable, and the first device
//!   initialization runs under `catch_unwind`. Any failure is an `ExecError` (kind `Device`);
//! - cubecl's compilation cache and autotune cache live under `~/.cache/progc` for both CubeCL
//!   runtimes, set once before the first kernel.

use std::fmt;
use std::str::FromStr;

use super::kernels::TrainBackend;

use super::error::{ErrorKind, ExecError};

/// Where to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA when usable, else the first working hardware wgpu adapter, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// A CUDA device by index.
    Cuda(usize),
    /// A wgpu adapter by index in [`wgpu_adapters`]'s order (hardware first).
    Wgpu(usize),
}

impl DeviceChoice {
    /// The help text of every `--device` flag: the devices that exist.
    pub const HELP: &'static str = "Where to run: auto | cpu | cuda | cuda:N | wgpu | wgpu:N. \
        `auto` picks CUDA, then a hardware wgpu adapter (Vulkan, Metal, DX12), then the CPU";
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            "wgpu" => Ok(DeviceChoice::Wgpu(0)),
            _ => {
                let index = |prefix: &str| s.strip_prefix(prefix).map(str::parse::<usize>);
                match (index("cuda:"), index("wgpu:")) {
                    (Some(Ok(n)), _) => Ok(DeviceChoice::Cuda(n)),
                    (_, Some(Ok(n))) => Ok(DeviceChoice::Wgpu(n)),
                    _ => Err(format!(
                        "unknown device `{s}`: expected `auto`, `cpu`, `cuda`, `cuda:N`, `wgpu` or \
                         `wgpu:N` (N a device index)"
                    )),
                }
            }
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => write!(f, "auto"),
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceChoice::Wgpu(n) => write!(f, "wgpu:{n}"),
        }
    }
}

/// The device a task runs on, once [`dispatch`] has resolved `auto`: what the training code
/// asks about it (its defaults, what it supports) is a match on this, never on a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placed {
    Cpu,
    Cuda(usize),
    Wgpu(usize),
}

impl Placed {
    /// A GPU, where every read of a value back to the host waits for the queue to drain.
    pub fn is_gpu(self) -> bool {
        !matches!(self, Placed::Cpu)
    }
}

impl fmt::Display for Placed {
    /// As in logs and summaries: `cpu`, `cuda:0`, `wgpu:0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Placed::Cpu => write!(f, "cpu"),
            Placed::Cuda(n) => write!(f, "cuda:{n}"),
            Placed::Wgpu(n) => write!(f, "wgpu:{n}"),
        }
    }
}

/// Work that runs on whichever backend [`dispatch`] picks (Rust has no generic closures).
pub trait BackendTask {
    type Output;
    fn run<B: TrainBackend>(self, device: B::Device, on: Placed)
    -> Result<Self::Output, ExecError>;
}

/// Resolves `choice` to a backend and runs `task` on it. Prints the choice to stderr when
/// `announce`.
pub fn dispatch<T: BackendTask>(
    choice: DeviceChoice,
    announce: bool,
    task: T,
) -> Result<T::Output, ExecError> {
    // A backend that fails inside (out of device memory, a driver error) panics; turn that
    // into an error with what to do, instead of a crash. Checkpoints already written stay.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dispatch_unguarded(choice, announce, task)
    })) {
        Ok(result) => result,
        Err(payload) => Err(panic_error(payload.as_ref())),
    }
}

/// The error for a panic caught while training.
pub(crate) fn panic_error(payload: &(dyn std::any::Any + Send)) -> ExecError {
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("unknown failure");
    let lower = msg.to_lowercase();
    if ["out of memory", "oom", "memory allocation", "alloc"]
        .iter()
        .any(|k| lower.contains(k))
    {
        ExecError::new(ErrorKind::Resource, format!("out of memory: {msg}")).with_help(
            "use a smaller batch (`--set batch=...`) or model; checkpoints already written are \
             kept (continue with `progc run --resume DIR`)",
        )
    } else {
        ExecError::new(ErrorKind::Internal, format!("the backend failed: {msg}")).with_help(
            "this is a bug in progc or the device driver; checkpoints already written are kept \
             (continue with `progc run --resume DIR`)",
        )
    }
}

fn dispatch_unguarded<T: BackendTask>(
    choice: DeviceChoice,
    announce: bool,
    task: T,
) -> Result<T::Output, ExecError> {
    type Cpu = burn::backend::Autodiff<burn::backend::Flex>;
    let cpu = |why: &str| {
        if announce {
            eprintln!("device: cpu{why}");
        }
        task_cpu::<T, Cpu>
    };
    match choice {
        DeviceChoice::Cpu => cpu("")(task),
        DeviceChoice::Cuda(n) => {
            #[cfg(feature = "cuda")]
            {
                cuda::usable(n)?;
                if announce {
                    eprintln!("device: cuda:{n}");
                }
                cuda::run(n, task)
            }
            #[cfg(not(feature = "cuda"))]
            {
                let _ = n;
                Err(ExecError::new(
                    ErrorKind::Device,
                    "this progc binary was built without CUDA support",
                )
                .with_help("use --device cpu, or rebuild with `cargo build --features cuda`"))
            }
        }
        DeviceChoice::Wgpu(n) => {
            #[cfg(feature = "wgpu")]
            {
                let adapter = wgpu_rt::usable(n)?;
                if announce {
                    eprintln!("device: wgpu:{n} ({adapter})");
                }
                wgpu_rt::run(n, task)
            }
            #[cfg(not(feature = "wgpu"))]
            {
                let _ = n;
                Err(ExecError::new(
                    ErrorKind::Device,
                    "this progc binary was built without wgpu support",
                )
                .with_help("use --device cpu, or rebuild with `cargo build --features wgpu`"))
            }
        }
        DeviceChoice::Auto => {
            #[cfg(feature = "cuda")]
            let cuda_why = match cuda::usable(0) {
                Ok(()) => {
                    if announce {
                        eprintln!("device: cuda:0 (auto)");
                    }
                    return cuda::run(0, task);
                }
                Err(e) => e.message,
            };
            #[cfg(not(feature = "cuda"))]
            let cuda_why = "built without CUDA".to_string();
            #[cfg(feature = "wgpu")]
            let wgpu_why = match wgpu_rt::first_hardware() {
                Ok((n, adapter)) => {
                    if announce {
                        eprintln!("device: wgpu:{n} ({adapter}) (auto: {cuda_why})");
                    }
                    return wgpu_rt::run(n, task);
                }
                Err(e) => e,
            };
            #[cfg(not(feature = "wgpu"))]
            let wgpu_why = "built without wgpu".to_string();
            cpu(&format!(" (auto: {cuda_why}; {wgpu_why})"))(task)
        }
    }
}

#[cfg(test)]
mod panic_tests {
    use super::*;

    #[test]
    fn panics_become_errors_with_help() {
        let oom = panic_error(&String::from("CUDA_ERROR_OUT_OF_MEMORY: out of memory"));
        assert_eq!(oom.kind, ErrorKind::Resource);
        assert!(
            oom.help
                .as_deref()
                .is_some_and(|h| h.contains("smaller batch"))
        );
        let other = panic_error(&"index out of bounds");
        assert_eq!(other.kind, ErrorKind::Internal);
    }
}

fn task_cpu<T: BackendTask, B: TrainBackend>(task: T) -> Result<T::Output, ExecError> {
    task.run::<B>(Default::default(), Placed::Cpu)
}

/// Whether CUDA device `n` can be used; the reason when not. Never panics.
pub fn cuda_usable(n: usize) -> Result<(), ExecError> {
    #[cfg(feature = "cuda")]
    {
        cuda::usable(n)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = n;
        Err(ExecError::new(ErrorKind::Device, "built without CUDA"))
    }
}

/// Where compiled GPU kernels (PTX) and autotune results are kept between runs:
/// `$PROGC_CACHE_DIR`, else `$XDG_CACHE_HOME/progc`, else `~/.cache/progc`. A warm cache is
/// what makes a second start fast: without it every kernel is compiled again with NVRTC.
pub fn kernel_cache_dir() -> Option<std::path::PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    };
    var("PROGC_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("progc")))
        .or_else(|| var("HOME").map(|h| h.join(".cache").join("progc")))
}

#[allow(dead_code)]
fn device_error(msg: impl Into<String>) -> ExecError {
    ExecError::new(ErrorKind::Device, msg).with_help("use --device cpu")
}

/// The text of a caught panic.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub(crate) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// cubecl's configuration, shared by its CUDA and wgpu runtimes.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod cubecl_caches {
    use std::panic::catch_unwind;
    use std::sync::Once;

    static CACHE: Once = Once::new();

    /// Compiled-kernel and autotune caches in [`super::kernel_cache_dir`], set once, before the
    /// first kernel of either runtime. CUDA caches its PTX; wgpu compiles WGSL, which cubecl
    /// does not cache, so there the autotune results are what a second start reuses.
    /// A `cubecl.toml` the user wrote (or `CUBECL_*` variables) still applies; only
    /// cache locations it leaves at cubecl's defaults are moved to ours.
    pub fn configure() {
        CACHE.call_once(|| {
            use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig, cache::CacheConfig};
            let Some(root) = super::kernel_cache_dir() else {
                return;
            };
            if std::fs::create_dir_all(&root).is_err() {
                return;
            }
            let mut cfg = CubeClRuntimeConfig::from_current_dir().override_from_env();
            if cfg.compilation.cache.is_none() {
                cfg.compilation.cache = Some(CacheConfig::File(root.join("ptx")));
            }
            if matches!(cfg.autotune.cache, CacheConfig::Target) {
                cfg.autotune.cache = CacheConfig::File(root.join("autotune"));
            }
            // `set` panics if the config was already read; then cubecl keeps its default.
            let _ = catch_unwind(|| CubeClRuntimeConfig::set(cfg));
        });
    }
}

/// progc's CubeCL kernels against the composition on a device's first use; on a failure they
/// are off for the process (the composition is correct, only slower), with a warning.
#[cfg(feature = "cube")]
fn check_kernels<B: crate::exec::kernels::Kernels>(device: &B::Device, name: &str) {
    if let Err(why) = crate::exec::kernels::cube::self_check::<B>(device) {
        eprintln!(
            "warning: progc's CubeCL kernels failed their check on {name} ({why}); attention \
             and LayerNorm run as the composition of tensor ops instead"
        );
    }
}

/// A wgpu adapter as `--device wgpu:N` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WgpuAdapter {
    /// The driver's name for it (`NVIDIA GeForce RTX 4090`, `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub name: String,
    /// The graphics API (`Vulkan`, `Metal`, `Dx12`).
    pub api: String,
    /// `discrete`, `integrated`, `virtual` or `cpu`.
    pub kind: &'static str,
}

impl WgpuAdapter {
    /// A software rasterizer (lavapipe, SwiftShader, WARP): never picked by `auto`.
    pub fn is_software(&self) -> bool {
        self.kind == "cpu"
    }
}

impl fmt::Display for WgpuAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {}, {} adapter", self.name, self.api, self.kind)
    }
}

/// The wgpu adapters `--device wgpu:N` indexes, hardware first; empty when there is no driver
/// (or no `wgpu` feature). Never panics.
pub fn wgpu_adapters() -> Vec<WgpuAdapter> {
    #[cfg(feature = "wgpu")]
    {
        wgpu_rt::adapters().iter().map(|(_, a)| a.clone()).collect()
    }
    #[cfg(not(feature = "wgpu"))]
    {
        Vec::new()
    }
}

/// The first wgpu adapter that works, software ones included: where the CubeCL kernel tests
/// run (lavapipe in CI).
#[cfg(all(test, feature = "wgpu"))]
pub(crate) fn first_wgpu_device() -> Option<burn::backend::wgpu::WgpuDevice> {
    let list = wgpu_rt::adapters();
    (0..list.len())
        .find(|&n| wgpu_rt::usable(n).is_ok())
        .map(|n| list[n].0.clone())
}

#[cfg(feature = "wgpu")]
mod wgpu_rt {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::{Mutex, OnceLock};

    use burn::backend::wgpu::WgpuDevice;
    use burn::backend::wgpu::graphics::{AutoGraphicsApi, GraphicsApi};
    use burn::backend::{Autodiff, Wgpu};
    use burn::tensor::Tensor;

    use super::{BackendTask, ExecError, WgpuAdapter, device_error};

    type B = Autodiff<Wgpu>;

    /// The adapters of the platform's graphics API, each with the cubecl device that selects
    /// it: cubecl picks `DiscreteGpu(i)` as the i-th discrete adapter in the driver's order,
    /// and `Cpu` as the first software one, so that is how they are numbered here.
    pub fn adapters() -> &'static [(WgpuDevice, WgpuAdapter)] {
        static LIST: OnceLock<Vec<(WgpuDevice, WgpuAdapter)>> = OnceLock::new();
        LIST.get_or_init(|| {
            // Vulkan layers print to stderr while they look for a display (Mesa's, without
            // XDG_RUNTIME_DIR: "error: XDG_RUNTIME_DIR is invalid ..."). `auto` must stay quiet
            // about adapters it does not pick, so the talk is kept for a `--device wgpu` error.
            let quiet = gag::BufferRedirect::stderr().ok();
            let list = catch_unwind(enumerate).unwrap_or_default();
            if let Some(mut buffer) = quiet {
                let mut talk = String::new();
                let _ = std::io::Read::read_to_string(&mut buffer, &mut talk);
                let _ = DRIVER_TALK.set(talk.trim().to_string());
            }
            list
        })
    }

    /// What the drivers printed while the adapters were enumerated.
    static DRIVER_TALK: OnceLock<String> = OnceLock::new();

    fn driver_talk() -> String {
        match DRIVER_TALK.get() {
            Some(t) if !t.is_empty() => format!(" (the driver said: {})", t.replace('\n', "; ")),
            _ => String::new(),
        }
    }

    fn enumerate() -> Vec<(WgpuDevice, WgpuAdapter)> {
        let backend = AutoGraphicsApi::backend();
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: backend.into(),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let found = burn::cubecl::future::block_on(instance.enumerate_adapters(backend.into()));
        let mut counts = [0usize; 3];
        let mut list = Vec::new();
        let mut software = None;
        for adapter in found {
            let info = adapter.get_info();
            let (slot, kind) = match info.device_type {
                wgpu::DeviceType::DiscreteGpu => (0, "discrete"),
                wgpu::DeviceType::IntegratedGpu => (1, "integrated"),
                wgpu::DeviceType::VirtualGpu => (2, "virtual"),
                wgpu::DeviceType::Cpu => {
                    if software.is_none() {
                        software = Some(WgpuAdapter {
                            name: info.name.clone(),
                            api: format!("{:?}", info.backend),
                            kind: "cpu",
                        });
                    }
                    continue;
                }
                // cubecl cannot select an `Other` adapter by index.
                wgpu::DeviceType::Other => continue,
            };
            let i = counts[slot];
            counts[slot] += 1;
            let device = match slot {
                0 => WgpuDevice::DiscreteGpu(i),
                1 => WgpuDevice::IntegratedGpu(i),
                _ => WgpuDevice::VirtualGpu(i),
            };
            let adapter = WgpuAdapter {
                name: info.name.clone(),
                api: format!("{:?}", info.backend),
                kind,
            };
            list.push((slot, device, adapter));
        }
        // Discrete first, then integrated, then virtual; the driver's order within each.
        list.sort_by_key(|(slot, ..)| *slot);
        let mut out: Vec<_> = list.into_iter().map(|(_, d, a)| (d, a)).collect();
        out.extend(software.map(|a| (WgpuDevice::Cpu, a)));
        out
    }

    /// Probe results per adapter index, so the probe (a first kernel) runs once per process.
    static PROBED: Mutex<Vec<(usize, Result<(), String>)>> = Mutex::new(Vec::new());

    /// Adapter `n`, after one tensor sum on it; the reason when it cannot be used.
    pub fn usable(n: usize) -> Result<WgpuAdapter, ExecError> {
        let list = adapters();
        let Some((device, adapter)) = list.get(n) else {
            return Err(if list.is_empty() {
                ExecError::new(
                    super::ErrorKind::Device,
                    format!(
                        "no wgpu adapter found (no Vulkan, Metal or DX12 driver answered){}",
                        driver_talk()
                    ),
                )
                .with_help(
                    "install the GPU's Vulkan driver (on a machine without a GPU, Mesa's software \
                     Vulkan: `apt-get install mesa-vulkan-drivers`), or use --device cpu",
                )
            } else {
                let names: Vec<String> = list
                    .iter()
                    .enumerate()
                    .map(|(i, (_, a))| format!("wgpu:{i} = {a}"))
                    .collect();
                device_error(format!(
                    "wgpu adapter {n} requested but {} present ({})",
                    list.len(),
                    names.join("; ")
                ))
            });
        };
        let mut probed = PROBED.lock().unwrap_or_else(|e| e.into_inner());
        let result = match probed.iter().find(|(i, _)| *i == n) {
            Some((_, r)) => r.clone(),
            None => {
                let r = probe(device, adapter);
                probed.push((n, r.clone()));
                r
            }
        };
        result.map(|()| adapter.clone()).map_err(device_error)
    }

    fn probe(device: &WgpuDevice, adapter: &WgpuAdapter) -> Result<(), String> {
        super::cubecl_caches::configure();
        let ok = catch_unwind(AssertUnwindSafe(|| {
            let t = Tensor::<Wgpu, 1>::from_floats([1.0, 2.0, 3.0], device);
            t.sum().into_scalar()
        }));
        match ok {
            Ok(s) if (s - 6.0).abs() < 1e-6 => {
                super::check_kernels::<Wgpu>(device, &adapter.to_string());
                Ok(())
            }
            Ok(s) => Err(format!(
                "wgpu adapter {adapter} computed a wrong test sum ({s})"
            )),
            Err(p) => Err(format!(
                "wgpu adapter {adapter} failed to initialize: {}",
                super::panic_text(p.as_ref())
            )),
        }
    }

    /// The first hardware adapter that works, for `--device auto`.
    pub fn first_hardware() -> Result<(usize, WgpuAdapter), String> {
        let list = adapters();
        let mut why = "no hardware wgpu adapter".to_string();
        for (n, (_, a)) in list.iter().enumerate() {
            if a.is_software() {
                continue;
            }
            match usable(n) {
                Ok(a) => return Ok((n, a)),
                Err(e) => why = e.message,
            }
        }
        Err(why)
    }

    pub fn run<T: BackendTask>(n: usize, task: T) -> Result<T::Output, ExecError> {
        let device = adapters()[n].0.clone();
        task.run::<B>(device, super::Placed::Wgpu(n))
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::Mutex;

    use burn::backend::cuda::CudaDevice;
    use burn::backend::{Autodiff, Cuda};
    use burn::tensor::Tensor;

    use super::{BackendTask, ExecError, device_error};

    type B = Autodiff<Cuda>;

    /// Probe results per device index, so the (slow) probe runs once per process.
    static PROBED: Mutex<Vec<(usize, Result<(), String>)>> = Mutex::new(Vec::new());

    pub fn usable(n: usize) -> Result<(), ExecError> {
        let mut probed = PROBED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, r)) = probed.iter().find(|(i, _)| *i == n) {
            return r.clone().map_err(device_error);
        }
        let r = probe(n);
        probed.push((n, r.clone()));
        r.map_err(device_error)
    }

    fn probe(n: usize) -> Result<(), String> {
        let count = driver_device_count()?;
        if n >= count {
            return Err(format!(
                "CUDA device {n} requested but {count} device(s) present"
            ));
        }
        nvrtc_loadable()?;
        super::cubecl_caches::configure();
        // First device init and one kernel: cubecl panics on failure, so catch it here.
        let dev = CudaDevice { index: n };
        let ok = catch_unwind(AssertUnwindSafe(|| {
            let t = Tensor::<Cuda, 1>::from_floats([1.0, 2.0, 3.0], &dev);
            t.sum().into_scalar()
        }));
        match ok {
            Ok(s) if (s - 6.0).abs() < 1e-6 => {
                super::check_kernels::<Cuda>(&dev, &format!("cuda:{n}"));
                Ok(())
            }
            Ok(s) => Err(format!("CUDA device {n} computed a wrong test sum ({s})")),
            Err(p) => Err(format!(
                "CUDA device {n} failed to initialize: {}",
                super::panic_text(p.as_ref())
            )),
        }
    }

    /// Number of CUDA devices through the driver API, without cudarc (which panics when
    /// libcuda is missing).
    fn driver_device_count() -> Result<usize, String> {
        // SAFETY: loading the system CUDA driver library runs its initializers; it is the
        // same library cudarc would load.
        let lib = unsafe { libloading::Library::new("libcuda.so.1") }
            .map_err(|e| format!("no CUDA driver (libcuda.so.1 not loadable: {e})"))?;
        // SAFETY: the signatures are those of the CUDA driver API (`CUresult` is a C enum/int).
        unsafe {
            let init: libloading::Symbol<unsafe extern "C" fn(u32) -> i32> =
                lib.get(b"cuInit\0")
                    .map_err(|e| format!("libcuda lacks cuInit: {e}"))?;
            let count: libloading::Symbol<unsafe extern "C" fn(*mut i32) -> i32> = lib
                .get(b"cuDeviceGetCount\0")
                .map_err(|e| format!("libcuda lacks cuDeviceGetCount: {e}"))?;
            let r = init(0);
            if r != 0 {
                return Err(format!("cuInit failed (CUDA error {r}): no usable GPU"));
            }
            let mut n = 0i32;
            let r = count(&mut n);
            if r != 0 || n <= 0 {
                return Err("no CUDA device present".into());
            }
            // Keep the driver loaded for the process: cudarc will load it again.
            std::mem::forget(lib);
            Ok(n as usize)
        }
    }

    fn nvrtc_loadable() -> Result<(), String> {
        for name in [
            "libnvrtc.so",
            "libnvrtc.so.13",
            "libnvrtc.so.12",
            "libnvrtc.so.11.2",
        ] {
            // SAFETY: as above, a system CUDA library.
            if let Ok(lib) = unsafe { libloading::Library::new(name) } {
                std::mem::forget(lib);
                return Ok(());
            }
        }
        Err(
            "CUDA driver found but NVRTC (libnvrtc.so) is not loadable; CUDA kernels are \
             compiled at run time with it (install the CUDA toolkit's nvrtc, or set \
             LD_LIBRARY_PATH)"
                .into(),
        )
    }

    pub fn run<T: BackendTask>(n: usize, task: T) -> Result<T::Output, ExecError> {
        task.run::<B>(CudaDevice { index: n }, super::Placed::Cuda(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_choices() {
        assert_eq!("auto".parse::<DeviceChoice>(), Ok(DeviceChoice::Auto));
        assert_eq!("CPU".parse::<DeviceChoice>(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:3".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(3)));
        for bad in ["tpu", "cuda:", "cuda:x", "cuda:-1", ""] {
            let e = bad.parse::<DeviceChoice>().unwrap_err();
            assert!(e.contains("auto") && e.contains("cuda:N"), "{bad}: {e}");
        }
        assert_eq!(DeviceChoice::Cuda(2).to_string(), "cuda:2");
    }

    struct Probe;
    impl BackendTask for Probe {
        type Output = String;
        fn run<B: TrainBackend>(self, _d: B::Device, on: Placed) -> Result<String, ExecError> {
            Ok(on.to_string())
        }
    }

    #[test]
    fn cpu_dispatch_runs_the_task() {
        assert_eq!(dispatch(DeviceChoice::Cpu, false, Probe).unwrap(), "cpu");
    }

    #[test]
    fn cuda_without_a_gpu_is_an_error_and_auto_falls_back() {
        if cuda_usable(0).is_ok() {
            // A real GPU: both must run there.
            assert_eq!(
                dispatch(DeviceChoice::Cuda(0), false, Probe).unwrap(),
                "cuda:0"
            );
            return;
        }
        let e = dispatch(DeviceChoice::Cuda(0), false, Probe).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Device);
        assert!(
            e.help.as_deref().unwrap_or("").contains("--device cpu"),
            "{e}"
        );
        if wgpu_adapters().iter().all(WgpuAdapter::is_software) {
            assert_eq!(dispatch(DeviceChoice::Auto, false, Probe).unwrap(), "cpu");
        }
        // A device index far out of range is an error on any machine.
        assert!(dispatch(DeviceChoice::Cuda(999), false, Probe).is_err());
    }

    #[test]
    fn wgpu_choices_parse_and_bad_indices_are_errors() {
        assert_eq!("wgpu".parse::<DeviceChoice>(), Ok(DeviceChoice::Wgpu(0)));
        assert_eq!("WGPU:2".parse::<DeviceChoice>(), Ok(DeviceChoice::Wgpu(2)));
        assert_eq!(DeviceChoice::Wgpu(1).to_string(), "wgpu:1");
        assert!("wgpu:".parse::<DeviceChoice>().is_err());
        // Past the last adapter (or with none at all): an error with help, never a panic.
        let e = dispatch(DeviceChoice::Wgpu(999), false, Probe).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Device);
        assert!(e.help.is_some(), "{e}");
        // Hardware adapters are numbered before software ones.
        let adapters = wgpu_adapters();
        let first_software = adapters.iter().position(WgpuAdapter::is_software);
        if let Some(i) = first_software {
            assert!(
                adapters[i..].iter().all(WgpuAdapter::is_software),
                "{adapters:?}"
            );
        }
        eprintln!("wgpu adapters here: {adapters:?}");
    }
}
