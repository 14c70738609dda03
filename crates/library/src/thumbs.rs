//! Decoding images and making thumbnails.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat};

use crate::error::{Error, Result};

/// Longest side of a thumbnail, in pixels.
pub const THUMB_MAX_SIDE: u32 = 256;

/// A decoded image file of a supported type.
pub(crate) struct Decoded {
    /// File extension and format name: `png`, `jpg` or `webp`.
    pub ext: &'static str,
    /// The pixels.
    pub image: DynamicImage,
}

#[cfg(test)]
thread_local! {
    /// Image files decoded on this thread (tests count the decodes of an operation).
    pub(crate) static DECODES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Decodes `bytes`, accepting PNG, JPEG and WebP; `name` is used in errors.
pub(crate) fn decode(name: &str, bytes: &[u8]) -> Result<Decoded> {
    #[cfg(test)]
    DECODES.with(|n| n.set(n.get() + 1));
    let format = image::guess_format(bytes).map_err(|_| Error::UnsupportedFile(name.to_owned()))?;
    let ext = match format {
        ImageFormat::Png => "png",
        ImageFormat::Jpeg => "jpg",
        ImageFormat::WebP => "webp",
        _ => return Err(Error::UnsupportedFile(name.to_owned())),
    };
    let image =
        image::load_from_memory_with_format(bytes, format).map_err(|e| Error::CorruptImage {
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(Decoded { ext, image })
}

/// A JPEG thumbnail no larger than [`THUMB_MAX_SIDE`] on either side.
pub(crate) fn thumbnail_jpeg(name: &str, image: &DynamicImage) -> Result<Vec<u8>> {
    let thumb = image.thumbnail(THUMB_MAX_SIDE, THUMB_MAX_SIDE).into_rgb8();
    encode(name, &DynamicImage::ImageRgb8(thumb), ImageFormat::Jpeg)
}

/// Encodes pixels as PNG (for files that arrive in another format).
pub(crate) fn encode_png(name: &str, image: &DynamicImage) -> Result<Vec<u8>> {
    encode(name, image, ImageFormat::Png)
}

fn encode(name: &str, image: &DynamicImage, format: ImageFormat) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut out), format)
        .map_err(|e| Error::CorruptImage {
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(out)
}
