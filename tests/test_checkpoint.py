"""Checkpoints: atomic writes, weights_only loading, clear refusals."""

import pickle

import pytest
import torch

from ftpdet import checkpoint as ck
from ftpdet import files
from ftpdet.errors import CheckpointError


def test_crash_mid_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    files.save_atomic({"model": {"w": torch.ones(2)}, "config": {}, "categories": {}}, path)
    before = path.read_bytes()

    def exploding_save(obj, f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(files.torch, "save", exploding_save)
    with pytest.raises(RuntimeError, match="disk full"):
        files.save_atomic({"model": {"w": torch.zeros(2)}}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned",))


def test_pickled_code_is_refused_and_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "evil.pt"
    with bad.open("wb") as f:
        pickle.dump({"model": _Payload(), "config": {}, "categories": {}}, f)
    with pytest.raises(CheckpointError, match="evil.pt: not a loadable ftpdet checkpoint"):
        ck.load_checkpoint(bad)
    assert not (tmp_path / "pwned").exists()


def test_other_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        ck.load_checkpoint(tmp_path / "none.pt")
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="not an ftpdet checkpoint"):
        ck.load_checkpoint(other)


def test_checkpoint_metadata_is_plain_data(teacher_ckpt):
    """Config, classes, version and method are numbers, strings, lists and dicts: nothing to unpickle but data."""
    ckpt = ck.load_checkpoint(teacher_ckpt)

    def plain(x):
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v) for k, v in x.items())
        if isinstance(x, (list, tuple)):
            return all(plain(v) for v in x)
        return x is None or isinstance(x, (str, int, float, bool, torch.Tensor))

    for key in ("config", "categories", "version", "method", "teacher", "history", "best_ap", "epoch", "step"):
        assert plain(ckpt[key]), key
    assert isinstance(ckpt["config"]["model"]["backbone"], str) and ckpt["version"] == ck.FORMAT_VERSION


def test_an_unknown_format_version_is_refused_in_one_line(teacher_ckpt, tmp_path):
    """A checkpoint from a newer ftpdet (a format this code does not know) is refused, not misread."""
    ckpt = ck.load_checkpoint(teacher_ckpt)
    assert ckpt["version"] == ck.FORMAT_VERSION and isinstance(ckpt["ftpdet_version"], str)
    newer = tmp_path / "newer.pt"
    files.save_atomic({**ckpt, "version": ck.FORMAT_VERSION + 1, "ftpdet_version": "9.0"}, newer)
    with pytest.raises(CheckpointError, match=rf"newer.pt: checkpoint format version {ck.FORMAT_VERSION + 1} \(written "
                                              rf"by ftpdet 9.0\); this ftpdet .* reads versions 1 to {ck.FORMAT_VERSION}"):
        ck.load_checkpoint(newer)
    for bad in ("1", 0):
        files.save_atomic({**ckpt, "version": bad}, newer)
        with pytest.raises(CheckpointError, match="checkpoint format version"):
            ck.load_checkpoint(newer)
