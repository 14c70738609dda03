//! The library's error type: every variant says what went wrong and, where it helps, what to do.

use std::io;
use std::path::Path;

/// Result alias for library operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A project name broke a naming rule; the message says which.
    #[error("invalid project name: {0}")]
    InvalidName(String),
    /// A project description is too long.
    #[error("the description is {0} characters long; at most {max} are allowed", max = crate::projects::MAX_DESCRIPTION_CHARS)]
    DescriptionTooLong(usize),
    /// Another project already has this name (compared without case).
    #[error("a project named \"{0}\" already exists (names are compared without case); choose another name")]
    DuplicateName(String),
    /// No project has this id.
    #[error("no project with id {0}")]
    ProjectNotFound(i64),
    /// No project has this name.
    #[error("no project named \"{0}\"")]
    ProjectNameNotFound(String),
    /// No image has this id.
    #[error("no image with id {0}")]
    ImageNotFound(i64),
    /// The project cannot be deleted while jobs for it run.
    #[error("There are {count} tasks running for project \"{name}\". Please stop all tasks before deleting the project!")]
    ProjectBusy {
        /// The project's name.
        name: String,
        /// How many jobs are running for it.
        count: usize,
    },
    /// The bytes are not a readable image.
    #[error("{name}: not a readable image ({reason})")]
    CorruptImage {
        /// The file or entry name.
        name: String,
        /// What the decoder said.
        reason: String,
    },
    /// The file is not one of the supported image types.
    #[error("{0}: unsupported file type (PNG, JPEG and WebP images can be imported)")]
    UnsupportedFile(String),
    /// A zip entry tries to escape the extraction folder.
    #[error("zip entry \"{0}\" has an absolute path or '..'; the archive was refused and nothing was imported")]
    UnsafeZipEntry(String),
    /// The archive could not be read.
    #[error("{path}: not a readable zip archive ({reason})")]
    BadArchive {
        /// The archive's path.
        path: String,
        /// What the zip reader said.
        reason: String,
    },
    /// A stored image no longer matches its recorded hash.
    #[error("image {id} ({path}) is damaged: its content no longer matches the recorded hash; run verify")]
    DamagedImage {
        /// The image id.
        id: i64,
        /// Its path inside the library.
        path: String,
    },
    /// No img2img or inpainting input with this hash is kept in the library.
    #[error("no kept input with SHA-256 \"{0}\"; choose the image (or paint the mask) again")]
    InputNotFound(String),
    /// The caller cancelled the operation; nothing was changed.
    #[error("cancelled; nothing was changed")]
    Cancelled,
    /// A list cursor was not one this library handed out.
    #[error("invalid cursor \"{0}\": pass back a cursor from a previous page, or none for the first page")]
    InvalidCursor(String),
    /// A file-system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The database failed.
    #[error("library database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// The database was written by a newer version of the app.
    #[error("the library database has schema version {found}, newer than this app understands ({supported}); update SelfDiffusion")]
    NewerSchema {
        /// Version found on disk.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
}

impl Error {
    /// An I/O error with a description of what was being done to which path.
    pub(crate) fn io(action: &str, path: &Path, source: io::Error) -> Self {
        Error::Io {
            context: format!("cannot {action} {}", path.display()),
            source,
        }
    }
}

/// Adds "what was being done" to an `io::Result`.
pub(crate) trait IoContext<T> {
    /// Wraps the error as [`Error::Io`] naming the action and path.
    fn ctx(self, action: &str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, action: &str, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(action, path, e))
    }
}
