//! Where denoising starts: pure noise for text to image, or an image noised to the level its
//! strength asks for (diffusers' `StableDiffusionImg2ImgPipeline`), and what inpainting adds
//! (`StableDiffusionInpaintPipeline`): for a 4-channel UNet the kept region is blended back after
//! every step, for a 9-channel inpainting UNet the mask and the masked image's latents are
//! appended to its input.

use candle_core::{DType, Tensor};

use crate::error::Result;
use crate::init_image::{Mask, Picture};
use crate::model::StableDiffusion;
use crate::noise::NoiseSource;
use crate::pipeline::Request;
use crate::schedulers::Scheduler;

/// The latents a run starts from, the step it starts at, and inpainting's extra work.
pub(crate) struct Start {
    /// The latents before the first step run (f32).
    pub latents: Tensor,
    /// The index of the first step run (0 unless an image sets a strength below 1).
    pub first: usize,
    /// What inpainting does at each step.
    pub inpaint: Option<Inpaint>,
    /// The inputs that were resized to the request's size, for the caller to report.
    pub resized: Vec<String>,
    /// The image's own pixels and how much of the result each pixel takes, when they are
    /// pasted back after decoding.
    pub paste_back: Option<(Picture, Vec<f32>)>,
}

impl Start {
    /// `rgb` (the decoded result) with the kept pixels pasted back, when asked.
    pub fn finish(&self, rgb: &mut [u8]) {
        if let Some((image, weights)) = &self.paste_back {
            image.pasted_under(rgb, weights);
        }
    }
}

/// Inpainting's work at each step.
pub(crate) enum Inpaint {
    /// A 4-channel UNet (diffusers' legacy path): after each step the kept region is replaced by
    /// the image's latents noised to the next step's level with the same noise (after the last
    /// step, by the image's latents themselves).
    Blend {
        /// The image's latents (scaled).
        image: Tensor,
        /// The noise that started the run.
        noise: Tensor,
        /// The latent mask, 1 where the model repaints.
        mask: Tensor,
    },
    /// A 9-channel inpainting UNet: `[mask, masked image latents]` appended to each input.
    Condition(Tensor),
}

impl Start {
    /// The UNet's input at a step: the scaled latents, with inpainting's conditioning appended.
    pub fn unet_input(&self, scaled: Tensor) -> Result<Tensor> {
        Ok(match &self.inpaint {
            Some(Inpaint::Condition(extra)) => {
                let rows = scaled.dim(0)?;
                Tensor::cat(&[scaled, extra.repeat((rows, 1, 1, 1))?], 1)?
            }
            _ => scaled,
        })
    }

    /// The latents after step `i`, with the kept region blended back when inpainting with a
    /// 4-channel UNet.
    pub fn after_step(&self, scheduler: &Scheduler, i: usize, latents: Tensor) -> Result<Tensor> {
        let Some(Inpaint::Blend { image, noise, mask }) = &self.inpaint else {
            return Ok(latents);
        };
        let kept = if i + 1 < scheduler.timesteps().len() {
            scheduler.add_noise(image, noise, i + 1)?
        } else {
            image.clone()
        };
        Ok(blend(&kept, &latents, mask)?)
    }
}

/// `ours` where `mask` is 1, `kept` where it is 0: (1 − m)·kept + m·ours.
fn blend(kept: &Tensor, ours: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let inverse = (mask.ones_like()? - mask)?;
    kept.broadcast_mul(&inverse)? + ours.broadcast_mul(mask)?
}

impl StableDiffusion {
    /// Whether the UNet is an inpainting one (latents, mask and masked-image latents in).
    pub fn inpainting_unet(&self) -> bool {
        self.unet_config.in_channels == 2 * self.vae_config.latent_channels + 1
    }

    /// Where the run of `req` starts. Draws `noise.initial` first, then one posterior noise per
    /// image encoded (the image, then the masked image), as diffusers draws them.
    pub(crate) fn start(
        &self,
        req: &Request,
        scheduler: &Scheduler,
        noise: &mut dyn NoiseSource,
        shape: &[usize],
    ) -> Result<Start> {
        let initial = noise
            .initial(shape)?
            .to_device(&self.device)?
            .to_dtype(DType::F32)?;
        let pure_noise = || -> Result<Tensor> { Ok((&initial * scheduler.init_noise_sigma())?) };
        let steps = scheduler.timesteps().len();
        let nine = self.inpainting_unet();
        let Some(input) = &req.init else {
            let inpaint = if nine {
                // Nothing to keep: the whole canvas is masked and the masked image is blank.
                let blank = Picture::from_pixels(
                    req.width,
                    req.height,
                    vec![128; req.width * req.height * 3],
                );
                let mask = Mask::everything(req.width, req.height);
                Some(self.condition(&blank, &mask, noise)?)
            } else {
                None
            };
            return Ok(Start {
                latents: pure_noise()?,
                first: 0,
                inpaint,
                resized: Vec::new(),
                paste_back: None,
            });
        };
        input.validate()?;
        let mut resized = Vec::new();
        let image = fitted(&input.image, req, "image", &mut resized);
        let mask = match &input.mask {
            Some(mask) => Some(fitted_mask(mask, req, &mut resized)),
            None if nine => Some(Mask::everything(req.width, req.height)),
            None => None,
        };
        let paste_back = match (input.paste_back, &mask) {
            (Some(blur), Some(mask)) => Some((image.clone(), mask.overlay_weights(blur))),
            _ => None,
        };
        let first = input.first_step(steps);
        let strength_max = first == 0 && mask.is_some();
        // The image's own latents: where img2img starts, and what a 4-channel inpaint keeps.
        let image_latents = if !strength_max || (mask.is_some() && !nine) {
            Some(self.encode_image(&image, noise)?)
        } else {
            None
        };
        let latents = match &image_latents {
            _ if strength_max => pure_noise()?,
            Some(encoded) if first < steps => scheduler.add_noise(encoded, &initial, first)?,
            Some(encoded) => encoded.clone(),
            None => unreachable!("encoded unless starting from pure noise"),
        };
        let inpaint = match (mask, nine) {
            (None, _) => None,
            (Some(mask), true) => Some(self.condition(&image, &mask, noise)?),
            (Some(mask), false) => Some(Inpaint::Blend {
                image: image_latents.expect("encoded for a 4-channel inpaint"),
                noise: initial,
                mask: mask.sampled(self.vae_config.scale_factor(), &self.device)?,
            }),
        };
        Ok(Start {
            latents,
            first,
            inpaint,
            resized,
            paste_back,
        })
    }

    /// The 9-channel UNet's conditioning: the latent mask and the latents of the image with
    /// the repainted pixels set to 0 (mid grey in [−1, 1]), as diffusers masks it.
    fn condition(
        &self,
        image: &Picture,
        mask: &Mask,
        noise: &mut dyn NoiseSource,
    ) -> Result<Inpaint> {
        let keep = mask_keep_tensor(mask, &self.device)?;
        let pixels = image.to_tensor(&self.device)?.broadcast_mul(&keep)?;
        let latents = self.encode_tensor(&pixels, noise)?;
        let latent_mask = mask.sampled(self.vae_config.scale_factor(), &self.device)?;
        Ok(Inpaint::Condition(Tensor::cat(&[latent_mask, latents], 1)?))
    }

    /// The scaled latents of `image`: a sample of the VAE's distribution × the scaling factor.
    fn encode_image(&self, image: &Picture, noise: &mut dyn NoiseSource) -> Result<Tensor> {
        self.encode_tensor(&image.to_tensor(&self.device)?, noise)
    }

    fn encode_tensor(&self, pixels: &Tensor, noise: &mut dyn NoiseSource) -> Result<Tensor> {
        let posterior = self.vae.encoder.encode(&pixels.to_dtype(self.vae_dtype)?)?;
        let sample_noise = noise.posterior(posterior.mean.dims())?;
        let sample = posterior.sample(&sample_noise)?.to_dtype(DType::F32)?;
        Ok((sample * self.vae_config.scaling_factor)?)
    }
}

/// 1 where `mask` keeps the pixel, 0 where it repaints: `[1, 1, h, w]`.
fn mask_keep_tensor(mask: &Mask, device: &candle_core::Device) -> Result<Tensor> {
    let values: Vec<f32> = (0..mask.height)
        .flat_map(|y| (0..mask.width).map(move |x| (x, y)))
        .map(|(x, y)| if mask.repaints(x, y) { 0.0 } else { 1.0 })
        .collect();
    Ok(Tensor::from_vec(
        values,
        (1, 1, mask.height, mask.width),
        device,
    )?)
}

/// `picture` at the request's size, noting a resize.
fn fitted(picture: &Picture, req: &Request, what: &str, resized: &mut Vec<String>) -> Picture {
    if (picture.width, picture.height) != (req.width, req.height) {
        resized.push(format!(
            "the {what} was resized from {}×{} to {}×{}",
            picture.width, picture.height, req.width, req.height
        ));
    }
    picture.resized(req.width, req.height)
}

fn fitted_mask(mask: &Mask, req: &Request, resized: &mut Vec<String>) -> Mask {
    if (mask.width, mask.height) != (req.width, req.height) {
        resized.push(format!(
            "the mask was resized from {}×{} to {}×{}",
            mask.width, mask.height, req.width, req.height
        ));
    }
    mask.resized(req.width, req.height)
}
