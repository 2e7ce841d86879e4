//! What `--device` names ([`DeviceChoice`]) and where a task ended up ([`Placed`]).

use std::fmt;
use std::str::FromStr;

/// Where to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// CUDA when usable, else the first working hardware wgpu adapter, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// A CUDA device by index.
    Cuda(usize),
    /// A wgpu adapter by index in [`super::wgpu_adapters`]'s order (hardware first).
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

/// The device a task runs on, once [`super::dispatch`] has resolved `auto`: what the training code
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
