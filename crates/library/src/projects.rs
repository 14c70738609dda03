//! Projects: named collections of images. Names are unique without case and never used as paths.

use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::{now_ms, Library};

/// Longest project name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest project description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;

/// A project.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Project {
    /// Stable id.
    pub id: i64,
    /// Display name, trimmed.
    pub name: String,
    /// Free-text description.
    pub description: String,
    /// Creation time, ms since the epoch.
    pub created_at: i64,
    /// Last change to the project or its images, ms since the epoch.
    pub updated_at: i64,
}

/// A project with the figures a project list shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectSummary {
    /// The project.
    #[serde(flatten)]
    pub project: Project,
    /// Number of images.
    pub image_count: u64,
    /// Total size of the image files in bytes.
    pub bytes: u64,
    /// How many images were generated (not imported).
    pub generated_count: u64,
    /// Library-relative path of the newest image's thumbnail.
    pub cover_thumb: Option<String>,
    /// Jobs running for the project right now.
    pub running_jobs: usize,
}

/// Trims and checks a project name; returns the name to store.
pub fn validate_name(raw: &str) -> Result<String> {
    let name = raw.trim();
    let chars = name.chars().count();
    let problem = if name.is_empty() {
        Some("it is empty".to_owned())
    } else if chars > MAX_NAME_CHARS {
        Some(format!(
            "it is {chars} characters long; at most {MAX_NAME_CHARS} are allowed"
        ))
    } else if name.chars().any(char::is_control) {
        Some("it contains control characters".to_owned())
    } else if name.contains(['/', '\\']) || name.contains("..") {
        Some("it may not contain '/', '\\' or '..'".to_owned())
    } else {
        None
    };
    match problem {
        Some(p) => Err(Error::InvalidName(p)),
        None => Ok(name.to_owned()),
    }
}

fn validate_description(raw: &str) -> Result<String> {
    let description = raw.trim();
    let chars = description.chars().count();
    if chars > MAX_DESCRIPTION_CHARS {
        return Err(Error::DescriptionTooLong(chars));
    }
    Ok(description.to_owned())
}

/// The key that makes names unique without case.
fn name_key(name: &str) -> String {
    name.to_lowercase()
}

fn project_from_row(row: &Row<'_>) -> rusqlite::Result<Project> {
    Ok(Project {
        id: row.get("id")?,
        name: row.get("name")?,
        description: row.get("description")?,
        created_at: row.get("created_at")?,
        updated_at: row.get("updated_at")?,
    })
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

const SUMMARY_SQL: &str = "
    SELECT p.*,
           COUNT(i.id) AS image_count,
           COALESCE(SUM(i.bytes), 0) AS bytes,
           COALESCE(SUM(i.origin = 'generated'), 0) AS generated_count,
           (SELECT thumb FROM images c WHERE c.project_id = p.id ORDER BY c.id DESC LIMIT 1) AS cover_thumb
    FROM projects p LEFT JOIN images i ON i.project_id = p.id";

impl Library {
    /// Creates a project. The name is trimmed, 1–100 characters, and unique without case.
    pub fn create_project(&self, name: &str, description: Option<&str>) -> Result<Project> {
        let name = validate_name(name)?;
        let description = validate_description(description.unwrap_or(""))?;
        let now = now_ms();
        let conn = self.conn();
        conn.execute(
            "INSERT INTO projects(name, name_key, description, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            params![name, name_key(&name), description, now],
        )
        .map_err(|e| if is_unique_violation(&e) { Error::DuplicateName(name.clone()) } else { e.into() })?;
        let id = conn.last_insert_rowid();
        tracing::info!(id, "project created");
        Ok(Project {
            id,
            name,
            description,
            created_at: now,
            updated_at: now,
        })
    }

    /// The project to open on: the one updated last, or, in a library without projects, a new
    /// one called `name`, so there is always somewhere to put a new image.
    pub fn default_project(&self, name: &str) -> Result<Project> {
        let latest: Option<i64> = self
            .conn()
            .query_row(
                "SELECT id FROM projects ORDER BY updated_at DESC, id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        match latest {
            Some(id) => self.project(id),
            None => self.create_project(name, None),
        }
    }

    /// A project by id.
    pub fn project(&self, id: i64) -> Result<Project> {
        self.conn()
            .query_row(
                "SELECT * FROM projects WHERE id = ?1",
                [id],
                project_from_row,
            )
            .optional()?
            .ok_or(Error::ProjectNotFound(id))
    }

    /// A project by name (compared without case, after trimming).
    pub fn project_by_name(&self, name: &str) -> Result<Project> {
        self.conn()
            .query_row(
                "SELECT * FROM projects WHERE name_key = ?1",
                [name_key(name.trim())],
                project_from_row,
            )
            .optional()?
            .ok_or_else(|| Error::ProjectNameNotFound(name.trim().to_owned()))
    }

    /// All projects with their figures, most recently updated first.
    pub fn list_projects(&self) -> Result<Vec<ProjectSummary>> {
        let rows: Vec<ProjectSummary> = {
            let conn = self.conn();
            let mut stmt = conn.prepare(&format!(
                "{SUMMARY_SQL} GROUP BY p.id ORDER BY p.updated_at DESC, p.id DESC"
            ))?;
            let rows = stmt.query_map([], summary_from_row)?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        Ok(rows.into_iter().map(|s| self.with_jobs(s)).collect())
    }

    /// One project with its figures.
    pub fn project_summary(&self, id: i64) -> Result<ProjectSummary> {
        let summary = self
            .conn()
            .query_row(
                &format!("{SUMMARY_SQL} WHERE p.id = ?1 GROUP BY p.id"),
                [id],
                summary_from_row,
            )
            .optional()?
            .ok_or(Error::ProjectNotFound(id))?;
        Ok(self.with_jobs(summary))
    }

    fn with_jobs(&self, mut summary: ProjectSummary) -> ProjectSummary {
        summary.running_jobs = self.running_jobs(summary.project.id);
        summary
    }

    /// Renames and/or re-describes a project; `None` or an empty string leaves a field unchanged.
    pub fn update_project(
        &self,
        id: i64,
        name: Option<&str>,
        description: Option<&str>,
    ) -> Result<Project> {
        let name = name
            .filter(|n| !n.trim().is_empty())
            .map(validate_name)
            .transpose()?;
        let description = description
            .filter(|d| !d.trim().is_empty())
            .map(validate_description)
            .transpose()?;
        {
            let conn = self.conn();
            let changed = conn
                .execute(
                    "UPDATE projects SET name = COALESCE(?2, name), name_key = COALESCE(?3, name_key),
                         description = COALESCE(?4, description), updated_at = ?5 WHERE id = ?1",
                    params![id, name, name.as_deref().map(name_key), description, now_ms()],
                )
                .map_err(|e| match (&name, is_unique_violation(&e)) {
                    (Some(n), true) => Error::DuplicateName(n.clone()),
                    _ => e.into(),
                })?;
            if changed == 0 {
                return Err(Error::ProjectNotFound(id));
            }
        }
        self.project(id)
    }

    /// Deletes a project with its images and files. Refused while jobs for it run.
    pub fn delete_project(&self, id: i64) -> Result<()> {
        let jobs = self.jobs.lock();
        let project = self.project(id)?;
        if let Some(&count) = jobs.get(&id) {
            return Err(Error::ProjectBusy {
                name: project.name,
                count,
            });
        }
        let released: Vec<String> = {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let paths: Vec<String> = {
                let mut stmt =
                    tx.prepare("SELECT file, thumb FROM images WHERE project_id = ?1")?;
                let rows = stmt.query_map([id], |r| {
                    Ok([r.get::<_, String>(0)?, r.get::<_, String>(1)?])
                })?;
                let pairs: Vec<[String; 2]> = rows.collect::<rusqlite::Result<_>>()?;
                pairs.into_iter().flatten().collect()
            };
            let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
            self.reserve(&tx, &refs)?;
            tx.execute("DELETE FROM projects WHERE id = ?1", [id])?;
            tx.commit()?;
            paths
        };
        drop(jobs);
        let refs: Vec<&str> = released.iter().map(String::as_str).collect();
        self.release(&refs)?;
        for dir in ["images", "thumbs"] {
            let path = self.root.join(dir).join(id.to_string());
            if let Err(e) = std::fs::remove_dir_all(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove a deleted project's folder");
                }
            }
        }
        tracing::info!(id, images = released.len() / 2, "project deleted");
        Ok(())
    }
}

fn summary_from_row(row: &Row<'_>) -> rusqlite::Result<ProjectSummary> {
    Ok(ProjectSummary {
        project: project_from_row(row)?,
        image_count: row.get::<_, i64>("image_count")? as u64,
        bytes: row.get::<_, i64>("bytes")? as u64,
        generated_count: row.get::<_, i64>("generated_count")? as u64,
        cover_thumb: row.get("cover_thumb")?,
        running_jobs: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(validate_name("  Cats  ").unwrap(), "Cats");
        assert_eq!(
            validate_name(&"é".repeat(100)).unwrap().chars().count(),
            100
        );
        for bad in [
            "",
            "   ",
            "a/b",
            "a\\b",
            "..",
            "x..y",
            "tab\there",
            "nul\0",
            &"x".repeat(101),
        ] {
            assert!(
                matches!(validate_name(bad), Err(Error::InvalidName(_))),
                "{bad:?} accepted"
            );
        }
    }
}
