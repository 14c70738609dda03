//! SDXL single-file checkpoints: the `tiny-sdxl` folder, written out as one checkpoint in the
//! original SGM layout (the one Stability's `sgm` code saves and diffusers' `from_single_file`
//! reads), gives the folder's pipeline, and a damaged copy is refused.
//!
//! The conversion is a table-driven port of diffusers'
//! `scripts/convert_diffusers_to_original_sdxl.py`, written apart from the engine's own
//! translation (`src/single_file.rs`) so that each checks the other.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use common::{max_diff, one_image, sdxl_fixture};
use selfdiffusion_engine::{
    Checkpoint, EngineError, Family, GeneratedImage, Request, StableDiffusion,
};
use serde_json::Value;

/// Renames of the part of a name that follows a [`Rule`]'s prefix, as (checkpoint, diffusers)
/// like the script's tables.
type Parts = &'static [(&'static str, &'static str)];

/// A UNet resnet's layers (the script's `unet_conversion_map_resnet`).
const UNET_RESNET: Parts = &[
    ("in_layers.0.", "norm1."),
    ("in_layers.2.", "conv1."),
    ("out_layers.0.", "norm2."),
    ("out_layers.3.", "conv2."),
    ("emb_layers.1.", "time_emb_proj."),
    ("skip_connection.", "conv_shortcut."),
];

/// A VAE resnet's layers: only the shortcut is renamed.
const VAE_RESNET: Parts = &[("nin_shortcut.", "conv_shortcut.")];

/// The VAE's mid-block attention (the script's `vae_conversion_map_attn`).
const VAE_ATTENTION: Parts = &[
    ("norm.", "group_norm."),
    ("q.", "to_q."),
    ("k.", "to_k."),
    ("v.", "to_v."),
    ("proj_out.", "to_out.0."),
];

/// An OpenCLIP residual block's layers (the script's `textenc_conversion_lst`); `attn.` covers
/// `out_proj` and the joined `in_proj_weight` / `in_proj_bias`.
const OPENCLIP_BLOCK: Parts = &[
    ("ln_1.", "layer_norm1."),
    ("ln_2.", "layer_norm2."),
    ("mlp.c_fc.", "mlp.fc1."),
    ("mlp.c_proj.", "mlp.fc2."),
    ("attn.", "self_attn."),
];

/// Where the second text encoder lives in the checkpoint.
const OPENCLIP: &str = "conditioner.embedders.1.model.";

/// The diffusers names starting with `hf` become names starting with `sd`; what follows the
/// prefix goes through `parts`.
struct Rule {
    sd: String,
    hf: String,
    parts: Parts,
}

fn rule(sd: impl Into<String>, hf: impl Into<String>, parts: Parts) -> Rule {
    Rule {
        sd: sd.into(),
        hf: hf.into(),
        parts,
    }
}

/// The checkpoint's name for the diffusers tensor `name`: exactly one rule must match it, so
/// no tensor is carried over under a diffusers name by accident.
fn translate(name: &str, rules: &[Rule]) -> String {
    let mut hits = rules
        .iter()
        .filter_map(|r| name.strip_prefix(r.hf.as_str()).map(|rest| (r, rest)));
    let (rule, rest) = hits
        .next()
        .unwrap_or_else(|| panic!("no conversion rule for {name}"));
    assert!(hits.next().is_none(), "two conversion rules for {name}");
    let rest = rule
        .parts
        .iter()
        .find_map(|(sd, hf)| rest.strip_prefix(hf).map(|tail| format!("{sd}{tail}")))
        .unwrap_or_else(|| rest.to_string());
    format!("{}{rest}", rule.sd)
}

/// The UNet's rules (the script's `unet_conversion_map` and `unet_conversion_map_layer`), for
/// the levels, resnets per level and attention of `config`, where the script hard-codes SDXL's.
fn unet_rules(config: &Value) -> Vec<Rule> {
    let levels = config["block_out_channels"].as_array().unwrap().len();
    let per_level = config["layers_per_block"].as_u64().unwrap() as usize;
    let attends = |kind: &str, level: usize| {
        config[kind][level]
            .as_str()
            .unwrap()
            .starts_with("CrossAttn")
    };
    // SGM counts blocks per level: `per_level` resnets and the downsampler going down,
    // `per_level + 1` resnets (the last one carrying the upsampler) going up.
    let stride = per_level + 1;
    let mut rules = vec![
        rule("time_embed.0.", "time_embedding.linear_1.", &[]),
        rule("time_embed.2.", "time_embedding.linear_2.", &[]),
        rule("label_emb.0.0.", "add_embedding.linear_1.", &[]),
        rule("label_emb.0.2.", "add_embedding.linear_2.", &[]),
        rule("input_blocks.0.0.", "conv_in.", &[]),
        rule("out.0.", "conv_norm_out.", &[]),
        rule("out.2.", "conv_out.", &[]),
        rule("middle_block.0.", "mid_block.resnets.0.", UNET_RESNET),
        rule("middle_block.1.", "mid_block.attentions.0.", &[]),
        rule("middle_block.2.", "mid_block.resnets.1.", UNET_RESNET),
    ];
    for i in 0..levels {
        for j in 0..per_level {
            let block = stride * i + j + 1;
            rules.push(rule(
                format!("input_blocks.{block}.0."),
                format!("down_blocks.{i}.resnets.{j}."),
                UNET_RESNET,
            ));
            if attends("down_block_types", i) {
                rules.push(rule(
                    format!("input_blocks.{block}.1."),
                    format!("down_blocks.{i}.attentions.{j}."),
                    &[],
                ));
            }
        }
        rules.push(rule(
            format!("input_blocks.{}.0.op.", stride * (i + 1)),
            format!("down_blocks.{i}.downsamplers.0.conv."),
            &[],
        ));
        for j in 0..stride {
            let block = stride * i + j;
            rules.push(rule(
                format!("output_blocks.{block}.0."),
                format!("up_blocks.{i}.resnets.{j}."),
                UNET_RESNET,
            ));
            if attends("up_block_types", i) {
                rules.push(rule(
                    format!("output_blocks.{block}.1."),
                    format!("up_blocks.{i}.attentions.{j}."),
                    &[],
                ));
            }
        }
        // The upsampler follows the level's last resnet, and its attention when it has one.
        let slot = if attends("up_block_types", i) { 2 } else { 1 };
        rules.push(rule(
            format!("output_blocks.{}.{slot}.", stride * i + per_level),
            format!("up_blocks.{i}.upsamplers.0."),
            &[],
        ));
    }
    rules
}

/// The VAE's rules (the script's `vae_conversion_map`): decoder levels count from the bottom.
fn vae_rules(config: &Value) -> Vec<Rule> {
    let levels = config["block_out_channels"].as_array().unwrap().len();
    let per_level = config["layers_per_block"].as_u64().unwrap() as usize;
    let mut rules = vec![
        rule("quant_conv.", "quant_conv.", &[]),
        rule("post_quant_conv.", "post_quant_conv.", &[]),
    ];
    for coder in ["encoder", "decoder"] {
        for same in ["conv_in", "conv_out"] {
            rules.push(rule(
                format!("{coder}.{same}."),
                format!("{coder}.{same}."),
                &[],
            ));
        }
        rules.push(rule(
            format!("{coder}.norm_out."),
            format!("{coder}.conv_norm_out."),
            &[],
        ));
        for j in 0..2 {
            rules.push(rule(
                format!("{coder}.mid.block_{}.", j + 1),
                format!("{coder}.mid_block.resnets.{j}."),
                VAE_RESNET,
            ));
        }
        rules.push(rule(
            format!("{coder}.mid.attn_1."),
            format!("{coder}.mid_block.attentions.0."),
            VAE_ATTENTION,
        ));
    }
    for i in 0..levels {
        let up = levels - 1 - i;
        for j in 0..per_level {
            rules.push(rule(
                format!("encoder.down.{i}.block.{j}."),
                format!("encoder.down_blocks.{i}.resnets.{j}."),
                VAE_RESNET,
            ));
        }
        for j in 0..per_level + 1 {
            rules.push(rule(
                format!("decoder.up.{up}.block.{j}."),
                format!("decoder.up_blocks.{i}.resnets.{j}."),
                VAE_RESNET,
            ));
        }
        if i + 1 < levels {
            rules.push(rule(
                format!("encoder.down.{i}.downsample."),
                format!("encoder.down_blocks.{i}.downsamplers.0."),
                &[],
            ));
            rules.push(rule(
                format!("decoder.up.{up}.upsample."),
                format!("decoder.up_blocks.{i}.upsamplers.0."),
                &[],
            ));
        }
    }
    rules
}

/// The second text encoder's rules, without its q/k/v and projection, which are not renames.
fn openclip_rules(layers: usize) -> Vec<Rule> {
    let mut rules = vec![
        rule(
            "token_embedding.",
            "text_model.embeddings.token_embedding.",
            &[],
        ),
        rule(
            "positional_embedding",
            "text_model.embeddings.position_embedding.weight",
            &[],
        ),
        rule("ln_final.", "text_model.final_layer_norm.", &[]),
    ];
    for i in 0..layers {
        rules.push(rule(
            format!("transformer.resblocks.{i}."),
            format!("text_model.encoder.layers.{i}."),
            OPENCLIP_BLOCK,
        ));
    }
    rules
}

/// The checkpoint being written, and how many of the folder's tensors went into it.
#[derive(Default)]
struct Written {
    tensors: HashMap<String, Tensor>,
    from_folder: usize,
}

impl Written {
    /// Adds `tensor`, made of `sources` tensors of the folder, as `name`.
    fn put(&mut self, name: String, tensor: Tensor, sources: usize) {
        self.from_folder += sources;
        let previous = self.tensors.insert(name.clone(), tensor);
        assert!(previous.is_none(), "{name} is written twice");
    }
}

/// The JSON config at `path`.
fn config(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// For `…layers.N.self_attn.{q,k,v}_proj.{weight,bias}`: the name OpenCLIP's joined
/// projection gets in diffusers terms (`…layers.N.self_attn.in_proj_{weight,bias}`) and the
/// slot of this part in it (q, k, v: PyTorch's `MultiheadAttention` order).
fn qkv_slot(name: &str) -> Option<(String, usize)> {
    let (layer, tail) = name.split_once("self_attn.")?;
    let (projection, kind) = tail.split_once('.')?;
    let slot = ["q_proj", "k_proj", "v_proj"]
        .iter()
        .position(|p| *p == projection)?;
    Some((format!("{layer}self_attn.in_proj_{kind}"), slot))
}

/// Writes text encoder 2 (`CLIPTextModelWithProjection`) in OpenCLIP's layout: q, k and v
/// joined into one in-projection, the projection transposed (OpenCLIP computes `x @ P`), and
/// OpenCLIP's `logit_scale`, which the text model does not use.
fn write_openclip(
    tensors: HashMap<String, Tensor>,
    layers: usize,
    out: &mut Written,
) -> candle_core::Result<()> {
    let rules = openclip_rules(layers);
    let mut joined: BTreeMap<String, [Option<Tensor>; 3]> = BTreeMap::new();
    for (name, tensor) in tensors {
        if let Some((in_proj, slot)) = qkv_slot(&name) {
            let previous = joined.entry(in_proj).or_default()[slot].replace(tensor);
            assert!(previous.is_none(), "{name} is read twice");
        } else if name == "text_projection.weight" {
            out.put(
                format!("{OPENCLIP}text_projection"),
                tensor.t()?.contiguous()?,
                1,
            );
        } else {
            out.put(format!("{OPENCLIP}{}", translate(&name, &rules)), tensor, 1);
        }
    }
    for (in_proj, parts) in joined {
        let parts = parts
            .into_iter()
            .map(|p| p.unwrap_or_else(|| panic!("{in_proj}: one of q, k, v is missing")))
            .collect::<Vec<_>>();
        out.put(
            format!("{OPENCLIP}{}", translate(&in_proj, &rules)),
            Tensor::cat(&parts, 0)?,
            parts.len(),
        );
    }
    let logit_scale = Tensor::new((1.0f32 / 0.07).ln(), &Device::Cpu)?;
    out.put(format!("{OPENCLIP}logit_scale"), logit_scale, 0);
    Ok(())
}

/// Converts the diffusers SDXL folder `model` into one SGM-layout checkpoint at `file`; every
/// tensor of the folder goes into it.
fn convert(model: &Path, file: &Path) -> candle_core::Result<()> {
    let load = |part: &str| candle_core::safetensors::load(model.join(part), &Device::Cpu);
    let unet = load("unet/diffusion_pytorch_model.safetensors")?;
    let vae = load("vae/diffusion_pytorch_model.safetensors")?;
    let clip_l = load("text_encoder/model.safetensors")?;
    let openclip = load("text_encoder_2/model.safetensors")?;
    let read = unet.len() + vae.len() + clip_l.len() + openclip.len();

    let mut out = Written::default();
    let rules = unet_rules(&config(&model.join("unet/config.json")));
    for (name, tensor) in unet {
        let name = format!("model.diffusion_model.{}", translate(&name, &rules));
        out.put(name, tensor, 1);
    }
    let rules = vae_rules(&config(&model.join("vae/config.json")));
    for (name, tensor) in vae {
        let name = format!("first_stage_model.{}", translate(&name, &rules));
        // The attention's linear layers are 1×1 convs in the original VAE.
        let tensor = if name.contains(".mid.attn_1.") && tensor.rank() == 2 {
            let (out_features, in_features) = tensor.dims2()?;
            tensor.reshape((out_features, in_features, 1, 1))?
        } else {
            tensor
        };
        out.put(name, tensor, 1);
    }
    // CLIP-L keeps its transformers names.
    for (name, tensor) in clip_l {
        out.put(
            format!("conditioner.embedders.0.transformer.{name}"),
            tensor,
            1,
        );
    }
    let layers = config(&model.join("text_encoder_2/config.json"))["num_hidden_layers"]
        .as_u64()
        .unwrap() as usize;
    write_openclip(openclip, layers, &mut out)?;

    assert_eq!(
        out.from_folder, read,
        "every tensor of the folder is written, once"
    );
    candle_core::safetensors::save(&out.tensors, file)
}

/// The tiny-sdxl model folder, a temp dir, and the folder converted to one checkpoint in it;
/// `None` (skipped) without the fixture.
fn converted() -> Option<(PathBuf, tempfile::TempDir, PathBuf)> {
    let model = match sdxl_fixture() {
        Ok(dir) => dir.join("model"),
        Err(msg) => {
            eprintln!("skipped: {msg}");
            return None;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("tiny-sdxl.safetensors");
    convert(&model, &file).unwrap();
    Some((model, tmp, file))
}

const PROMPT: &str = "a cinematic photo of a red fox in the snow, golden hour";

/// A short SDXL base run (the model's Euler, guidance with a negative prompt), one image.
fn image(model: &StableDiffusion) -> GeneratedImage {
    let request = Request {
        prompt: PROMPT.into(),
        negative_prompt: "blurry, low quality, watermark".into(),
        steps: 2,
        guidance: 5.0,
        seed: 42,
        width: 64,
        height: 64,
        ..Request::default()
    };
    one_image(model, &request)
}

#[test]
fn an_sdxl_single_file_gives_the_folder_pipeline() {
    let Some((model, _tmp, file)) = converted() else {
        return;
    };
    assert_eq!(Checkpoint::open(&file).unwrap().family(), Family::Sdxl);
    let folder = StableDiffusion::load(&model, &Device::Cpu, DType::F32).unwrap();
    let single =
        StableDiffusion::load_single_file(&file, &model, &Device::Cpu, DType::F32).unwrap();
    assert_eq!(single.dir, file);

    // Both text encoders read the same weights: the context and the pooled vector are equal.
    let a = folder.text().unwrap().encode(PROMPT, &Device::Cpu).unwrap();
    let b = single.text().unwrap().encode(PROMPT, &Device::Cpu).unwrap();
    assert_eq!(max_diff(&a.context, &b.context), 0.0, "context");
    let (a, b) = (a.pooled.expect("SDXL pools"), b.pooled.expect("SDXL pools"));
    assert_eq!(max_diff(&a, &b), 0.0, "pooled");

    // The whole run (UNet with its added conditions, scheduler, VAE) is bit-identical.
    let from_folder = image(&folder);
    let from_file = image(&single);
    assert_eq!(
        (from_file.width, from_file.height),
        (from_folder.width, from_folder.height)
    );
    let differing = from_file
        .rgb
        .iter()
        .zip(&from_folder.rgb)
        .filter(|(a, b)| a != b)
        .count();
    assert!(
        from_file.rgb.len() == from_folder.rgb.len() && differing == 0,
        "{differing} of {} bytes differ from the folder's image",
        from_folder.rgb.len()
    );
}

#[test]
fn a_truncated_sdxl_single_file_is_refused() {
    let Some((model, tmp, file)) = converted() else {
        return;
    };
    let bytes = std::fs::read(&file).unwrap();
    let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let truncated = tmp.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..header + (bytes.len() - header) / 2]).unwrap();

    let loaded = std::panic::catch_unwind(|| {
        StableDiffusion::load_single_file(&truncated, &model, &Device::Cpu, DType::F32)
    })
    .expect("loading a truncated checkpoint panicked");
    match loaded {
        Err(err @ EngineError::Weights { .. }) => {
            let text = err.to_string();
            assert!(
                text.contains(&truncated.display().to_string()),
                "the error does not name the file: {text}"
            );
        }
        Err(other) => panic!("expected a weights error, got: {other}"),
        Ok(_) => panic!("a truncated checkpoint was loaded"),
    }
}
