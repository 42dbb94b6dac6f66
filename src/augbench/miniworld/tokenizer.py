"""Build a transformers ``CLIPTokenizer`` offline from the BPE file that open_clip ships.

The result has exactly OpenAI CLIP's token ids, so a text encoder trained with it
speaks the same vocabulary as Stable Diffusion's, without any hub download.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from transformers import CLIPTokenizer

START, END = "<|startoftext|>", "<|endoftext|>"
# CLIP keeps the first 49152 - 256 - 2 merges of the file (after its header line).
N_MERGES = 49152 - 256 - 2


def _byte_symbols() -> list[str]:
    """GPT-2/CLIP's reversible map from the 256 bytes to printable unicode symbols."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


def write_clip_tokenizer(out_dir: str | Path, model_max_length: int = 77) -> CLIPTokenizer:
    import open_clip

    bpe_path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    merges = gzip.open(bpe_path, "rt", encoding="utf-8").read().split("\n")[1 : N_MERGES + 1]
    symbols = _byte_symbols()
    vocab = symbols + [symbol + "</w>" for symbol in symbols]
    vocab += ["".join(merge.split()) for merge in merges]
    vocab += [START, END]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(
        str(out_dir / "vocab.json"), str(out_dir / "merges.txt"), model_max_length=model_max_length
    )
    tokenizer.save_pretrained(out_dir)
    return tokenizer
