# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV ?= .venv
# The tested versions; pyproject.toml keeps ranges so GPU users can bring their own build.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
# Tested versions of the other pinned dependencies (ranges in pyproject.toml).
OTHER_PINS := scipy==1.17.1 faster-coco-eval==1.8.0 pycocotools==2.0.11 timm==1.0.31 tensorboard==2.21.0

.PHONY: demo test install clean

# --no-compile: byte-compiling every installed file (torch's thousands) took about 60 of the install's 140 s on 2
# cores (docs/demo.md); Python compiles what it imports, once, on first use.
$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --no-compile $(TORCH_PINS) $(OTHER_PINS) -e ".[dev]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/ftpdet demo

# The heavy imports once, in one process, before the parallel workers: a fresh .venv holds no bytecode (--no-compile),
# and the workers and the processes they start would otherwise each compile torch's modules at the same time (about
# 150 of a clean clone's 975 s of tests on 2 cores).
WARM_IMPORTS := torch torchvision torch.export timm scipy.stats faster_coco_eval pycocotools.coco onnx onnxruntime \
	onnxscript matplotlib.pyplot torch.utils.tensorboard ftpdet.cli ftpdet.engine.train ftpdet.bench.accuracy \
	ftpdet.bench.speed ftpdet.onnx_export
test: $(VENV)/.installed
	$(VENV)/bin/python -c "import importlib, sys; [importlib.import_module(m) for m in sys.argv[1:]]" $(WARM_IMPORTS)
	$(VENV)/bin/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

clean:
	rm -rf runs/demo .pytest_cache
