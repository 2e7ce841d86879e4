#!/usr/bin/env python3
"""Check a `progc export --to hf` folder with transformers (not part of CI).

    scripts/check-hf-export.py EXPORT_DIR
    scripts/check-hf-export.py RUN_DIR [--progc target/release/progc]

With a run directory, it first exports the run's latest checkpoint into a temporary folder.
Then it
  1. loads the folder with GPT2LMHeadModel.from_pretrained, capturing transformers' logging
     and Python warnings, and fails on any missing, unexpected or mismatched weight;
  2. recomputes the loss on progc's validation windows (progc_eval.json: the batches progc's
     evaluation used and its loss) and fails unless it is within 1e-4 relative;
  3. for a gpt2-tokenizer export, loads AutoTokenizer from the folder and fails unless it
     encodes a few strings to GPT-2's known ids and progc's sample text (progc_eval.json's
     tokenizer_sample, encoded by progc) to exactly progc's ids;
  4. for an export with a tokenizer.json (`bpe(N)` or a tokenizer file), loads AutoTokenizer
     from the folder and fails unless it encodes progc's sample text to exactly progc's ids
     (without special tokens, as progc encodes) and decodes progc's first validation window
     to the text progc decodes it to (what `progc sample` prints).

Needs torch and transformers (e.g. `pip install torch transformers`).
"""

import argparse
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import warnings

REL_TOL = 1e-4


def export_run(run_dir, progc):
    out = os.path.join(tempfile.mkdtemp(prefix="progc-hf-"), "export")
    subprocess.run([progc, "export", run_dir, "--to", "hf", out], check=True)
    return out


def load_model(folder):
    import transformers
    from transformers import GPT2LMHeadModel

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    tlog = transformers.logging.get_logger("transformers")
    tlog.addHandler(handler)
    transformers.logging.set_verbosity_warning()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, info = GPT2LMHeadModel.from_pretrained(folder, output_loading_info=True)
    tlog.removeHandler(handler)
    log = stream.getvalue() + "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
    problems = {k: v for k, v in info.items() if v}
    print(f"loading info: {json.dumps({k: list(map(str, v)) for k, v in info.items()})}")
    if log.strip():
        print("transformers said while loading:\n" + log.rstrip())
    bad_log = any(
        w in log.lower() for w in ("missing", "unexpected", "newly initialized", "not used", "mismatch")
    )
    if problems or bad_log:
        sys.exit("FAIL: weights missing, unexpected or mismatched on load")
    model.eval()
    return model


def check_loss(model, folder):
    import torch

    path = os.path.join(folder, "progc_eval.json")
    if not os.path.exists(path):
        sys.exit(f"FAIL: {path} is missing (export without --no-eval)")
    with open(path) as f:
        ev = json.load(f)
    losses = []
    with torch.no_grad():
        for batch in ev["batches"]:
            w = torch.tensor(batch, dtype=torch.long)
            logits = model(input_ids=w[:, :-1]).logits
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).double(), w[:, 1:].reshape(-1)
            )
            losses.append(loss.item())
    hf = sum(losses) / len(losses)
    progc = ev["val_loss"]
    rel = abs(hf - progc) / abs(progc)
    windows = sum(len(b) for b in ev["batches"])
    print(
        f"val loss on {windows} windows x {ev['context']} tokens: progc {progc:.8f}  "
        f"transformers {hf:.8f}  relative difference {rel:.2e} (tolerance {REL_TOL:.0e})"
    )
    if not rel <= REL_TOL:
        sys.exit("FAIL: losses differ")
    return ev


def check_tokenizer(folder, ev, gpt2):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    print(f"AutoTokenizer: {type(tok).__name__}, {len(tok)} tokens")
    if gpt2:
        known = {
            "Hello world": [15496, 995],
            " the": [262],
            "<|endoftext|>": [50256],
        }
        for text, ids in known.items():
            got = tok.encode(text)
            print(f"AutoTokenizer({text!r}) = {got}")
            if got != ids:
                sys.exit(f"FAIL: {text!r} encodes to {got}, GPT-2 gives {ids}")
    # progc's own ids for a text (its validation text plus a fixed string), from the export.
    sample = ev.get("tokenizer_sample")
    if not sample:
        sys.exit("FAIL: progc_eval.json has no tokenizer_sample")
    if not gpt2:
        # What `progc sample` prints: progc's decoding of its ids, here of a validation window.
        decoded = tok.decode(sample["window_ids"], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if decoded != sample["window_text"]:
            sys.exit(f"FAIL: transformers decodes the window to {decoded[:80]!r}..., progc to {sample['window_text'][:80]!r}...")
        print(f"tokenizer: transformers decodes progc's {len(sample['window_ids'])}-token validation window to progc's text")
    got = tok.encode(sample["text"], add_special_tokens=False)
    print(f"tokenizer: {len(sample['ids'])} progc ids for {len(sample['text'])} chars, transformers gives {len(got)}")
    if got != sample["ids"]:
        first = next((i for i, (a, b) in enumerate(zip(got, sample["ids"])) if a != b), min(len(got), len(sample["ids"])))
        sys.exit(f"FAIL: transformers and progc tokenize differently from id {first}: {got[first:first+8]} vs {sample['ids'][first:first+8]}")
    print("tokenizer: transformers encodes progc's sample text to exactly progc's ids")
    print(f"tokenizer vocab size {len(tok)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", help="an export folder or a progc run directory")
    ap.add_argument("--progc", default="target/release/progc", help="progc binary (for a run directory)")
    args = ap.parse_args()
    folder = args.path
    if os.path.exists(os.path.join(folder, "run.json")):
        folder = export_run(folder, args.progc)
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    print(
        f"export {folder}: n_layer {cfg['n_layer']} n_embd {cfg['n_embd']} vocab {cfg['vocab_size']} "
        f"activation {cfg['activation_function']} residual {cfg.get('progc_residual_scaling')} "
        f"(scale {cfg.get('progc_residual_scale_folded')} folded)"
    )
    model = load_model(folder)
    ev = check_loss(model, folder)
    if os.path.exists(os.path.join(folder, "vocab.json")):
        check_tokenizer(folder, ev, gpt2=True)
    elif os.path.exists(os.path.join(folder, "tokenizer.json")):
        check_tokenizer(folder, ev, gpt2=False)
    else:
        print("tokenizer: bytes (TOKENIZER.md), nothing for AutoTokenizer to load")
    print("OK")


if __name__ == "__main__":
    main()
