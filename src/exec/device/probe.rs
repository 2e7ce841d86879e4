//! What every GPU runtime does before its first use: cubecl's caches in progc's folder, one
//! tensor sum under `catch_unwind`, and progc's own kernels checked against the composition;
//! each device index is probed once per process.

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

/// Probe results per device index, so a probe (a first kernel, slow) runs once per process.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub(super) struct Probes(std::sync::Mutex<Vec<(usize, Result<(), String>)>>);

#[cfg(any(feature = "cuda", feature = "wgpu"))]
impl Probes {
    pub const fn new() -> Probes {
        Probes(std::sync::Mutex::new(Vec::new()))
    }

    /// The result of `probe` for device `n`, computed the first time only.
    pub fn get_or(
        &self,
        n: usize,
        probe: impl FnOnce() -> Result<(), String>,
    ) -> Result<(), String> {
        let mut done = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, r)) = done.iter().find(|(i, _)| *i == n) {
            return r.clone();
        }
        let r = probe();
        done.push((n, r.clone()));
        r
    }
}

/// The first use of a GPU device: one tensor sum (cubecl panics when the driver fails, so
/// under `catch_unwind`), then progc's CubeCL kernels against the composition. `what` names
/// the device in messages.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub(super) fn first_use<B: crate::exec::network::kernels::Kernels>(
    device: &B::Device,
    what: &str,
) -> Result<(), String> {
    use burn::tensor::{ElementConversion, Tensor};
    use std::panic::{AssertUnwindSafe, catch_unwind};

    cubecl_caches::configure();
    let sum = catch_unwind(AssertUnwindSafe(|| {
        let t = Tensor::<B, 1>::from_floats([1.0, 2.0, 3.0], device);
        t.sum().into_scalar().elem::<f32>()
    }));
    match sum {
        Ok(s) if (s - 6.0).abs() < 1e-6 => {
            // On a failure the kernels are off for the process (the composition is correct,
            // only slower).
            if let Err(why) = crate::exec::network::kernels::cube::self_check::<B>(device) {
                eprintln!(
                    "warning: progc's CubeCL kernels failed their check on {what} ({why}); \
                     attention and LayerNorm run as the composition of tensor ops instead"
                );
            }
            Ok(())
        }
        Ok(s) => Err(format!("{what} computed a wrong test sum ({s})")),
        Err(p) => Err(format!(
            "{what} failed to initialize: {}",
            super::failure::panic_message(p.as_ref())
        )),
    }
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
