//! The engine's error type; every variant names what to fix.

use std::path::PathBuf;

/// Result alias for engine operations.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Everything that can go wrong loading a model or generating.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A file the model folder must contain is missing.
    #[error("missing file {0} (is this a diffusers model folder?)")]
    MissingFile(PathBuf),
    /// A JSON config could not be read.
    #[error("{path}: invalid config: {reason}")]
    BadConfig {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The folder holds a model this engine does not run.
    #[error("unsupported model: {0}. Supported: Stable Diffusion 1.x, 2.x (epsilon and v-prediction), XL, SD-Turbo and SDXL-Turbo, as diffusers folders or single-file checkpoints")]
    Unsupported(String),
    /// Weights could not be loaded (corrupt file, missing tensor, wrong shape).
    #[error("{file}: {reason}")]
    Weights {
        /// The weights file.
        file: PathBuf,
        /// What candle reported (names the tensor).
        reason: String,
    },
    /// A LoRA file cannot be used (not a LoRA, a module that fits no layer of the model).
    #[error("LoRA {file}: {reason}")]
    Lora {
        /// The LoRA file.
        file: PathBuf,
        /// What is wrong, naming the key.
        reason: String,
    },
    /// The tokenizer could not be loaded or failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A request field is out of range.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// An input image or mask cannot be used (not an image, truncated, empty, too large).
    #[error("{what}: {reason}")]
    BadImage {
        /// Which input: "the image to start from", "the mask", or its file.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The scheduler name is not known.
    #[error("unknown scheduler \"{0}\"; valid schedulers: {valid}", valid = crate::schedulers::SchedulerKind::NAMES.join(", "))]
    UnknownScheduler(String),
    /// The requested device is not available in this build or on this machine.
    #[error("{0}")]
    Device(String),
    /// The caller could not take a finished image (e.g. it could not be saved); the run stops.
    #[error("{0}")]
    ImageRefused(String),
    /// The run was cancelled; no image was produced for the unfinished one.
    #[error("cancelled")]
    Cancelled,
    /// The engine hit a bug; the request failed but the app goes on.
    #[error("internal error in the engine: {0}")]
    Panicked(String),
    /// A tensor operation failed.
    #[error("inference failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}
