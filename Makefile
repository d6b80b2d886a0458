# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
# The tested versions; pyproject.toml keeps ranges so GPU users can bring their own build.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
# Tested versions of the other pinned dependencies (ranges in pyproject.toml).
OTHER_PINS := scipy==1.17.1 faster-coco-eval==1.8.0 pycocotools==2.0.11 timm==1.0.31 tensorboard==2.21.0

.PHONY: demo test install clean

# --no-compile: byte-compiling every installed file (torch's thousands) took about 60 of the install's 140 s on 2
# cores (docs/demo.md). Instead the heavy imports run once, writing the bytecode of exactly what the commands import.
# `env -u PYTHONDONTWRITEBYTECODE`: where that variable is set (our development machines set it), Python never writes
# bytecode, and every process, each test's subprocess included, compiled torch and torchvision afresh: 13.3 s per
# import instead of 4.7 on a 2-core AVX2 EPYC (docs/speed.md, "Start-up").
WARM_IMPORTS := torch torchvision torch.export timm scipy.stats faster_coco_eval pycocotools.coco onnx onnxruntime \
	onnxscript matplotlib.pyplot torch.utils.tensorboard torch.distributed.run ftpdet.cli ftpdet.engine.train \
	ftpdet.bench.accuracy ftpdet.bench.speed ftpdet.onnx_export torch.onnx._internal.exporter._core \
	onnxscript.function_libs.torch_lib.ops
COMPILE_IMPORTS := env -u PYTHONDONTWRITEBYTECODE $(VENV)/bin/python -c \
	"import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]" $(WARM_IMPORTS)

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --no-compile $(TORCH_PINS) $(OTHER_PINS) -e ".[dev]"
	$(COMPILE_IMPORTS)
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/ftpdet demo

# The install wrote the bytecode of the heavy imports; ftpdet's own modules change between runs, so their bytecode is
# refreshed here (compileall skips what is up to date), or every test process would compile the edited ones.
test: $(VENV)/.installed
	env -u PYTHONDONTWRITEBYTECODE $(VENV)/bin/python -m compileall -q src/ftpdet
	$(VENV)/bin/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

clean:
	rm -rf runs/demo .pytest_cache
