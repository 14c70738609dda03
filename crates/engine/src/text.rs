//! Prompts to conditioning: the text encoder(s) of a model and how their outputs are combined,
//! as diffusers' `encode_prompt` does for SD 1.x / 2.x and for SDXL.

use candle_core::{Device, Tensor};

use crate::clip::{ClipTextEncoder, EncodedText, HiddenStates};
use crate::error::Result;
use crate::tokenizer::{PromptTokenizer, Tokens};

/// One tokenizer and the encoder that reads its ids.
pub struct TextStack {
    /// The tokenizer.
    pub tokenizer: PromptTokenizer,
    /// The encoder.
    pub encoder: ClipTextEncoder,
}

impl TextStack {
    fn tokens(&self, text: &str) -> Result<Tokens> {
        self.tokenizer.encode(text)
    }

    fn run(&self, tokens: &Tokens, states: HiddenStates, device: &Device) -> Result<EncodedText> {
        let ids = Tensor::new(tokens.ids.as_slice(), device)?.unsqueeze(0)?;
        self.encoder.encode(&ids, states)
    }
}

/// The text side of a model.
pub enum TextEncoders {
    /// SD 1.x / 2.x: one CLIP, its final layer norm's output.
    Single(TextStack),
    /// SDXL: CLIP-L and OpenCLIP-bigG, each with its own tokenizer; their penultimate states
    /// side by side, the pooled vector from the second's projection.
    Xl {
        /// CLIP-L (`text_encoder`, `tokenizer`).
        first: TextStack,
        /// OpenCLIP-bigG with its projection (`text_encoder_2`, `tokenizer_2`).
        second: Box<TextStack>,
        /// No negative prompt means zero embeddings (`model_index.json`'s
        /// `force_zeros_for_empty_prompt`), rather than encoding an empty one.
        force_zeros_for_empty_prompt: bool,
    },
}

/// One prompt, encoded.
#[derive(Debug, Clone)]
pub struct PromptEmbedding {
    /// Token ids of the first tokenizer (recorded for tests and debugging).
    pub ids: Vec<u32>,
    /// `[1, 77, context width]`.
    pub context: Tensor,
    /// SDXL: `[1, projection]`.
    pub pooled: Option<Tensor>,
    /// The prompt was cut to the encoder's length.
    pub truncated: bool,
}

impl TextEncoders {
    /// The first (or only) tokenizer and encoder.
    pub fn first(&self) -> &TextStack {
        match self {
            TextEncoders::Single(s) => s,
            TextEncoders::Xl { first, .. } => first,
        }
    }

    /// Longest prompt read, in tokens.
    pub fn max_len(&self) -> usize {
        self.first().tokenizer.max_len()
    }

    /// Whether a missing negative prompt becomes zeros instead of an encoded empty prompt.
    pub fn zeros_for_missing_negative(&self) -> bool {
        matches!(
            self,
            TextEncoders::Xl {
                force_zeros_for_empty_prompt: true,
                ..
            }
        )
    }

    /// Encodes one prompt.
    pub fn encode(&self, text: &str, device: &Device) -> Result<PromptEmbedding> {
        match self {
            TextEncoders::Single(stack) => {
                let tokens = stack.tokens(text)?;
                let out = stack.run(&tokens, HiddenStates::Final, device)?;
                Ok(PromptEmbedding {
                    context: out.hidden,
                    pooled: None,
                    truncated: tokens.truncated,
                    ids: tokens.ids,
                })
            }
            TextEncoders::Xl { first, second, .. } => {
                let (t1, t2) = (first.tokens(text)?, second.tokens(text)?);
                let a = first.run(&t1, HiddenStates::Penultimate, device)?;
                let b = second.run(&t2, HiddenStates::Penultimate, device)?;
                Ok(PromptEmbedding {
                    context: Tensor::cat(&[&a.hidden, &b.hidden], 2)?,
                    pooled: b.pooled,
                    truncated: t1.truncated || t2.truncated,
                    ids: t1.ids,
                })
            }
        }
    }

    /// The embedding of "no negative prompt" when it is zeros: shaped like `like`.
    pub fn zeros_like(like: &PromptEmbedding) -> Result<PromptEmbedding> {
        Ok(PromptEmbedding {
            ids: Vec::new(),
            context: like.context.zeros_like()?,
            pooled: like.pooled.as_ref().map(Tensor::zeros_like).transpose()?,
            truncated: false,
        })
    }
}
