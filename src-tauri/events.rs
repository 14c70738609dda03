//! The names of the events the shell emits to the WebView, declared once here and once in
//! `ui/js/events.js`; a test checks that the two lists agree.

/// A job (local or cloud) changed state or saved an image.
pub const JOB_CHANGED: &str = "job-changed";
/// The running local job advanced a step.
pub const JOB_PROGRESS: &str = "job-progress";
/// A model download advanced.
pub const MODEL_DOWNLOAD_PROGRESS: &str = "model-download-progress";
/// An import advanced.
pub const IMPORT_PROGRESS: &str = "import-progress";
/// An export advanced.
pub const EXPORT_PROGRESS: &str = "export-progress";
/// An upscale advanced a tile.
pub const UPSCALE_PROGRESS: &str = "upscale-progress";

/// Every event above.
#[cfg(test)]
pub const ALL: &[&str] = &[
    JOB_CHANGED,
    JOB_PROGRESS,
    MODEL_DOWNLOAD_PROGRESS,
    IMPORT_PROGRESS,
    EXPORT_PROGRESS,
    UPSCALE_PROGRESS,
];
