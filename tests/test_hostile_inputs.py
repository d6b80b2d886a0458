"""Bad input from the command line: one line naming the file or key and the problem, exit code 2, no traceback.

Each case builds its broken input in a copy of the tiny dataset, runs one CLI command and checks the message.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import torchvision
from typer.testing import CliRunner

from ftpdet.cli import app

runner = CliRunner()


@pytest.fixture()
def data(tiny_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    return root


def train_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "demo_student", "--set", f"data.root={root}", "--set", f"train.out_dir={out}",
            "--set", "data.image_size=64", "--set", "train.epochs=1", "--set", "train.batch_size=8", *extra]


def truncated_json(root, tmp):
    ann = root / "annotations" / "instances_train.json"
    ann.write_text(ann.read_text()[:200])
    return train_args(root, tmp / "run"), "instances_train.json: not valid JSON"


def json_of_the_wrong_shape(root, tmp):
    ann = root / "annotations" / "instances_val.json"
    ann.write_text(json.dumps([{"id": 1}]))
    return train_args(root, tmp / "run"), "instances_val.json: expected a JSON object"


def json_with_a_wrong_field(root, tmp):
    ann = root / "annotations" / "instances_train.json"
    data = json.loads(ann.read_text())
    data["annotations"][3]["bbox"] = "10 10 5 5"
    ann.write_text(json.dumps(data))
    return train_args(root, tmp / "run"), "instances_train.json: annotations[3] bbox must be [x, y, width, height]"


def an_image_that_is_not_an_image(root, tmp):
    (root / "train" / "000002.png").write_text("this is not a PNG")
    return train_args(root, tmp / "run"), "000002.png: cannot decode image"


def a_zero_byte_image(root, tmp):
    (root / "val" / "000001.png").write_bytes(b"")
    return train_args(root, tmp / "run"), "000001.png: cannot decode image"


def a_missing_image_dir(root, tmp):
    shutil.rmtree(root / "val")
    return train_args(root, tmp / "run"), f"{root / 'val'}: image directory not found"


def a_config_with_a_typo(root, tmp):
    cfg = tmp / "typo.yaml"
    cfg.write_text("model:\n  backbone: resnet18\ntrain:\n  epohcs: 3\n")
    return ["train", str(cfg)], "typo.yaml: unknown key 'train.epohcs' (did you mean 'epochs'?)"


def a_config_with_a_wrong_type(root, tmp):
    cfg = tmp / "type.yaml"
    cfg.write_text("train:\n  lr: fast\n")
    return ["train", str(cfg)], "type.yaml: 'train.lr': Input should be a valid number"


def a_teacher_with_other_classes(root, tmp, teacher_ckpt=None):
    ann = root / "annotations" / "instances_train.json"
    data = json.loads(ann.read_text())
    data["categories"][0]["name"] = "blob"  # same ids, another class
    ann.write_text(json.dumps(data))
    args = ["distill", "demo_student", "--teacher", str(teacher_ckpt)] + train_args(root, tmp / "run")[2:]
    return args, "teacher.pt: teacher classes"


def a_misspelt_method(root, tmp, teacher_ckpt=None):
    args = ["distill", "demo_student", "--teacher", str(teacher_ckpt)] + train_args(root, tmp / "run", "--set",
                                                                                    "distill.method=ftdp")[2:]
    return args, "'distill.method': unknown method 'ftdp' (did you mean 'ftpd'?)"


def a_distillation_without_a_teacher(root, tmp):
    return ["distill"] + train_args(root, tmp / "run")[1:], "no teacher; pass --teacher T.pt or set distill.teacher"


def a_checkpoint_from_another_model(root, tmp):
    other = tmp / "resnet.pt"
    torch.save(torchvision.models.resnet18().state_dict(), other)
    return (["eval", str(other), "--ann", str(root / "annotations" / "instances_val.json"), "--images", str(root / "val")],
            "resnet.pt: not an ftpdet checkpoint")


def a_checkpoint_whose_weights_are_not_its_model(root, tmp, teacher_ckpt=None):
    ckpt = torch.load(teacher_ckpt, weights_only=True)
    ckpt["config"]["model"]["head_channels"] = 64  # the stored config now describes another model
    bad = tmp / "swapped.pt"
    torch.save(ckpt, bad)
    return (["predict", str(bad), str(root / "val" / "000000.png"), "--out", str(tmp / "vis")],
            "swapped.pt: weights do not match the stored model config")


def an_onnx_path_that_does_not_exist(root, tmp):
    return (["eval", str(tmp / "model.onnx"), "--ann", str(root / "annotations" / "instances_val.json"),
             "--images", str(root / "val")], "model.onnx: ONNX model not found")


def an_onnx_file_that_is_not_onnx(root, tmp):
    bad = tmp / "broken.onnx"
    bad.write_bytes(b"\x00garbage")
    return (["predict", str(bad), str(root / "val" / "000000.png"), "--out", str(tmp / "vis")],
            "broken.onnx: not a loadable ONNX model")


def a_read_only_output_dir(root, tmp):
    if os.geteuid() == 0:  # root writes through file permissions; sysfs refuses new entries even to root
        target = Path("/sys/ftpdet-read-only-test")
    else:
        ro = tmp / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        target = ro / "run"
    return train_args(root, target), "output directory is not writable"


def edit_json(root: Path, split: str, change) -> None:
    ann = root / "annotations" / f"instances_{split}.json"
    data = json.loads(ann.read_text())
    change(data)
    ann.write_text(json.dumps(data))  # NaN and Infinity are written as JSON's NaN / Infinity literals, as Python reads them


def eval_args(root: Path, ckpt: Path) -> list[str]:
    return ["eval", str(ckpt), "--ann", str(root / "annotations" / "instances_val.json"), "--images", str(root / "val")]


def stats_args(root: Path) -> list[str]:
    return ["data", "stats", "--ann", str(root / "annotations" / "instances_train.json")]


def a_box_with_nan_to_eval(root, tmp, teacher_ckpt=None):
    edit_json(root, "val", lambda d: d["annotations"][0]["bbox"].__setitem__(2, float("nan")))
    return eval_args(root, teacher_ckpt), "instances_val.json: annotations[0] bbox has a non-finite value"


def a_box_with_infinity_to_stats(root, tmp):
    edit_json(root, "train", lambda d: d["annotations"][1]["bbox"].__setitem__(0, float("inf")))
    return stats_args(root), "instances_train.json: annotations[1] bbox has a non-finite value"


def two_images_with_one_id_to_eval(root, tmp, teacher_ckpt=None):
    edit_json(root, "val", lambda d: d["images"][2].__setitem__("id", d["images"][0]["id"]))
    return eval_args(root, teacher_ckpt), "instances_val.json: images[2] repeats id"


def two_annotations_with_one_id_to_stats(root, tmp):
    edit_json(root, "train", lambda d: d["annotations"][4].__setitem__("id", d["annotations"][1]["id"]))
    return stats_args(root), "instances_train.json: annotations[4] repeats id"


def an_unknown_category_to_eval(root, tmp, teacher_ckpt=None):
    # The checkpoint knows more classes than this file lists: the file's own categories must catch it.
    def change(d):
        d["categories"] = [c for c in d["categories"] if c["id"] != d["annotations"][0]["category_id"]]
    edit_json(root, "val", change)
    return eval_args(root, teacher_ckpt), "instances_val.json: annotations[0] has category_id"


def an_annotation_of_a_missing_image_to_stats(root, tmp):
    edit_json(root, "train", lambda d: d["annotations"][2].__setitem__("image_id", 987654))
    return stats_args(root), "instances_train.json: annotations[2] refers to image_id 987654, not in images"


def a_bbox_with_five_values_to_stats(root, tmp):
    edit_json(root, "train", lambda d: d["annotations"][0]["bbox"].append(3))
    return stats_args(root), "instances_train.json: annotations[0] bbox must be [x, y, width, height]"


def distill_args(root, tmp, teacher_ckpt, *extra):
    return ["distill", "demo_student", "--teacher", str(teacher_ckpt), *train_args(root, tmp / "run")[2:], *extra]


def an_unlabeled_image_that_does_not_decode(root, tmp, teacher_ckpt=None):
    (root / "unlabeled" / "000003.png").write_bytes(b"\x89PNG broken")
    return distill_args(root, tmp, teacher_ckpt, "--unlabeled", str(root / "unlabeled")), "000003.png: cannot decode image"


def an_empty_unlabeled_folder(root, tmp, teacher_ckpt=None):
    (tmp / "empty").mkdir()
    (tmp / "empty" / "notes.txt").write_text("no images here")
    return distill_args(root, tmp, teacher_ckpt, "--unlabeled", str(tmp / "empty")), "empty: no images in this folder"


def unlabeled_images_without_a_teacher(root, tmp):
    return (train_args(root, tmp / "run", "--set", f"data.unlabeled={root / 'unlabeled'}"),
            "unlabeled images train through a teacher's responses")


def the_pseudo_control_without_unlabeled_images(root, tmp, teacher_ckpt=None):
    return distill_args(root, tmp, teacher_ckpt, "--method", "pseudo"), "pseudo trains on unlabeled images only"


def an_empty_dataset_to_stats(root, tmp):
    edit_json(root, "train", lambda d: d.update(images=[], annotations=[]))
    return stats_args(root), "instances_train.json: empty dataset (no images)"


CASES = [truncated_json, json_of_the_wrong_shape, json_with_a_wrong_field, an_image_that_is_not_an_image,
         a_zero_byte_image, a_missing_image_dir, a_config_with_a_typo, a_config_with_a_wrong_type,
         a_teacher_with_other_classes, a_misspelt_method, a_distillation_without_a_teacher,
         a_checkpoint_from_another_model, a_checkpoint_whose_weights_are_not_its_model,
         an_onnx_path_that_does_not_exist, an_onnx_file_that_is_not_onnx, a_read_only_output_dir,
         a_box_with_nan_to_eval, a_box_with_infinity_to_stats, two_images_with_one_id_to_eval,
         two_annotations_with_one_id_to_stats, an_unknown_category_to_eval, an_annotation_of_a_missing_image_to_stats,
         a_bbox_with_five_values_to_stats, an_empty_dataset_to_stats, an_unlabeled_image_that_does_not_decode,
         an_empty_unlabeled_folder, unlabeled_images_without_a_teacher, the_pseudo_control_without_unlabeled_images]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_bad_input_is_one_line_with_exit_code_2(case, data, tmp_path, teacher_ckpt):
    tmp = tmp_path / "work"
    tmp.mkdir()
    needs_teacher = "teacher_ckpt" in case.__code__.co_varnames
    if needs_teacher:
        local = tmp / "teacher.pt"
        shutil.copyfile(teacher_ckpt, local)
        args, expected = case(data, tmp, teacher_ckpt=local)
    else:
        args, expected = case(data, tmp)
    res = runner.invoke(app, args)
    assert res.exit_code == 2, (res.exit_code, res.output)
    lines = [ln for ln in res.output.splitlines() if ln.strip() and not ln.startswith("Warning")]
    assert len(lines) == 1, res.output
    assert lines[0].startswith("error: ") and expected in lines[0], res.output
    assert "Traceback" not in res.output
    assert not (tmp / "run" / "last.pt").exists()  # nothing half-trained was left behind


class _Payload:
    """Unpickling this runs `touch MARKER`: a checkpoint that carries code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("use", ["eval", "teacher", "backbone_weights", "resume"])
def test_a_checkpoint_carrying_code_is_refused_and_never_run(use, data, tmp_path):
    import pickle

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    with evil.open("wb") as f:
        pickle.dump({"model": _Payload(marker), "config": {}, "categories": {}}, f)
    out = tmp_path / "run"
    if use == "eval":
        args = ["eval", str(evil), "--ann", str(data / "annotations" / "instances_val.json"), "--images", str(data / "val")]
    elif use == "teacher":
        args = ["distill", "demo_student", "--teacher", str(evil)] + train_args(data, out)[2:]
    elif use == "backbone_weights":
        args = train_args(data, out, "--set", f"model.backbone_weights={evil}")
    else:  # a last.pt swapped for a malicious file, then --resume
        out.mkdir()
        shutil.copyfile(evil, out / "last.pt")
        args = train_args(data, out, "--resume")
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert ("evil.pt" in lines[0]) or ("last.pt" in lines[0]), res.output
    assert "refused by weights_only loading" in lines[0] and "weights_only=False" not in lines[0], res.output
    assert not marker.exists()  # the payload never ran
