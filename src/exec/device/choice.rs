//! What `--device` names ([`DeviceChoice`]) and where a task ended up ([`Placed`]).

use std::fmt;
use std::str::FromStr;

/// The kinds of device, each spelled once: parsing, printing and the help text are built from
/// [`Kind::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Cpu,
    /// CUDA devices, by index.
    Cuda,
    /// wgpu adapters, by index in [`super::wgpu_adapters`]'s order (hardware first).
    Wgpu,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Cpu, Kind::Cuda, Kind::Wgpu];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Cpu => "cpu",
            Kind::Cuda => "cuda",
            Kind::Wgpu => "wgpu",
        }
    }

    /// Whether devices of this kind are numbered (`cuda:1`).
    pub fn indexed(self) -> bool {
        self != Kind::Cpu
    }
}

/// `auto`, and what `--device` accepts besides the kinds' names.
const AUTO: &str = "auto";
/// An old spelling of `cuda`.
const GPU_ALIAS: (&str, Kind) = ("gpu", Kind::Cuda);

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
    fn of(kind: Kind, n: usize) -> DeviceChoice {
        match kind {
            Kind::Cpu => DeviceChoice::Cpu,
            Kind::Cuda => DeviceChoice::Cuda(n),
            Kind::Wgpu => DeviceChoice::Wgpu(n),
        }
    }

    /// The kind this names (`None` for `auto`) and its index.
    pub fn kind(self) -> Option<(Kind, usize)> {
        match self {
            DeviceChoice::Auto => None,
            DeviceChoice::Cpu => Some((Kind::Cpu, 0)),
            DeviceChoice::Cuda(n) => Some((Kind::Cuda, n)),
            DeviceChoice::Wgpu(n) => Some((Kind::Wgpu, n)),
        }
    }

    /// Every spelling `--device` takes: `auto | cpu | cuda | cuda:N | wgpu | wgpu:N`.
    pub fn spellings() -> String {
        let mut out = vec![AUTO.to_string()];
        for k in Kind::ALL {
            out.push(k.name().to_string());
            if k.indexed() {
                out.push(format!("{}:N", k.name()));
            }
        }
        out.join(" | ")
    }

    /// The help text of every `--device` flag: the devices that exist.
    pub fn help() -> String {
        format!(
            "Where to run: {}. `auto` picks CUDA, then a hardware wgpu adapter (Vulkan, Metal, \
             DX12), then the CPU",
            Self::spellings()
        )
    }
}

impl FromStr for DeviceChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        if s == AUTO {
            return Ok(DeviceChoice::Auto);
        }
        let (name, index) = match s.split_once(':') {
            Some((name, n)) => (name, Some(n)),
            None => (s.as_str(), None),
        };
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .or((name == GPU_ALIAS.0).then_some(GPU_ALIAS.1));
        match (kind, index.map(str::parse::<usize>)) {
            (Some(k), None) => Ok(DeviceChoice::of(k, 0)),
            (Some(k), Some(Ok(n))) if k.indexed() => Ok(DeviceChoice::of(k, n)),
            _ => Err(format!(
                "unknown device `{s}`: expected {} (N a device index)",
                Self::spellings()
            )),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind() {
            None => f.write_str(AUTO),
            Some((k, _)) if !k.indexed() => f.write_str(k.name()),
            Some((k, n)) => write!(f, "{}:{n}", k.name()),
        }
    }
}

/// The device a task runs on, once [`super::dispatch`] has resolved `auto`: what the training code
/// asks about it (its defaults, what it supports) is a method here, never a match on a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placed {
    Cpu,
    Cuda(usize),
    Wgpu(usize),
}

impl Placed {
    pub fn kind(self) -> Kind {
        match self {
            Placed::Cpu => Kind::Cpu,
            Placed::Cuda(_) => Kind::Cuda,
            Placed::Wgpu(_) => Kind::Wgpu,
        }
    }

    /// A GPU, where every read of a value back to the host waits for the queue to drain.
    pub fn is_gpu(self) -> bool {
        self.kind() != Kind::Cpu
    }

    /// How `--precision bf16` runs here.
    pub fn bf16(self) -> Bf16 {
        match self.kind() {
            Kind::Cuda => Bf16::Rounds,
            // cubecl's wgpu runtime compiles to WGSL, which has f16 but no bf16.
            Kind::Wgpu => Bf16::Refused("wgpu's shading language has no bf16"),
            Kind::Cpu if cpu_has_bf16_dot() => Bf16::Rounds,
            Kind::Cpu => Bf16::FallsBackToF32(
                "this CPU has no bf16 dot-product instruction (AVX512-BF16), and rounding \
                 each operand in tensor ops runs at under half the f32 speed",
            ),
        }
    }
}

/// What `--precision bf16` does on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16 {
    /// Matmul operands are rounded to bf16, products accumulate in f32.
    Rounds,
    /// The matmuls stay f32, for the reason given; the run header and the summary say so.
    FallsBackToF32(&'static str),
    /// An error before anything trains, for the reason given.
    Refused(&'static str),
}

/// Whether this CPU has AVX512-BF16's `VDPBF16PS` (bf16 pairs accumulated into f32).
pub fn cpu_has_bf16_dot() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl fmt::Display for Placed {
    /// As in logs and summaries: `cpu`, `cuda:0`, `wgpu:0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = match *self {
            Placed::Cpu => 0,
            Placed::Cuda(n) | Placed::Wgpu(n) => n,
        };
        DeviceChoice::of(self.kind(), n).fmt(f)
    }
}
