#!/usr/bin/env python3
"""The tokenizer.json fixture and the ids Python gives, for progc's tokenizer tests (not CI).

    scripts/tokenizer-fixture.py            # check: Python encodes the committed text to the
                                            # committed ids (tests/fixtures/tokenizer/*.ids.json)
    scripts/tokenizer-fixture.py --write    # train the fixture again and record its ids

The fixture is a 400-token byte-level BPE (GPT-2's pre-tokenizer without a prefix space, the
256 bytes, `<|endoftext|>`) trained by Hugging Face's Python `tokenizers` on the first 20 KB of
data/emma.txt. The Rust test `a_python_tokenizer_json_gives_pythons_ids`
(src/exec/io/data/tokenizer.rs) encodes the same text with progc and compares with these ids.
Needs `pip install tokenizers`.
"""

import argparse
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURE = os.path.join(ROOT, "tests/fixtures/tokenizer/emma-bpe400.json")
IDS = os.path.join(ROOT, "tests/fixtures/tokenizer/emma-bpe400.ids.json")

# A paragraph from further into Emma (not in the training text), with what a tokenizer must
# get right besides words: digits, runs of spaces, tabs, newlines, non-ASCII, a special token.
TEXT = (
    "Mr. Knightley, a sensible man about seven or eight-and-thirty, was not only a very old\n"
    "and intimate friend of the family, but particularly connected with it, as the elder\n"
    "brother of Isabella's husband.  He lived about a mile from Highbury, was a frequent\n"
    "visitor, and always welcome\u2014naïve café 日本語, 1816\t(vol. 1)<|endoftext|>Chapter 2\n\n"
)


def train():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    with open(os.path.join(ROOT, "data/emma.txt"), encoding="utf-8") as f:
        text = f.read()[:20_000]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([text], trainer=trainer)
    tok.save(FIXTURE, pretty=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="train the fixture again and record its ids")
    args = ap.parse_args()
    from tokenizers import Tokenizer

    if args.write:
        train()
    tok = Tokenizer.from_file(FIXTURE)
    ids = tok.encode(TEXT, add_special_tokens=False).ids
    if args.write:
        with open(IDS, "w", encoding="utf-8") as f:
            json.dump({"text": TEXT, "ids": ids}, f, ensure_ascii=False)
            f.write("\n")
        print(f"wrote {FIXTURE} and {IDS}: {len(ids)} ids, vocab {tok.get_vocab_size()}")
        return
    with open(IDS, encoding="utf-8") as f:
        want = json.load(f)
    if want["text"] != TEXT:
        sys.exit("FAIL: the recorded text is not this script's; run with --write")
    if ids != want["ids"]:
        sys.exit(f"FAIL: Python gives {ids}, the fixture records {want['ids']}")
    assert tok.decode(ids, skip_special_tokens=False) == TEXT, "decoding does not give the text back"
    print(f"OK: Python's tokenizers encodes the text to the {len(ids)} recorded ids (vocab {tok.get_vocab_size()})")


if __name__ == "__main__":
    main()
