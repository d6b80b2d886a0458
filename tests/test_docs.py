"""The docs work as written: every shell command of the README and the tutorial runs, in order, and succeeds.

FTPDET_SMOKE=1 shrinks each dataset and schedule to seconds; the commands themselves are the documents' own.
Skipped: `make ...` (it would recurse into this test suite) and `text` blocks (the multi-machine command).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def blocks(doc: Path, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", doc.read_text(), flags=re.S | re.M)


def shell_script(doc: Path) -> str:
    lines = []
    for block in blocks(doc, "bash"):
        lines += [ln for ln in block.splitlines() if not ln.lstrip().startswith("make ")]
    return "\n".join(lines)


DOCS = ("README.md", "docs/tutorial.md")


def start_doc(doc: Path, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "FTPDET_SMOKE": "1", "OMP_NUM_THREADS": "1", "PATH": f"{BIN}:{os.environ['PATH']}"}
    script = "set -euxo pipefail\n" + shell_script(doc)
    return subprocess.Popen(["bash", "-c", script], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.fixture(scope="module")
def doc_runs(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Both documents' scripts, run at the same time: each is one process on one thread (OMP_NUM_THREADS=1), so on
    two cores the pair takes about as long as the longer one, not the sum (they are the suite's two slowest tests)."""
    started = {}
    for doc in DOCS:
        cwd = tmp_path_factory.mktemp(Path(doc).stem)
        started[doc] = (start_doc(ROOT / doc, cwd), cwd)
    runs = {}
    for doc, (proc, cwd) in started.items():
        try:
            out, err = proc.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            for p, _ in started.values():
                p.kill()
            raise
        runs[doc] = (subprocess.CompletedProcess(proc.args, proc.returncode, out, err), cwd)
    return runs


def tail(res: subprocess.CompletedProcess) -> str:
    return res.stderr[-4000:]


def test_the_extraction_finds_the_commands():
    readme = shell_script(ROOT / "README.md")
    for command in ("ftpdet data synth", "ftpdet train", "ftpdet distill", "ftpdet eval", "ftpdet predict",
                    "ftpdet export", "ftpdet bench accuracy", "torchrun", "--from coco --to yolo", "data.format=yolo",
                    "model.backbone=timm:", "train.loggers=[jsonl, tensorboard]", "ftpdet train gfl_r50_coco_1x"):
        assert command in readme, command
    assert "make demo" not in readme
    tutorial = shell_script(ROOT / "docs" / "tutorial.md")
    for command in ("data stats", "ftpdet train configs/my_teacher.yaml", "--resume", "torchrun", "ftpdet export",
                    "student.onnx --ann", "bench accuracy --preset quick --data"):
        assert command in tutorial, command


@pytest.mark.parametrize("doc", DOCS)
def test_every_shell_command_of_the_doc_runs(doc, doc_runs):
    res, tmp_path = doc_runs[doc]
    assert res.returncode == 0, tail(res)
    if doc == "README.md":  # the Python block runs too, in the same directory, after the shell commands
        for code in blocks(ROOT / doc, "python"):
            py = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
            assert py.returncode == 0, py.stderr[-4000:]
        assert (tmp_path / "runs" / "api_ftpd" / "student.onnx").is_file()
        assert (tmp_path / "runs" / "ftpd" / "student.onnx").is_file()
    else:
        for path in ("runs/tutorial/stats/stats.png", "runs/tutorial/ftpd/curves.png", "runs/tutorial/student.onnx",
                     "runs/tutorial/ftpd_ddp/last.pt", "runs/tutorial/bench/benchmarks.md"):
            assert (tmp_path / path).is_file(), path
