//! Images in a project: adding (with the recipe embedded), listing with a stable cursor,
//! favourites, deletion, and moving or copying between projects.

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use selfdiffusion_recipe::{embed_recipe, embedded_recipe, encode_png, Recipe};

use crate::error::{Error, Result};
use crate::files::write_atomic;
use crate::thumbs::{decode, encode_png as reencode_png, thumbnail_jpeg, Decoded};
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

/// 8-bit RGB pixels in hand, as the engine hands out a finished image.
#[derive(Debug, Clone, Copy)]
pub struct Pixels<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row-major RGB, 3 bytes per pixel.
    pub rgb: &'a [u8],
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

impl ImageSummary {
    /// The name a copy of this image made `factor` times larger is added under:
    /// `{stem}-x{factor}.png`.
    pub fn upscaled_name(&self, factor: u32) -> String {
        let stem = self
            .original_name
            .rsplit_once('.')
            .map_or(self.original_name.as_str(), |(stem, _)| stem);
        format!("{stem}-x{factor}.png")
    }
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
    /// Adds an image this app generated from its pixels: encoded once as PNG with the recipe
    /// written into it, the thumbnail made from the pixels in hand (nothing is decoded).
    pub fn add_generated(
        &self,
        project_id: i64,
        pixels: Pixels<'_>,
        recipe: &Recipe,
        name: Option<&str>,
    ) -> Result<ImageDetail> {
        let label = name.unwrap_or("generated image");
        let corrupt = |reason: String| Error::CorruptImage {
            name: label.to_owned(),
            reason,
        };
        let png = encode_png(pixels.width, pixels.height, pixels.rgb, recipe)
            .map_err(|e| corrupt(e.to_string()))?;
        let image = image::RgbImage::from_raw(pixels.width, pixels.height, pixels.rgb.to_vec())
            .ok_or_else(|| corrupt("the pixels do not fill the image".into()))?;
        let decoded = Decoded {
            ext: "png",
            image: image::DynamicImage::ImageRgb8(image),
        };
        self.add_prepared(project_id, label, name, png, decoded, recipe)
    }

    /// Adds an image file that was generated elsewhere (a cloud server): any decodable image,
    /// stored as PNG carrying `recipe`. A PNG keeps its pixel data byte for byte, and a file
    /// that already carries exactly this recipe is kept whole; it is decoded once, for the
    /// checks and the thumbnail.
    pub fn add_image(
        &self,
        project_id: i64,
        bytes: &[u8],
        recipe: &Recipe,
        name: Option<&str>,
    ) -> Result<ImageDetail> {
        let label = name.unwrap_or("generated image");
        let mut decoded = decode(label, bytes)?;
        let png = if decoded.ext != "png" {
            decoded.ext = "png";
            reencode_png(label, &decoded.image)?
        } else {
            bytes.to_vec()
        };
        let png = if embedded_recipe(&png).as_ref() == Some(recipe) {
            png
        } else {
            embed_recipe(&png, recipe).ok_or_else(|| Error::CorruptImage {
                name: label.to_owned(),
                reason: "malformed PNG chunk stream".into(),
            })?
        };
        self.add_prepared(project_id, label, name, png, decoded, recipe)
    }

    /// Stores a generated PNG whose pixels are `decoded`; unnamed images are named by content.
    fn add_prepared(
        &self,
        project_id: i64,
        label: &str,
        name: Option<&str>,
        png: Vec<u8>,
        decoded: Decoded,
        recipe: &Recipe,
    ) -> Result<ImageDetail> {
        let mut prepared =
            Prepared::from_decoded(label, png, decoded, recipe.clone(), Origin::Generated)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thumbs::DECODES;
    use selfdiffusion_recipe::png_text::{read_text_chunks, RECIPE_KEY};

    fn decodes_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
        let before = DECODES.with(|n| n.get());
        let out = f();
        (out, DECODES.with(|n| n.get()) - before)
    }

    #[test]
    fn a_generated_image_is_encoded_once_and_never_decoded_on_the_add_path() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::open(dir.path()).unwrap();
        let project = lib.create_project("p", None).unwrap();
        let recipe = Recipe {
            prompt: "a kite".into(),
            seed: Some(4),
            ..Recipe::default()
        };
        let rgb: Vec<u8> = (0..40 * 30 * 3).map(|v| (v % 251) as u8).collect();
        let pixels = Pixels {
            width: 40,
            height: 30,
            rgb: &rgb,
        };
        let (added, decodes) =
            decodes_during(|| lib.add_generated(project.id, pixels, &recipe, Some("4.png")));
        let added = added.unwrap();
        assert_eq!(decodes, 0, "the pixels in hand make the thumbnail");
        assert_eq!((added.summary.width, added.summary.height), (40, 30));
        assert_eq!(added.recipe, recipe);
        let file = std::fs::read(lib.path_of(&added.summary.file)).unwrap();
        let recipes = read_text_chunks(&file)
            .into_iter()
            .filter(|(k, _)| k == RECIPE_KEY)
            .count();
        assert_eq!(recipes, 1, "the recipe is embedded once");
        assert_eq!(
            image::load_from_memory(&file)
                .unwrap()
                .into_rgb8()
                .into_raw(),
            rgb
        );
        assert!(lib.path_of(&added.summary.thumb).exists());

        // A file generated elsewhere that already carries its recipe is decoded once (checks
        // and thumbnail) and kept byte for byte.
        let (received, decodes) =
            decodes_during(|| lib.add_image(project.id, &file, &recipe, None));
        let received = received.unwrap();
        assert_eq!(decodes, 1);
        assert_eq!(
            std::fs::read(lib.path_of(&received.summary.file)).unwrap(),
            file
        );

        let bad = Pixels {
            width: 41,
            ..pixels
        };
        assert!(matches!(
            lib.add_generated(project.id, bad, &recipe, None),
            Err(Error::CorruptImage { .. })
        ));
    }
}
