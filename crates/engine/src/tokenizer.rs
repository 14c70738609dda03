//! Prompt tokenization: the model's own `tokenizer.json`, truncated and padded as its
//! `tokenizer_config.json` says.

use std::path::Path;

use crate::config::{read_json, TokenizerConfig};
use crate::error::{EngineError, Result};

/// Token ids of one prompt, padded to the model's length.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokens {
    /// Exactly `max_len` ids.
    pub ids: Vec<u32>,
    /// The prompt was longer than the model reads and its end was cut.
    pub truncated: bool,
}

/// The tokenizer of a model folder.
pub struct PromptTokenizer {
    inner: tokenizers::Tokenizer,
    max_len: usize,
    pad_id: u32,
}

impl PromptTokenizer {
    /// Loads `tokenizer.json` and `tokenizer_config.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let file = dir.join("tokenizer.json");
        if !file.is_file() {
            return Err(EngineError::MissingFile(file));
        }
        let mut inner = tokenizers::Tokenizer::from_file(&file)
            .map_err(|e| EngineError::Tokenizer(format!("{}: {e}", file.display())))?;
        inner
            .with_truncation(None)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        inner.with_padding(None);
        let config: TokenizerConfig = read_json(&dir.join("tokenizer_config.json"))?;
        let pad_text = config
            .pad_token_text()
            .unwrap_or_else(|| "<|endoftext|>".into());
        let pad_id = inner.token_to_id(&pad_text).ok_or_else(|| {
            EngineError::Tokenizer(format!("pad token {pad_text:?} is not in the vocabulary"))
        })?;
        Ok(PromptTokenizer {
            inner,
            max_len: config.model_max_length,
            pad_id,
        })
    }

    /// Sequence length the text encoder reads.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Tokenizes with start/end tokens, cuts to the model length keeping the end token, and pads.
    pub fn encode(&self, text: &str) -> Result<Tokens> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        let mut ids = encoding.get_ids().to_vec();
        let truncated = ids.len() > self.max_len;
        if truncated {
            let end = *ids.last().expect("a truncated sequence is not empty");
            ids.truncate(self.max_len - 1);
            ids.push(end);
        }
        ids.resize(self.max_len, self.pad_id);
        Ok(Tokens { ids, truncated })
    }
}
