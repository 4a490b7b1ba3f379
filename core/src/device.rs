//! Compute device selection. CUDA is chosen only after probing for the NVIDIA driver:
//! creating a CUDA tensor without `libcuda.so` panics inside cudarc.

use std::str::FromStr;

/// Where local training runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComputeDevice {
    /// burn's Flex CPU backend.
    Cpu,
    /// burn's CUDA backend on GPU `N`.
    Cuda(usize),
}

impl FromStr for ComputeDevice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            _ => match s.strip_prefix("cuda:") {
                Some(n) => Ok(Self::Cuda(n.parse().map_err(|_| {
                    anyhow::anyhow!("bad device `{s}`: the GPU index must be a number, e.g. cuda:0")
                })?)),
                None => anyhow::bail!("unknown device `{s}`: use `cpu`, `cuda` or `cuda:N`"),
            },
        }
    }
}

impl std::fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// True when the NVIDIA driver library can be loaded.
pub fn cuda_driver_present() -> bool {
    ["libcuda.so.1", "libcuda.so", "nvcuda.dll"]
        .iter()
        .any(|name| {
            // SAFETY: loading the driver library runs its initializers, as cudarc itself would.
            unsafe { libloading::Library::new(name) }.is_ok()
        })
}

/// Resolves a requested device: CUDA without a driver falls back to the CPU with a warning.
pub fn resolve(requested: ComputeDevice) -> ComputeDevice {
    match requested {
        ComputeDevice::Cpu => ComputeDevice::Cpu,
        ComputeDevice::Cuda(i) if !cfg!(feature = "cuda") => {
            tracing::warn!(
                "device cuda:{i} requested, but this fedssl build has no CUDA support (rebuild \
                 with `cargo build --release --features cuda`): training on the CPU instead"
            );
            ComputeDevice::Cpu
        }
        ComputeDevice::Cuda(i) => {
            if cuda_driver_present() {
                ComputeDevice::Cuda(i)
            } else {
                tracing::warn!(
                    "device cuda:{i} requested, but no NVIDIA driver (libcuda.so) was found on \
                     this machine: training on the CPU instead"
                );
                ComputeDevice::Cpu
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_fallback() {
        assert_eq!("cpu".parse::<ComputeDevice>().unwrap(), ComputeDevice::Cpu);
        assert_eq!(
            "cuda:2".parse::<ComputeDevice>().unwrap(),
            ComputeDevice::Cuda(2)
        );
        assert!("tpu".parse::<ComputeDevice>().is_err());
        assert!("cuda:x".parse::<ComputeDevice>().is_err());
        if !cfg!(feature = "cuda") || !cuda_driver_present() {
            assert_eq!(resolve(ComputeDevice::Cuda(0)), ComputeDevice::Cpu);
        }
    }
}
