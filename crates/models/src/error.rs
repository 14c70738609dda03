//! Errors of the model manager.

use std::path::PathBuf;

/// Result alias for model operations.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// What can go wrong finding, downloading or importing a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// No catalog model has this id.
    #[error("unknown model \"{0}\"; run `selfdiffusion-cli models list` to see the catalog")]
    UnknownModel(String),
    /// The Hub could not be reached.
    #[error(
        "cannot reach {endpoint}: you seem to be offline (models already downloaded still work)"
    )]
    Offline {
        /// The Hub endpoint.
        endpoint: String,
    },
    /// The Hub answered with an error.
    #[error("{url}: the Hub answered {status}{hint}")]
    Http {
        /// The URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// What to do about it.
        hint: &'static str,
    },
    /// A downloaded file is not what the Hub or the catalog says it is.
    #[error("{file}: {what} mismatch (expected {expected}, got {actual}); the file was discarded, download again")]
    Mismatch {
        /// The file in the repo.
        file: String,
        /// `size` or `sha256`.
        what: &'static str,
        /// Expected value.
        expected: String,
        /// Actual value.
        actual: String,
    },
    /// Not enough free disk.
    #[error("not enough free disk in {dir}: the download needs {needed} more bytes, {available} are free")]
    DiskFull {
        /// The cache folder.
        dir: PathBuf,
        /// Bytes still to download.
        needed: u64,
        /// Bytes free.
        available: u64,
    },
    /// The download was cancelled; what was fetched is kept and the next download resumes.
    #[error("download cancelled; it resumes where it stopped next time")]
    Cancelled,
    /// No LoRA of that name is in the LoRA library.
    #[error("no LoRA named \"{name}\" is imported{known}")]
    UnknownLora {
        /// The name asked for.
        name: String,
        /// The names there are, as a sentence tail.
        known: String,
    },
    /// A LoRA of that name is already in the library, with other contents.
    #[error(
        "a different LoRA named \"{0}\" is already imported; rename the file or remove the old one"
    )]
    LoraExists(String),
    /// A folder is not a model this app runs.
    #[error("{path}: {reason}")]
    NotAModel {
        /// The folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A network transfer failed midway.
    #[error("{url}: transfer failed ({reason}); run the download again to resume")]
    Transfer {
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// A file-system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Adds the path to an `io::Result`.
pub(crate) trait IoPath<T> {
    /// Wraps the error with `path`.
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoPath<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
