//! glibc's allocator tuned for inference: every large buffer (an activation, a layer's widened
//! weights) is otherwise a fresh `mmap` that is unmapped when freed, so each step faults in and
//! zeroes gigabytes of pages again. Measured on a full-size SD 1.5 run (2 threads): 11.3 s of
//! system time → 5.7 s, and the whole run 7 % faster, for 1 % more peak memory. Freed memory
//! stays with the process for the next buffer instead.

use std::sync::Once;

/// Keeps large freed blocks for reuse instead of returning them to the system (Linux with
/// glibc; elsewhere nothing changes). Runs once per process; `StableDiffusion`'s loaders call
/// it.
pub fn tune_allocator() {
    static TUNED: Once = Once::new();
    TUNED.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            // SAFETY: mallopt only changes the allocator's parameters; it is safe to call at
            // any time, from any thread.
            let (no_mmap, keep) = unsafe {
                (
                    libc::mallopt(libc::M_MMAP_MAX, 0),
                    libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX),
                )
            };
            if no_mmap != 1 || keep != 1 {
                tracing::warn!(
                    "the allocator could not be tuned; large buffers stay mapped per use"
                );
            }
        }
    });
}
