"""Shared fixtures, and the conformance kit (crossbench.testing) run on every built-in plugin."""

from __future__ import annotations

import math
import os
import sys

import pytest
import torch

from crossbench.plugin.manager import get_plugin_manager
from crossbench.plugin.registry import Registry

pytest_plugins = ["pytester"]


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The kit's CUDA cases are ``gpu`` tests too; every ``gpu`` test is skipped where there is no CUDA device."""
    no_cuda = not torch.cuda.is_available()
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("device") == "cuda":
            item.add_marker(pytest.mark.gpu)
        if no_cuda and item.get_closest_marker("gpu") is not None:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.fixture(autouse=True)
def _python_children_are_slow(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that starts a Python process (an interpreter, torch and the plugins to load) must be marked
    ``slow``; otherwise it fails here, before the process starts, so that ``-m "not slow"`` stays fast."""
    if request.node.get_closest_marker("slow") is not None:
        return
    import subprocess
    from pathlib import Path

    class Popen(subprocess.Popen):
        def __init__(self, args, *rest, **kw):
            program = args if isinstance(args, (str, bytes, Path)) else args[0]
            name = Path(str(program).split()[0]).name
            if name.startswith("python") or name == "crossbench":
                pytest.fail(f"{request.node.nodeid} starts `{name}` in a new process: mark it @pytest.mark.slow", pytrace=False)
            super().__init__(args, *rest, **kw)

    monkeypatch.setattr(subprocess, "Popen", Popen)


@pytest.fixture(autouse=True)
def _torch_threads():
    """Each test starts with one torch thread and leaves one: on a machine shared by other work, torch's
    threads busy-wait for each other and a small fit takes many times longer. A test of threads sets its own."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def registry() -> Registry:
    return Registry(get_plugin_manager())


@pytest.fixture(scope="session")
def split_once(registry: Registry):
    """``split_once(experiment, seed=0) -> (data, split)``: an experiment's data and split, loaded once per session."""
    from crossbench.loop.recommend import load_split

    loaded: dict[tuple[str, int], tuple] = {}

    def load(experiment, seed: int = 0) -> tuple:
        key = (repr(experiment), seed)
        if key not in loaded:
            loaded[key] = load_split(experiment, registry, target=None, seed=seed)
        return loaded[key]

    return load


@pytest.fixture(scope="session")
def fit_once(registry: Registry, split_once):
    """``fit_once(experiment, model, seed=0)``: ``model`` (a ModelRef) fitted on ``split_once(experiment, seed)``
    with that seed and one thread, once per session however many tests ask. Tests only score it; none may change it."""
    from crossbench.loop.recommend import fit_for
    from crossbench.plugin.interfaces import RunEnv

    fitted: dict[tuple[str, str, int], object] = {}

    def fit(experiment, model, seed: int = 0):
        key = (repr(experiment), repr(model), seed)
        if key not in fitted:
            before = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                env = RunEnv(registry=registry, seed=seed, progress=False)
                fitted[key] = fit_for(experiment, model, split_once(experiment, seed)[1], registry=registry, env=env)
            finally:
                torch.set_num_threads(before)
        return fitted[key]

    return fit


#: the conformance kit's contract tests, on every component of the built-in plugins
crossbench_plugins = ["basic", "synthetic", "datasets", "metrics", "zoo", "feedback", "protocols", "cdr"]


@pytest.fixture(scope="session")
def crossbench_params(registry, crossbench_kit_data, tmp_path_factory):
    """Small settings for the kit: short training, a tiny local BERT, no downloads."""
    bert: list[str] = []

    def model_path() -> str:
        if not bert:
            from crossbench.testing.data import kit_texts
            from crossbench_zoo.testing import make_tiny_bert

            bert.append(str(make_tiny_bert(tmp_path_factory.mktemp("bert"), kit_texts(crossbench_kit_data))))
        return bert[0]

    def params(kind: str, name: str) -> dict | None:
        if kind == "datasets":
            # the file-backed loaders are tested on fixture files in test_data_loaders.py
            return {"n_users": 80, "n_items": 40} if name == "synthetic" else None
        hp = registry.get(kind, name).hyperparameters()
        out: dict = {}
        if "model_path" in hp:
            out["model_path"] = model_path()
        if kind == "recommenders":
            out.update({k: v for k, v in (("epochs", 2), ("dim", 16)) if k in hp})
        return out

    return params


def _hits(ranked, relevant, k):
    return [p for p, i in enumerate(ranked[:k]) if i in relevant]


#: brute-force definitions of the binary metrics, from a full ranking
ORACLES = {
    "recall": lambda ranked, rel, k: len(_hits(ranked, rel, k)) / len(rel),
    "precision": lambda ranked, rel, k: len(_hits(ranked, rel, k)) / k,
    "hr": lambda ranked, rel, k: float(bool(_hits(ranked, rel, k))),
    "mrr": lambda ranked, rel, k: 1.0 / (_hits(ranked, rel, k)[0] + 1) if _hits(ranked, rel, k) else 0.0,
    "ndcg": lambda ranked, rel, k: sum(1 / math.log2(p + 2) for p in _hits(ranked, rel, k))
    / sum(1 / math.log2(p + 2) for p in range(min(len(rel), k))),
}


@pytest.fixture(scope="session")
def crossbench_oracles():
    return ORACLES


def write_dist(root, name: str, *, entry_points: dict[str, dict[str, str]], files: dict[str, str]):
    """A package installed by hand into folder ``root`` (put ``root`` on ``sys.path``): its ``files``
    plus a ``NAME-0.1.dist-info`` with the given entry points, as pip would leave it; no network."""
    from pathlib import Path

    root = Path(root)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n", encoding="utf-8")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in eps.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def leave_quietly() -> None:
    """End a data-parallel test worker at once, after its results are written and every rank has met at a
    barrier. This skips gloo's teardown and the interpreter's finalisation, where a rank was seen to abort
    ("terminate called without an active exception") while the other was still leaving."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_child(tmp_path, script: str, args: list[str], *, bomb: bool):
    """Run ``script`` (a crossbench CLI whose test plugin kills the process while the bomb flag exists) with ``args``.

    ``bomb=True`` arms the flag (the child dies mid-run), ``False`` disarms it (the child runs through).
    """
    import os
    import subprocess
    import sys

    path = tmp_path / "child.py"
    path.write_text(script)
    flag = tmp_path / "bomb.flag"
    if bomb:
        flag.write_text("1")
    else:
        flag.unlink(missing_ok=True)
    env = {**os.environ, "CROSSBENCH_TEST_BOMB": str(flag)}
    return subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, env=env, timeout=300, check=False)
