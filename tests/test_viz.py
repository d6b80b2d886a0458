"""`ftpdet viz temperature`: per-level temperature and weight maps, and the picture."""

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ftpdet.cli import app
from ftpdet.viz import temperature_maps


@pytest.mark.parametrize("mode", ["entropy", "quality", "std"])
def test_maps_have_one_value_per_location_in_range(teacher_ckpt, mode):
    image = torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)
    maps, used, shown = temperature_maps(teacher_ckpt, teacher_ckpt, image, mode)
    assert used == mode and shown.shape == (3, 64, 64)
    assert [tuple(tau.shape) for tau, _, _ in maps] == [(8, 8), (4, 4), (2, 2)]
    for tau, conf, _ in maps:
        assert torch.isfinite(tau).all() and (tau > 0).all()
        assert ((conf >= 0) & (conf <= 1)).all()
        if mode != "std":
            assert (tau >= 1).all() and (tau <= 17).all()  # entropy and quality live in [1, n + 1]
    # A non-square image is letterboxed to the student's input size first, as in training and eval.
    _, _, shown = temperature_maps(teacher_ckpt, teacher_ckpt, torch.zeros(3, 40, 80, dtype=torch.uint8), mode)
    assert shown.shape == (3, 64, 64) and (shown[:, 32:] == 114).all()


def test_cli_writes_the_picture(teacher_ckpt, tiny_data, tmp_path):
    image = sorted((tiny_data / "val").glob("*.png"))[0]
    res = CliRunner().invoke(app, ["viz", "temperature", str(teacher_ckpt), str(image), "--teacher", str(teacher_ckpt),
                                   "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    png = tmp_path / f"{image.stem}_temperature.png"
    assert Image.open(png).size[0] > 300
    res = CliRunner().invoke(app, ["viz", "temperature", str(teacher_ckpt), str(tmp_path / "none.png"), "--teacher",
                                   str(teacher_ckpt), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "none.png: image file not found" in res.output
