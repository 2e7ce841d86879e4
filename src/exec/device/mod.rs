//! Where it runs: the device a user names (`choice`), backend dispatch (`dispatch`), the
//! probes that make a GPU safe to use (`probe`, `cuda`, `wgpu`), backend failures as errors
//! (`failure`), and data parallelism over devices and nodes ([`parallel`]).
//!
//! Invariants:
//! - the training code is generic over `B: TrainBackend` (autodiff + the fused kernels);
//!   [`dispatch`] is the one place that names concrete backends (`Autodiff<Flex>` on CPU, `Autodiff<Cuda>` with the `cuda` feature,
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

mod choice;
mod cuda;
mod dispatch;
mod failure;
mod probe;
mod wgpu;

pub mod parallel;

pub use choice::{Bf16, DeviceChoice, Kind, Placed, cpu_has_bf16_dot};
pub use cuda::cuda_usable;
pub use dispatch::{BackendTask, dispatch, place};
pub(crate) use failure::panic_error;
pub use probe::kernel_cache_dir;
#[cfg(all(test, feature = "wgpu"))]
pub(crate) use wgpu::first_wgpu_device;
pub use wgpu::{AdapterKind, WgpuAdapter, wgpu_adapters};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::error::ErrorKind;
    use crate::exec::error::ExecError;
    use crate::exec::network::kernels::TrainBackend;

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
