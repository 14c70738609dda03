//! SDXL's size conditioning: what the model is told about the image's original size, crop and
//! target size (diffusers' `original_size`, `crops_coords_top_left`, `target_size`).

use serde::{Deserialize, Serialize};

/// Size conditions as (height, width) pairs and a (top, left) crop, as diffusers orders them.
/// Any one left out takes diffusers' default: the requested size, or no crop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeConditions {
    /// (height, width) of the "original" image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_size: Option<[u32; 2]>,
    /// (top, left) of the crop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop_top_left: Option<[u32; 2]>,
    /// (height, width) the image is made for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_size: Option<[u32; 2]>,
}

impl SizeConditions {
    /// Whether every condition is left to its default.
    pub fn is_default(&self) -> bool {
        *self == SizeConditions::default()
    }

    /// The six ids the UNet gets for an image of `width` × `height`: original (h, w), crop
    /// (top, left), target (h, w).
    pub fn time_ids(&self, width: u32, height: u32) -> [u32; 6] {
        let size = [height, width];
        let [oh, ow] = self.original_size.unwrap_or(size);
        let [ct, cl] = self.crop_top_left.unwrap_or([0, 0]);
        let [th, tw] = self.target_size.unwrap_or(size);
        [oh, ow, ct, cl, th, tw]
    }

    /// Parses `HxW` (a size) or `T,L` (a crop) as the CLI takes them.
    pub fn parse_pair(text: &str) -> Result<[u32; 2], String> {
        let (a, b) = text
            .split_once(['x', 'X', ','])
            .ok_or_else(|| format!("{text:?} is not two numbers like 1024x1024 or 0,0"))?;
        let number = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| format!("{s:?} in {text:?} is not a whole number ≥ 0"))
        };
        Ok([number(a)?, number(b)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_requested_size_and_no_crop() {
        let c = SizeConditions::default();
        assert!(c.is_default());
        assert_eq!(c.time_ids(832, 1216), [1216, 832, 0, 0, 1216, 832]);
        let c = SizeConditions {
            original_size: Some([4096, 4096]),
            crop_top_left: Some([16, 32]),
            target_size: None,
        };
        assert_eq!(c.time_ids(1024, 768), [4096, 4096, 16, 32, 768, 1024]);
    }

    #[test]
    fn pairs_parse_as_the_cli_writes_them() {
        assert_eq!(SizeConditions::parse_pair("1024x768"), Ok([1024, 768]));
        assert_eq!(SizeConditions::parse_pair("0, 16"), Ok([0, 16]));
        assert!(SizeConditions::parse_pair("1024").is_err());
        assert!(SizeConditions::parse_pair("-1x4").is_err());
    }
}
