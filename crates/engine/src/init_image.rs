//! The pictures a request can start from: the image (img2img) and the mask of the part to
//! repaint (inpainting), decoded once, with a cap on their pixels, and prepared for the VAE as
//! diffusers' `VaeImageProcessor` prepares them.

use std::fmt;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, ImageDecoder, ImageReader, RgbImage};
use selfdiffusion_recipe::SourceImage;
use sha2::{Digest, Sha256};

use crate::error::{EngineError, Result};

/// The most pixels an input image or mask may have (64 megapixels, e.g. 8192²), unless the
/// caller sets its own cap.
pub const MAX_INPUT_PIXELS: u64 = 8192 * 8192;

/// An 8-bit RGB picture.
#[derive(Clone, PartialEq, Eq)]
pub struct Picture {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// RGB, 8 bits per channel, row-major.
    pub rgb: Vec<u8>,
    /// SHA-256 (hex) of the file it was decoded from, as recipes name it.
    pub sha256: String,
}

/// A greyscale mask: white repaints, black keeps (values at or above 128 count as white).
#[derive(Clone, PartialEq, Eq)]
pub struct Mask {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// One byte per pixel, row-major.
    pub luma: Vec<u8>,
    /// SHA-256 (hex) of the file it was decoded from (of its pixels when made here).
    pub sha256: String,
}

/// SHA-256 of `bytes`, in hex.
fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl fmt::Debug for Picture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Picture({}×{})", self.width, self.height)
    }
}

impl fmt::Debug for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mask({}×{})", self.width, self.height)
    }
}

/// Decodes an image file's bytes (PNG, JPEG or WebP) of at most `max_pixels` pixels.
fn decode(bytes: &[u8], what: &str, max_pixels: u64) -> Result<DynamicImage> {
    let bad = |reason: String| EngineError::BadImage {
        what: what.to_owned(),
        reason,
    };
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(e.to_string()))?;
    if reader.format().is_none() {
        return Err(bad("not a PNG, JPEG or WebP image".into()));
    }
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| bad(format!("unreadable: {e}")))?;
    if w == 0 || h == 0 {
        return Err(bad(format!("the image is empty ({w}×{h})")));
    }
    if u64::from(w) * u64::from(h) > max_pixels {
        return Err(bad(format!(
            "{w}×{h} is more than the {max_pixels} pixels allowed"
        )));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(e.to_string()))?;
    let corrupt =
        |e: image::ImageError| bad(format!("cannot be decoded (truncated or corrupt?): {e}"));
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    // A camera's EXIF orientation: the picture as it is meant to be seen.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    image.apply_orientation(orientation);
    Ok(image)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl Picture {
    /// Decodes an image file's bytes (any alpha is dropped).
    pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<Picture> {
        Ok(Self::from_rgb(
            decode(bytes, "the image to start from", max_pixels)?.into_rgb8(),
            sha256_hex(bytes),
        ))
    }

    /// Reads and decodes an image file.
    pub fn open(path: &Path, max_pixels: u64) -> Result<Picture> {
        Self::decode(&read(path)?, max_pixels).map_err(|e| named(e, path))
    }

    fn from_rgb(image: RgbImage, sha256: String) -> Picture {
        Picture {
            width: image.width() as usize,
            height: image.height() as usize,
            rgb: image.into_raw(),
            sha256,
        }
    }

    /// A picture made from pixels here (not decoded from a file).
    pub fn from_pixels(width: usize, height: usize, rgb: Vec<u8>) -> Picture {
        Picture {
            width,
            height,
            sha256: sha256_hex(&rgb),
            rgb,
        }
    }

    fn image(&self) -> RgbImage {
        RgbImage::from_raw(self.width as u32, self.height as u32, self.rgb.clone())
            .expect("a picture's bytes fit its size")
    }

    /// This picture at `width`×`height` (Lanczos, as diffusers resizes), or itself.
    pub fn resized(&self, width: usize, height: usize) -> Picture {
        if (width, height) == (self.width, self.height) {
            return self.clone();
        }
        Self::from_rgb(
            image::imageops::resize(
                &self.image(),
                width as u32,
                height as u32,
                FilterType::Lanczos3,
            ),
            self.sha256.clone(),
        )
    }

    /// Outpainting's canvas: this picture with `[left, right, top, bottom]` pixels added, the
    /// new pixels copied from the nearest edge, and the mask that repaints exactly them; refused
    /// when it would have more than `max_pixels` pixels.
    pub fn extended(&self, margins: [u32; 4], max_pixels: u64) -> Result<(Picture, Mask)> {
        let [left, right, top, bottom] = margins.map(u64::from);
        let (width, height) = (
            self.width as u64 + left + right,
            self.height as u64 + top + bottom,
        );
        if width
            .checked_mul(height)
            .is_none_or(|pixels| pixels > max_pixels)
        {
            return Err(EngineError::InvalidRequest(format!(
                "outpainting would make a {width}×{height} canvas, more than the {max_pixels} pixels allowed"
            )));
        }
        Ok(self.extended_within(margins))
    }

    /// [`Picture::extended`] for margins already known to fit.
    pub(crate) fn extended_within(&self, margins: [u32; 4]) -> (Picture, Mask) {
        let [left, right, top, bottom] = margins.map(|m| m as usize);
        let (width, height) = (self.width + left + right, self.height + top + bottom);
        let mut rgb = Vec::with_capacity(width * height * 3);
        let mut luma = Vec::with_capacity(width * height);
        for y in 0..height {
            let sy = y.saturating_sub(top).min(self.height - 1);
            for x in 0..width {
                let sx = x.saturating_sub(left).min(self.width - 1);
                let at = (sy * self.width + sx) * 3;
                rgb.extend_from_slice(&self.rgb[at..at + 3]);
                let inside =
                    (left..left + self.width).contains(&x) && (top..top + self.height).contains(&y);
                luma.push(if inside { 0 } else { 255 });
            }
        }
        let picture = Picture {
            width,
            height,
            rgb,
            sha256: self.sha256.clone(),
        };
        (picture, Mask::from_luma(width, height, luma))
    }

    /// `[1, 3, h, w]` in [−1, 1]: value / 255 · 2 − 1, as diffusers normalises.
    pub fn to_tensor(&self, device: &Device) -> Result<Tensor> {
        let values: Vec<f32> = self
            .rgb
            .iter()
            .map(|&v| f32::from(v) / 255.0 * 2.0 - 1.0)
            .collect();
        Ok(
            Tensor::from_vec(values, (1, self.height, self.width, 3), device)?
                .permute((0, 3, 1, 2))?
                .contiguous()?,
        )
    }
}

impl Mask {
    /// Decodes a mask file's bytes; colour is converted to grey (luma), alpha dropped.
    pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<Mask> {
        let grey: GrayImage = decode(bytes, "the mask", max_pixels)?.into_luma8();
        Ok(Self::from_grey(grey, sha256_hex(bytes)))
    }

    /// Reads and decodes a mask file.
    pub fn open(path: &Path, max_pixels: u64) -> Result<Mask> {
        Self::decode(&read(path)?, max_pixels).map_err(|e| named(e, path))
    }

    fn from_grey(image: GrayImage, sha256: String) -> Mask {
        Mask {
            width: image.width() as usize,
            height: image.height() as usize,
            luma: image.into_raw(),
            sha256,
        }
    }

    /// A mask made from pixels here (not decoded from a file).
    pub fn from_luma(width: usize, height: usize, luma: Vec<u8>) -> Mask {
        Mask {
            width,
            height,
            sha256: sha256_hex(&luma),
            luma,
        }
    }

    /// This mask at `width`×`height` (Lanczos, as diffusers resizes), or itself.
    pub fn resized(&self, width: usize, height: usize) -> Mask {
        if (width, height) == (self.width, self.height) {
            return self.clone();
        }
        let image = GrayImage::from_raw(self.width as u32, self.height as u32, self.luma.clone())
            .expect("a mask's bytes fit its size");
        Self::from_grey(
            image::imageops::resize(&image, width as u32, height as u32, FilterType::Lanczos3),
            self.sha256.clone(),
        )
    }

    /// Whether the pixel at `(x, y)` is repainted: value / 255 ≥ 0.5, diffusers' binarisation
    /// (128 repaints, 127 keeps).
    pub fn repaints(&self, x: usize, y: usize) -> bool {
        f32::from(self.luma[y * self.width + x]) / 255.0 >= 0.5
    }

    /// The binarised mask at `step`-pixel intervals, `[1, 1, h / step, w / step]` of 0 and 1:
    /// the top-left pixel of each block, as `F.interpolate(mode="nearest")` picks it.
    pub fn sampled(&self, step: usize, device: &Device) -> Result<Tensor> {
        let (h, w) = (self.height / step, self.width / step);
        let values: Vec<f32> = (0..h)
            .flat_map(|i| (0..w).map(move |j| (i, j)))
            .map(|(i, j)| f32::from(u8::from(self.repaints(j * step, i * step))))
            .collect();
        Ok(Tensor::from_vec(values, (1, 1, h, w), device)?)
    }

    /// A mask of `width`×`height` that repaints everything.
    pub fn everything(width: usize, height: usize) -> Mask {
        Mask::from_luma(width, height, vec![255; width * height])
    }
}

/// `error`, naming the file it came from.
fn named(error: EngineError, path: &Path) -> EngineError {
    match error {
        EngineError::BadImage { what, reason } => EngineError::BadImage {
            what: format!("{what} ({})", path.display()),
            reason,
        },
        other => other,
    }
}

/// What a request starts from instead of pure noise.
#[derive(Debug, Clone)]
pub struct ImageInput {
    /// The image (resized to the request's size when it differs).
    pub image: Arc<Picture>,
    /// How much of the image is redrawn, 0 to 1: the share of the steps that run (0 returns
    /// the image through the VAE, 1 starts from noise).
    pub strength: f64,
    /// The part to repaint; none redraws the whole image.
    pub mask: Option<Arc<Mask>>,
    /// Outpainting: the pixels added left, right, top and bottom of the image the user gave
    /// (`image` and `mask` are the extended canvas; see [`Picture::extended`]).
    pub outpaint: Option<[u32; 4]>,
    /// With a mask: after decoding, put the image's own pixels back where the mask keeps them,
    /// blended across the mask's edge blurred by this many pixels (AUTOMATIC1111's overlay and
    /// "mask blur"; diffusers does not, so `None` matches it).
    pub paste_back: Option<u32>,
}

/// The largest mask blur of a paste-back, in pixels.
pub const MAX_MASK_BLUR: u32 = 64;

impl Mask {
    /// How much of the generated image each pixel takes when pasting back, 0 to 1: the
    /// binarised mask, blurred (Gaussian, σ = `blur` / 2) when `blur` > 0.
    pub fn overlay_weights(&self, blur: u32) -> Vec<f32> {
        let binary: Vec<u8> = (0..self.height)
            .flat_map(|y| (0..self.width).map(move |x| (x, y)))
            .map(|(x, y)| if self.repaints(x, y) { 255 } else { 0 })
            .collect();
        let binary = GrayImage::from_raw(self.width as u32, self.height as u32, binary)
            .expect("a mask's bytes fit its size");
        let soft = if blur > 0 {
            image::imageops::blur(&binary, blur as f32 / 2.0)
        } else {
            binary
        };
        soft.into_raw()
            .into_iter()
            .map(|v| f32::from(v) / 255.0)
            .collect()
    }
}

impl Picture {
    /// `generated` with this picture's pixels put back by `weights` (1 takes the generated
    /// pixel, 0 this picture's); both are the same size.
    pub fn pasted_under(&self, generated: &mut [u8], weights: &[f32]) {
        for (p, &w) in weights.iter().enumerate() {
            for c in 0..3 {
                let i = p * 3 + c;
                let mixed = f32::from(self.rgb[i]) * (1.0 - w) + f32::from(generated[i]) * w;
                generated[i] = mixed.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

impl ImageInput {
    /// The step the denoising starts at, of `steps`: diffusers' `get_timesteps`
    /// (`init_timestep = min(int(steps · strength), steps)`, start = steps − init_timestep).
    pub fn first_step(&self, steps: usize) -> usize {
        let run = ((steps as f64 * self.strength) as usize).min(steps);
        steps - run
    }

    /// What a recipe records of this input.
    pub fn recipe(&self) -> SourceImage {
        SourceImage {
            image_sha256: self.image.sha256.clone(),
            strength: self.strength,
            mask_sha256: match self.outpaint {
                // The mask of an outpaint follows from its margins.
                Some(_) => None,
                None => self.mask.as_ref().map(|m| m.sha256.clone()),
            },
            outpaint: self.outpaint,
            paste_back: self.paste_back,
        }
    }

    /// Checks the strength and the paste-back's blur.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.strength) {
            return Err(EngineError::InvalidRequest(format!(
                "strength {} is outside 0 to 1",
                self.strength
            )));
        }
        if let Some(blur) = self.paste_back {
            if blur > MAX_MASK_BLUR {
                return Err(EngineError::InvalidRequest(format!(
                    "the mask blur is {blur} pixels; at most {MAX_MASK_BLUR} are allowed"
                )));
            }
            if self.mask.is_none() {
                return Err(EngineError::InvalidRequest(
                    "pasting the image back needs a mask (or an outpaint)".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(image: DynamicImage) -> Vec<u8> {
        let mut bytes = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
            .unwrap();
        bytes
    }

    #[test]
    fn strength_picks_the_first_step_as_diffusers() {
        let input = |strength| ImageInput {
            image: Arc::new(Picture::from_pixels(1, 1, vec![0; 3])),
            strength,
            mask: None,
            outpaint: None,
            paste_back: None,
        };
        assert_eq!(input(0.6).first_step(5), 2);
        assert_eq!(input(0.75).first_step(4), 1);
        assert_eq!(input(1.0).first_step(4), 0);
        assert_eq!(input(0.0).first_step(4), 4);
        assert_eq!(input(0.3).first_step(30), 21);
        assert!(input(1.5).validate().is_err());
        assert!(input(f64::NAN).validate().is_err());
    }

    #[test]
    fn bad_files_get_clear_errors() {
        let err = |bytes: &[u8]| {
            Picture::decode(bytes, MAX_INPUT_PIXELS)
                .unwrap_err()
                .to_string()
        };
        assert!(err(b"not an image at all").contains("not a PNG"));
        let whole = png(DynamicImage::new_rgb8(16, 16));
        assert!(
            err(&whole[..whole.len() / 2]).contains("truncated"),
            "{}",
            err(&whole[..whole.len() / 2])
        );
        let big = png(DynamicImage::new_rgb8(64, 64));
        let e = Picture::decode(&big, 32 * 32).unwrap_err().to_string();
        assert!(e.contains("64×64") && e.contains("1024 pixels"), "{e}");
    }

    #[test]
    fn a_cameras_exif_orientation_is_applied() {
        use image::ImageEncoder;
        // A minimal little-endian TIFF header with one IFD entry: Orientation (0x0112) = 6,
        // "rotate 90° clockwise to view".
        let exif = [
            0x49, 0x49, 0x2A, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0,
            0, 0,
        ];
        let mut bytes = Vec::new();
        let mut encoder = image::codecs::png::PngEncoder::new(&mut bytes);
        encoder.set_exif_metadata(exif.to_vec()).unwrap();
        encoder
            .write_image(
                &[255, 0, 0, 0, 0, 255],
                2,
                1,
                image::ExtendedColorType::Rgb8,
            )
            .unwrap();
        let picture = Picture::decode(&bytes, MAX_INPUT_PIXELS).unwrap();
        assert_eq!((picture.width, picture.height), (1, 2));
        assert_eq!(picture.rgb, vec![255, 0, 0, 0, 0, 255]);
    }

    #[test]
    fn colour_masks_become_grey_and_binarise_at_half() {
        let mut rgb = image::RgbImage::new(2, 1);
        rgb.put_pixel(0, 0, image::Rgb([128, 128, 128]));
        rgb.put_pixel(1, 0, image::Rgb([127, 127, 127]));
        let mask = Mask::decode(&png(DynamicImage::ImageRgb8(rgb)), MAX_INPUT_PIXELS).unwrap();
        assert_eq!(mask.luma, vec![128, 127]);
        assert!(mask.repaints(0, 0));
        assert!(!mask.repaints(1, 0));
    }

    #[test]
    fn outpainting_extends_from_the_edges_and_masks_only_the_new_pixels() {
        let picture = Picture::from_pixels(2, 1, vec![10, 20, 30, 40, 50, 60]);
        let (canvas, mask) = picture.extended([1, 2, 1, 0], MAX_INPUT_PIXELS).unwrap();
        let err = picture
            .extended([u32::MAX, u32::MAX, 0, 0], MAX_INPUT_PIXELS)
            .unwrap_err();
        assert!(err.to_string().contains("more than the"), "{err}");
        // Sides of 2³² each: their product wraps a u64 to 0, which must not pass.
        let big = 1u32 << 31;
        let err = Picture::from_pixels(64, 64, vec![0; 64 * 64 * 3])
            .extended([big, big - 64, big, big - 64], MAX_INPUT_PIXELS)
            .unwrap_err();
        assert!(err.to_string().contains("4294967296×4294967296"), "{err}");
        assert_eq!((canvas.width, canvas.height), (5, 2));
        assert_eq!(canvas.sha256, picture.sha256);
        let px = |x: usize, y: usize| &canvas.rgb[(y * 5 + x) * 3..(y * 5 + x) * 3 + 3];
        assert_eq!(px(0, 0), &[10, 20, 30]);
        assert_eq!(px(1, 1), &[10, 20, 30]);
        assert_eq!(px(2, 1), &[40, 50, 60]);
        assert_eq!(px(4, 0), &[40, 50, 60]);
        assert_eq!(
            mask.luma,
            vec![255, 255, 255, 255, 255, 255, 0, 0, 255, 255]
        );
    }

    #[test]
    fn paste_back_keeps_the_unmasked_pixels_and_feathers_the_edge() {
        let mask = Mask::from_luma(4, 1, vec![0, 0, 255, 255]);
        assert_eq!(mask.overlay_weights(0), vec![0.0, 0.0, 1.0, 1.0]);
        let original = Picture::from_pixels(4, 1, vec![10; 12]);
        let mut generated = vec![200; 12];
        original.pasted_under(&mut generated, &mask.overlay_weights(0));
        assert_eq!(generated, [vec![10; 6], vec![200; 6]].concat());
        let soft = Mask::from_luma(16, 1, [vec![0; 8], vec![255; 8]].concat()).overlay_weights(4);
        assert!(soft[0] < 0.05 && soft[15] > 0.95, "{soft:?}");
        assert!(
            soft[7] > 0.1 && soft[8] < 0.9,
            "the edge is blended: {soft:?}"
        );
    }

    #[test]
    fn the_latent_mask_takes_each_blocks_top_left_pixel() {
        let mut mask = Mask::from_luma(4, 4, vec![0; 16]);
        mask.luma[0] = 255; // top-left of block (0, 0)
        mask.luma[3] = 255; // inside block (0, 1), not its top-left
        mask.luma[2 * 4 + 2] = 200; // top-left of block (1, 1)
        let sampled = mask.sampled(2, &Device::Cpu).unwrap();
        assert_eq!(
            sampled.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            vec![1.0, 0.0, 0.0, 1.0]
        );
    }
}
