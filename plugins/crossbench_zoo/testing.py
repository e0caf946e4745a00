"""Helpers for tests and offline smoke runs: a tiny randomly initialised BERT saved locally."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def make_tiny_bert(path: Path, texts: Iterable[str], *, hidden: int = 32, layers: int = 1, heads: int = 2, seed: int = 0) -> Path:
    """Save a random ``BertModel`` (safetensors) and a WordPiece tokenizer whose vocabulary is the
    lower-cased words of ``texts``, into ``path``. Needs ``transformers``; touches no network."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())})
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join([*SPECIAL_TOKENS, *words]) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    tokenizer.save_pretrained(str(path))
    config = BertConfig(
        vocab_size=len(SPECIAL_TOKENS) + len(words), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=2 * hidden, max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(path), safe_serialization=True)
    return path
