//! Choosing the device and the weight precision.

use candle_core::{DType, Device};

use crate::error::{EngineError, Result};

/// Which device to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The best available: CUDA, then Metal, then CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// A CUDA GPU by ordinal.
    Cuda(usize),
    /// The Metal GPU.
    Metal,
}

impl DeviceChoice {
    /// Parses `auto`, `cpu`, `cuda`, `cuda:N` or `metal`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            "metal" => Ok(DeviceChoice::Metal),
            other => match other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
                Some(n) => Ok(DeviceChoice::Cuda(n)),
                None => Err(EngineError::Device(format!(
                    "unknown device {s:?}; use auto, cpu, cuda, cuda:N or metal"
                ))),
            },
        }
    }

    /// Opens the device; a GPU this build was not compiled for is a clear error.
    pub fn open(self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(n) => {
                if !candle_core::utils::cuda_is_available() {
                    return Err(EngineError::Device(
                        "this build has no CUDA support; rebuild with `--features cuda` (needs the CUDA toolkit)".into(),
                    ));
                }
                Device::new_cuda(n)
                    .map_err(|e| EngineError::Device(format!("cannot open CUDA device {n}: {e}")))
            }
            DeviceChoice::Metal => {
                if !candle_core::utils::metal_is_available() {
                    return Err(EngineError::Device(
                        "this build has no Metal support; rebuild with `--features metal` on macOS"
                            .into(),
                    ));
                }
                Device::new_metal(0)
                    .map_err(|e| EngineError::Device(format!("cannot open the Metal device: {e}")))
            }
            DeviceChoice::Auto => {
                if candle_core::utils::cuda_is_available() {
                    if let Ok(d) = Device::new_cuda(0) {
                        return Ok(d);
                    }
                }
                if candle_core::utils::metal_is_available() {
                    if let Ok(d) = Device::new_metal(0) {
                        return Ok(d);
                    }
                }
                Ok(Device::Cpu)
            }
        }
    }
}

/// The default weight precision: f16 on a GPU, f32 on the CPU.
pub fn default_dtype(device: &Device) -> DType {
    if device.is_cpu() {
        DType::F32
    } else {
        DType::F16
    }
}
