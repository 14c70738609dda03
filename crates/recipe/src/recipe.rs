//! The recipe of an image: everything needed to make it again, and its AUTOMATIC1111 text form.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
    /// Cloud job id, when generated in the cloud.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// Fields this version does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
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
        if let Some(v) = &self.model {
            settings.push(format!("Model: {}", quote_if_needed(v)));
        }
        if !self.styles.is_empty() {
            settings.push(format!(
                "Styles: {}",
                quote_if_needed(&self.styles.join(", "))
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
        recipe.prompt = prompt.join("\n");
        recipe.negative_prompt = negative.join("\n");
        recipe
    }
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
