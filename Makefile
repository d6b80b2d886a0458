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

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q -n auto --dist loadfile --no-loadscope-reorder

clean:
	rm -rf runs/demo .pytest_cache
