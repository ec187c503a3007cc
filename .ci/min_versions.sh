#!/usr/bin/env bash
# Install the lowest versions pyproject.toml declares (every `name>=X` of the dependencies becomes
# `name==X`; torch is the exception: TORCH_SPEC, default torch==2.13.0, the CPU wheel at hand) into a
# fresh virtual environment, then train one epoch of a tiny language model with train.py there.
#   bash .ci/min_versions.sh [VENV_DIR]        (default: a temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-$(mktemp -d)/venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
python3 -m venv "$VENV"
PINS=$("$VENV/bin/python" - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
for dep in deps:
    name = re.match(r"[A-Za-z0-9_.-]+", dep).group(0)
    low = re.search(r">=\s*([^,;\s]+)", dep)
    if name != "torch" and low:
        print(f"{name}=={low.group(1)}")
PY
)
echo "minimum versions: $TORCH_SPEC $(echo $PINS)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check $PINS "$TORCH_SPEC"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e .
"$VENV/bin/python" -m pip list --disable-pip-version-check 2>/dev/null | grep -iE "^(torch|lightning|hydra|omegaconf|tensorboard|matplotlib|pyyaml|rich|numpy) "
RUN="$(mktemp -d)/run"
"$VENV/bin/python" train.py model.hidden_size=16 trainer.max_epochs=1 trainer.accelerator=cpu \
    trainer.enable_progress_bar=false data.max_tokens=4000 data.batch_size=8 data.num_steps=10 \
    print_config=false "hydra.run.dir=$RUN"
"$VENV/bin/python" - "$RUN/metrics.json" <<'PY'
import json, sys
metrics = json.load(open(sys.argv[1]))
assert metrics["status"] == "ok" and metrics["epochs"] == 1 and metrics["val/ppl"] > 1, metrics
print(f"minimum versions: one epoch ok, val/ppl {metrics['val/ppl']:.2f}")
PY
