"""The teacher's no-grad forward through ONNX Runtime (`distill.teacher_runtime: onnxruntime`, CPU only).

Why: on the 2-core development CPU the MobileNetV3-large benchmark teacher's forward took 42-45 ms per 16-image
batch in ONNX Runtime (float32) against 58-62 ms in PyTorch under bf16 autocast, measured in turn (docs/speed.md),
and the teacher forward is ~40% of a distillation step. Not for every teacher: the ResNet-18 ran slower in ONNX
Runtime (113 against 83 ms), so the setting is per distillation, not global.

The graph is exported at the start of a run from the frozen teacher and returns every tensor of the teacher's
forward (class and edge logits, FPN features, tower features), rebuilt into the same nested dict the methods read.
The teacher's PyTorch module stays: methods that run its layers on the student's features (the cross head) need it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn
from torch.utils._pytree import tree_flatten, tree_unflatten

from ftpdet.errors import ConfigError
from ftpdet.files import ensure_writable
from ftpdet.models.detector import GFLDetector


class _Leaves(nn.Module):
    """The teacher's forward as a tuple of distinct tensors (a tensor that appears twice in the dict, e.g. an FPN
    level that is also its tower's input, is returned once)."""

    def __init__(self, teacher: GFLDetector, picks: list[int]) -> None:
        super().__init__()
        self.teacher, self.picks = teacher, picks

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        leaves, _ = tree_flatten(self.teacher(images))
        return tuple(leaves[i] for i in self.picks)


class OnnxTeacher:
    """Callable like the teacher on (B, 3, S, S) uint8 images: the same dict of outputs, computed by ONNX Runtime."""

    def __init__(self, teacher: GFLDetector, image_size: int, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        teacher = teacher.eval()
        example = torch.zeros(2, 3, image_size, image_size, dtype=torch.uint8)
        with torch.no_grad():
            leaves, self.spec = tree_flatten(teacher(example))
        first: dict[int, int] = {}  # id of a tensor -> its index among the exported outputs
        self.slots: list[int] = []  # for each leaf, which exported output it is
        picks: list[int] = []
        for i, leaf in enumerate(leaves):
            if id(leaf) not in first:
                first[id(leaf)] = len(picks)
                picks.append(i)
            self.slots.append(first[id(leaf)])
        path = Path(path)
        ensure_writable(path.parent)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(_Leaves(teacher, picks), (example,), dynamo=True, input_names=["images"],
                                        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},),
                                        verbose=False)
        program.save(str(path))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, images: torch.Tensor) -> dict[str, list]:
        outputs = self.session.run(None, {self.input_name: images.cpu().contiguous().numpy()})
        tensors = [torch.from_numpy(o) for o in outputs]
        return tree_unflatten([tensors[s] for s in self.slots], self.spec)


def teacher_runtime(runtime: str, teacher: GFLDetector, image_size: int, path: str | Path,
                    device: torch.device) -> OnnxTeacher | None:
    """What runs the teacher's forward for `distill.teacher_runtime`: None (the teacher itself, in PyTorch) or an
    OnnxTeacher exported to `path`. The one place the loop and `bench profile` make that choice."""
    if runtime != "onnxruntime":
        return None
    if device.type != "cpu":
        raise ConfigError(f"distill.teacher_runtime=onnxruntime runs on the CPU, not {device}: use torch")
    return OnnxTeacher(teacher, image_size, path)
