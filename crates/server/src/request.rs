//! The `generate` body checked against the server's limits, styles applied.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use selfdiffusion_engine::{ImageInput, Mask, Picture};
use selfdiffusion_models::LoraEntry;
use selfdiffusion_protocol::{GenerateRequest, Limits, StyleRef};
use selfdiffusion_recipe::take_lora_tags;
use selfdiffusion_styles::Style;

/// A validated job request, styles applied.
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// The user's prompt.
    pub user_prompt: String,
    /// The user's negative prompt.
    pub user_negative_prompt: String,
    /// The prompt sent to the model.
    pub prompt: String,
    /// The negative prompt sent to the model.
    pub negative_prompt: String,
    /// The style names applied.
    pub styles: Vec<String>,
    /// Images to make.
    pub samples: usize,
    /// Steps.
    pub steps: usize,
    /// Guidance.
    pub guidance: f64,
    /// Seed of the first image.
    pub seed: u64,
    /// Width.
    pub width: usize,
    /// Height.
    pub height: usize,
    /// LoRA files and their weights (the request's `loras`, then its prompt's tags).
    pub loras: Vec<(PathBuf, f64)>,
    /// The image to start from, with its mask (img2img, inpainting, outpainting).
    pub init: Option<ImageInput>,
    /// A second pass at a larger size ("hires fix").
    pub hires: Option<selfdiffusion_recipe::HiresFix>,
}

/// What an image a request carries may be: at most `bytes` long and `pixels` large.
#[derive(Debug, Clone, Copy)]
pub struct InputCaps {
    /// Largest file, in bytes.
    pub bytes: usize,
    /// Most pixels.
    pub pixels: u64,
}

/// What every request is checked against: the server's limits (within its model's), the
/// served model's name, the built-in styles, the served LoRAs and the caps on images; the same
/// checks run when a request arrives and when a restart resumes it.
#[derive(Clone)]
pub struct Checks {
    /// What a request may ask for.
    pub limits: Limits,
    /// The served model's name.
    pub model_name: String,
    /// The styles clients may name.
    pub styles: Vec<Style>,
    /// The LoRAs clients may name.
    pub loras: selfdiffusion_models::LoraLibrary,
    /// The largest image file a request may carry, and its most pixels.
    pub caps: InputCaps,
    /// The scale of the server's ESRGAN upscaler (1: Lanczos).
    pub upscaler_scale: u32,
}

impl Checks {
    /// A `generate` body checked ([`validate`]) against the LoRAs served now.
    pub fn generate(&self, body: GenerateRequest) -> Result<JobRequest, String> {
        let loras = self
            .loras
            .list()
            .map_err(|e| format!("the server cannot list its LoRAs: {e}"))?;
        validate(
            body,
            &self.limits,
            &self.model_name,
            &self.styles,
            &loras,
            self.caps,
        )
    }

    /// A `generate` body checked, and the form it is written down in: the body with the seed
    /// chosen now, so a restart resumes the job as it was accepted.
    pub fn accept(
        &self,
        body: GenerateRequest,
    ) -> Result<(JobRequest, crate::store::StoredRequest), String> {
        let mut stored = body.clone();
        let request = self.generate(body)?;
        stored.seed = Some(request.seed);
        Ok((
            request,
            crate::store::StoredRequest::Generate(Box::new(stored)),
        ))
    }

    /// An `upscale` body checked ([`validate_upscale`]).
    pub fn upscale(
        &self,
        body: selfdiffusion_protocol::UpscaleRequest,
    ) -> Result<UpscaleJob, String> {
        validate_upscale(body, self.caps, self.upscaler_scale)
    }

    /// A stored request checked again, as a job to run.
    pub fn resume(
        &self,
        request: &crate::store::StoredRequest,
    ) -> Result<crate::jobs::Work, String> {
        Ok(match request {
            crate::store::StoredRequest::Generate(body) => self.generate((**body).clone())?.into(),
            crate::store::StoredRequest::Upscale(body) => self.upscale(body.clone())?.into(),
        })
    }
}

/// A validated upscale request.
#[derive(Debug, Clone)]
pub struct UpscaleJob {
    /// The image.
    pub picture: Picture,
    /// The recipe embedded in it (kept, with how it was upscaled).
    pub recipe: selfdiffusion_recipe::Recipe,
    /// 2 or 4.
    pub factor: u32,
}

/// Checks an upscale body: an image within `caps`, a factor of 2 or 4, and a result within
/// the engine's cap on pixels (`scale`: the server's upscaler's own factor, 1 for Lanczos).
pub fn validate_upscale(
    body: selfdiffusion_protocol::UpscaleRequest,
    caps: InputCaps,
    scale: u32,
) -> Result<UpscaleJob, String> {
    let bytes = image_bytes("image", &body.image, caps)?;
    let picture = Picture::decode(&bytes, caps.pixels).map_err(|e| match e {
        selfdiffusion_engine::EngineError::BadImage { reason, .. } => format!("image: {reason}"),
        other => format!("image: {other}"),
    })?;
    selfdiffusion_engine::check_upscale(
        picture.width,
        picture.height,
        body.factor,
        scale as usize,
        selfdiffusion_engine::MAX_INPUT_PIXELS,
    )
    .map_err(|e| match e {
        selfdiffusion_engine::EngineError::InvalidRequest(reason) => reason,
        other => other.to_string(),
    })?;
    Ok(UpscaleJob {
        recipe: selfdiffusion_recipe::embedded_recipe(&bytes).unwrap_or_default(),
        picture,
        factor: body.factor,
    })
}

/// Decodes a request's base64 image file `field` under `caps`.
fn image_bytes(field: &str, data: &str, caps: InputCaps) -> Result<Vec<u8>, String> {
    if data.len() > caps.bytes.div_ceil(3) * 4 + 4 {
        return Err(format!(
            "{field}: the image is larger than {} bytes",
            caps.bytes
        ));
    }
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("{field}: not base64 ({e})"))
}

/// The request's image input, if any, and the size it asks for by default (the image's own,
/// with any outpaint margins, rounded down to `step`).
fn image_input(
    body: &GenerateRequest,
    caps: InputCaps,
    step: u32,
) -> Result<Option<(ImageInput, u32, u32)>, String> {
    let Some(data) = &body.init_image else {
        for (given, field) in [
            (body.mask.is_some(), "mask"),
            (body.strength.is_some(), "strength"),
            (body.outpaint.is_some(), "outpaint"),
            (body.paste_back.is_some(), "paste_back"),
        ] {
            if given {
                return Err(format!("{field} goes with init_image"));
            }
        }
        return Ok(None);
    };
    let picture = Picture::decode(&image_bytes("init_image", data, caps)?, caps.pixels)
        .map_err(|e| format!("init_image: {e}"))?;
    let (image, mask) = match (body.outpaint, &body.mask) {
        (Some(_), Some(_)) => return Err("give mask or outpaint, not both".into()),
        (Some(margins), None) => {
            let (canvas, mask) = picture
                .extended(margins, caps.pixels)
                .map_err(|e| format!("outpaint: {e}"))?;
            (canvas, Some(mask))
        }
        (None, Some(mask)) => {
            let mask = Mask::decode(&image_bytes("mask", mask, caps)?, caps.pixels)
                .map_err(|e| format!("mask: {e}"))?;
            (picture, Some(mask))
        }
        (None, None) => (picture, None),
    };
    let strength = body
        .strength
        .unwrap_or(if mask.is_some() { 1.0 } else { 0.75 });
    let round = |side: usize| (side as u32 / step.max(1)) * step.max(1);
    let (width, height) = (round(image.width), round(image.height));
    let input = ImageInput {
        image: Arc::new(image),
        strength,
        mask: mask.map(Arc::new),
        outpaint: body.outpaint,
        paste_back: body.paste_back,
    };
    input.validate().map_err(|e| e.to_string())?;
    Ok(Some((input, width, height)))
}

/// Largest |weight| of a LoRA: far past any useful value, short of overflowing the weights.
const MAX_LORA_WEIGHT: f64 = 10.0;

const DEFAULT_STEPS: u32 = 30;
const DEFAULT_GUIDANCE: f64 = 7.5;
const DEFAULT_SIDE: u32 = 512;

/// Checks every field of `body` against `limits`, the served `model_name`, the built-in
/// `styles` (a user's own style comes as its text and is checked as a user style file's entries
/// are) and the served `loras`; the error says what to change.
pub fn validate(
    body: GenerateRequest,
    limits: &Limits,
    model_name: &str,
    styles: &[Style],
    loras: &[LoraEntry],
    caps: InputCaps,
) -> Result<JobRequest, String> {
    let (untagged, tags) = take_lora_tags(&body.prompt);
    let prompt = untagged.trim();
    let negative = body.negative_prompt.as_deref().unwrap_or("").trim();
    limits.check_prompt("prompt", prompt)?;
    limits.check_prompt("negative_prompt", negative)?;
    if prompt.is_empty() && body.styles.as_ref().is_none_or(|s| s.is_empty()) {
        return Err("prompt is empty: describe the image to generate".into());
    }
    let samples = body.samples;
    if samples == 0 || samples > limits.max_count {
        return Err(format!(
            "samples must be between 1 and {} (got {samples})",
            limits.max_count
        ));
    }
    let steps = body.steps.unwrap_or(DEFAULT_STEPS);
    let guidance = body.guidance.unwrap_or(DEFAULT_GUIDANCE);
    let input = image_input(&body, caps, limits.side_step)?;
    let (default_width, default_height) = input
        .as_ref()
        .map_or((DEFAULT_SIDE, DEFAULT_SIDE), |(_, w, h)| (*w, *h));
    let width = body.width.unwrap_or(default_width);
    let height = body.height.unwrap_or(default_height);
    limits.check(width, height, steps, samples, guidance)?;
    if let Some(hires) = &body.hires {
        hires.check()?;
        let (w, h) = hires.size(width, height, limits.side_step);
        limits
            .check(w, h, steps, samples, guidance)
            .map_err(|e| format!("hires: {e}"))?;
    }
    if let Some(model) = body.model.as_deref() {
        if model != model_name {
            return Err(format!(
                "model {model:?} is not served here; this server runs {model_name:?}"
            ));
        }
    }
    let refs = body.styles.unwrap_or_default();
    let mut chosen: Vec<Style> = Vec::with_capacity(refs.len());
    for style in &refs {
        match style {
            StyleRef::Named(name) => chosen.push(
                selfdiffusion_styles::find(styles, name)
                    .cloned()
                    .ok_or_else(|| format!("unknown style {name:?}"))?,
            ),
            StyleRef::Inline(own) => {
                selfdiffusion_styles::check(own)
                    .map_err(|reason| format!("style {:?}: {reason}", own.name))?;
                chosen.push(own.clone());
            }
        }
    }
    let scale = body.lora_scale.unwrap_or(1.0);
    let asked = body
        .loras
        .iter()
        .flatten()
        .map(|l| (l.name.clone(), l.weight))
        .chain(tags.into_iter().map(|t| (t.name, t.weight)));
    let mut merged = Vec::new();
    for (name, weight) in asked {
        let weight = weight * scale;
        if !weight.is_finite() || weight.abs() > MAX_LORA_WEIGHT {
            return Err(format!(
                "LoRA {name:?}: the weight must be between -{MAX_LORA_WEIGHT} and {MAX_LORA_WEIGHT} (got {weight})"
            ));
        }
        let entry = loras
            .iter()
            .find(|l| l.name.eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| {
                let served: Vec<&str> = loras.iter().map(|l| l.name.as_str()).collect();
                format!(
                    "LoRA {name:?} is not served here; this server has: {}",
                    if served.is_empty() {
                        "none".to_owned()
                    } else {
                        served.join(", ")
                    }
                )
            })?;
        merged.push((entry.path.clone(), weight));
    }
    let refs: Vec<&Style> = chosen.iter().collect();
    let (styled, styled_negative) = selfdiffusion_styles::apply(prompt, negative, &refs);
    if styled.trim().is_empty() {
        return Err("prompt is empty: describe the image to generate".into());
    }
    Ok(JobRequest {
        user_prompt: body.prompt.trim().to_owned(),
        user_negative_prompt: negative.to_owned(),
        prompt: styled,
        negative_prompt: styled_negative,
        styles: chosen.iter().map(|s| s.name.trim().to_owned()).collect(),
        samples: samples as usize,
        steps: steps as usize,
        guidance,
        seed: body.seed.unwrap_or_else(selfdiffusion_recipe::random_seed),
        width: width as usize,
        height: height as usize,
        loras: merged,
        init: input.map(|(input, _, _)| input),
        hires: body.hires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: serde_json::Value) -> Result<JobRequest, String> {
        let model = selfdiffusion_engine::Limits {
            min_side: 64,
            ..selfdiffusion_engine::LIMITS
        };
        let served = [LoraEntry {
            name: "Brass".into(),
            path: "/loras/Brass.safetensors".into(),
            bytes: 1,
        }];
        validate(
            serde_json::from_value(json).unwrap(),
            &crate::config::Limits::default().within(&model),
            "sd-1.5",
            &selfdiffusion_styles::builtin(),
            &served,
            InputCaps {
                bytes: 4096,
                pixels: 128 * 128,
            },
        )
    }

    fn png_base64(width: u32, height: u32) -> String {
        let rgb = vec![90; (width * height * 3) as usize];
        let png =
            selfdiffusion_recipe::encode_png(width, height, &rgb, &Default::default()).unwrap();
        base64::engine::general_purpose::STANDARD.encode(png)
    }

    #[test]
    fn an_image_to_start_from_sets_the_size_and_the_strength() {
        let plain = check(serde_json::json!({
            "prompt": "a lighthouse", "samples": 1, "init_image": png_base64(100, 72)
        }))
        .unwrap();
        assert_eq!((plain.width, plain.height), (96, 72), "rounded down to 8");
        let init = plain.init.unwrap();
        assert_eq!((init.strength, init.mask.is_none()), (0.75, true));
        let masked = check(serde_json::json!({
            "prompt": "a lighthouse", "samples": 1, "init_image": png_base64(64, 64),
            "mask": png_base64(64, 64), "width": 128, "height": 64
        }))
        .unwrap();
        assert_eq!((masked.width, masked.height), (128, 64));
        assert_eq!(masked.init.unwrap().strength, 1.0);
        let outpaint = check(serde_json::json!({
            "prompt": "a lighthouse", "samples": 1, "init_image": png_base64(64, 64),
            "outpaint": [8, 8, 0, 16], "strength": 0.9
        }))
        .unwrap();
        assert_eq!((outpaint.width, outpaint.height), (80, 80));
        assert_eq!(outpaint.init.unwrap().outpaint, Some([8, 8, 0, 16]));
    }

    #[test]
    fn bad_images_are_refused_with_the_reason() {
        let cases = [
            (
                serde_json::json!({"prompt": "a", "samples": 1, "init_image": "%%%"}),
                "init_image: not base64",
            ),
            (
                serde_json::json!({"prompt": "a", "samples": 1, "init_image": base64::engine::general_purpose::STANDARD.encode(b"text")}),
                "init_image: the image to start from: not a PNG, JPEG or WebP image",
            ),
            (
                serde_json::json!({"prompt": "a", "samples": 1, "init_image": png_base64(256, 256)}),
                "more than the 16384 pixels allowed",
            ),
            (
                serde_json::json!({"prompt": "a", "samples": 1, "init_image": "A".repeat(10_000)}),
                "larger than 4096 bytes",
            ),
            (
                serde_json::json!({"prompt": "a", "samples": 1, "init_image": png_base64(64, 64), "strength": 1.5}),
                "strength 1.5 is outside 0 to 1",
            ),
            (
                serde_json::json!({"prompt": "a", "samples": 1, "mask": png_base64(64, 64)}),
                "mask goes with init_image",
            ),
            (
                serde_json::json!({"prompt": "a", "samples": 1, "paste_back": 4}),
                "paste_back goes with init_image",
            ),
            (
                serde_json::json!({"prompt": "a", "samples": 1, "init_image": png_base64(64, 64), "mask": "%%%"}),
                "mask: not base64",
            ),
            (
                serde_json::json!({"prompt": "a", "samples": 1, "init_image": png_base64(64, 64), "mask": png_base64(8, 8), "outpaint": [8, 0, 0, 0]}),
                "give mask or outpaint, not both",
            ),
            (
                serde_json::json!({"prompt": "a", "samples": 1, "init_image": png_base64(120, 120), "outpaint": [1024, 0, 0, 0]}),
                "outpainting would make a 1144×120 canvas, more than the 16384 pixels allowed",
            ),
            (
                serde_json::json!({"prompt": "a", "samples": 1, "width": 768, "hires": {"factor": 2.0, "strength": 0.4}}),
                "hires: width must be",
            ),
            (
                serde_json::json!({"prompt": "a", "samples": 1, "hires": {"factor": 2.0, "strength": 2.0}}),
                "the hires strength 2 is outside 0 to 1",
            ),
        ];
        for (json, expected) in cases {
            let err = check(json.clone()).unwrap_err();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn defaults_and_styles_apply() {
        let style = selfdiffusion_styles::builtin()[0].clone();
        let r = check(serde_json::json!({
            "prompt": " a lighthouse ", "samples": 2, "styles": [style.name.to_uppercase()], "seed": 5
        }))
        .unwrap();
        assert_eq!(r.user_prompt, "a lighthouse");
        assert_eq!(
            (r.samples, r.steps, r.width, r.height, r.seed),
            (2, 30, 512, 512, 5)
        );
        let (expected, _) = selfdiffusion_styles::apply("a lighthouse", "", &[&style]);
        assert_eq!(r.prompt, expected);
        assert_eq!(r.styles, [style.name]);

        let own = check(serde_json::json!({
            "prompt": "a lighthouse", "samples": 1,
            "styles": [{"name": "Brass", "prompt": "{prompt}, cast in brass", "negative_prompt": "rust"}]
        }))
        .unwrap();
        assert_eq!(own.prompt, "a lighthouse, cast in brass");
        assert_eq!(own.negative_prompt, "rust");
        assert_eq!(own.styles, ["Brass"]);

        // LoRAs by name (any case) and as prompt tags, scaled by lora_scale; tags leave the text.
        let with_loras = check(serde_json::json!({
            "prompt": "a lighthouse <lora:brass:0.5>", "samples": 1,
            "loras": [{"name": "BRASS", "weight": 0.8}], "lora_scale": 0.5
        }))
        .unwrap();
        assert_eq!(
            with_loras.prompt, "a lighthouse",
            "the tag is not sent to the model"
        );
        assert_eq!(with_loras.user_prompt, "a lighthouse <lora:brass:0.5>");
        let weights: Vec<f64> = with_loras.loras.iter().map(|l| l.1).collect();
        assert_eq!(weights, [0.4, 0.25]);
        assert!(with_loras
            .loras
            .iter()
            .all(|l| l.0.ends_with("Brass.safetensors")));
    }

    #[test]
    fn out_of_range_input_is_refused_with_the_limit() {
        let cases = [
            (
                serde_json::json!({"prompt": "x".repeat(2001), "samples": 1}),
                "limit is 2000",
            ),
            (
                serde_json::json!({"prompt": "  ", "samples": 1}),
                "prompt is empty",
            ),
            (
                serde_json::json!({"prompt": "a", "samples": 0}),
                "samples must be between 1 and 4",
            ),
            (serde_json::json!({"prompt": "a", "samples": 5}), "(got 5)"),
            (
                serde_json::json!({"prompt": "a", "samples": 1, "steps": 0}),
                "steps",
            ),
            (
                serde_json::json!({"prompt": "a", "samples": 1, "guidance": -1.0}),
                "guidance",
            ),
            (
                serde_json::json!({"prompt": "a", "samples": 1, "width": 100}),
                "width must be",
            ),
            (
                serde_json::json!({"prompt": "a", "samples": 1, "height": 4096}),
                "height must be",
            ),
            (
                serde_json::json!({"prompt": "a", "samples": 1, "model": "xl"}),
                "runs \"sd-1.5\"",
            ),
            (
                serde_json::json!({"prompt": "a", "samples": 1, "styles": ["Nope"]}),
                "unknown style",
            ),
            (
                serde_json::json!({"prompt": "a", "samples": 1, "loras": [{"name": "fog"}]}),
                "LoRA \"fog\" is not served here; this server has: Brass",
            ),
            (
                serde_json::json!({"prompt": "a <lora:Brass:99>", "samples": 1}),
                "the weight must be between -10 and 10",
            ),
            (
                serde_json::json!({"prompt": "a", "samples": 1, "styles": [{"name": "", "prompt": "x"}]}),
                "style \"\"",
            ),
        ];
        for (json, expected) in cases {
            let err = check(json.clone()).unwrap_err();
            assert!(err.contains(expected), "{json}: {err}");
        }
        let unknown = serde_json::from_value::<GenerateRequest>(
            serde_json::json!({"prompt": "a", "samples": 1, "sampels": 2}),
        )
        .unwrap_err();
        assert!(unknown.to_string().contains("sampels"), "{unknown}");
    }
}
