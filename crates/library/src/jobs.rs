//! Running jobs per project, so a project is never deleted under a job that writes into it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{Library, Result};

/// Counts of running jobs by project id.
#[derive(Debug, Default, Clone)]
pub(crate) struct JobRegistry(Arc<Mutex<HashMap<i64, usize>>>);

impl JobRegistry {
    /// Locks the counts; deletion holds this lock while it checks and deletes.
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<i64, usize>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Marks a job running for a project until dropped.
#[derive(Debug)]
pub struct JobGuard {
    registry: JobRegistry,
    project_id: i64,
}

impl JobGuard {
    /// The project this job writes into.
    pub fn project_id(&self) -> i64 {
        self.project_id
    }
}

impl Drop for JobGuard {
    fn drop(&mut self) {
        let mut counts = self.registry.lock();
        if let Some(n) = counts.get_mut(&self.project_id) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.project_id);
            }
        }
    }
}

impl Library {
    /// Registers a running job (generation, import, export) for a project; the project cannot
    /// be deleted until the returned guard is dropped.
    pub fn begin_job(&self, project_id: i64) -> Result<JobGuard> {
        let mut counts = self.jobs.lock();
        self.project(project_id)?;
        *counts.entry(project_id).or_default() += 1;
        Ok(JobGuard {
            registry: self.jobs.clone(),
            project_id,
        })
    }

    /// How many jobs are running for a project.
    pub fn running_jobs(&self, project_id: i64) -> usize {
        self.jobs.lock().get(&project_id).copied().unwrap_or(0)
    }
}
