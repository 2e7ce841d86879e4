//! GPT-2's tokenizer files for transformers (`vocab.json`, `merges.txt`), derived from the BPE
//! ranks progc itself uses (tiktoken-rs `r50k_base`, embedded in the crate: nothing is
//! downloaded); and the configuration that goes beside a `tokenizer.json` (file and `bpe(N)`
//! tokenizers, which are exported as they are).
//!
//! Invariants:
//! - token `i` of `vocab.json` is rank `i` of `r50k_base`, its bytes written in GPT-2's
//!   byte-level alphabet ([`byte_to_unicode`]); `<|endoftext|>` is 50256;
//! - merge `k` of `merges.txt` (after the `#version` line) builds token `256 + k`: the two
//!   parts BPE splits that token's bytes into when only ranks below its own may be merged.
//!   Merging pairs by merge index is then the same as tiktoken merging by the rank of the
//!   merged bytes, so transformers' tokenizer and progc's give the same ids.

use std::collections::HashMap;

use crate::exec::error::{ErrorKind, ExecError};

/// Id of `<|endoftext|>` in GPT-2.
pub const END_OF_TEXT: u32 = 50256;
/// Ordinary (mergeable) GPT-2 tokens: ids `0..50256`.
const ORDINARY: usize = 50256;

/// GPT-2's byte-level alphabet: printable Latin-1 bytes map to themselves, every other byte to
/// `U+0100 + n` in byte order, so every token is a string of visible, non-space characters.
pub fn byte_to_unicode() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
        let c = if printable {
            b
        } else {
            n += 1;
            0x100 + n - 1
        };
        out[b as usize] = char::from_u32(c).unwrap_or('\u{fffd}');
    }
    out
}

/// The bytes of every GPT-2 token, id order (50257 entries, the last `<|endoftext|>`).
pub fn gpt2_token_bytes() -> Result<Vec<Vec<u8>>, ExecError> {
    let bpe = tiktoken_rs::r50k_base().map_err(|e| {
        ExecError::new(
            ErrorKind::Internal,
            format!("cannot build the GPT-2 tokenizer: {e}"),
        )
    })?;
    let ids: Vec<u32> = (0..=END_OF_TEXT).collect();
    Ok(bpe._decode_native_and_split(ids).collect())
}

/// A token's bytes in the byte-level alphabet.
pub fn token_string(bytes: &[u8], alphabet: &[char; 256]) -> String {
    bytes.iter().map(|&b| alphabet[b as usize]).collect()
}

/// For each ordinary token from 256 on, the ids of the two tokens it is merged from.
pub fn derive_merges(tokens: &[Vec<u8>]) -> Result<Vec<(u32, u32)>, ExecError> {
    let ordinary = &tokens[..ORDINARY.min(tokens.len())];
    let rank: HashMap<&[u8], u32> = ordinary
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_slice(), i as u32))
        .collect();
    let mut merges = Vec::with_capacity(ordinary.len().saturating_sub(256));
    for (id, bytes) in ordinary.iter().enumerate().skip(256) {
        let parts = bpe_below(bytes, &rank, id as u32);
        let bad = || {
            ExecError::new(
                ErrorKind::Internal,
                format!("GPT-2 token {id} is not the merge of two lower-ranked tokens"),
            )
        };
        let [a, b] = parts.as_slice() else {
            return Err(bad());
        };
        match (rank.get(a), rank.get(b)) {
            (Some(&a), Some(&b)) => merges.push((a, b)),
            _ => return Err(bad()),
        }
    }
    Ok(merges)
}

/// BPE on `bytes` merging only pairs whose merged rank is below `max_rank` (lowest rank first).
fn bpe_below<'a>(bytes: &'a [u8], rank: &HashMap<&[u8], u32>, max_rank: u32) -> Vec<&'a [u8]> {
    // Part boundaries as byte offsets.
    let mut cuts: Vec<usize> = (0..=bytes.len()).collect();
    loop {
        let best = (0..cuts.len().saturating_sub(2))
            .filter_map(|i| {
                let r = *rank.get(&bytes[cuts[i]..cuts[i + 2]])?;
                (r < max_rank).then_some((r, i))
            })
            .min();
        match best {
            Some((_, i)) => {
                cuts.remove(i + 1);
            }
            None => break,
        }
    }
    cuts.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
}

/// `vocab.json`: token string -> id, in id order.
pub fn vocab_json(tokens: &[Vec<u8>]) -> String {
    let alphabet = byte_to_unicode();
    let mut out = String::from("{");
    for (id, bytes) in tokens.iter().enumerate() {
        let s = if id == END_OF_TEXT as usize {
            "<|endoftext|>".to_string()
        } else {
            token_string(bytes, &alphabet)
        };
        if id > 0 {
            out.push(',');
        }
        // A JSON string of a plain String cannot fail to serialize.
        out.push_str(&serde_json::to_string(&s).unwrap_or_default());
        out.push(':');
        out.push_str(&id.to_string());
    }
    out.push('}');
    out
}

/// `merges.txt`: the version line, then one `left right` pair per line.
pub fn merges_txt(tokens: &[Vec<u8>], merges: &[(u32, u32)]) -> String {
    let alphabet = byte_to_unicode();
    let mut out = String::from("#version: 0.2\n");
    for &(a, b) in merges {
        out.push_str(&token_string(&tokens[a as usize], &alphabet));
        out.push(' ');
        out.push_str(&token_string(&tokens[b as usize], &alphabet));
        out.push('\n');
    }
    out
}

/// `tokenizer_config.json` and `special_tokens_map.json` of GPT-2 with `context` positions.
pub fn tokenizer_config(context: usize) -> (serde_json::Value, serde_json::Value) {
    let eot = "<|endoftext|>";
    let config = serde_json::json!({
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": context,
        "add_prefix_space": false,
        "bos_token": eot,
        "eos_token": eot,
        "unk_token": eot,
        "clean_up_tokenization_spaces": false,
    });
    let special = serde_json::json!({ "bos_token": eot, "eos_token": eot, "unk_token": eot });
    (config, special)
}

/// `tokenizer_config.json` and `special_tokens_map.json` beside a `tokenizer.json` (a file or
/// `bpe(N)` tokenizer): transformers' generic fast tokenizer, which reads everything else from
/// the tokenizer.json; `end_of_text` is the end-of-text token, when the tokenizer has one.
pub fn fast_tokenizer_config(
    context: usize,
    end_of_text: Option<&str>,
) -> (serde_json::Value, serde_json::Value) {
    let mut config = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": context,
        "clean_up_tokenization_spaces": false,
    });
    let mut special = serde_json::json!({});
    if let Some(eot) = end_of_text {
        for key in ["bos_token", "eos_token"] {
            config[key] = eot.into();
            special[key] = eot.into();
        }
    }
    (config, special)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// Tokens and merges, derived once for every test.
    pub fn derived() -> &'static (Vec<Vec<u8>>, Vec<(u32, u32)>) {
        static D: OnceLock<(Vec<Vec<u8>>, Vec<(u32, u32)>)> = OnceLock::new();
        D.get_or_init(|| {
            let t = gpt2_token_bytes().unwrap();
            let m = derive_merges(&t).unwrap();
            (t, m)
        })
    }

    /// transformers' BPE on one pre-token, from the written files' content: merge the pair
    /// with the lowest merge index until none applies, then look each part up in the vocab.
    fn hf_bpe(
        word: &[u8],
        vocab: &HashMap<String, u32>,
        merges: &HashMap<(String, String), usize>,
    ) -> Vec<u32> {
        let alphabet = byte_to_unicode();
        let mut parts: Vec<String> = word
            .iter()
            .map(|&b| alphabet[b as usize].to_string())
            .collect();
        loop {
            let best = (0..parts.len().saturating_sub(1))
                .filter_map(|i| {
                    merges
                        .get(&(parts[i].clone(), parts[i + 1].clone()))
                        .map(|&r| (r, i))
                })
                .min();
            let Some((_, i)) = best else { break };
            let right = parts.remove(i + 1);
            parts[i].push_str(&right);
        }
        parts.iter().map(|p| vocab[p]).collect()
    }

    fn parsed() -> (HashMap<String, u32>, HashMap<(String, String), usize>) {
        let (tokens, merges) = derived();
        let vocab: HashMap<String, u32> = serde_json::from_str(&vocab_json(tokens)).unwrap();
        let text = merges_txt(tokens, merges);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("#version: 0.2"));
        let merges = lines
            .enumerate()
            .map(|(i, l)| {
                let (a, b) = l.split_once(' ').unwrap();
                ((a.to_string(), b.to_string()), i)
            })
            .collect();
        (vocab, merges)
    }

    #[test]
    fn derived_files_have_gpt2s_known_entries() {
        let (tokens, merges) = derived();
        assert_eq!(tokens.len(), 50257);
        assert_eq!(merges.len(), 50000);
        let (vocab, merge_rank) = parsed();
        assert_eq!(vocab.len(), 50257);
        assert_eq!(vocab["Ġthe"], 262);
        assert_eq!(vocab["<|endoftext|>"], 50256);
        assert_eq!(vocab["!"], 0);
        // GPT-2's own merges.txt starts with `Ġ t`, then `Ġ a`.
        let first = merges_txt(tokens, merges);
        let mut lines = first.lines().skip(1);
        assert_eq!(lines.next(), Some("Ġ t"));
        assert_eq!(lines.next(), Some("Ġ a"));
        assert_eq!(hf_bpe(b"Hello", &vocab, &merge_rank), vec![15496]);
        assert_eq!(hf_bpe(b" world", &vocab, &merge_rank), vec![995]);
    }

    #[test]
    fn merges_reproduce_tiktoken_on_real_words() {
        let (vocab, merges) = parsed();
        let bpe = tiktoken_rs::r50k_base().unwrap();
        let text = std::fs::read_to_string("data/emma.txt").unwrap();
        let mut checked = 0;
        // Pre-tokens ` word` (a space and ASCII letters) and punctuation runs are each one
        // piece of GPT-2's pre-tokenizer, so both BPEs see exactly the same input.
        for w in text.split_whitespace().take(20_000) {
            let piece = format!(" {w}");
            if !w.bytes().all(|b| b.is_ascii_alphabetic()) {
                continue;
            }
            let want = bpe.encode_ordinary(&piece);
            assert_eq!(hf_bpe(piece.as_bytes(), &vocab, &merges), want, "{piece:?}");
            checked += 1;
        }
        assert!(checked > 10_000, "{checked}");
    }
}
