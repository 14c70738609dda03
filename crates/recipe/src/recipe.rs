//! The recipe of an image: everything needed to make it again, and its AUTOMATIC1111 text form.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::SizeConditions;

/// How an image was (or claims to have been) made. Unknown fields survive a round trip in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    /// The prompt actually sent to the model.
    #[serde(default)]
    pub prompt: String,
    /// The negative prompt actually sent to the model.
    #[serde(default)]
    pub negative_prompt: String,
    /// Names of the styles applied to the prompt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub styles: Vec<String>,
    /// Model id or name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Scheduler (sampler) name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<String>,
    /// Number of denoising steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// Classifier-free guidance scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f64>,
    /// Seed of this image's noise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Width in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Height in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Where it was generated: `local`, `cloud`, or the tool an import came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// LoRAs merged into the model, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<LoraUse>,
    /// SDXL size conditions the user set (none: the defaults).
    #[serde(default, skip_serializing_if = "SizeConditions::is_default")]
    pub size_conditions: SizeConditions,
    /// img2img and inpainting: the image it started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceImage>,
    /// Text to image with a second, larger pass; `width` and `height` are the first pass's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hires: Option<HiresFix>,
    /// An upscaled image: how, and from which file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upscale: Option<Upscale>,
    /// Cloud job id, when generated in the cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Fields this version does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What an img2img or inpainting image started from, by content, so the run can be remade
/// from the same files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceImage {
    /// SHA-256 (hex) of the image file it started from.
    pub image_sha256: String,
    /// How much of the image was redrawn, 0 to 1 (AUTOMATIC1111's "Denoising strength").
    pub strength: f64,
    /// SHA-256 (hex) of the mask file, when inpainting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_sha256: Option<String>,
    /// Outpainting: the pixels added left, right, top and bottom of the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outpaint: Option<[u32; 4]>,
    /// The kept pixels were pasted back over the result, across a mask edge blurred by this
    /// many pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paste_back: Option<u32>,
}

/// A second pass at a larger size ("hires fix"): the first image made `factor` times larger
/// (Lanczos), then redrawn at `strength` as img2img.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HiresFix {
    /// How many times wider and taller the second pass is (1 to 4).
    pub factor: f64,
    /// How much of the enlarged image is redrawn, 0 to 1.
    pub strength: f64,
}

impl HiresFix {
    /// The least and most factor.
    pub const FACTORS: (f64, f64) = (1.0, 4.0);

    /// The second pass's size for a first pass of `width` × `height`, rounded down to `step`.
    pub fn size(&self, width: u32, height: u32, step: u32) -> (u32, u32) {
        let step = step.max(1);
        let scale = |side: u32| ((f64::from(side) * self.factor) as u32 / step) * step;
        (scale(width), scale(height))
    }

    /// Checks the factor and the strength.
    pub fn check(&self) -> Result<(), String> {
        let (least, most) = Self::FACTORS;
        if !(least..=most).contains(&self.factor) {
            return Err(format!(
                "the hires factor is {}; give {least} to {most}",
                self.factor
            ));
        }
        if !(0.0..=1.0).contains(&self.strength) {
            return Err(format!(
                "the hires strength {} is outside 0 to 1",
                self.strength
            ));
        }
        Ok(())
    }
}

/// How an image was made larger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upscale {
    /// How many times wider and taller.
    pub factor: u32,
    /// `lanczos`, or the name of the ESRGAN weight file.
    pub upscaler: String,
    /// SHA-256 (hex) of the file that was upscaled.
    pub source_sha256: String,
}

/// A LoRA as a recipe records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraUse {
    /// Its name (the file name without extension, as `<lora:name:weight>` names it).
    pub name: String,
    /// The weight it was merged at.
    pub weight: f64,
    /// Short hash of its tensor data (AUTOMATIC1111's, 12 hex digits), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

impl Recipe {
    /// Records what the user typed before styles were applied (`user_prompt`,
    /// `user_negative_prompt` in `extra`), so "reuse parameters" can apply the same styles again.
    pub fn set_user_prompts(&mut self, prompt: &str, negative_prompt: &str) {
        self.extra.insert("user_prompt".into(), prompt.into());
        self.extra
            .insert("user_negative_prompt".into(), negative_prompt.into());
    }

    /// This recipe with the styles that were applied and what the user typed before they were.
    pub fn styled(mut self, styles: Vec<String>, prompt: &str, negative_prompt: &str) -> Self {
        self.styles = styles;
        self.set_user_prompts(prompt, negative_prompt);
        self
    }

    /// Renders the AUTOMATIC1111 `parameters` text (prompt, negative prompt, then a settings line).
    pub fn to_a1111(&self) -> String {
        let mut out = self.prompt.clone();
        for lora in &self.loras {
            out.push_str(&format!(" <lora:{}:{}>", lora.name, lora.weight));
        }
        if !self.negative_prompt.is_empty() {
            out.push_str("\nNegative prompt: ");
            out.push_str(&self.negative_prompt);
        }
        let mut settings = Vec::new();
        if let Some(v) = self.steps {
            settings.push(format!("Steps: {v}"));
        }
        if let Some(v) = &self.scheduler {
            settings.push(format!("Sampler: {}", quote_if_needed(v)));
        }
        if let Some(v) = self.guidance {
            settings.push(format!("CFG scale: {v}"));
        }
        if let Some(v) = self.seed {
            settings.push(format!("Seed: {v}"));
        }
        if let (Some(w), Some(h)) = (self.width, self.height) {
            settings.push(format!("Size: {w}x{h}"));
        }
        if let Some(source) = &self.source {
            settings.push(format!("Denoising strength: {}", source.strength));
            if let Some(blur) = source.paste_back {
                settings.push(format!("Mask blur: {blur}"));
            }
        }
        if let Some(hires) = &self.hires {
            settings.push(format!("Hires upscale: {}", hires.factor));
            settings.push("Hires upscaler: Lanczos".to_owned());
            if self.source.is_none() {
                settings.push(format!("Denoising strength: {}", hires.strength));
            }
        }
        if let Some(upscale) = &self.upscale {
            settings.push(format!("Postprocess upscale by: {}", upscale.factor));
            settings.push(format!(
                "Postprocess upscaler: {}",
                quote_if_needed(&upscale.upscaler)
            ));
        }
        if let Some(v) = &self.model {
            settings.push(format!("Model: {}", quote_if_needed(v)));
        }
        if !self.styles.is_empty() {
            settings.push(format!(
                "Styles: {}",
                quote_if_needed(&self.styles.join(", "))
            ));
        }
        let hashes: Vec<String> = self
            .loras
            .iter()
            .filter_map(|l| Some(format!("{}: {}", l.name, l.hash.as_ref()?)))
            .collect();
        if !hashes.is_empty() {
            settings.push(format!(
                "Lora hashes: {}",
                quote_if_needed(&hashes.join(", "))
            ));
        }
        if !settings.is_empty() {
            out.push('\n');
            out.push_str(&settings.join(", "));
        }
        out
    }

    /// Parses AUTOMATIC1111 `parameters` text into the fields it maps to.
    pub fn from_a1111(text: &str) -> Recipe {
        let mut lines: Vec<&str> = text.lines().collect();
        let mut recipe = Recipe::default();
        let mut lora_hashes = String::new();
        if lines
            .last()
            .is_some_and(|l| l.trim_start().starts_with("Steps: "))
        {
            let settings = lines.pop().unwrap_or_default();
            for (key, value) in split_settings(settings) {
                match key.as_str() {
                    "Steps" => recipe.steps = value.parse().ok(),
                    "Sampler" => recipe.scheduler = Some(value),
                    "CFG scale" => recipe.guidance = value.parse().ok(),
                    "Seed" => recipe.seed = value.parse().ok(),
                    "Size" => {
                        if let Some((w, h)) = value.split_once('x') {
                            recipe.width = w.trim().parse().ok();
                            recipe.height = h.trim().parse().ok();
                        }
                    }
                    "Model" => recipe.model = Some(value),
                    "Styles" => recipe.styles = value.split(", ").map(str::to_owned).collect(),
                    "Lora hashes" => lora_hashes = value,
                    _ => {
                        recipe.extra.insert(key, Value::String(value));
                    }
                }
            }
        }
        let mut prompt = Vec::new();
        let mut negative = Vec::new();
        for line in lines {
            if let Some(rest) = line.strip_prefix("Negative prompt: ") {
                negative.push(rest);
            } else if negative.is_empty() {
                prompt.push(line);
            } else {
                negative.push(line);
            }
        }
        let (prompt, loras) = take_lora_tags(&prompt.join("\n"));
        recipe.prompt = prompt;
        recipe.loras = loras;
        let mut unmatched = false;
        for pair in lora_hashes.split(", ").filter(|p| !p.is_empty()) {
            let lora = pair.split_once(": ").and_then(|(name, hash)| {
                let lora = recipe.loras.iter_mut().find(|l| l.name == name.trim())?;
                lora.hash = Some(hash.trim().to_owned());
                Some(())
            });
            unmatched |= lora.is_none();
        }
        if unmatched {
            // Hashes of LoRAs the prompt does not name: kept as they were.
            recipe
                .extra
                .insert("Lora hashes".into(), Value::String(lora_hashes));
        }
        recipe.negative_prompt = negative.join("\n");
        recipe
    }
}

/// `text` without its `<lora:name:weight>` tags (AUTOMATIC1111's prompt syntax), and the LoRAs
/// they name (weight 1 when the tag gives none).
pub fn take_lora_tags(text: &str) -> (String, Vec<LoraUse>) {
    let mut loras = Vec::new();
    let mut rest = String::with_capacity(text.len());
    let mut tail = text;
    while let Some(start) = tail.find("<lora:") {
        let Some(len) = tail[start..].find('>') else {
            break;
        };
        let inner = &tail[start + "<lora:".len()..start + len];
        let (name, weight) = match inner.rsplit_once(':') {
            Some((name, w)) if w.trim().parse::<f64>().is_ok() => {
                (name, w.trim().parse().unwrap_or(1.0))
            }
            _ => (inner, 1.0),
        };
        rest.push_str(&tail[..start]);
        loras.push(LoraUse {
            name: name.trim().to_owned(),
            weight,
            hash: None,
        });
        tail = &tail[start + len + 1..];
    }
    rest.push_str(tail);
    let cleaned = rest.split_whitespace().collect::<Vec<_>>().join(" ");
    let cleaned = if loras.is_empty() {
        text.to_owned()
    } else {
        cleaned
    };
    (cleaned, loras)
}

fn quote_if_needed(value: &str) -> String {
    if value.contains([',', ':', '"']) {
        serde_json::to_string(value).unwrap_or_else(|_| value.to_owned())
    } else {
        value.to_owned()
    }
}

/// Splits `Key: value, Key: "quoted, value"` into pairs.
fn split_settings(line: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = line.trim();
    while let Some((key, after)) = rest.split_once(':') {
        let after = after.trim_start();
        let (value, remaining) = if after.starts_with('"') {
            let mut end = None;
            let mut escaped = false;
            for (i, c) in after.char_indices().skip(1) {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => {
                        end = Some(i);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            let end = end.unwrap_or(after.len() - 1);
            let quoted = &after[..=end];
            let value = serde_json::from_str::<String>(quoted)
                .unwrap_or_else(|_| quoted.trim_matches('"').to_owned());
            (value, &after[end + 1..])
        } else {
            match after.find(',') {
                Some(i) => (after[..i].trim().to_owned(), &after[i..]),
                None => (after.trim().to_owned(), ""),
            }
        };
        pairs.push((key.trim().to_owned(), value));
        rest = remaining.trim_start_matches([',', ' ']);
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a1111_round_trip_keeps_every_field() {
        let recipe = Recipe {
            prompt: "a cat, sitting\non a mat".into(),
            negative_prompt: "blurry, low quality".into(),
            styles: vec!["Cinematic".into(), "Film grain".into()],
            model: Some("sd-1.5: pruned".into()),
            scheduler: Some("Euler a".into()),
            steps: Some(30),
            guidance: Some(7.5),
            seed: Some(1234567890123),
            width: Some(768),
            height: Some(512),
            ..Recipe::default()
        };
        let text = recipe.to_a1111();
        assert_eq!(Recipe::from_a1111(&text), recipe);
    }

    #[test]
    fn parses_real_a1111_text_and_keeps_unknown_keys() {
        let text = "masterpiece, a fox\nNegative prompt: ugly\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42, Size: 512x640, Model hash: abc123, Model: v1-5, Lora hashes: \"x: 1, y: 2\"";
        let r = Recipe::from_a1111(text);
        assert_eq!(r.prompt, "masterpiece, a fox");
        assert_eq!(r.negative_prompt, "ugly");
        assert_eq!(r.steps, Some(20));
        assert_eq!(r.scheduler.as_deref(), Some("DPM++ 2M Karras"));
        assert_eq!(r.guidance, Some(7.0));
        assert_eq!(r.seed, Some(42));
        assert_eq!((r.width, r.height), (Some(512), Some(640)));
        assert_eq!(r.model.as_deref(), Some("v1-5"));
        assert_eq!(r.extra["Model hash"], "abc123");
        assert_eq!(r.extra["Lora hashes"], "x: 1, y: 2");
    }

    #[test]
    fn loras_travel_as_prompt_tags_and_lora_hashes() {
        let recipe = Recipe {
            prompt: "a lighthouse".into(),
            loras: vec![
                LoraUse {
                    name: "brass".into(),
                    weight: 0.7,
                    hash: Some("a1b2c3d4e5f6".into()),
                },
                LoraUse {
                    name: "fog".into(),
                    weight: -0.4,
                    hash: Some("0123456789ab".into()),
                },
            ],
            steps: Some(20),
            ..Recipe::default()
        };
        let text = recipe.to_a1111();
        assert!(
            text.starts_with("a lighthouse <lora:brass:0.7> <lora:fog:-0.4>"),
            "{text}"
        );
        assert!(
            text.contains("Lora hashes: \"brass: a1b2c3d4e5f6, fog: 0123456789ab\""),
            "{text}"
        );
        assert_eq!(Recipe::from_a1111(&text), recipe);
        let (prompt, loras) = take_lora_tags("<lora:plain>a cat, <lora:x:0.5> on a mat");
        assert_eq!(prompt, "a cat, on a mat");
        assert_eq!(
            loras
                .iter()
                .map(|l| (l.name.as_str(), l.weight))
                .collect::<Vec<_>>(),
            [("plain", 1.0), ("x", 0.5)]
        );
        assert_eq!(take_lora_tags("no tags,  here").0, "no tags,  here");
    }

    #[test]
    fn text_without_settings_is_all_prompt() {
        let r = Recipe::from_a1111("just a prompt");
        assert_eq!(r.prompt, "just a prompt");
        assert_eq!(r.steps, None);
    }

    #[test]
    fn unknown_json_fields_survive() {
        let json = r#"{"prompt":"p","negative_prompt":"","future_field":{"a":1}}"#;
        let r: Recipe = serde_json::from_str(json).unwrap();
        let back: Value = serde_json::to_value(&r).unwrap();
        assert_eq!(back["future_field"]["a"], 1);
    }
}
