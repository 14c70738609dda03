//! Cheap previews: a fixed linear map from SD latents to RGB, one pixel per latent cell.

use candle_core::{DType, Tensor};

use crate::error::Result;

/// Latent channel → RGB weights for Stable Diffusion 1.x/2.x latents.
const LATENT_RGB: [[f32; 3]; 4] = [
    [0.298, 0.207, 0.208],
    [0.187, 0.286, 0.173],
    [-0.158, 0.189, 0.264],
    [-0.184, -0.271, -0.473],
];

/// A small RGB preview.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// RGB, 8 bits per channel.
    pub rgb: Vec<u8>,
}

impl Preview {
    /// A preview of `[1, 4, h, w]` latents; `None` for latents with another channel count.
    pub fn from_latents(latents: &Tensor) -> Result<Option<Preview>> {
        let (_, channels, height, width) = latents.dims4()?;
        if channels != LATENT_RGB.len() {
            return Ok(None);
        }
        let values = latents
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let plane = height * width;
        let mut rgb = Vec::with_capacity(plane * 3);
        for p in 0..plane {
            let mut pixel = [0f32; 3];
            for (k, weights) in LATENT_RGB.iter().enumerate() {
                for (out, w) in pixel.iter_mut().zip(weights) {
                    *out += values[k * plane + p] * w;
                }
            }
            rgb.extend(pixel.map(|v| (((v + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0).round() as u8));
        }
        Ok(Some(Preview { width, height, rgb }))
    }

    /// The preview as a PNG file.
    pub fn to_png(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .expect("writing a PNG header to memory cannot fail");
        writer
            .write_image_data(&self.rgb)
            .expect("the preview buffer matches its size");
        drop(writer);
        out
    }
}
