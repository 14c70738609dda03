//! Loading a diffusers-layout Stable Diffusion folder: every size comes from the configs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use selfdiffusion_recipe::{Limits, LoraUse};

use crate::base_weights::BaseWeights;
use crate::clip::ClipTextEncoder;
use crate::config::{
    read_json, ClipTextConfig, Component, ModelIndex, SchedulerConfig, UNetConfig, VaeConfig,
};
use crate::error::{EngineError, Result};
use crate::half_weights::{HalfWeights, Precision};
use crate::lora::{LoraFile, Loras, Part};
use crate::pipeline::LIMITS;
use crate::schedulers::{Schedule, SchedulerKind};
use crate::single_file::{Checkpoint, Family};
use crate::text::{TextEncoders, TextStack};
use crate::tokenizer::PromptTokenizer;
use crate::unet::UNet;
use crate::vae::Vae;
use crate::weights_file::WeightsFile;

/// Pipeline classes this engine runs (the img2img and inpainting classes name the same models;
/// an inpainting UNet is recognised by its input channels).
const SUPPORTED_PIPELINES: &[&str] = &[
    "StableDiffusionPipeline",
    "StableDiffusionImg2ImgPipeline",
    "StableDiffusionInpaintPipeline",
    "StableDiffusionXLPipeline",
    "StableDiffusionXLImg2ImgPipeline",
    "StableDiffusionXLInpaintPipeline",
];

/// Whether a pipeline class is one of the SDXL ones.
fn is_xl(class_name: &str) -> bool {
    class_name.starts_with("StableDiffusionXL")
}

/// A model to run: where it is on disk, and the LoRAs merged into it. The engine keeps the last
/// one loaded; the same spec again reuses it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// A diffusers folder, or a single-file checkpoint.
    pub path: PathBuf,
    /// For a single-file checkpoint: the diffusers folder of its configs and tokenizer.
    pub config: Option<PathBuf>,
    /// LoRA files and their weights, merged in this order.
    pub loras: Vec<(PathBuf, f64)>,
}

impl ModelSpec {
    /// A diffusers folder, without LoRAs.
    pub fn folder(dir: impl Into<PathBuf>) -> Self {
        ModelSpec {
            path: dir.into(),
            config: None,
            loras: Vec::new(),
        }
    }

    /// The folder whose configs describe the model.
    pub fn config_dir(&self) -> &Path {
        self.config.as_deref().unwrap_or(&self.path)
    }

    /// What requests the model takes, from its configs alone.
    pub fn limits(&self) -> Result<Limits> {
        model_limits(self.config_dir())
    }

    /// Its family, weight precision and size on disk, from its configs and the headers of its
    /// weight files (no weights are read).
    pub fn facts(&self) -> Result<ModelFacts> {
        let family = family_of_configs(self.config_dir())?;
        let (weights, bytes) = if self.config.is_some() {
            (self.path.clone(), file_size(&self.path)?)
        } else {
            let unet = Component {
                dir: self.path.join("unet"),
            }
            .weights("diffusion_pytorch_model")?;
            (unet, folder_size(&self.path)?)
        };
        let tensors = WeightsFile::open(&weights).map_err(|reason| EngineError::Weights {
            file: weights.clone(),
            reason,
        })?;
        let mut dtypes: Vec<&'static str> = tensors
            .tensors()
            .iter()
            .filter_map(|(_, info)| match info.dtype {
                safetensors::Dtype::F16 => Some("fp16"),
                safetensors::Dtype::BF16 => Some("bf16"),
                safetensors::Dtype::F32 => Some("fp32"),
                safetensors::Dtype::F64 => Some("fp64"),
                _ => None,
            })
            .collect();
        dtypes.sort_unstable();
        dtypes.dedup();
        let precision = match dtypes.as_slice() {
            [one] => (*one).to_owned(),
            _ => "mixed".to_owned(),
        };
        Ok(ModelFacts {
            family,
            family_name: family.name().to_owned(),
            precision,
            bytes,
        })
    }

    /// Reads the LoRA files and loads the model for `device` in `precision` (a `DType`, or a
    /// [`Precision`] that keeps the weight matrices narrower than the computation).
    pub fn load(
        &self,
        device: &Device,
        precision: impl Into<Precision>,
    ) -> Result<StableDiffusion> {
        self.load_keeping(Keep::No, device, precision.into())
    }

    /// Loads the model, keeping its base weights in `base` for a later change of LoRAs.
    pub(crate) fn load_recording(
        &self,
        base: &BaseWeights,
        device: &Device,
        precision: Precision,
    ) -> Result<StableDiffusion> {
        self.load_keeping(Keep::Record(base), device, precision)
    }

    /// Loads the model from the base weights an earlier load of the same model kept in `base`
    /// (the weights are not read from disk again), with this spec's LoRAs.
    pub(crate) fn load_replaying(
        &self,
        base: &BaseWeights,
        device: &Device,
        precision: Precision,
    ) -> Result<StableDiffusion> {
        self.load_keeping(Keep::Replay(base), device, precision)
    }

    /// Whether `other` is the same base model (its LoRAs aside).
    pub fn same_base(&self, other: &ModelSpec) -> bool {
        self.path == other.path && self.config == other.config
    }

    fn load_keeping(
        &self,
        keep: Keep<'_>,
        device: &Device,
        precision: Precision,
    ) -> Result<StableDiffusion> {
        let loras = self
            .loras
            .iter()
            .map(|(file, weight)| Ok((Arc::new(LoraFile::open(file)?), *weight)))
            .collect::<Result<Vec<_>>>()?;
        let path = match &self.config {
            Some(config) => ModelPath::SingleFile {
                file: &self.path,
                config,
            },
            None => ModelPath::Folder(&self.path),
        };
        StableDiffusion::load_keeping(path, &Loras::new(loras), keep, device, precision)
    }
}

/// What the Models screen shows about an installed model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelFacts {
    /// Its family: `sd1`, `sd2` or `sdxl`.
    pub family: Family,
    /// The family as people know it ("Stable Diffusion XL").
    pub family_name: String,
    /// The UNet weights' precision on disk: `fp16`, `bf16`, `fp32` or `mixed`.
    pub precision: String,
    /// Bytes on disk (the folder's files, or the checkpoint).
    pub bytes: u64,
}

/// The family of the model whose configs are in `dir`: SDXL from its pipeline class, SD 2.x from
/// its OpenCLIP text encoder (exact GELU), else SD 1.x.
pub fn family_of_configs(dir: &Path) -> Result<Family> {
    let index: ModelIndex = read_json(&dir.join("model_index.json"))?;
    if is_xl(&index.class_name) {
        return Ok(Family::Sdxl);
    }
    let te: ClipTextConfig = read_json(&dir.join("text_encoder").join("config.json"))?;
    Ok(if te.hidden_act == "gelu" {
        Family::Sd2
    } else {
        Family::Sd1
    })
}

fn file_size(path: &Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| EngineError::Io {
            path: path.to_path_buf(),
            source: e,
        })
}

/// The bytes of every file under `dir` (links followed, as a Hugging Face snapshot is links).
fn folder_size(dir: &Path) -> Result<u64> {
    let entries = std::fs::read_dir(dir).map_err(|e| EngineError::Io {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let mut total = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        total += if path.is_dir() {
            folder_size(&path)?
        } else {
            file_size(&path)?
        };
    }
    Ok(total)
}

/// Where a model is on disk.
#[derive(Debug, Clone, Copy)]
pub enum ModelPath<'a> {
    /// A diffusers folder: configs, tokenizer and weights.
    Folder(&'a Path),
    /// A single-file checkpoint with the diffusers folder whose configs and tokenizer it uses.
    SingleFile {
        /// The checkpoint.
        file: &'a Path,
        /// The folder of configs.
        config: &'a Path,
    },
}

/// Where a model's weights are: the component files of its folder, or one checkpoint file.
#[derive(Clone, Copy)]
enum Source<'a> {
    Folder,
    Checkpoint(&'a Checkpoint),
}

/// What happens to the base weights as they load: nothing, kept for a later change of LoRAs,
/// or read from what an earlier load kept (no disk read).
#[derive(Clone, Copy)]
enum Keep<'a> {
    No,
    Record(&'a BaseWeights),
    Replay(&'a BaseWeights),
}

/// The weights of one component (LoRAs merged in by `merge`).
type Wrap<'w> = &'w dyn Fn(Box<dyn SimpleBackend>) -> Box<dyn SimpleBackend>;

/// Reads a model's components: from its folder or its checkpoint, kept for (or replayed from)
/// a change of LoRAs as `keep` says.
struct Reader<'a> {
    dir: &'a Path,
    source: Source<'a>,
    keep: Keep<'a>,
    device: &'a Device,
    precision: Precision,
}

/// What a [`Reader`] reads from, owned, for reading a part again after loading.
struct ReadAgain {
    dir: PathBuf,
    checkpoint: Option<Checkpoint>,
    device: Device,
}

impl ReadAgain {
    /// A reader of the model's parts (no weights kept) in `precision`.
    fn reader(&self, precision: Precision) -> Reader<'_> {
        Reader {
            dir: &self.dir,
            source: self
                .checkpoint
                .as_ref()
                .map_or(Source::Folder, Source::Checkpoint),
            keep: Keep::No,
            device: &self.device,
            precision,
        }
    }
}

impl Reader<'_> {
    /// What this reader reads from, owned.
    fn owned(&self) -> ReadAgain {
        ReadAgain {
            dir: self.dir.to_path_buf(),
            checkpoint: match self.source {
                Source::Checkpoint(c) => Some(c.clone()),
                Source::Folder => None,
            },
            device: self.device.clone(),
        }
    }

    fn component(&self, name: &str) -> Component {
        Component {
            dir: self.dir.join(name),
        }
    }

    /// The weights of the component `name` (file `stem` in a folder), and the file errors name.
    fn load(
        &self,
        name: &str,
        stem: &str,
        merge: Wrap<'_>,
        from_checkpoint: &dyn Fn(&Checkpoint) -> Box<dyn SimpleBackend>,
    ) -> Result<(VarBuilder<'static>, PathBuf)> {
        let read = || -> Result<(Box<dyn SimpleBackend>, PathBuf)> {
            match self.source {
                Source::Folder => {
                    let file = self.component(name).weights(stem)?;
                    Ok((weights_of(&file)?, file))
                }
                Source::Checkpoint(c) => Ok((from_checkpoint(c), c.file().to_path_buf())),
            }
        };
        let (backend, file) = match self.keep {
            Keep::No => read()?,
            Keep::Record(base) => {
                let (backend, file) = read()?;
                (base.record(name, &file, backend), file)
            }
            Keep::Replay(base) => match base.replay(name) {
                Some(kept) => kept,
                None => read()?,
            },
        };
        let backend = HalfWeights::wrap(merge(backend), self.precision);
        Ok((
            VarBuilder::from_backend(backend, self.precision.compute, self.device.clone()),
            file,
        ))
    }

    /// The tokenizers and text encoders (LoRAs merged), and the width of their context.
    fn text_encoders(&self, index: &ModelIndex, loras: &Loras) -> Result<(TextEncoders, usize)> {
        let te_config: ClipTextConfig =
            read_json(&self.component("text_encoder").dir.join("config.json"))?;
        let (te_vb, te_file) = self.load(
            "text_encoder",
            "model",
            &|b| loras.wrap(Part::TextEncoder, b),
            &|c| c.text_encoder(),
        )?;
        let first = TextStack {
            tokenizer: PromptTokenizer::load(&self.component("tokenizer").dir)?,
            encoder: in_file(&te_file, ClipTextEncoder::new(te_vb, &te_config))?,
        };
        if !is_xl(&index.class_name) {
            return Ok((TextEncoders::Single(first), te_config.hidden_size));
        }
        let te2_config: ClipTextConfig =
            read_json(&self.component("text_encoder_2").dir.join("config.json"))?;
        let (vb, file) = self.load(
            "text_encoder_2",
            "model",
            &|b| loras.wrap(Part::TextEncoder2, b),
            &|c| c.text_encoder_2(),
        )?;
        let second = TextStack {
            tokenizer: PromptTokenizer::load(&self.component("tokenizer_2").dir)?,
            encoder: in_file(&file, ClipTextEncoder::with_projection(vb, &te2_config))?,
        };
        let width = te_config.hidden_size + te2_config.hidden_size;
        let text = TextEncoders::Xl {
            first,
            second: Box::new(second),
            force_zeros_for_empty_prompt: index.force_zeros_for_empty_prompt.unwrap_or(true),
        };
        Ok((text, width))
    }
}

/// A part of the model read from disk when first needed (or again after it was freed).
struct Slot<T> {
    loaded: Mutex<Option<Arc<T>>>,
    read: Box<dyn Fn() -> Result<T> + Send + Sync>,
}

impl<T> Slot<T> {
    /// A slot holding `value` (if any), which `read` reads again when needed.
    fn new(value: Option<T>, read: Box<dyn Fn() -> Result<T> + Send + Sync>) -> Self {
        Slot {
            loaded: Mutex::new(value.map(Arc::new)),
            read,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<T>>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The part, read now if it is not in memory.
    fn get(&self) -> Result<Arc<T>> {
        let mut loaded = self.lock();
        if let Some(value) = loaded.as_ref() {
            return Ok(value.clone());
        }
        let value = Arc::new((self.read)()?);
        *loaded = Some(value.clone());
        Ok(value)
    }
}

/// The text encoders: loaded with the model, freed after encoding in low-memory runs, and read
/// again (LoRAs merged) when next needed.
struct TextSlot {
    slot: Slot<TextEncoders>,
    free_after_encoding: AtomicBool,
}

/// A loaded Stable Diffusion 1.x / 2.x / XL / Turbo model.
pub struct StableDiffusion {
    /// The model folder, or the checkpoint file it was read from.
    pub dir: PathBuf,
    /// The tokenizer(s) and text encoder(s) ([`StableDiffusion::text`]).
    text: TextSlot,
    /// The VAE in f32, read from disk when a half-precision decode overflows.
    f32_vae: Slot<Vae>,
    /// The denoising UNet.
    pub unet: UNet,
    /// The autoencoder.
    pub vae: Vae,
    /// The VAE's config (scale factor, latent scaling).
    pub vae_config: VaeConfig,
    /// The UNet's config.
    pub unet_config: UNetConfig,
    /// The training noise schedule.
    pub schedule: Schedule,
    /// The scheduler the model was saved with, when it is one of ours.
    pub default_scheduler: Option<SchedulerKind>,
    /// Where it runs.
    pub device: Device,
    /// Weight precision.
    pub dtype: DType,
    /// The VAE's precision: f32 for an SDXL VAE that asks for it (`force_upcast`) when the model
    /// runs in f16 or bf16, as diffusers upcasts it; else the model's.
    pub vae_dtype: DType,
    /// The LoRAs merged into the weights, as recipes record them.
    pub loras: Vec<LoraUse>,
}

/// The VAE's precision in a model of `dtype`: diffusers' SDXL pipelines run a `force_upcast`
/// VAE in f32 when the model is in half precision (the SDXL VAE overflows in f16).
fn vae_dtype(xl: bool, vae: &VaeConfig, dtype: DType) -> DType {
    if xl && vae.force_upcast && matches!(dtype, DType::F16 | DType::BF16) {
        DType::F32
    } else {
        dtype
    }
}

/// The weights of `file`, read a tensor at a time.
fn weights_of(file: &Path) -> Result<Box<dyn SimpleBackend>> {
    let tensors = WeightsFile::open(file).map_err(|reason| EngineError::Weights {
        file: file.to_path_buf(),
        reason,
    })?;
    Ok(Box::new(tensors))
}

/// Wraps a construction error as a weights error naming the file.
/// Tensor errors while building a component (a missing tensor, a wrong shape) name its file.
fn in_file<T>(file: &Path, r: Result<T>) -> Result<T> {
    r.map_err(|e| match e {
        EngineError::Candle(c) => EngineError::Weights {
            file: file.to_path_buf(),
            reason: c.to_string(),
        },
        other => other,
    })
}

/// The limits of a model: the engine's, narrowed to sizes its VAE and UNet take (sides step by
/// the VAE's pixels per latent cell; the smallest side leaves one latent cell at the UNet's
/// deepest level).
pub fn limits_of(unet: &UNetConfig, vae: &VaeConfig) -> Limits {
    let step = vae.scale_factor() as u32;
    let levels = unet.block_out_channels.len().max(1) as u32;
    LIMITS.narrowed(&Limits {
        min_side: step << (levels - 1),
        side_step: step,
        ..LIMITS
    })
}

/// The limits of the model folder at `dir`, from its configs alone (no weights are read).
pub fn model_limits(dir: &Path) -> Result<Limits> {
    let unet: UNetConfig = read_json(&dir.join("unet").join("config.json"))?;
    let vae: VaeConfig = read_json(&dir.join("vae").join("config.json"))?;
    Ok(limits_of(&unet, &vae))
}

impl StableDiffusion {
    /// The tokenizer(s) and text encoder(s), read again if a low-memory run freed them.
    pub fn text(&self) -> Result<Arc<TextEncoders>> {
        self.text.slot.get()
    }

    /// Whether the text encoders are in memory now.
    pub fn text_loaded(&self) -> bool {
        self.text.slot.lock().is_some()
    }

    /// The VAE in f32, for a decode that overflowed in half precision (read from disk the
    /// first time).
    pub(crate) fn f32_vae(&self) -> Result<Arc<Vae>> {
        self.f32_vae.get()
    }

    /// Low-memory runs: free the text encoders once a request's prompts are encoded (they are
    /// read again, from disk, for the next request).
    pub fn set_free_text_after_encoding(&self, free: bool) {
        self.text.free_after_encoding.store(free, Ordering::Relaxed);
    }

    /// Frees the text encoders if low-memory runs are asked for.
    pub(crate) fn after_encoding(&self) {
        if self.text.free_after_encoding.load(Ordering::Relaxed) {
            *self.text.slot.lock() = None;
            tracing::debug!("text encoders freed until the next request");
        }
    }

    /// What requests this model takes.
    pub fn limits(&self) -> Limits {
        limits_of(&self.unet_config, &self.vae_config)
    }

    /// Loads a model folder for `device` in `precision` (a `DType`, or a [`Precision`]).
    pub fn load(dir: &Path, device: &Device, precision: impl Into<Precision>) -> Result<Self> {
        Self::load_with_loras(ModelPath::Folder(dir), &Loras::default(), device, precision)
    }

    /// Loads a single-file checkpoint (the original LDM layout) with the configs and tokenizer
    /// of the diffusers folder `config_dir`, as diffusers' `from_single_file(config=…)` does.
    /// The weights are read from the file under translated names: no converted copy.
    pub fn load_single_file(
        file: &Path,
        config_dir: &Path,
        device: &Device,
        precision: impl Into<Precision>,
    ) -> Result<Self> {
        let path = ModelPath::SingleFile {
            file,
            config: config_dir,
        };
        Self::load_with_loras(path, &Loras::default(), device, precision)
    }

    /// Loads the model at `path` with `loras` merged into its weights as they load; a LoRA
    /// module that fits no layer is an error naming it.
    pub fn load_with_loras(
        path: ModelPath<'_>,
        loras: &Loras,
        device: &Device,
        precision: impl Into<Precision>,
    ) -> Result<Self> {
        Self::load_keeping(path, loras, Keep::No, device, precision.into())
    }

    fn load_keeping(
        path: ModelPath<'_>,
        loras: &Loras,
        keep: Keep<'_>,
        device: &Device,
        precision: Precision,
    ) -> Result<Self> {
        crate::allocator::tune_allocator();
        let model = match path {
            ModelPath::Folder(dir) => {
                Self::assemble(dir, Source::Folder, keep, loras, device, precision)?
            }
            ModelPath::SingleFile { file, config } => {
                let checkpoint = Checkpoint::open(file)?;
                let mut model = Self::assemble(
                    config,
                    Source::Checkpoint(&checkpoint),
                    keep,
                    loras,
                    device,
                    precision,
                )?;
                model.dir = file.to_path_buf();
                model
            }
        };
        loras.check_all_used()?;
        Ok(model)
    }

    /// Builds the pipeline from the configs in `dir` and the weights of `source`.
    fn assemble(
        dir: &Path,
        source: Source<'_>,
        keep: Keep<'_>,
        loras: &Loras,
        device: &Device,
        precision: Precision,
    ) -> Result<Self> {
        let dtype = precision.compute;
        let index: ModelIndex = read_json(&dir.join("model_index.json"))?;
        if !SUPPORTED_PIPELINES.contains(&index.class_name.as_str()) {
            return Err(EngineError::Unsupported(format!(
                "{} in {}",
                index.class_name,
                dir.display()
            )));
        }
        let xl = is_xl(&index.class_name);
        if let Source::Checkpoint(c) = source {
            if (c.family() == Family::Sdxl) != xl {
                return Err(EngineError::Unsupported(format!(
                    "{} is a {} checkpoint, but the configs in {} are for a {}; give the configs of its own family",
                    c.file().display(),
                    c.family().name(),
                    dir.display(),
                    if xl { "Stable Diffusion XL model" } else { "Stable Diffusion 1.x / 2.x model" },
                )));
            }
        }
        let component = |name: &str| Component {
            dir: dir.join(name),
        };
        let reader = Reader {
            dir,
            source,
            keep,
            device,
            precision,
        };
        let (text, context_width) = reader.text_encoders(&index, loras)?;
        // Read again from disk when a low-memory run freed them.
        let read_text = {
            let (again, index, loras) = (reader.owned(), index.clone(), loras.clone());
            Box::new(move || {
                tracing::info!(dir = %again.dir.display(), "reading the text encoders again");
                Ok(again.reader(precision).text_encoders(&index, &loras)?.0)
            })
        };

        let unet_cfg: UNetConfig = read_json(&component("unet").dir.join("config.json"))?;
        let (unet_vb, unet_file) = reader.load(
            "unet",
            "diffusion_pytorch_model",
            &|b| loras.wrap_unet(b, &unet_cfg),
            &|c| c.unet(&unet_cfg),
        )?;
        let unet = in_file(&unet_file, UNet::new(unet_vb, &unet_cfg))?;
        if unet.takes_added_cond() != xl {
            return Err(EngineError::Unsupported(format!(
                "{}: the UNet's added conditioning does not fit a {} pipeline",
                dir.display(),
                index.class_name
            )));
        }

        let vae_cfg: VaeConfig = read_json(&component("vae").dir.join("config.json"))?;
        let latent = vae_cfg.latent_channels;
        if unet_cfg.in_channels != latent && unet_cfg.in_channels != 2 * latent + 1 {
            return Err(EngineError::Unsupported(format!(
                "{}: a UNet taking {} channels with a VAE of {latent} latent channels (expected {latent}, or {} for inpainting)",
                dir.display(),
                unet_cfg.in_channels,
                2 * latent + 1
            )));
        }
        let vae_dtype = vae_dtype(xl, &vae_cfg, dtype);
        let vae_reader = Reader {
            precision: precision.for_vae(vae_dtype),
            ..reader
        };
        let (vae_vb, vae_file) =
            vae_reader.load("vae", "diffusion_pytorch_model", &|b| b, &|c| {
                c.vae(&vae_cfg)
            })?;
        let vae = in_file(&vae_file, Vae::new(vae_vb, &vae_cfg))?;
        // Read in f32 when a half-precision decode overflows.
        let read_f32_vae = {
            let (again, cfg) = (reader.owned(), vae_cfg.clone());
            Box::new(move || {
                tracing::info!(dir = %again.dir.display(), "reading the VAE in f32");
                let (vb, file) = again.reader(Precision::from(DType::F32)).load(
                    "vae",
                    "diffusion_pytorch_model",
                    &|b| b,
                    &|c| c.vae(&cfg),
                )?;
                in_file(&file, Vae::new(vb, &cfg))
            })
        };

        let sched_cfg: SchedulerConfig =
            read_json(&component("scheduler").dir.join("scheduler_config.json"))?;
        if unet_cfg.cross_attention_dim != context_width {
            return Err(EngineError::Unsupported(format!(
                "the UNet expects {}-wide text context but the text encoders give {context_width}",
                unet_cfg.cross_attention_dim
            )));
        }
        tracing::info!(dir = %dir.display(), ?dtype, weights = ?precision.weights, "model loaded");
        Ok(StableDiffusion {
            dir: dir.to_path_buf(),
            text: TextSlot {
                slot: Slot::new(Some(text), read_text),
                free_after_encoding: AtomicBool::new(false),
            },
            f32_vae: Slot::new(None, read_f32_vae),
            unet,
            vae,
            vae_config: vae_cfg,
            unet_config: unet_cfg,
            schedule: Schedule::from_config(&sched_cfg)?,
            default_scheduler: SchedulerKind::from_class(&sched_cfg.class_name),
            device: device.clone(),
            dtype,
            vae_dtype,
            loras: loras.uses(),
        })
    }
}
