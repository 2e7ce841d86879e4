//! wgpu adapters (Vulkan, Metal, DX12): how `--device wgpu:N` numbers them, which of them
//! `auto` may pick, and running a task on one.

use std::fmt;

/// A wgpu adapter as `--device wgpu:N` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WgpuAdapter {
    /// The driver's name for it (`NVIDIA GeForce RTX 4090`, `llvmpipe (LLVM 15.0.6, 256 bits)`).
    pub name: String,
    /// The graphics API (`Vulkan`, `Metal`, `Dx12`).
    pub api: String,
    pub kind: AdapterKind,
}

/// What kind of device a wgpu adapter drives, as the driver reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterKind {
    Discrete,
    Integrated,
    Virtual,
    /// A software rasterizer on the CPU (lavapipe, SwiftShader, WARP).
    Software,
}

impl fmt::Display for AdapterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AdapterKind::Discrete => "discrete",
            AdapterKind::Integrated => "integrated",
            AdapterKind::Virtual => "virtual",
            AdapterKind::Software => "software",
        })
    }
}

impl WgpuAdapter {
    /// A software rasterizer: never picked by `auto`.
    pub fn is_software(&self) -> bool {
        self.kind == AdapterKind::Software
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
        rt::adapters().iter().map(|(_, a)| a.clone()).collect()
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
    let list = rt::adapters();
    (0..list.len())
        .find(|&n| rt::usable(n).is_ok())
        .map(|n| list[n].0.clone())
}

#[cfg(feature = "wgpu")]
pub(super) mod rt {
    use std::panic::catch_unwind;
    use std::sync::OnceLock;

    use burn::backend::wgpu::WgpuDevice;
    use burn::backend::wgpu::graphics::{AutoGraphicsApi, GraphicsApi};
    use burn::backend::{Autodiff, Wgpu};

    use super::{AdapterKind, WgpuAdapter};
    use crate::exec::device::failure::device_error;
    use crate::exec::device::probe::{Probes, first_use};
    use crate::exec::device::{BackendTask, Placed};
    use crate::exec::error::{ErrorKind, ExecError};

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
                wgpu::DeviceType::DiscreteGpu => (0, AdapterKind::Discrete),
                wgpu::DeviceType::IntegratedGpu => (1, AdapterKind::Integrated),
                wgpu::DeviceType::VirtualGpu => (2, AdapterKind::Virtual),
                wgpu::DeviceType::Cpu => {
                    if software.is_none() {
                        software = Some(WgpuAdapter {
                            name: info.name.clone(),
                            api: format!("{:?}", info.backend),
                            kind: AdapterKind::Software,
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

    static PROBED: Probes = Probes::new();

    /// Adapter `n`, after one tensor sum on it; the reason when it cannot be used.
    pub fn usable(n: usize) -> Result<WgpuAdapter, ExecError> {
        let list = adapters();
        let Some((device, adapter)) = list.get(n) else {
            return Err(if list.is_empty() {
                ExecError::new(
                    ErrorKind::Device,
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
        PROBED
            .get_or(n, || {
                first_use::<Wgpu>(device, &format!("wgpu adapter {adapter}"))
            })
            .map(|()| adapter.clone())
            .map_err(device_error)
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
        task.run::<B>(device, Placed::Wgpu(n))
    }
}
