"""`ftpdet viz temperature`: per-level temperature and weight maps, and the picture."""

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ftpdet.cli import app
from ftpdet.viz import BANDS, REGIONS, location_temperatures


@pytest.mark.parametrize("mode", ["entropy", "quality", "std", "sharpness"])
def test_temperatures_have_one_value_per_location_in_range(teacher_ckpt, mode):
    image = torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)
    t = location_temperatures(teacher_ckpt, teacher_ckpt, image, mode)
    assert t.mode == mode and t.image.shape == (3, 64, 64)
    assert [tuple(v.shape) for v in t.levels(t.teacher)] == [(8, 8), (4, 4), (2, 2)]
    assert torch.isfinite(t.teacher).all() and (t.teacher > 0).all()
    assert ((t.weight >= 0) & (t.weight <= 1)).all()
    assert (t.student is not None) == (mode in ("std", "sharpness"))  # per-side modes show the student's own
    if mode == "sharpness":  # the same checkpoint on both sides: the same temperatures
        assert torch.allclose(t.student, t.teacher) and (t.teacher >= 1).all() and (t.teacher <= 17 ** (1 / 3) + 1e-4).all()
    if mode in ("entropy", "quality"):
        assert (t.teacher >= 1).all() and (t.teacher <= 17).all()  # entropy and quality live in [1, n + 1]
    assert t.region_names == BANDS and set(t.region.tolist()) <= {0, 1, 2}
    assert torch.equal(t.region == 2, t.weight < 0.05)
    # A non-square image is letterboxed to the student's input size first, as in training and eval.
    t = location_temperatures(teacher_ckpt, teacher_ckpt, torch.zeros(3, 40, 80, dtype=torch.uint8), mode)
    assert t.image.shape == (3, 64, 64) and (t.image[:, 32:] == 114).all()


def test_with_ground_truth_regions_are_atss_positives_near_positives_and_background(teacher_ckpt):
    image = torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)
    box = torch.tensor([[8.0, 8.0, 40.0, 40.0]])
    t = location_temperatures(teacher_ckpt, teacher_ckpt, image, "quality", box)
    assert t.region_names == REGIONS
    counts = [int((t.region == i).sum()) for i in range(3)]
    assert counts[0] >= 1 and counts[1] >= 1 and counts[2] >= 1 and sum(counts) == 84
    # A location counted as near-positive or positive has its centre inside the box (64 px input: no rescale).
    stride_8 = t.levels(t.region)[0]  # (8, 8), centres at 4 + 8 i
    assert (stride_8[5:, :] == 2).all() and (stride_8[:, 5:] == 2).all()  # centres >= 44 px: outside the box


def test_cli_writes_the_picture(teacher_ckpt, tiny_data, tmp_path):
    image = sorted((tiny_data / "val").glob("*.png"))[0]
    res = CliRunner().invoke(app, ["viz", "temperature", str(teacher_ckpt), str(image), "--teacher", str(teacher_ckpt),
                                   "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    png = tmp_path / f"{image.stem}_temperature.png"
    assert Image.open(png).size[0] > 300
    res = CliRunner().invoke(app, ["viz", "temperature", str(teacher_ckpt), str(image), "--teacher", str(teacher_ckpt),
                                   "--out", str(tmp_path / "gt"), "--ann",
                                   str(tiny_data / "annotations" / "instances_val.json"), "--mode", "sharpness"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "gt" / f"{image.stem}_temperature.png").is_file()
    res = CliRunner().invoke(app, ["viz", "temperature", str(teacher_ckpt), str(tmp_path / "none.png"), "--teacher",
                                   str(teacher_ckpt), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "none.png: image file not found" in res.output
