"""`ftpdet data convert`: tiny YOLO and VOC datasets written here become the COCO layout, boxes exact, and each
broken input gives one line naming the file (and the line) with exit code 2."""

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from ftpdet.cli import app
from ftpdet.data.coco import CocoDetection
from ftpdet.data.convert import yolo_label_path

runner = CliRunner()


def image(path, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 30)).save(path)


def make_yolo(root, labels=None):
    """Two train images (one without a label file) and one val image; 40x30 pixels."""
    (root / "data.yaml").parent.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: cat\n  1: dog\n")
    for name in ("images/train/a.png", "images/train/b.png", "images/val/c.png"):
        image(root / name)
    default = {"labels/train/a.txt": "0 0.5 0.5 0.5 0.4\n1 0.25 0.25 0.5 0.5\n", "labels/val/c.txt": "1 0.5 0.5 1 1\n"}
    for name, text in (labels or default).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def make_voc(root, objects_xml=None):
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "ImageSets/Main/train.txt").write_text("000001\n")
    (root / "ImageSets/Main/val.txt").write_text("000002\n")
    objects = objects_xml or {
        "000001": "<object><name>person</name><difficult>0</difficult>"
                  "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>20</ymax></bndbox></object>"
                  "<object><name>car</name><difficult>1</difficult>"
                  "<bndbox><xmin>5</xmin><ymin>6</ymin><xmax>40</xmax><ymax>30</ymax></bndbox></object>",
        "000002": "<object><name>car</name><difficult>0</difficult>"
                  "<bndbox><xmin>11</xmin><ymin>11</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object>",
    }
    for image_id, objs in objects.items():
        image(root / "JPEGImages" / f"{image_id}.jpg")
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>40</width><height>30</height>"
            f"<depth>3</depth></size>{objs}</annotation>")
    return root


def convert(fmt, src, out):
    return runner.invoke(app, ["data", "convert", str(src), "--from", fmt, "--out", str(out)])


def test_yolo_becomes_coco_with_pixel_boxes(tmp_path):
    src = make_yolo(tmp_path / "yolo")
    res = convert("yolo", src / "data.yaml", tmp_path / "coco")
    assert res.exit_code == 0, res.output
    assert "train: 2 images, 2 boxes" in res.output and "val: 1 images, 1 boxes" in res.output
    train = json.loads((tmp_path / "coco/annotations/instances_train.json").read_text())
    assert [c["name"] for c in train["categories"]] == ["cat", "dog"]
    assert [i["file_name"] for i in train["images"]] == ["a.png", "b.png"]
    assert (train["images"][0]["width"], train["images"][0]["height"]) == (40, 30)
    # cx .5 cy .5 w .5 h .4 on 40x30 -> x 10, y 9, w 20, h 12; the second box: x 0, y 0, w 20, h 15
    assert [(a["category_id"], a["bbox"], a["iscrowd"]) for a in train["annotations"]] == [
        (1, [10.0, 9.0, 20.0, 12.0], 0), (2, [0.0, 0.0, 20.0, 15.0], 0)]
    ds = CocoDetection(tmp_path / "coco/annotations/instances_val.json", tmp_path / "coco/val", image_size=64)
    assert len(ds) == 1 and ds.num_classes == 2
    # The folder itself works as SRC too.
    assert convert("yolo", src, tmp_path / "coco2").exit_code == 0


def test_yolo_label_path_follows_ultralytics():
    from pathlib import Path

    assert yolo_label_path(Path("/d/images/train/x.jpg")) == Path("/d/labels/train/x.txt")
    assert yolo_label_path(Path("/images/d/images/x.jpg")) == Path("/images/d/labels/x.txt")  # the last one
    assert yolo_label_path(Path("/d/train/x.jpg")) == Path("/d/train/x.txt")  # no images/ folder: beside it


@pytest.mark.parametrize("line, message", [
    ("0 0.5 0.5 0.2", "labels/train/a.txt:2: expected 5 numbers (class cx cy w h), got 4"),
    ("0 0.5 0.5 0.2 0.2 0.1", "labels/train/a.txt:2: expected 5 numbers (class cx cy w h), got 6"),
    ("2 0.5 0.5 0.2 0.2", "labels/train/a.txt:2: class 2 is not an index in 0..1"),
    ("0 0.9 0.5 0.4 0.2", "labels/train/a.txt:2: box (cx 0.9, cy 0.5, w 0.4, h 0.2) is not inside [0, 1]"),
    ("0 0.5 nan 0.2 0.2", "labels/train/a.txt:2: non-finite value"),
    ("x 0.5 0.5 0.2 0.2", "labels/train/a.txt:2: not a number"),
])
def test_yolo_bad_label_lines_are_one_line_naming_file_and_line(tmp_path, line, message):
    src = make_yolo(tmp_path / "yolo", {"labels/train/a.txt": f"0 0.5 0.5 0.2 0.2\n{line}\n"})
    res = convert("yolo", src, tmp_path / "coco")
    assert res.exit_code == 2, res.output
    assert message in res.output and len(res.output.strip().splitlines()) == 1, res.output


def test_yolo_bad_yaml(tmp_path):
    src = make_yolo(tmp_path / "yolo")
    (src / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [cat, dog]\nnc: 3\n")
    res = convert("yolo", src, tmp_path / "coco")
    assert res.exit_code == 2 and "data.yaml: nc is 3 but names lists 2 classes" in res.output
    (src / "data.yaml").write_text("train: images/missing\nval: images/val\nnames: [cat, dog]\n")
    res = convert("yolo", src, tmp_path / "coco")
    assert res.exit_code == 2 and "train entry 'images/missing': no folder or .txt list" in res.output
    res = convert("yolo", tmp_path / "nowhere", tmp_path / "coco")
    assert res.exit_code == 2 and "nowhere: not found; --from yolo takes a data.yaml" in res.output


def test_voc_becomes_coco_with_difficult_as_crowd(tmp_path):
    src = make_voc(tmp_path / "voc")
    res = convert("voc", src, tmp_path / "coco")
    assert res.exit_code == 0, res.output
    assert "train: 1 images, 2 boxes (1 marked iscrowd" in res.output
    train = json.loads((tmp_path / "coco/annotations/instances_train.json").read_text())
    assert [c["name"] for c in train["categories"]] == ["car", "person"]  # sorted names, ids 1..K
    # 1-based inclusive: xmin 1..xmax 10 is 10 pixels from x 0; the difficult car is iscrowd
    assert [(a["category_id"], a["bbox"], a["iscrowd"]) for a in train["annotations"]] == [
        (2, [0.0, 0.0, 10.0, 20.0], 0), (1, [4.0, 5.0, 36.0, 25.0], 1)]
    val = json.loads((tmp_path / "coco/annotations/instances_val.json").read_text())
    assert val["annotations"][0]["bbox"] == [10.0, 10.0, 10.0, 10.0]
    ds = CocoDetection(tmp_path / "coco/annotations/instances_train.json", tmp_path / "coco/train", image_size=64)
    assert len(ds) == 1


@pytest.mark.parametrize("objs, message", [
    ("<object><name>car</name><bndbox><xmin>5</xmin><ymin>6</ymin><xmax>41</xmax><ymax>30</ymax></bndbox></object>",
     "000001.xml: object 0 ('car') box (5, 6, 41, 30) is not inside the 40x30 image"),
    ("<object><name>car</name><bndbox><xmin>a</xmin><ymin>6</ymin><xmax>9</xmax><ymax>30</ymax></bndbox></object>",
     "000001.xml: object 0 ('car') xmin is 'a', not a number"),
    ("<object><name>car</name></object>", "000001.xml: object 0 ('car') has no bndbox"),
    ("<object><name>car</name><bndbox>", "000001.xml: not valid XML"),
])
def test_voc_bad_annotations_are_one_line_naming_the_file(tmp_path, objs, message):
    src = make_voc(tmp_path / "voc", {"000001": objs, "000002": ""})
    res = convert("voc", src, tmp_path / "coco")
    assert res.exit_code == 2, res.output
    assert message in res.output and len(res.output.strip().splitlines()) == 1, res.output


def test_voc_missing_parts(tmp_path):
    src = make_voc(tmp_path / "voc")
    (src / "ImageSets/Main/val.txt").unlink()
    res = convert("voc", src, tmp_path / "coco")
    assert res.exit_code == 2 and "ImageSets/Main/val.txt: not found" in res.output
    res = convert("voc", tmp_path / "empty", tmp_path / "coco")
    assert res.exit_code == 2 and "Annotations: not found; --from voc takes a VOC root" in res.output
    res = convert("coco", src, tmp_path / "coco")
    assert res.exit_code == 2 and "--from coco --to coco: one side must be coco" in res.output
    res = convert("json", src, tmp_path / "coco")
    assert res.exit_code == 2 and "--from json: choose yolo or voc" in res.output


@pytest.mark.parametrize("fmt", ["yolo", "voc"])
def test_data_format_reads_in_place_what_convert_writes(tmp_path, fmt):
    """data.format: yolo | voc gives the datasets that training on the converted copy gives: same images, boxes and
    labels, and the same ground truth for COCOeval (file names aside)."""
    from ftpdet.config import load_config
    from ftpdet.engine.train import build_datasets

    src = make_yolo(tmp_path / "src") if fmt == "yolo" else make_voc(tmp_path / "src")
    assert convert(fmt, src, tmp_path / "coco").exit_code == 0
    converted = build_datasets(load_config(None, [f"data.root={tmp_path / 'coco'}", "data.image_size=64"]))
    direct = build_datasets(load_config(None, [f"data.format={fmt}", f"data.root={src}", "data.image_size=64"]))
    for a, b in zip(converted, direct):
        assert len(a) == len(b) > 0 and a.categories == b.categories
        for i in range(len(a)):
            assert a.records[i].path.read_bytes() == b.records[i].path.read_bytes()
            assert (a.records[i].boxes == b.records[i].boxes).all() and (a.records[i].labels == b.records[i].labels).all()
        assert a.coco_json["annotations"] == b.coco_json["annotations"]
        assert [i["file_name"] for i in b.coco_json["images"]] == [str(r.path.resolve()) for r in b.records]


def test_data_format_errors_name_the_file(tmp_path):
    from ftpdet.config import load_config
    from ftpdet.engine.train import build_datasets
    from ftpdet.errors import ConfigError, DatasetError

    src = make_yolo(tmp_path / "src", labels={"labels/train/a.txt": "0 0.5 0.5 0.5\n", "labels/val/c.txt": ""})
    with pytest.raises(DatasetError, match=r"a.txt:1: expected 5 numbers"):
        build_datasets(load_config(None, ["data.format=yolo", f"data.root={src / 'data.yaml'}"]))
    with pytest.raises(ConfigError, match="data.train_ann is for COCO files; with format voc"):
        load_config(None, ["data.format=voc", f"data.root={src}", "data.train_ann=x.json"])
    with pytest.raises(ConfigError, match="set data.root to the VOC dataset"):
        build_datasets(load_config(None, ["data.format=voc"]))


@pytest.mark.parametrize("to", ["yolo", "voc"])
def test_coco_to_yolo_or_voc_and_back_in_place_gives_the_same_datasets(tiny_data, tmp_path, to):
    """--from coco --to yolo|voc, then data.format reading it: the images, labels and boxes of the COCO original
    (boxes to the precision the format writes: 6 decimals of the size for YOLO, 3 for VOC)."""
    from ftpdet.config import load_config
    from ftpdet.engine.train import build_datasets

    res = runner.invoke(app, ["data", "convert", str(tiny_data), "--from", "coco", "--to", to, "--out", str(tmp_path / to)])
    assert res.exit_code == 0, res.output
    assert f"--set data.format={to}" in res.output
    original = build_datasets(load_config(None, [f"data.root={tiny_data}", "data.image_size=64"]))
    converted = build_datasets(load_config(None, [f"data.format={to}", f"data.root={tmp_path / to}", "data.image_size=64"]))
    for a, b in zip(original, converted):
        # VOC lists the class names found, sorted (as VOC's 20 are): compare classes by name
        assert len(a) == len(b) > 0 and sorted(a.categories.names) == sorted(b.categories.names)
        by_bytes = {r.path.read_bytes(): r for r in b.records}  # VOC renames the files
        for rec in a.records:
            other = by_bytes[rec.path.read_bytes()]
            assert [a.categories.names[i] for i in rec.labels] == [b.categories.names[i] for i in other.labels]
            assert abs(rec.boxes - other.boxes).max(initial=0) < 1e-3 * max(rec.width, rec.height)
    assert runner.invoke(app, ["data", "convert", str(tiny_data), "--from", "coco", "--out", str(tmp_path / "x")]).exit_code == 2
