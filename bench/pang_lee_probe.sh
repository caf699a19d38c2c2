#!/usr/bin/env bash
# Can a prompt learn pang_lee (1,500 full reviews of ~745 words) when MiniLM reads 512 tokens instead
# of 128? A short probe (REPLICATION.md, "pang_lee"): 1 seed, 160 steps of 16 at max_length 512, dev
# accuracy every 20 steps (150 dev / 150 test, the default 80/10/10 split of seed 0). Run under the
# shared lock: flock /work/heavy.lock env OMP_NUM_THREADS=2 bash bench/pang_lee_probe.sh [OUT [STEPS [EVERY]]]
set -euo pipefail
out=${1:-runs/probe-pang_lee-512}
steps=${2:-160}  # training steps (the learning rate decays to 0 there)
every=${3:-20}   # steps between dev evaluations
python -m skillneurons.cli -q tune --model minilm --task pang_lee --head similarity --prompt-length 20 \
    --max-length 512 --max-steps "$steps" --batch-size 16 --eval-every "$every" --lr 0.03 --seed 0 --split-seed 0 \
    --out "$out"
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
res = json.loads((out / "results.json").read_text())
hist = json.loads((out / "history.json").read_text())
print("dev curve:", [(h["step"], round(h["dev_accuracy"], 4)) for h in hist])
print("best dev", res["best_dev_accuracy"], "at step", res["best_step"], "test", res["test_accuracy"],
      "sizes", res["sizes"], "train seconds", round(res["train_seconds"]))
PY
