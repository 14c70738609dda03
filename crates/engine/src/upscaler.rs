//! ESRGAN upscaling: Real-ESRGAN's generator (`RRDBNet`, basicsr's layout; the original ESRGAN's
//! `model.N` names are translated), read from `.safetensors`, or from a PyTorch `.pth` through
//! candle's pickle reader, which only builds tensors and never runs code. Large images run in
//! overlapping tiles, so the network's activations are those of one tile whatever the image
//! size (the output itself is held whole, as f32 while the tiles are stitched).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};

use selfdiffusion_recipe::Upscale;

use crate::error::{EngineError, Result};
use crate::init_image::Picture;
use crate::kernels::{conv2d, Conv2d};

type CResult<T> = candle_core::Result<T>;

/// Input pixels per tile side, and the context added around each tile (Real-ESRGAN's defaults
/// are 0–512 and 10).
const TILE: usize = 192;
const TILE_PAD: usize = 16;

/// The slope of the leaky ReLUs.
const SLOPE: f64 = 0.2;

/// A 3×3 convolution keeping the size.
fn conv3(vb: VarBuilder, cin: usize, cout: usize) -> CResult<Conv2d> {
    let same = Conv2dConfig {
        padding: 1,
        ..Default::default()
    };
    conv2d(cin, cout, 3, same, vb)
}

fn lrelu(xs: &Tensor) -> CResult<Tensor> {
    // max(x, 0.2·x) is the leaky ReLU for a slope below 1.
    xs.maximum(&(xs * SLOPE)?)
}

/// Five densely connected convolutions with a scaled residual.
struct DenseBlock {
    convs: Vec<Conv2d>,
}

impl DenseBlock {
    fn new(vb: VarBuilder, feat: usize, grow: usize) -> CResult<Self> {
        let convs = (0..5)
            .map(|i| {
                let out = if i == 4 { feat } else { grow };
                conv3(vb.pp(format!("conv{}", i + 1)), feat + i * grow, out)
            })
            .collect::<CResult<_>>()?;
        Ok(DenseBlock { convs })
    }

    fn forward(&self, xs: &Tensor) -> CResult<Tensor> {
        let mut features = vec![xs.clone()];
        for (i, conv) in self.convs.iter().enumerate() {
            let input = Tensor::cat(&features, 1)?;
            let out = conv.forward(&input)?;
            if i == 4 {
                return (out * 0.2)? + xs;
            }
            features.push(lrelu(&out)?);
        }
        unreachable!("five convolutions")
    }
}

/// Three dense blocks with a scaled residual.
struct Rrdb {
    blocks: [DenseBlock; 3],
}

impl Rrdb {
    fn forward(&self, xs: &Tensor) -> CResult<Tensor> {
        let mut out = xs.clone();
        for block in &self.blocks {
            out = block.forward(&out)?;
        }
        (out * 0.2)? + xs
    }
}

/// `[b, c, h·s, w·s]` → `[b, c·s², h, w]`.
fn pixel_unshuffle(xs: &Tensor, s: usize) -> CResult<Tensor> {
    let (b, c, hh, ww) = xs.dims4()?;
    let (h, w) = (hh / s, ww / s);
    xs.reshape((b, c, h, s, w, s))?
        .permute((0, 1, 3, 5, 2, 4))?
        .reshape((b, c * s * s, h, w))
}

/// The factors an image can be upscaled by.
pub const UPSCALE_FACTORS: [u32; 2] = [2, 4];

/// Checks an upscale of a `width`×`height` image by `factor` before it runs: a factor of
/// [`UPSCALE_FACTORS`], and at most `max_pixels` made (a model of `scale` makes its own scale
/// first; 1 for Lanczos).
pub fn check_upscale(
    width: usize,
    height: usize,
    factor: u32,
    scale: usize,
    max_pixels: u64,
) -> Result<()> {
    if !UPSCALE_FACTORS.contains(&factor) {
        return Err(EngineError::InvalidRequest(format!(
            "factor must be 2 or 4 (got {factor})"
        )));
    }
    let made = u64::from(factor).max(scale as u64);
    let (w, h) = (width as u64 * made, height as u64 * made);
    if w.checked_mul(h).is_none_or(|pixels| pixels > max_pixels) {
        return Err(EngineError::InvalidRequest(format!(
            "{width}×{height} upscaled would be {w}×{h}, more than the {max_pixels} pixels allowed"
        )));
    }
    Ok(())
}

/// How far an upscale is, in tiles (a Lanczos resize is one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UpscaleProgress {
    /// Tiles done.
    pub done: usize,
    /// Tiles in all.
    pub total: usize,
    /// The time left, from the tiles done so far.
    pub eta: Option<Duration>,
}

/// `picture` made `factor` times larger with `upscaler` on its device (its own scale, then
/// resampled to the size asked for) or by Lanczos, checked first ([`check_upscale`]); with how,
/// as recipes record it. `progress` hears of each tile done; setting `cancel` stops it before
/// the next tile with [`EngineError::Cancelled`].
pub fn upscale(
    picture: &Picture,
    factor: u32,
    upscaler: Option<(&Upscaler, &Device)>,
    max_pixels: u64,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(UpscaleProgress),
) -> Result<(Picture, Upscale)> {
    let scale = upscaler.map_or(1, |(model, _)| model.scale);
    check_upscale(picture.width, picture.height, factor, scale, max_pixels)?;
    let f = factor as usize;
    let (width, height) = (picture.width * f, picture.height * f);
    let (larger, name) = match upscaler {
        Some((model, device)) => (
            model
                .upscale(picture, device, cancel, progress)?
                .resized(width, height),
            model.name(),
        ),
        None => {
            let larger = picture.resized(width, height);
            progress(UpscaleProgress {
                done: 1,
                total: 1,
                eta: Some(Duration::ZERO),
            });
            (larger, "lanczos".to_owned())
        }
    };
    let how = Upscale {
        factor,
        upscaler: name,
        source_sha256: picture.sha256.clone(),
    };
    Ok((larger, how))
}

/// A loaded ESRGAN upscaler.
pub struct Upscaler {
    /// The weight file, as the recipe names it.
    pub file: PathBuf,
    /// How many times larger it makes images (1, 2 or 4).
    pub scale: usize,
    unshuffle: usize,
    conv_first: Conv2d,
    body: Vec<Rrdb>,
    conv_body: Conv2d,
    conv_up1: Conv2d,
    conv_up2: Conv2d,
    conv_hr: Conv2d,
    conv_last: Conv2d,
    tile: usize,
    pad: usize,
}

/// The error for `file` that is unreadable or not what it should be, saying why.
fn bad_file(file: &Path, reason: impl Into<String>) -> EngineError {
    EngineError::Weights {
        file: file.to_path_buf(),
        reason: reason.into(),
    }
}

/// The error for `file` that is a weights file but not an upscaler.
fn not_rrdb(file: &Path, what: &str) -> EngineError {
    bad_file(file, format!("not an ESRGAN (RRDBNet) upscaler: {what}"))
}

/// Whether `file` is a PyTorch `.pth`/`.pt` file (else safetensors).
fn is_pth(file: &Path) -> bool {
    file.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("pth") || e.eq_ignore_ascii_case("pt"))
}

/// The index of a `.pth` file's tensors (Real-ESRGAN keeps them under `params_ema` or
/// `params`; ESRGAN's are bare).
fn open_pth(file: &Path) -> Result<candle_core::pickle::PthTensors> {
    for key in [Some("params_ema"), Some("params"), None] {
        if let Ok(pth) = candle_core::pickle::PthTensors::new(file, key) {
            if !pth.tensor_infos().is_empty() {
                return Ok(pth);
            }
        }
    }
    Err(bad_file(
        file,
        "not a PyTorch weights file this reader can read",
    ))
}

/// basicsr's name for a tensor named `name` in a file (`module.` prefixes dropped, the original
/// ESRGAN layout translated).
fn canonical_name(name: &str) -> String {
    let name = name.strip_prefix("module.").unwrap_or(name);
    basicsr_name(name).unwrap_or_else(|| name.to_owned())
}

/// The scale and pixel-unshuffle factor of an RRDBNet whose first convolution takes `cin`
/// channels.
fn scale_for(cin: usize) -> Option<(usize, usize)> {
    match cin {
        3 => Some((4, 1)),
        12 => Some((2, 2)),
        48 => Some((1, 4)),
        _ => None,
    }
}

/// How many times larger the upscaler in `file` makes images, read from the shape of its first
/// convolution in the file's index alone (no weights loaded): what a server that only checks
/// requests needs.
pub fn upscaler_scale(file: &Path) -> Result<usize> {
    let shape = if is_pth(file) {
        open_pth(file)?
            .tensor_infos()
            .iter()
            .find(|(name, _)| canonical_name(name) == "conv_first.weight")
            .map(|(_, info)| info.layout.shape().dims().to_vec())
    } else {
        crate::weights_file::WeightsFile::open(file)
            .map_err(|e| bad_file(file, e))?
            .tensors()
            .into_iter()
            .find(|(name, _)| canonical_name(name) == "conv_first.weight")
            .map(|(_, info)| info.shape.clone())
    };
    match shape.as_deref() {
        Some([_, cin, _, _]) => scale_for(*cin)
            .map(|(scale, _)| scale)
            .ok_or_else(|| not_rrdb(file, &format!("{cin} input channels"))),
        Some(_) => Err(not_rrdb(file, "conv_first is not a convolution")),
        None => Err(not_rrdb(file, "it has no conv_first weight")),
    }
}

/// The tensors of `file`, with basicsr's names.
fn read_tensors(file: &Path) -> Result<HashMap<String, Tensor>> {
    let bad = |reason: String| bad_file(file, reason);
    let tensors: Vec<(String, Tensor)> = if is_pth(file) {
        let pth = open_pth(file)?;
        let names: Vec<String> = pth.tensor_infos().keys().cloned().collect();
        names
            .into_iter()
            .map(|name| {
                let tensor = pth
                    .get(&name)
                    .map_err(|e| bad(e.to_string()))?
                    .ok_or_else(|| bad(format!("tensor {name} is listed but absent")))?;
                Ok((name, tensor))
            })
            .collect::<Result<_>>()?
    } else {
        candle_core::safetensors::load(file, &Device::Cpu)
            .map_err(|e| bad(e.to_string()))?
            .into_iter()
            .collect()
    };
    Ok(tensors
        .into_iter()
        .map(|(name, t)| (canonical_name(&name), t))
        .collect())
}

/// basicsr's name for a tensor of the original ESRGAN layout (`model.0` … `model.10`).
fn basicsr_name(name: &str) -> Option<String> {
    let rest = name.strip_prefix("model.")?;
    let (index, tail) = rest.split_once('.')?;
    let plain = |n: &str| Some(format!("{n}.{tail}"));
    match index {
        "0" => plain("conv_first"),
        "3" => plain("conv_up1"),
        "6" => plain("conv_up2"),
        "8" => plain("conv_hr"),
        "10" => plain("conv_last"),
        "1" => {
            // model.1.sub.<i>.RDB<k>.conv<j>.0.<param>, or model.1.sub.<last>.<param>.
            let rest = tail.strip_prefix("sub.")?;
            let (block, rest) = rest.split_once('.')?;
            match rest.split('.').collect::<Vec<_>>().as_slice() {
                [rdb, conv, "0", param] => Some(format!(
                    "body.{block}.{}.{conv}.{param}",
                    rdb.to_ascii_lowercase()
                )),
                [param] => Some(format!("conv_body.{param}")),
                _ => None,
            }
        }
        _ => None,
    }
}

impl Upscaler {
    /// Reads an RRDBNet upscaler (`.safetensors` or `.pth`) for `device`.
    pub fn load(file: &Path, device: &Device) -> Result<Self> {
        let tensors = read_tensors(file)?;
        let not_rrdb = |what: &str| not_rrdb(file, what);
        let first = tensors
            .get("conv_first.weight")
            .ok_or_else(|| not_rrdb("it has no conv_first weight"))?;
        let (feat, cin, _, _) = first
            .dims4()
            .map_err(|_| not_rrdb("conv_first is not a convolution"))?;
        let grow = tensors
            .get("body.0.rdb1.conv1.weight")
            .ok_or_else(|| not_rrdb("it has no body.0.rdb1.conv1 weight"))?
            .dim(0)?;
        let blocks = (0..)
            .take_while(|i| tensors.contains_key(&format!("body.{i}.rdb1.conv1.weight")))
            .count();
        let (scale, unshuffle) =
            scale_for(cin).ok_or_else(|| not_rrdb(&format!("{cin} input channels")))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let wrap = |e: candle_core::Error| bad_file(file, e.to_string());
        let body = (0..blocks)
            .map(|i| {
                let bvb = vb.pp("body").pp(i.to_string());
                Ok(Rrdb {
                    blocks: [
                        DenseBlock::new(bvb.pp("rdb1"), feat, grow)?,
                        DenseBlock::new(bvb.pp("rdb2"), feat, grow)?,
                        DenseBlock::new(bvb.pp("rdb3"), feat, grow)?,
                    ],
                })
            })
            .collect::<CResult<_>>()
            .map_err(wrap)?;
        let conv = |name: &str, cout: usize| conv3(vb.pp(name), feat, cout).map_err(wrap);
        Ok(Upscaler {
            file: file.to_path_buf(),
            scale,
            unshuffle,
            conv_first: conv3(vb.pp("conv_first"), cin, feat).map_err(wrap)?,
            body,
            conv_body: conv("conv_body", feat)?,
            conv_up1: conv("conv_up1", feat)?,
            conv_up2: conv("conv_up2", feat)?,
            conv_hr: conv("conv_hr", feat)?,
            conv_last: conv("conv_last", 3)?,
            tile: TILE,
            pad: TILE_PAD,
        })
    }

    /// Its name, as recipes record it: the file's, without the extension.
    pub fn name(&self) -> String {
        self.file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The same upscaler with tiles of `tile` input pixels and `pad` pixels of context (sides
    /// rounded up to a multiple of 4).
    pub fn with_tiles(mut self, tile: usize, pad: usize) -> Self {
        self.tile = tile.max(4).div_ceil(4) * 4;
        self.pad = pad.div_ceil(4) * 4;
        self
    }

    /// The network on `xs` (`[1, 3, h, w]` in 0..1, sides multiples of 4).
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let feat = match self.unshuffle {
            1 => xs.clone(),
            s => pixel_unshuffle(xs, s)?,
        };
        let feat = self.conv_first.forward(&feat)?;
        let mut body = feat.clone();
        for block in &self.body {
            body = block.forward(&body)?;
        }
        let mut feat = (feat + self.conv_body.forward(&body)?)?;
        for conv in [&self.conv_up1, &self.conv_up2] {
            let (h, w) = (feat.dim(2)?, feat.dim(3)?);
            feat = lrelu(&conv.forward(&feat.upsample_nearest2d(2 * h, 2 * w)?)?)?;
        }
        Ok(self
            .conv_last
            .forward(&lrelu(&self.conv_hr.forward(&feat)?)?)?)
    }

    /// `picture` made `scale` times larger, tile by tile: each tile runs with `pad` pixels of
    /// its neighbours around it, and only its own part of the output is kept. `progress` hears
    /// of each tile done; setting `cancel` stops it before the next with
    /// [`EngineError::Cancelled`].
    pub fn upscale(
        &self,
        picture: &Picture,
        device: &Device,
        cancel: &AtomicBool,
        progress: &mut dyn FnMut(UpscaleProgress),
    ) -> Result<Picture> {
        let (w, h) = (picture.width, picture.height);
        // Sides padded to a multiple of 4 by repeating the edge (pixel-unshuffled nets need it).
        let (pw, ph) = (w.div_ceil(4) * 4, h.div_ceil(4) * 4);
        let (padded, _) = picture.extended_within([0, (pw - w) as u32, 0, (ph - h) as u32]);
        let input = ((padded.to_tensor(device)? + 1.0)? / 2.0)?;
        let s = self.scale;
        let total = ph.div_ceil(self.tile) * pw.div_ceil(self.tile);
        let started = Instant::now();
        let mut done = 0;
        let mut rows = Vec::new();
        for y0 in (0..ph).step_by(self.tile) {
            let y1 = (y0 + self.tile).min(ph);
            let mut row = Vec::new();
            for x0 in (0..pw).step_by(self.tile) {
                let x1 = (x0 + self.tile).min(pw);
                let (py0, px0) = (y0.saturating_sub(self.pad), x0.saturating_sub(self.pad));
                let (py1, px1) = ((y1 + self.pad).min(ph), (x1 + self.pad).min(pw));
                if cancel.load(Ordering::Relaxed) {
                    return Err(EngineError::Cancelled);
                }
                let tile = input.narrow(2, py0, py1 - py0)?.narrow(3, px0, px1 - px0)?;
                let out = self.forward(&tile)?;
                done += 1;
                progress(UpscaleProgress {
                    done,
                    total,
                    eta: Some(
                        started
                            .elapsed()
                            .mul_f64((total - done) as f64 / done as f64),
                    ),
                });
                row.push(out.narrow(2, (y0 - py0) * s, (y1 - y0) * s)?.narrow(
                    3,
                    (x0 - px0) * s,
                    (x1 - x0) * s,
                )?);
            }
            rows.push(Tensor::cat(&row, 3)?);
        }
        let out = Tensor::cat(&rows, 2)?
            .narrow(2, 0, h * s)?
            .narrow(3, 0, w * s)?;
        let rgb = (out.clamp(0f32, 1f32)? * 255.0)?
            .round()?
            .to_dtype(DType::U8)?
            .squeeze(0)?
            .permute((1, 2, 0))?
            .flatten_all()?
            .to_vec1::<u8>()?;
        Ok(Picture {
            width: w * s,
            height: h * s,
            rgb,
            sha256: picture.sha256.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upscales_are_checked_for_their_factor_and_what_the_model_makes() {
        assert!(check_upscale(100, 100, 2, 1, 40_000).is_ok());
        let err = check_upscale(100, 100, 3, 1, u64::MAX)
            .unwrap_err()
            .to_string();
        assert!(err.contains("factor must be 2 or 4 (got 3)"), "{err}");
        // A ×4 model asked for ×2 makes ×4 first.
        let err = check_upscale(100, 100, 2, 4, 40_000)
            .unwrap_err()
            .to_string();
        assert!(err.contains("would be 400×400"), "{err}");
    }

    #[test]
    fn esrgan_names_map_to_basicsr_names() {
        for (old, new) in [
            ("model.0.weight", "conv_first.weight"),
            ("model.1.sub.3.RDB2.conv4.0.bias", "body.3.rdb2.conv4.bias"),
            ("model.1.sub.23.weight", "conv_body.weight"),
            ("model.3.bias", "conv_up1.bias"),
            ("model.6.weight", "conv_up2.weight"),
            ("model.8.weight", "conv_hr.weight"),
            ("model.10.bias", "conv_last.bias"),
        ] {
            assert_eq!(basicsr_name(old).as_deref(), Some(new), "{old}");
        }
        assert_eq!(basicsr_name("conv_first.weight"), None);
    }
}
