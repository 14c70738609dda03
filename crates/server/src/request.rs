//! The `generate` body checked against the server's limits, styles applied.

use selfdiffusion_protocol::GenerateRequest;

use crate::config::Limits;

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
}

const DEFAULT_STEPS: u32 = 30;
const DEFAULT_GUIDANCE: f64 = 7.5;
const DEFAULT_SIDE: u32 = 512;

fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    u64::from_le_bytes(bytes) >> 12
}

/// Checks every field of `body` against `limits`, the served `model_name` and the known
/// `styles`; the error says what to change.
pub fn validate(
    body: GenerateRequest,
    limits: &Limits,
    model_name: &str,
    styles: &[selfdiffusion_styles::Style],
) -> Result<JobRequest, String> {
    let prompt = body.prompt.trim();
    let negative = body.negative_prompt.as_deref().unwrap_or("").trim();
    for (name, text) in [("prompt", prompt), ("negative_prompt", negative)] {
        let chars = text.chars().count();
        if chars > limits.max_prompt_chars {
            return Err(format!(
                "{name} is {chars} characters; the limit is {}",
                limits.max_prompt_chars
            ));
        }
    }
    if prompt.is_empty() && body.styles.as_ref().is_none_or(|s| s.is_empty()) {
        return Err("prompt is empty: describe the image to generate".into());
    }
    let samples = body.samples as usize;
    if samples == 0 || samples > limits.max_samples {
        return Err(format!(
            "samples must be between 1 and {} (got {samples})",
            limits.max_samples
        ));
    }
    let steps = body.steps.unwrap_or(DEFAULT_STEPS) as usize;
    if steps == 0 || steps > limits.max_steps {
        return Err(format!(
            "steps must be between 1 and {} (got {steps})",
            limits.max_steps
        ));
    }
    let guidance = body.guidance.unwrap_or(DEFAULT_GUIDANCE);
    if !guidance.is_finite() || !(0.0..=30.0).contains(&guidance) {
        return Err(format!(
            "guidance must be between 0 and 30 (got {guidance})"
        ));
    }
    let (min_side, _) = selfdiffusion_engine::SIZE_RANGE;
    let mut sides = [0usize; 2];
    for (slot, (name, value)) in sides.iter_mut().zip([
        ("width", body.width.unwrap_or(DEFAULT_SIDE)),
        ("height", body.height.unwrap_or(DEFAULT_SIDE)),
    ]) {
        let v = value as usize;
        if v < min_side || v > limits.max_side || !v.is_multiple_of(8) {
            return Err(format!(
                "{name} must be a multiple of 8 between {min_side} and {} (got {v})",
                limits.max_side
            ));
        }
        *slot = v;
    }
    if let Some(model) = body.model.as_deref() {
        if model != model_name {
            return Err(format!(
                "model {model:?} is not served here; this server runs {model_name:?}"
            ));
        }
    }
    let names = body.styles.unwrap_or_default();
    let mut chosen = Vec::with_capacity(names.len());
    for name in &names {
        let style = styles
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| format!("unknown style {name:?}"))?;
        chosen.push(style);
    }
    let (styled, styled_negative) = selfdiffusion_styles::apply(prompt, negative, &chosen);
    if styled.trim().is_empty() {
        return Err("prompt is empty: describe the image to generate".into());
    }
    Ok(JobRequest {
        user_prompt: prompt.to_owned(),
        user_negative_prompt: negative.to_owned(),
        prompt: styled,
        negative_prompt: styled_negative,
        styles: chosen.iter().map(|s| s.name.clone()).collect(),
        samples,
        steps,
        guidance,
        seed: body.seed.unwrap_or_else(random_seed),
        width: sides[0],
        height: sides[1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: serde_json::Value) -> Result<JobRequest, String> {
        validate(
            serde_json::from_value(json).unwrap(),
            &Limits::default(),
            "sd-1.5",
            &selfdiffusion_styles::builtin(),
        )
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
