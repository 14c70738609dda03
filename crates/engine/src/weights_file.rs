//! A `.safetensors` file read one tensor at a time with plain reads.
//!
//! Loading through a memory map leaves every page it touched resident until the map is dropped,
//! so for a while the process holds the file's mapped pages and the copies made from them: twice
//! the weights. Here the map is used only while the header is checked (its pages alone are
//! touched); each tensor is then read from the file straight into the buffer the tensor keeps,
//! so loading peaks at the weights' own size.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor, WithDType};
use candle_nn::var_builder::SimpleBackend;
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::Dtype;

/// An open `.safetensors` file whose header was checked: every tensor's offsets lie inside the
/// file and match its dtype and shape.
pub struct WeightsFile {
    path: PathBuf,
    file: Mutex<File>,
    /// Where the tensor data starts (after the 8-byte length and the JSON header).
    data_start: u64,
    metadata: Metadata,
}

impl WeightsFile {
    /// Opens `path` and checks its header; the error says what is wrong with the file.
    pub fn open(path: &Path) -> Result<Self, String> {
        let file = File::open(path).map_err(|e| e.to_string())?;
        // SAFETY: mapped read-only and only for the header check below; the file is not
        // modified meanwhile (a model file is not written while the app runs).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| e.to_string())?;
        let (header_len, metadata) =
            safetensors::SafeTensors::read_metadata(&map).map_err(|e| e.to_string())?;
        drop(map);
        Ok(WeightsFile {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            data_start: 8 + header_len as u64,
            metadata,
        })
    }

    /// Every tensor's name and description (dtype, shape, offsets).
    pub fn tensors(&self) -> Vec<(String, &TensorInfo)> {
        self.metadata.tensors().into_iter().collect()
    }

    /// The description of tensor `name`, if the file has it.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.metadata.info(name)
    }

    /// Reads tensor `name` (in its stored dtype) onto `device`.
    pub fn load(&self, name: &str, device: &Device) -> candle_core::Result<Tensor> {
        let info = self.info(name).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "cannot find tensor {name} in {}",
                self.path.display()
            ))
            .bt()
        })?;
        let offset = self.data_start + info.data_offsets.0 as u64;
        let bytes = info.data_offsets.1 - info.data_offsets.0;
        let shape = info.shape.as_slice();
        let tensor = match info.dtype {
            Dtype::F32 => self.read_typed::<f32>(offset, bytes, shape),
            Dtype::F16 => self.read_typed::<half::f16>(offset, bytes, shape),
            Dtype::BF16 => self.read_typed::<half::bf16>(offset, bytes, shape),
            Dtype::F64 => self.read_typed::<f64>(offset, bytes, shape),
            Dtype::I64 => self.read_typed::<i64>(offset, bytes, shape),
            Dtype::U32 => self.read_typed::<u32>(offset, bytes, shape),
            Dtype::U8 => self.read_typed::<u8>(offset, bytes, shape),
            other => Err(candle_core::Error::Msg(format!(
                "tensor {name} is stored as {other:?}, which the engine does not read"
            ))
            .bt()),
        }?;
        tensor.to_device(device)
    }

    /// `bytes` bytes at `offset`, read into a buffer of `T` (safetensors data is little-endian,
    /// as every CPU the engine builds for).
    fn read_typed<T: WithDType>(
        &self,
        offset: u64,
        bytes: usize,
        shape: &[usize],
    ) -> candle_core::Result<Tensor> {
        let count = bytes / std::mem::size_of::<T>();
        let mut values = vec![T::from_f64(0.0); count];
        // SAFETY: `values` owns `count · size_of::<T>()` initialised bytes, and every bit
        // pattern is a valid value of the numeric types read here.
        let raw =
            unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<u8>(), bytes) };
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(raw))
            .map_err(|e| {
                candle_core::Error::Msg(format!("reading {}: {e}", self.path.display())).bt()
            })?;
        drop(file);
        Tensor::from_vec(values, shape, &Device::Cpu)
    }
}

/// `tensor` if it has `shape`, else candle's shape-mismatch error naming tensor `name`.
pub(crate) fn expect_shape(
    tensor: Tensor,
    shape: Shape,
    name: &str,
) -> candle_core::Result<Tensor> {
    if tensor.shape() != &shape {
        return Err(candle_core::Error::UnexpectedShape {
            msg: format!("shape mismatch for {name}"),
            expected: shape,
            got: tensor.shape().clone(),
        }
        .bt());
    }
    Ok(tensor)
}

impl SimpleBackend for WeightsFile {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        expect_shape(self.get_unchecked(name, dtype, dev)?, shape, name)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        // Converted on the CPU, then moved: a GPU gets the tensor in its final dtype.
        self.load(name, &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.info(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn write(dir: &Path) -> PathBuf {
        let path = dir.join("w.safetensors");
        let tensors: HashMap<String, Tensor> = [
            (
                "a".to_owned(),
                Tensor::arange(0f32, 6.0, &Device::Cpu)
                    .unwrap()
                    .reshape((2, 3))
                    .unwrap(),
            ),
            (
                "b".to_owned(),
                Tensor::new(&[1.5f32, -2.0], &Device::Cpu)
                    .unwrap()
                    .to_dtype(DType::F16)
                    .unwrap(),
            ),
        ]
        .into();
        candle_core::safetensors::save(&tensors, &path).unwrap();
        path
    }

    #[test]
    fn reads_what_candle_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let file = WeightsFile::open(&write(dir.path())).unwrap();
        let a = file
            .get(
                (2, 3).into(),
                "a",
                candle_nn::Init::Const(0.),
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
        assert_eq!(a.to_vec2::<f32>().unwrap(), [[0., 1., 2.], [3., 4., 5.]]);
        let b = file.get_unchecked("b", DType::F32, &Device::Cpu).unwrap();
        assert_eq!(b.to_vec1::<f32>().unwrap(), [1.5, -2.0]);
        assert_eq!(file.load("b", &Device::Cpu).unwrap().dtype(), DType::F16);
        assert!(file.contains_tensor("a") && !file.contains_tensor("c"));
        let wrong = file.get(
            (3, 2).into(),
            "a",
            candle_nn::Init::Const(0.),
            DType::F32,
            &Device::Cpu,
        );
        assert!(wrong
            .unwrap_err()
            .to_string()
            .contains("shape mismatch for a"));
        assert!(file.load("c", &Device::Cpu).is_err());
    }

    #[test]
    fn a_truncated_file_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path());
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(WeightsFile::open(&path).is_err());
        std::fs::write(&path, b"not a safetensors file").unwrap();
        assert!(WeightsFile::open(&path).is_err());
    }
}
