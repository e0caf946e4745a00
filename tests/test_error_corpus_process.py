"""The error contract where it is about the process or the plugins: Ctrl-C at any moment, and
plugins that misbehave at import or in a hook. Exit status, one line, no traceback, nothing written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from test_error_corpus_inputs import FAST, experiment_toml, one_error_line

from crossbench import hookimpl
from crossbench.cli import CliState, cli
from crossbench.errors import LINE_LIMIT
from crossbench.plugin.specs import ComponentSpec

# ----------------------------------------------------------------------------- Ctrl-C


def _console(args: list[str], tmp_path: Path, *, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """The console script started as a terminal would start it, except that SIGINT is blocked until
    the program installs its handler: Python's own start-up (before any line of crossbench runs) is
    not crossbench's to handle, and blocking makes a signal sent then wait instead of racing it."""
    import os
    import signal
    import subprocess
    import sys

    script = Path(sys.executable).parent / "crossbench"
    if not script.is_file():
        pytest.skip("the console script is not installed beside this interpreter")
    full = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    # A terminal starts the command with SIGINT's default action; a test run started as a background job
    # (`pytest ... &` from a script) has SIGINT ignored, which the child would inherit. A Python handler here
    # becomes the default action in the child at exec.
    disposition = signal.signal(signal.SIGINT, signal.default_int_handler)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return subprocess.Popen([str(script), *args], cwd=tmp_path, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        signal.signal(signal.SIGINT, disposition)


def _interrupted(proc) -> str:  # type: ignore[no-untyped-def]
    import signal

    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    return str(line)


RUN = ["run", "--model", "mf", "--model-param", "epochs=3", "--seeds", "0,1,2", "-q", "--threads", "1", "--dataset-param", "n_users=300",
       "--output", "out"]


@pytest.mark.slow  # new processes (each ends within a second)
@pytest.mark.parametrize("moment", [0.0, 0.05, 0.2, 0.5])
def test_ctrl_c_while_the_command_starts_is_one_line_and_130(moment: float, tmp_path: Path) -> None:
    import time

    proc = _console(RUN, tmp_path)
    time.sleep(moment)
    assert _interrupted(proc) == "crossbench: interrupted; finished runs are kept, the same command resumes"
    assert not list(tmp_path.glob("out/runs/*.json"))


@pytest.mark.slow  # two runs of a small model
def test_ctrl_c_mid_run_keeps_the_finished_runs(tmp_path: Path) -> None:
    import time

    proc = _console(RUN, tmp_path)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("out/runs/*.json")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before a record appeared"
    line = _interrupted(proc)
    assert line == "crossbench: interrupted; finished runs are kept, the same command resumes"
    kept = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out" / "runs").glob("*-seed*.json")}
    assert kept and len(kept) < 3 and not list((tmp_path / "out").rglob("*.tmp"))
    again = _console(RUN, tmp_path)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-2000:]
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out" / "runs").glob("*-seed*.json")}
    assert len(after) == 3 and all(after[name] == mtime for name, mtime in kept.items())  # resumed, the kept runs not redone


# ----------------------------------------------------------------------------- hostile plugins



def _tiny(*, n_users: int = 60, seed: int = 0):  # type: ignore[no-untyped-def]
    from crossbench_synthetic import synthetic

    return synthetic(n_users=n_users, n_items=20, seed=seed)


class _RaisesMidway:
    @hookimpl
    def crossbench_datasets(self):  # type: ignore[no-untyped-def]
        yield ComponentSpec("tiny-midway", _tiny)
        raise RuntimeError("the second spec could not be made")


class _Endless:
    @hookimpl
    def crossbench_datasets(self):  # type: ignore[no-untyped-def]
        n = 0
        while True:
            n += 1
            yield ComponentSpec(f"tiny-{n}", _tiny)


class _Huge:
    @hookimpl
    def crossbench_datasets(self):  # type: ignore[no-untyped-def]
        return "x" * 1_000_000


class _HugeName:
    @hookimpl
    def crossbench_datasets(self):  # type: ignore[no-untyped-def]
        return [ComponentSpec("n" * 1_000_000, _tiny)]


class _ExitsInAHook:
    @hookimpl
    def crossbench_metrics(self):  # type: ignore[no-untyped-def]
        raise SystemExit(3)


class _Result:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.exit_code, self.stdout, self.stderr, self.output = code, stdout, stderr, stdout + stderr


def _invoke(plugins: list[object], args: list[str]) -> _Result:
    """The console entry point's path in process: plugins loaded (their warnings included), then the command."""
    from crossbench.cli import build_cli

    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        state = CliState(extra_plugins=plugins)
        try:
            build_cli(state).main(args=args, prog_name="crossbench", obj=state)
            code = 0
        except SystemExit as exc:
            code = 0 if exc.code is None else int(exc.code)
        return _Result(code, out.getvalue().decode(), err.getvalue().decode())


@pytest.mark.parametrize(("plugin", "cause"), [
    (_RaisesMidway(), "crossbench_datasets() raised RuntimeError after 1 item(s): the second spec could not be made"),
    (_Endless(), "crossbench_datasets() returned more than 1,000 items or took more than 10 s to list them"),
    (_Huge(), "crossbench_datasets() returned 'xxxxxxxx"),
    (_ExitsInAHook(), "crossbench_metrics() raised SystemExit: 3"),
    (_HugeName(), "a spec's name 'nnnnn"),
])
def test_a_hostile_hook_is_one_short_warning_and_the_rest_works(plugin: object, cause: str) -> None:
    import time

    t0 = time.monotonic()
    out = _invoke([plugin], ["list", "models"])
    assert time.monotonic() - t0 < 30
    assert out.exit_code == 0, out.output[:2000]
    assert "popularity" in out.stdout
    (warning,) = out.stderr.strip().splitlines()
    assert warning.startswith(f"crossbench: warning: plugin '{type(plugin).__name__}'") and "is broken and was skipped" in warning
    assert cause in warning and len(warning) <= LINE_LIMIT, warning[:2000]


class _ShadowsRun:
    @hookimpl
    def crossbench_commands(self, cli):  # type: ignore[no-untyped-def]
        import click

        @cli.command("run")
        def fake_run() -> None:
            click.echo("not the benchmark")

        @cli.command("hello-shadow")
        def hello() -> None:
            click.echo("hello")


def test_a_plugin_command_named_like_a_built_in_is_refused() -> None:
    from crossbench.cli.commands import run

    out = _invoke([_ShadowsRun()], ["run", "--help"])
    assert out.exit_code == 0 and "EXPERIMENT_FILE" in out.stdout and "not the benchmark" not in out.stdout
    (warning,) = out.stderr.strip().splitlines()
    assert warning.startswith("crossbench: warning: plugin '_ShadowsRun'") and "its command(s) 'run' would replace" in warning
    assert cli.commands["run"] is run and "hello-shadow" not in cli.commands  # refused as a whole


class _BrokenDefault:
    @hookimpl
    def crossbench_default_experiment(self):  # type: ignore[no-untyped-def]
        raise RuntimeError("no default today")


def test_the_default_experiment_hook_is_asked_only_for_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.toml").write_text('metrics = ["ndcg"]\nks = [10]\n' + experiment_toml() + '[protocol]\nname = "cold-start"\n')
    out = _invoke([_BrokenDefault()], ["run", "exp.toml", "-q", "--threads", "1", "--output", "out"])
    assert out.exit_code == 0, out.output[:2000]
    out = _invoke([_BrokenDefault()], ["run", *FAST, "--output", "out2"])
    assert out.exit_code == 2
    line = one_error_line(out)
    assert "plugin '_BrokenDefault': crossbench_default_experiment() raised RuntimeError: no default today" in line
    assert not (tmp_path / "out2").exists()


@pytest.mark.slow  # fresh interpreters
def test_a_plugin_that_exits_at_import_is_named_and_the_others_work(tmp_path: Path) -> None:
    from conftest import write_dist

    write_dist(tmp_path / "site", "pkg-exits", entry_points={"crossbench": {"exits-at-import": "exits_at_import"}},
               files={"exits_at_import.py": "import sys\nsys.exit(3)\n"})
    for args, expect in ((["plugins"], "synthetic"), (["list", "models"], "popularity")):
        proc = _console(args, tmp_path, env={"PYTHONPATH": str(tmp_path / "site")})
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        assert expect in out
        (warning,) = err.strip().splitlines()
        assert "plugin 'exits-at-import' (pkg-exits) is broken and was skipped: importing 'exits_at_import' raised SystemExit: 3" in warning

