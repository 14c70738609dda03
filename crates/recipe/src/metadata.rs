//! Reading the recipe embedded by this app, AUTOMATIC1111, ComfyUI and InvokeAI.

use serde_json::Value;

use crate::png_text::{read_text_chunks, PARAMETERS_KEY, RECIPE_KEY};
use crate::recipe::Recipe;

/// The recipe embedded in an image file, from the richest source present; `None` when the file
/// carries no metadata this library understands. Only PNG files carry metadata here.
pub fn embedded_recipe(bytes: &[u8]) -> Option<Recipe> {
    let texts = read_text_chunks(bytes);
    let get = |key: &str| {
        texts
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    if let Some(recipe) = get(RECIPE_KEY).and_then(|j| serde_json::from_str(j).ok()) {
        return Some(recipe);
    }
    let tagged = |mut recipe: Recipe, source: &str| {
        recipe.backend = Some(source.to_owned());
        recipe
    };
    if let Some(r) = get("invokeai_metadata").and_then(invokeai) {
        return Some(tagged(r, "invokeai"));
    }
    if let Some(text) = get(PARAMETERS_KEY) {
        return Some(tagged(Recipe::from_a1111(text), "automatic1111"));
    }
    if let Some(r) = get("prompt").and_then(comfyui) {
        return Some(tagged(r, "comfyui"));
    }
    None
}

/// The recipe this app embedded (its JSON chunk), ignoring other tools' metadata.
pub fn own_recipe(bytes: &[u8]) -> Option<Recipe> {
    read_text_chunks(bytes)
        .into_iter()
        .find(|(k, _)| k == RECIPE_KEY)
        .and_then(|(_, json)| serde_json::from_str(&json).ok())
}

/// InvokeAI writes a flat JSON object under `invokeai_metadata`.
fn invokeai(text: &str) -> Option<Recipe> {
    let v: Value = serde_json::from_str(text).ok()?;
    let str_of = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    Some(Recipe {
        prompt: str_of("positive_prompt").unwrap_or_default(),
        negative_prompt: str_of("negative_prompt").unwrap_or_default(),
        seed: v.get("seed").and_then(Value::as_u64),
        steps: v.get("steps").and_then(Value::as_u64).map(|s| s as u32),
        guidance: v.get("cfg_scale").and_then(Value::as_f64),
        width: v.get("width").and_then(Value::as_u64).map(|s| s as u32),
        height: v.get("height").and_then(Value::as_u64).map(|s| s as u32),
        scheduler: str_of("scheduler"),
        model: v
            .get("model")
            .and_then(|m| m.get("name").or_else(|| m.get("model_name")))
            .and_then(Value::as_str)
            .map(str::to_owned),
        ..Recipe::default()
    })
}

/// ComfyUI writes its API graph under `prompt`: follow the sampler's inputs to the text encoders,
/// the latent image and the checkpoint loader.
fn comfyui(text: &str) -> Option<Recipe> {
    let graph: Value = serde_json::from_str(text).ok()?;
    let nodes = graph.as_object()?;
    fn class(n: &Value) -> &str {
        n.get("class_type").and_then(Value::as_str).unwrap_or("")
    }
    let sampler = nodes.values().find(|n| class(n).starts_with("KSampler"))?;
    let inputs = sampler.get("inputs")?;
    let linked = |name: &str| -> Option<&Value> {
        let id = inputs.get(name)?.get(0)?;
        let id = id
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| id.to_string());
        nodes.get(&id)?.get("inputs")
    };
    let text_of = |name: &str| {
        linked(name)
            .and_then(|i| i.get("text"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let latent = linked("latent_image");
    let dim = |k: &str| {
        latent
            .and_then(|l| l.get(k))
            .and_then(Value::as_u64)
            .map(|d| d as u32)
    };
    let model = nodes
        .values()
        .find_map(|n| n.get("inputs")?.get("ckpt_name")?.as_str())
        .map(str::to_owned);
    Some(Recipe {
        prompt: text_of("positive"),
        negative_prompt: text_of("negative"),
        seed: inputs
            .get("seed")
            .or_else(|| inputs.get("noise_seed"))
            .and_then(Value::as_u64),
        steps: inputs
            .get("steps")
            .and_then(Value::as_u64)
            .map(|s| s as u32),
        guidance: inputs.get("cfg").and_then(Value::as_f64),
        scheduler: inputs
            .get("sampler_name")
            .and_then(Value::as_str)
            .map(str::to_owned),
        width: dim("width"),
        height: dim("height"),
        model,
        ..Recipe::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::png_text::with_text_chunks;

    fn png_with(key: &str, text: &str) -> Vec<u8> {
        with_text_chunks(&crate::png_text::tests::tiny_png(), &[(key, text)]).unwrap()
    }

    #[test]
    fn reads_comfyui_graph() {
        let graph = r#"{
          "3": {"class_type": "KSampler", "inputs": {"seed": 156680208700286, "steps": 20, "cfg": 8.0,
                "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
                "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
          "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
          "5": {"class_type": "EmptyLatentImage", "inputs": {"batch_size": 1, "height": 512, "width": 768}},
          "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "beautiful scenery"}},
          "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "text, watermark"}}
        }"#;
        let r = embedded_recipe(&png_with("prompt", graph)).unwrap();
        assert_eq!(r.prompt, "beautiful scenery");
        assert_eq!(r.negative_prompt, "text, watermark");
        assert_eq!(r.seed, Some(156680208700286));
        assert_eq!(r.steps, Some(20));
        assert_eq!(r.guidance, Some(8.0));
        assert_eq!(r.scheduler.as_deref(), Some("euler"));
        assert_eq!((r.width, r.height), (Some(768), Some(512)));
        assert_eq!(r.model.as_deref(), Some("v1-5-pruned-emaonly.safetensors"));
        assert_eq!(r.backend.as_deref(), Some("comfyui"));
    }

    #[test]
    fn reads_invokeai_metadata() {
        let meta = r#"{"positive_prompt": "a castle", "negative_prompt": "fog", "seed": 7, "steps": 25,
            "cfg_scale": 6.5, "width": 640, "height": 448, "scheduler": "dpmpp_2m",
            "model": {"name": "stable-diffusion-v1-5", "base": "sd-1"}}"#;
        let r = embedded_recipe(&png_with("invokeai_metadata", meta)).unwrap();
        assert_eq!(r.prompt, "a castle");
        assert_eq!(r.negative_prompt, "fog");
        assert_eq!(
            (r.seed, r.steps, r.guidance),
            (Some(7), Some(25), Some(6.5))
        );
        assert_eq!((r.width, r.height), (Some(640), Some(448)));
        assert_eq!(r.model.as_deref(), Some("stable-diffusion-v1-5"));
        assert_eq!(r.backend.as_deref(), Some("invokeai"));
    }

    #[test]
    fn reads_a1111_parameters() {
        let r = embedded_recipe(&png_with("parameters", "a dog\nSteps: 9, Seed: 3")).unwrap();
        assert_eq!(
            (r.prompt.as_str(), r.steps, r.seed),
            ("a dog", Some(9), Some(3))
        );
        assert_eq!(r.backend.as_deref(), Some("automatic1111"));
    }

    #[test]
    fn own_json_wins_over_parameters() {
        let img = png_with("parameters", "from a1111");
        let png =
            with_text_chunks(&img, &[("selfdiffusion", r#"{"prompt":"ours","seed":5}"#)]).unwrap();
        let r = embedded_recipe(&png).unwrap();
        assert_eq!((r.prompt.as_str(), r.seed), ("ours", Some(5)));
    }

    #[test]
    fn own_recipe_ignores_other_tools() {
        assert_eq!(own_recipe(&png_with("parameters", "a dog\nSteps: 9")), None);
        let png = png_with("selfdiffusion", r#"{"prompt":"ours","seed":5}"#);
        assert_eq!(own_recipe(&png).unwrap().seed, Some(5));
    }

    #[test]
    fn plain_files_have_none() {
        assert_eq!(embedded_recipe(&png_with("Software", "paint")), None);
        assert_eq!(embedded_recipe(b"\xff\xd8\xff not png"), None);
    }
}
