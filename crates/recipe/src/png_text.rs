//! Reading and writing PNG text chunks without touching the image data.

use std::io::Cursor;

/// The PNG file signature.
const SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// Keyword of the AUTOMATIC1111-compatible settings text.
pub const PARAMETERS_KEY: &str = "parameters";
/// Keyword of this app's JSON recipe.
pub const RECIPE_KEY: &str = "selfdiffusion";

/// All text chunks (tEXt, zTXt, iTXt) before the image data, as (keyword, text).
pub fn read_text_chunks(png: &[u8]) -> Vec<(String, String)> {
    let mut decoder = png::Decoder::new(Cursor::new(png));
    decoder.set_ignore_text_chunk(false);
    let Ok(reader) = decoder.read_info() else {
        return Vec::new();
    };
    let info = reader.info();
    let mut out: Vec<(String, String)> = info
        .uncompressed_latin1_text
        .iter()
        .map(|c| (c.keyword.clone(), c.text.clone()))
        .collect();
    out.extend(
        info.compressed_latin1_text
            .iter()
            .filter_map(|c| Some((c.keyword.clone(), c.get_text().ok()?))),
    );
    out.extend(
        info.utf8_text
            .iter()
            .filter_map(|c| Some((c.keyword.clone(), c.get_text().ok()?))),
    );
    out
}

/// Returns `png` with text chunks `entries` inserted before the first IDAT, replacing any text
/// chunks with the same keywords. Latin-1 text goes into tEXt, anything else into iTXt.
///
/// Returns `None` when `png` is not a well-formed chunk stream.
pub fn with_text_chunks(png: &[u8], entries: &[(&str, &str)]) -> Option<Vec<u8>> {
    let chunks = split_chunks(png)?;
    let mut out =
        Vec::with_capacity(png.len() + entries.iter().map(|e| e.1.len() + 64).sum::<usize>());
    out.extend_from_slice(SIGNATURE);
    let mut inserted = false;
    for chunk in chunks {
        if chunk.kind == *b"IDAT" && !inserted {
            for (key, text) in entries {
                write_text_chunk(&mut out, key, text);
            }
            inserted = true;
        }
        let replaced = matches!(&chunk.kind, b"tEXt" | b"zTXt" | b"iTXt")
            && entries
                .iter()
                .any(|(key, _)| chunk.keyword() == Some(key.as_bytes()));
        if !replaced {
            out.extend_from_slice(chunk.raw);
        }
    }
    inserted.then_some(out)
}

struct Chunk<'a> {
    kind: [u8; 4],
    data: &'a [u8],
    raw: &'a [u8],
}

impl Chunk<'_> {
    fn keyword(&self) -> Option<&[u8]> {
        self.data.split(|b| *b == 0).next()
    }
}

fn split_chunks(png: &[u8]) -> Option<Vec<Chunk<'_>>> {
    let mut rest = png.strip_prefix(SIGNATURE)?;
    let mut chunks = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let total = len.checked_add(12)?;
        let raw = rest.get(..total)?;
        let kind: [u8; 4] = raw[4..8].try_into().ok()?;
        chunks.push(Chunk {
            kind,
            data: &raw[8..8 + len],
            raw,
        });
        rest = &rest[total..];
        if kind == *b"IEND" {
            break;
        }
    }
    Some(chunks)
}

fn write_text_chunk(out: &mut Vec<u8>, key: &str, text: &str) {
    let (kind, data) = if crate::encode::is_latin1(text) {
        let mut data = Vec::with_capacity(key.len() + 1 + text.len());
        data.extend_from_slice(key.as_bytes());
        data.push(0);
        data.extend(text.chars().map(|c| u32::from(c) as u8));
        (*b"tEXt", data)
    } else {
        // keyword, NUL, compression flag 0, method 0, empty language, NUL, empty translation, NUL
        let mut data = Vec::with_capacity(key.len() + 5 + text.len());
        data.extend_from_slice(key.as_bytes());
        data.extend_from_slice(&[0, 0, 0, 0, 0]);
        data.extend_from_slice(text.as_bytes());
        (*b"iTXt", data)
    };
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(&kind);
    out.extend_from_slice(&data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(&kind);
    crc.update(&data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 4×3 PNG without text, written by the `png` crate alone.
    pub(crate) fn tiny_png() -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, 4, 3);
        encoder.set_color(png::ColorType::Rgb);
        let mut writer = encoder.write_header().unwrap();
        let pixels: Vec<u8> = (0..4 * 3 * 3).map(|v| v as u8 * 5).collect();
        writer.write_image_data(&pixels).unwrap();
        writer.finish().unwrap();
        out
    }

    fn pixels(png: &[u8]) -> Vec<u8> {
        let mut reader = png::Decoder::new(Cursor::new(png)).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        buf
    }

    #[test]
    fn inserted_chunks_read_back_and_pixels_stay() {
        let png = tiny_png();
        let with = with_text_chunks(
            &png,
            &[
                ("parameters", "a cat\nSteps: 3"),
                ("selfdiffusion", "{\"prompt\":\"日本\"}"),
            ],
        )
        .unwrap();
        let texts = read_text_chunks(&with);
        assert!(texts.contains(&("parameters".into(), "a cat\nSteps: 3".into())));
        assert!(texts.contains(&("selfdiffusion".into(), "{\"prompt\":\"日本\"}".into())));
        assert_eq!(pixels(&png), pixels(&with));
    }

    #[test]
    fn rewriting_replaces_instead_of_duplicating() {
        let once = with_text_chunks(&tiny_png(), &[("parameters", "old")]).unwrap();
        let twice = with_text_chunks(&once, &[("parameters", "new")]).unwrap();
        let texts = read_text_chunks(&twice);
        assert_eq!(texts, vec![("parameters".to_string(), "new".to_string())]);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(with_text_chunks(b"not a png", &[("a", "b")]).is_none());
        let mut truncated = tiny_png();
        truncated.truncate(30);
        assert!(with_text_chunks(&truncated, &[("a", "b")]).is_none());
    }
}
