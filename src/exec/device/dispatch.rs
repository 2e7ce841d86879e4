//! Backend dispatch: the one place that names concrete backends.

#[cfg(not(all(feature = "cuda", feature = "wgpu")))]
use crate::exec::error::ErrorKind;
use crate::exec::error::ExecError;
use crate::exec::network::kernels::TrainBackend;

#[cfg(feature = "cuda")]
use super::cuda;
use super::failure::panic_error;
#[cfg(feature = "wgpu")]
use super::wgpu;
use super::{DeviceChoice, Placed};

/// Work that runs on whichever backend [`dispatch`] picks (Rust has no generic closures).
pub trait BackendTask {
    type Output;
    fn run<B: TrainBackend>(self, device: B::Device, on: Placed)
    -> Result<Self::Output, ExecError>;
}

/// Where `choice` would run, after the same probes as [`dispatch`], without running anything
/// there: checks a device before anything is written for it.
pub fn place(choice: DeviceChoice) -> Result<Placed, ExecError> {
    struct Place;
    impl BackendTask for Place {
        type Output = Placed;
        fn run<B: TrainBackend>(self, _: B::Device, on: Placed) -> Result<Placed, ExecError> {
            Ok(on)
        }
    }
    dispatch(choice, false, Place)
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
                cuda::rt::usable(n)?;
                if announce {
                    eprintln!("device: cuda:{n}");
                }
                cuda::rt::run(n, task)
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
                let adapter = wgpu::rt::usable(n)?;
                if announce {
                    eprintln!("device: wgpu:{n} ({adapter})");
                }
                wgpu::rt::run(n, task)
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
            let cuda_why = match cuda::rt::usable(0) {
                Ok(()) => {
                    if announce {
                        eprintln!("device: cuda:0 (auto)");
                    }
                    return cuda::rt::run(0, task);
                }
                Err(e) => e.message,
            };
            #[cfg(not(feature = "cuda"))]
            let cuda_why = "built without CUDA".to_string();
            #[cfg(feature = "wgpu")]
            let wgpu_why = match wgpu::rt::first_hardware() {
                Ok((n, adapter)) => {
                    if announce {
                        eprintln!("device: wgpu:{n} ({adapter}) (auto: {cuda_why})");
                    }
                    return wgpu::rt::run(n, task);
                }
                Err(e) => e,
            };
            #[cfg(not(feature = "wgpu"))]
            let wgpu_why = "built without wgpu".to_string();
            cpu(&format!(" (auto: {cuda_why}; {wgpu_why})"))(task)
        }
    }
}

fn task_cpu<T: BackendTask, B: TrainBackend>(task: T) -> Result<T::Output, ExecError> {
    task.run::<B>(Default::default(), Placed::Cpu)
}
