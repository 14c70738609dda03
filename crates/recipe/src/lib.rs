//! What an image is made from, shared by the library, the engine, the queue, the cloud client,
//! the server and the CLI: the [`Recipe`], the [`Limits`] its parameters must respect, the PNG a
//! generated image travels in (encoded once, the recipe embedded as it is written), the readers of
//! other tools' metadata, and the one seed function.

mod encode;
mod limits;
pub mod metadata;
pub mod png_text;
mod recipe;
mod seed;
mod size;

pub use encode::{embed_recipe, encode_png, EncodeError};
pub use limits::Limits;
pub use metadata::{embedded_recipe, own_recipe};
pub use recipe::{take_lora_tags, HiresFix, LoraUse, Recipe, SourceImage, Upscale};
pub use seed::random_seed;
pub use size::SizeConditions;
