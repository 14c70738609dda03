//! The one writer of generated images: PNG with the recipe embedded as AUTOMATIC1111
//! `parameters` text and as this app's JSON.

use crate::error::{Error, Result};
use crate::png_text::{with_text_chunks, PARAMETERS_KEY, RECIPE_KEY};
use crate::recipe::Recipe;
use crate::thumbs::{decode, encode_png, Decoded};

/// Any decodable image (`label` names it in errors) as a PNG carrying `recipe`.
/// PNG input keeps its pixel data byte for byte; other formats are re-encoded losslessly.
pub fn png_with_recipe(label: &str, bytes: &[u8], recipe: &Recipe) -> Result<Vec<u8>> {
    png_and_pixels(label, bytes, recipe).map(|(png, _)| png)
}

/// [`png_with_recipe`], also handing back the decoded pixels (the same in the PNG, which is
/// lossless), so a caller need not decode the result again.
pub(crate) fn png_and_pixels(
    label: &str,
    bytes: &[u8],
    recipe: &Recipe,
) -> Result<(Vec<u8>, Decoded)> {
    let mut decoded = decode(label, bytes)?;
    let png = if decoded.ext == "png" {
        bytes.to_vec()
    } else {
        let png = encode_png(label, &decoded.image)?;
        decoded.ext = "png";
        png
    };
    Ok((embed(label, &png, recipe)?, decoded))
}

/// 8-bit RGB pixels as a PNG carrying `recipe`.
pub fn rgb_png_with_recipe(
    width: u32,
    height: u32,
    rgb: &[u8],
    recipe: &Recipe,
) -> Result<Vec<u8>> {
    let label = "generated image";
    let image = image::RgbImage::from_raw(width, height, rgb.to_vec()).ok_or_else(|| {
        Error::CorruptImage {
            name: label.into(),
            reason: format!(
                "{} bytes do not make a {width}×{height} RGB image",
                rgb.len()
            ),
        }
    })?;
    embed(
        label,
        &encode_png(label, &image::DynamicImage::ImageRgb8(image))?,
        recipe,
    )
}

fn embed(label: &str, png: &[u8], recipe: &Recipe) -> Result<Vec<u8>> {
    let json = serde_json::to_string(recipe).expect("a recipe always serialises");
    with_text_chunks(
        png,
        &[(PARAMETERS_KEY, &recipe.to_a1111()), (RECIPE_KEY, &json)],
    )
    .ok_or_else(|| Error::CorruptImage {
        name: label.to_owned(),
        reason: "malformed PNG chunk stream".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::embedded_recipe;

    #[test]
    fn rgb_pixels_become_a_png_with_the_recipe() {
        let recipe = Recipe {
            prompt: "a kite".into(),
            seed: Some(3),
            ..Recipe::default()
        };
        let rgb: Vec<u8> = (0..2 * 3 * 3).map(|v| v as u8 * 10).collect();
        let png = rgb_png_with_recipe(2, 3, &rgb, &recipe).unwrap();
        assert_eq!(embedded_recipe(&png).unwrap(), recipe);
        let back = image::load_from_memory(&png).unwrap().into_rgb8();
        assert_eq!(back.dimensions(), (2, 3));
        assert_eq!(back.into_raw(), rgb);
        assert!(rgb_png_with_recipe(5, 5, &rgb, &recipe).is_err());
    }
}
