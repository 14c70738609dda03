//! Images in a project: adding (with the recipe embedded), listing with a stable cursor,
//! favourites, deletion, and moving or copying between projects.

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::embed::png_and_pixels;
use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::recipe::Recipe;
use crate::thumbs::{decode, thumbnail_jpeg, Decoded};
use crate::{now_ms, Library};

/// How an image came into the library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Made by this app (locally or in the cloud).
    Generated,
    /// Brought in from a file or archive.
    Imported,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Generated => "generated",
            Origin::Imported => "imported",
        }
    }

    fn parse(s: &str) -> Origin {
        if s == "generated" {
            Origin::Generated
        } else {
            Origin::Imported
        }
    }
}

/// An image as a gallery shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageSummary {
    /// Stable id; newer images have larger ids.
    pub id: i64,
    /// The project it belongs to.
    pub project_id: i64,
    /// Library-relative path of the image file.
    pub file: String,
    /// Library-relative path of the thumbnail.
    pub thumb: String,
    /// The name it was added or imported under.
    pub original_name: String,
    /// Pixel width.
    pub width: u32,
    /// Pixel height.
    pub height: u32,
    /// File size in bytes.
    pub bytes: u64,
    /// `png`, `jpg` or `webp`.
    pub format: String,
    /// Generated or imported.
    pub origin: Origin,
    /// Marked as a favourite.
    pub favorite: bool,
    /// The prompt, for captions and search.
    pub prompt: String,
    /// When it was added, ms since the epoch.
    pub created_at: i64,
}

/// An image with everything recorded about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageDetail {
    /// The gallery fields.
    #[serde(flatten)]
    pub summary: ImageSummary,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// The full recipe.
    pub recipe: Recipe,
}

/// What to list from a project.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ImageQuery {
    /// Only images whose prompt, negative prompt or name contains this text (any case).
    pub search: Option<String>,
    /// Only favourites.
    pub favorites_only: bool,
    /// Continue after this cursor (from the previous page).
    pub cursor: Option<String>,
    /// Page size; 0 means the default (100). At most 1000.
    pub limit: usize,
}

/// One page of images, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImagePage {
    /// The images.
    pub images: Vec<ImageSummary>,
    /// Cursor for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// An image ready to be stored: validated, hashed, with its thumbnail made.
pub(crate) struct Prepared {
    pub bytes: Vec<u8>,
    pub ext: &'static str,
    pub width: u32,
    pub height: u32,
    pub thumb: Vec<u8>,
    pub sha256: String,
    pub original_name: String,
    pub recipe: Recipe,
    pub origin: Origin,
    pub favorite: bool,
    pub created_at: i64,
}

impl Prepared {
    /// Checks and measures an image file kept byte for byte (imports and copies).
    pub(crate) fn verbatim(
        name: &str,
        bytes: Vec<u8>,
        recipe: Recipe,
        origin: Origin,
    ) -> Result<Prepared> {
        let decoded = decode(name, &bytes)?;
        Self::from_decoded(name, bytes, decoded, recipe, origin)
    }

    /// Measures an image file whose pixels were already decoded.
    fn from_decoded(
        name: &str,
        bytes: Vec<u8>,
        decoded: Decoded,
        recipe: Recipe,
        origin: Origin,
    ) -> Result<Prepared> {
        let thumb = thumbnail_jpeg(name, &decoded.image)?;
        Ok(Prepared {
            sha256: sha256_hex(&bytes),
            ext: decoded.ext,
            width: decoded.image.width(),
            height: decoded.image.height(),
            thumb,
            bytes,
            original_name: name.to_owned(),
            recipe,
            origin,
            favorite: false,
            created_at: now_ms(),
        })
    }
}

/// Hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Escapes `%`, `_` and `\` for a LIKE pattern with `ESCAPE '\'`.
fn like_pattern(text: &str) -> String {
    let mut out = String::from("%");
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

fn summary_from_row(row: &Row<'_>) -> rusqlite::Result<ImageSummary> {
    Ok(ImageSummary {
        id: row.get("id")?,
        project_id: row.get("project_id")?,
        file: row.get("file")?,
        thumb: row.get("thumb")?,
        original_name: row.get("original_name")?,
        width: row.get("width")?,
        height: row.get("height")?,
        bytes: row.get::<_, i64>("bytes")? as u64,
        format: row.get("format")?,
        origin: Origin::parse(&row.get::<_, String>("origin")?),
        favorite: row.get("favorite")?,
        prompt: row.get("prompt")?,
        created_at: row.get("created_at")?,
    })
}

fn detail_from_row(row: &Row<'_>) -> rusqlite::Result<ImageDetail> {
    let recipe: String = row.get("recipe")?;
    Ok(ImageDetail {
        summary: summary_from_row(row)?,
        sha256: row.get("sha256")?,
        recipe: serde_json::from_str(&recipe).unwrap_or_default(),
    })
}

/// Default page size of [`Library::list_images`].
const DEFAULT_PAGE: usize = 100;
/// Largest page size of [`Library::list_images`].
const MAX_PAGE: usize = 1000;

/// Inserts the row of a stored image; the caller commits.
pub(crate) fn insert_row(
    conn: &rusqlite::Connection,
    project_id: i64,
    file: &str,
    thumb: &str,
    p: &Prepared,
) -> Result<i64> {
    conn.execute(
        "INSERT INTO images(project_id, file, thumb, original_name, sha256, bytes, width, height, format,
                            origin, favorite, prompt, negative_prompt, recipe, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            project_id,
            file,
            thumb,
            p.original_name,
            p.sha256,
            p.bytes.len() as i64,
            p.width,
            p.height,
            p.ext,
            p.origin.as_str(),
            p.favorite,
            p.recipe.prompt,
            p.recipe.negative_prompt,
            serde_json::to_string(&p.recipe).expect("a recipe always serialises"),
            p.created_at,
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

impl Library {
    /// Adds a generated image: any decodable image bytes, stored as PNG with the recipe embedded
    /// as AUTOMATIC1111 `parameters` text and as this app's JSON.
    pub fn add_image(
        &self,
        project_id: i64,
        bytes: &[u8],
        recipe: &Recipe,
        name: Option<&str>,
    ) -> Result<ImageDetail> {
        let label = name.unwrap_or("generated image");
        let (png, pixels) = png_and_pixels(label, bytes, recipe)?;
        let mut prepared =
            Prepared::from_decoded(label, png, pixels, recipe.clone(), Origin::Generated)?;
        if name.is_none() {
            prepared.original_name = format!("{}.png", &prepared.sha256[..16]);
        }
        let id = self.store(project_id, prepared)?;
        self.image(id)
    }

    /// Writes a prepared image's files durably, then commits its row. On failure nothing is left.
    pub(crate) fn store(&self, project_id: i64, p: Prepared) -> Result<i64> {
        let stem = uuid::Uuid::new_v4().simple().to_string();
        let file = format!("images/{project_id}/{stem}.{}", p.ext);
        let thumb = format!("thumbs/{project_id}/{stem}.jpg");
        let paths = [file.as_str(), thumb.as_str()];
        {
            let conn = self.conn();
            self.project_exists(&conn, project_id)?;
            self.reserve(&conn, &paths)?;
        }
        let result = (|| {
            write_atomic(&self.path_of(&file), &p.bytes)?;
            write_atomic(&self.path_of(&thumb), &p.thumb)?;
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let id = insert_row(&tx, project_id, &file, &thumb, &p)?;
            Self::settle(&tx, &paths)?;
            Self::touch_project(&tx, project_id)?;
            tx.commit()?;
            Ok(id)
        })();
        if result.is_err() {
            if let Err(e) = self.release(&paths) {
                tracing::warn!(error = %e, "could not clean up after a failed write; it is retried on next open");
            }
        }
        result
    }

    fn project_exists(&self, conn: &rusqlite::Connection, project_id: i64) -> Result<()> {
        conn.query_row("SELECT 1 FROM projects WHERE id = ?1", [project_id], |_| {
            Ok(())
        })
        .optional()?
        .ok_or(Error::ProjectNotFound(project_id))
    }

    /// A page of a project's images, newest first. The cursor is stable under inserts: images
    /// added after the first page never shift or repeat later pages.
    pub fn list_images(&self, project_id: i64, query: &ImageQuery) -> Result<ImagePage> {
        let before: Option<i64> = match &query.cursor {
            None => None,
            Some(c) => Some(
                c.strip_prefix("i")
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| Error::InvalidCursor(c.clone()))?,
            ),
        };
        let limit = match query.limit {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let search = query
            .search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(like_pattern);
        let conn = self.conn();
        self.project_exists(&conn, project_id)?;
        let mut stmt = conn.prepare(
            "SELECT * FROM images
             WHERE project_id = ?1 AND (?2 IS NULL OR id < ?2) AND (?3 = 0 OR favorite = 1)
               AND (?4 IS NULL OR prompt LIKE ?4 ESCAPE '\\' OR negative_prompt LIKE ?4 ESCAPE '\\'
                    OR original_name LIKE ?4 ESCAPE '\\')
             ORDER BY id DESC LIMIT ?5",
        )?;
        let rows = stmt.query_map(
            params![
                project_id,
                before,
                query.favorites_only,
                search,
                limit as i64 + 1
            ],
            summary_from_row,
        )?;
        let mut images: Vec<ImageSummary> = rows.collect::<rusqlite::Result<_>>()?;
        let next_cursor = if images.len() > limit {
            images.truncate(limit);
            images.last().map(|i| format!("i{}", i.id))
        } else {
            None
        };
        Ok(ImagePage {
            images,
            next_cursor,
        })
    }

    /// One image with its recipe.
    pub fn image(&self, id: i64) -> Result<ImageDetail> {
        self.conn()
            .query_row("SELECT * FROM images WHERE id = ?1", [id], detail_from_row)
            .optional()?
            .ok_or(Error::ImageNotFound(id))
    }

    /// Images of a project, oldest first, with recipes (export and duplicate checks).
    pub(crate) fn project_images(&self, project_id: i64) -> Result<Vec<ImageDetail>> {
        let conn = self.conn();
        self.project_exists(&conn, project_id)?;
        let mut stmt = conn.prepare("SELECT * FROM images WHERE project_id = ?1 ORDER BY id")?;
        let rows = stmt.query_map([project_id], detail_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Sets whether an image is a favourite.
    pub fn set_favorite(&self, id: i64, favorite: bool) -> Result<()> {
        let changed = self.conn().execute(
            "UPDATE images SET favorite = ?2 WHERE id = ?1",
            params![id, favorite],
        )?;
        if changed == 0 {
            return Err(Error::ImageNotFound(id));
        }
        Ok(())
    }

    /// Flips an image's favourite mark and returns the new state.
    pub fn toggle_favorite(&self, id: i64) -> Result<bool> {
        let now = !self.image(id)?.summary.favorite;
        self.set_favorite(id, now)?;
        Ok(now)
    }

    /// Deletes images, rows and files together. Unknown ids are an error and nothing is deleted.
    pub fn delete_images(&self, ids: &[i64]) -> Result<usize> {
        let released = {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let mut paths = Vec::with_capacity(ids.len() * 2);
            for &id in ids {
                let (project, file, thumb): (i64, String, String) = tx
                    .query_row(
                        "SELECT project_id, file, thumb FROM images WHERE id = ?1",
                        [id],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()?
                    .ok_or(Error::ImageNotFound(id))?;
                self.reserve(&tx, &[&file, &thumb])?;
                tx.execute("DELETE FROM images WHERE id = ?1", [id])?;
                Self::touch_project(&tx, project)?;
                paths.push(file);
                paths.push(thumb);
            }
            tx.commit()?;
            paths
        };
        let refs: Vec<&str> = released.iter().map(String::as_str).collect();
        self.release(&refs)?;
        Ok(ids.len())
    }

    /// Copies images into another project (new ids, same bytes and recipes).
    pub fn copy_images(&self, ids: &[i64], target_project: i64) -> Result<Vec<i64>> {
        self.project(target_project)?;
        let sources = ids
            .iter()
            .map(|&id| self.image(id))
            .collect::<Result<Vec<_>>>()?;
        let mut copied = Vec::with_capacity(sources.len());
        for src in sources {
            let path = self.path_of(&src.summary.file);
            let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
            if sha256_hex(&bytes) != src.sha256 {
                return Err(Error::DamagedImage {
                    id: src.summary.id,
                    path: src.summary.file,
                });
            }
            let mut p = Prepared::verbatim(
                &src.summary.original_name,
                bytes,
                src.recipe,
                src.summary.origin,
            )?;
            p.favorite = src.summary.favorite;
            p.created_at = src.summary.created_at;
            copied.push(self.store(target_project, p)?);
        }
        Ok(copied)
    }

    /// Moves images into another project: copied there durably, then the originals removed.
    pub fn move_images(&self, ids: &[i64], target_project: i64) -> Result<Vec<i64>> {
        let movable: Vec<i64> = ids
            .iter()
            .map(|&id| self.image(id))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .filter(|i| i.summary.project_id != target_project)
            .map(|i| i.summary.id)
            .collect();
        let copied = self.copy_images(&movable, target_project)?;
        self.delete_images(&movable)?;
        Ok(copied)
    }
}
