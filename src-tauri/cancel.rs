//! A slot for the cancel flag of one long operation (an export, a model download) that a
//! separate command can set.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Holds the flag of the operation in progress, if any.
#[derive(Default)]
pub struct CancelSlot(Mutex<Option<Arc<AtomicBool>>>);

impl CancelSlot {
    /// A fresh flag for an operation that starts now.
    pub fn begin(&self) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(flag.clone());
        flag
    }

    /// The operation ended; a later cancel does nothing.
    pub fn end(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Asks the operation in progress, if any, to stop.
    pub fn cancel(&self) {
        if let Some(flag) = self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            flag.store(true, Ordering::Relaxed);
        }
    }
}
