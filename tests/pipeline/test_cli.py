"""The CLI's contract: one-line errors that name the problem, exit status 2, no traceback."""

import subprocess
import sys
from pathlib import Path

from pipeline import chain
from pipeline.cli import TOOLS

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_unknown_key():
    msg = one_line_error(
        cli("filter", "--runner", "local", "--set", "input=a", "--set", "output=b", "--set", "min_tokenz=1")
    )
    assert "[filter] config: unknown key 'min_tokenz'" in msg


def test_wrong_type():
    msg = one_line_error(
        cli("dedup", "--runner", "local", "--set", "input=a", "--set", "output=b", "--set", "threshold=high")
    )
    assert "'threshold'" in msg and "'high'" in msg


def test_missing_input(tmp_path):
    msg = one_line_error(
        cli("extract", "--runner", "local", "--set", f"input={tmp_path}/fetched", "--set", f"output={tmp_path}/docs")
    )
    assert f"{tmp_path}/fetched: no such dataset directory" in msg


def test_bad_config_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[filter\n")
    msg = one_line_error(cli("filter", "--config", str(f)))
    assert str(f) in msg and "invalid TOML" in msg


def test_help_lists_every_stage():
    r = cli("--help")
    for command in [*chain.names(), "demo", "world", *TOOLS]:
        assert command in r.stdout
