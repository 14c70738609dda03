//! Prompt tokenization: the model's own `tokenizer.json`, truncated and padded as its
//! `tokenizer_config.json` says.

use std::path::Path;

use crate::config::{read_json, TokenizerConfig};
use crate::error::{EngineError, Result};

/// CLIP's byte-level BPE from `vocab.json` and `merges.txt`, built exactly as transformers'
/// `CLIPTokenizerFast` converts it (normalizer, split pattern, `</w>` suffix, start/end tokens).
fn clip_bpe(dir: &Path) -> Result<tokenizers::Tokenizer> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|e| EngineError::Io { path, source: e })
    };
    let vocab: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&read("vocab.json")?)
            .map_err(|e| EngineError::Tokenizer(format!("vocab.json: {e}")))?;
    let merges_text = read("merges.txt")?;
    let merges: Vec<&str> = merges_text
        .lines()
        .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
        .collect();
    let id = |token: &str| {
        vocab
            .get(token)
            .and_then(|v| v.as_u64())
            .ok_or_else(|| EngineError::Tokenizer(format!("{token} is not in vocab.json")))
    };
    let (bos, eos) = (id("<|startoftext|>")?, id("<|endoftext|>")?);
    let special = |id: u64, content: &str| {
        serde_json::json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
            "normalized": false, "special": true})
    };
    let spec = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(bos, "<|startoftext|>"), special(eos, "<|endoftext|>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"}, {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "}, {"type": "Lowercase"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex":
                "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+"},
             "behavior": "Removed", "invert": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]},
        "post_processor": {"type": "RobertaProcessing", "sep": ["<|endoftext|>", eos], "cls": ["<|startoftext|>", bos],
            "trim_offsets": false, "add_prefix_space": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<|endoftext|>", "continuing_subword_prefix": "",
            "end_of_word_suffix": "</w>", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges}
    });
    spec.to_string()
        .parse::<tokenizers::Tokenizer>()
        .map_err(|e| {
            EngineError::Tokenizer(format!(
                "building CLIP BPE from vocab.json and merges.txt: {e}"
            ))
        })
}

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
    /// Loads `tokenizer.json` (or, as SD 1.x repos ship, CLIP's `vocab.json` + `merges.txt`)
    /// and `tokenizer_config.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let file = dir.join("tokenizer.json");
        let mut inner = if file.is_file() {
            tokenizers::Tokenizer::from_file(&file)
                .map_err(|e| EngineError::Tokenizer(format!("{}: {e}", file.display())))?
        } else if dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file() {
            clip_bpe(dir)?
        } else {
            return Err(EngineError::MissingFile(file));
        };
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
