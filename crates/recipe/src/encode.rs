//! The one writer of a generated image: 8-bit RGB pixels encoded once as PNG, with the recipe
//! written as the file is made (AUTOMATIC1111 `parameters` text and this app's JSON).

use crate::png_text::{with_text_chunks, PARAMETERS_KEY, RECIPE_KEY};
use crate::recipe::Recipe;

/// Why pixels could not become a PNG.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The buffer does not hold `width × height` RGB pixels.
    #[error("{len} bytes do not make a {width}×{height} RGB image")]
    WrongSize {
        /// Width asked for.
        width: u32,
        /// Height asked for.
        height: u32,
        /// Bytes given.
        len: usize,
    },
    /// The PNG encoder failed.
    #[error("cannot encode the PNG: {0}")]
    Png(#[from] png::EncodingError),
}

/// `rgb` (row-major, 3 bytes per pixel) as a PNG carrying `recipe`.
pub fn encode_png(
    width: u32,
    height: u32,
    rgb: &[u8],
    recipe: &Recipe,
) -> Result<Vec<u8>, EncodeError> {
    if rgb.len() as u64 != u64::from(width) * u64::from(height) * 3 || width == 0 || height == 0 {
        return Err(EncodeError::WrongSize {
            width,
            height,
            len: rgb.len(),
        });
    }
    let mut out = Vec::with_capacity(rgb.len() / 2 + 4096);
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Balanced);
    for (key, text) in recipe.text_chunks() {
        if is_latin1(&text) {
            encoder.add_text_chunk(key.to_owned(), text)?;
        } else {
            encoder.add_itxt_chunk(key.to_owned(), text)?;
        }
    }
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

/// `png` with `recipe` embedded in place of any recipe it carried; the pixel data is kept byte
/// for byte. `None` when `png` is not a well-formed PNG chunk stream.
pub fn embed_recipe(png: &[u8], recipe: &Recipe) -> Option<Vec<u8>> {
    let chunks = recipe.text_chunks();
    let entries: Vec<(&str, &str)> = chunks.iter().map(|(k, v)| (*k, v.as_str())).collect();
    with_text_chunks(png, &entries)
}

/// Whether tEXt can hold `text` (Latin-1 without NUL).
pub(crate) fn is_latin1(text: &str) -> bool {
    text.chars().all(|c| (1..=255).contains(&u32::from(c)))
}

impl Recipe {
    /// The text chunks that carry this recipe: the A1111 `parameters` text and this app's JSON.
    fn text_chunks(&self) -> [(&'static str, String); 2] {
        let json = serde_json::to_string(self).expect("a recipe always serialises");
        [(PARAMETERS_KEY, self.to_a1111()), (RECIPE_KEY, json)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::embedded_recipe;
    use crate::png_text::read_text_chunks;

    fn decode(png: &[u8]) -> (u32, u32, Vec<u8>) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn pixels_become_a_png_with_the_recipe_written_once() {
        let recipe = Recipe {
            prompt: "a kite over 日本".into(),
            seed: Some(3),
            ..Recipe::default()
        };
        let rgb: Vec<u8> = (0..2 * 3 * 3).map(|v| v as u8 * 10).collect();
        let png = encode_png(2, 3, &rgb, &recipe).unwrap();
        assert_eq!(embedded_recipe(&png).unwrap(), recipe);
        assert_eq!(decode(&png), (2, 3, rgb.clone()));
        let keys: Vec<String> = read_text_chunks(&png).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys.iter().filter(|k| *k == RECIPE_KEY).count(), 1);
        assert_eq!(keys.iter().filter(|k| *k == PARAMETERS_KEY).count(), 1);
        assert!(matches!(
            encode_png(5, 5, &rgb, &recipe),
            Err(EncodeError::WrongSize { len: 18, .. })
        ));
    }

    #[test]
    fn embedding_replaces_the_recipe_and_keeps_the_pixels() {
        let first = Recipe {
            prompt: "first".into(),
            ..Recipe::default()
        };
        let second = Recipe {
            prompt: "second".into(),
            ..Recipe::default()
        };
        let rgb = vec![7u8; 4 * 4 * 3];
        let png = encode_png(4, 4, &rgb, &first).unwrap();
        let again = embed_recipe(&png, &second).unwrap();
        assert_eq!(embedded_recipe(&again).unwrap(), second);
        assert_eq!(decode(&again).2, rgb);
        assert_eq!(read_text_chunks(&again).len(), 2);
    }
}
