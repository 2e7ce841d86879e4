//! Device choice and backend dispatch.
//!
//! Invariants:
//! - the training code is generic over `B: TrainBackend` (autodiff + the fused kernels); [`dispatch`] is the one place that
//!   names concrete backends (`Autodiff<Flex>` on CPU, `Autodiff<Cuda>` with the `cuda` feature);
//! - CUDA is only used after a probe that cannot panic: `libcuda.so.1` is dlopen'ed, `cuInit` and
//!   `cuDeviceGetCount` are called through it, NVRTC must be loadable, and the first device
//!   initialization runs under `catch_unwind`. Any failure is an `ExecError` (kind `Device`);
//! - cubecl's PTX compilation cache and autotune cache live under `~/.cache/progc`, set once
//!   before the first kernel.

use std::fmt;
use std::str::FromStr;

use super::kernels::TrainBackend;

use super::error::{ErrorKind, ExecError};

/// Where to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA when usable, else CPU.
    #[default]
    Auto,
    Cpu,
    /// A CUDA device by index.
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(DeviceChoice::Cuda(n)),
                _ => Err(format!(
                    "unknown device `{s}`: expected `auto`, `cpu`, `cuda` or `cuda:N` (N a device index)"
                )),
            },
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => write!(f, "auto"),
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Work that runs on whichever backend [`dispatch`] picks (Rust has no generic closures).
pub trait BackendTask {
    type Output;
    /// `name` describes the device for logs and summaries (`cpu`, `cuda:0`).
    fn run<B: TrainBackend>(self, device: B::Device, name: &str)
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
        DeviceChoice::Auto => {
            #[cfg(feature = "cuda")]
            {
                match cuda::usable(0) {
                    Ok(()) => {
                        if announce {
                            eprintln!("device: cuda:0 (auto)");
                        }
                        cuda::run(0, task)
                    }
                    Err(e) => cpu(&format!(" (auto: {})", e.message))(task),
                }
            }
            #[cfg(not(feature = "cuda"))]
            {
                cpu(" (auto: built without CUDA)")(task)
            }
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
    task.run::<B>(Default::default(), "cpu")
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

#[cfg(feature = "cuda")]
mod cuda {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::{Mutex, Once};

    use burn::backend::cuda::CudaDevice;
    use burn::backend::{Autodiff, Cuda};
    use burn::tensor::Tensor;

    use super::{BackendTask, ExecError, device_error};

    type B = Autodiff<Cuda>;

    /// Probe results per device index, so the (slow) probe runs once per process.
    static PROBED: Mutex<Vec<(usize, Result<(), String>)>> = Mutex::new(Vec::new());
    static CACHE: Once = Once::new();

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
        configure_caches();
        // First device init and one kernel: cubecl panics on failure, so catch it here.
        let dev = CudaDevice { index: n };
        let ok = catch_unwind(AssertUnwindSafe(|| {
            let t = Tensor::<Cuda, 1>::from_floats([1.0, 2.0, 3.0], &dev);
            t.sum().into_scalar()
        }));
        match ok {
            Ok(s) if (s - 6.0).abs() < 1e-6 => Ok(()),
            Ok(s) => Err(format!("CUDA device {n} computed a wrong test sum ({s})")),
            Err(p) => Err(format!(
                "CUDA device {n} failed to initialize: {}",
                panic_text(&p)
            )),
        }
    }

    fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into())
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

    /// PTX and autotune caches in [`super::kernel_cache_dir`], set once, before the first
    /// kernel. A `cubecl.toml` the user wrote (or `CUBECL_*` variables) still applies; only
    /// cache locations it leaves at cubecl's defaults are moved to ours.
    pub fn configure_caches() {
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

    pub fn run<T: BackendTask>(n: usize, task: T) -> Result<T::Output, ExecError> {
        task.run::<B>(CudaDevice { index: n }, &format!("cuda:{n}"))
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
        fn run<B: TrainBackend>(self, _d: B::Device, name: &str) -> Result<String, ExecError> {
            Ok(name.to_string())
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
        assert_eq!(dispatch(DeviceChoice::Auto, false, Probe).unwrap(), "cpu");
        // A device index far out of range is an error on any machine.
        assert!(dispatch(DeviceChoice::Cuda(999), false, Probe).is_err());
    }
}
