//! CUDA devices: a probe that cannot panic (the driver and NVRTC are dlopen'ed and asked
//! before cubecl touches them), and running a task on one.

#[cfg(not(feature = "cuda"))]
use crate::exec::error::ErrorKind;
use crate::exec::error::ExecError;

/// Whether CUDA device `n` can be used; the reason when not. Never panics.
pub fn cuda_usable(n: usize) -> Result<(), ExecError> {
    #[cfg(feature = "cuda")]
    {
        rt::usable(n)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = n;
        Err(ExecError::new(ErrorKind::Device, "built without CUDA"))
    }
}

#[cfg(feature = "cuda")]
pub(super) mod rt {
    use burn::backend::cuda::CudaDevice;
    use burn::backend::{Autodiff, Cuda};

    use crate::exec::device::failure::device_error;
    use crate::exec::device::probe::{Probes, first_use};
    use crate::exec::device::{BackendTask, Placed};
    use crate::exec::error::ExecError;

    type B = Autodiff<Cuda>;

    static PROBED: Probes = Probes::new();

    pub fn usable(n: usize) -> Result<(), ExecError> {
        PROBED.get_or(n, || probe(n)).map_err(device_error)
    }

    fn probe(n: usize) -> Result<(), String> {
        let count = driver_device_count()?;
        if n >= count {
            return Err(format!(
                "CUDA device {n} requested but {count} device(s) present"
            ));
        }
        nvrtc_loadable()?;
        first_use::<Cuda>(&CudaDevice { index: n }, &format!("CUDA device {n}"))
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
        task.run::<B>(CudaDevice { index: n }, Placed::Cuda(n))
    }
}
