//! SelfDiffusion's model manager: the catalog of known models, the Hugging Face cache layout
//! (shared with diffusers, so models it already fetched are found), resumable and verified
//! downloads, and model folders imported from disk. No inference code lives here.

mod cache;
mod catalog;
mod download;
mod error;
mod local;
mod loras;

pub use cache::HubCache;
pub use catalog::{Catalog, CatalogFile, CatalogModel, Defaults};
pub use download::{verify, DownloadProgress, Downloader, VerifyReport, DEFAULT_ENDPOINT};
pub use error::{ModelError, Result};
pub use local::{check_folder, LocalModel, LocalModels};
pub use loras::{LoraEntry, LoraLibrary};
