#!/usr/bin/env bash
# One short GPU check (under 8 minutes on one H100/H200), from the repository root after `make install`
# (or `pip install "torch==2.13.0"` + `pip install -e .`). Nothing is downloaded. It measures and prints:
#   methods     the mid-size model (configs/models/mid.yaml) in bf16 on CUDA: finetune vs llaca step time
#               and peak memory (benchmarks/bench_methods.py)
#   generation  the same model: batched greedy generation, questions/s at batch 1 and 32 (bench_generation.py)
#   coin8       a 3-task CoIN stand-in (tests/coin_standins.py: data root + tiny llava-hf folder) through
#               `cvqa run --set protocol=official`
#   agreement   the tiny model in float32: the same short run on CUDA and on CPU (CUDA_VISIBLE_DEVICES=""),
#               the fraction of identical predictions per stage, and the CPU-trained final weights evaluated
#               on CUDA against the CPU's own predictions (generation alone)
#
#   benchmarks/gpu_check.sh             on a machine with CUDA
#   benchmarks/gpu_check.sh --dry-run   no CUDA: every part on CPU, the benchmarks on the tiny model with a
#                                       few steps (checks the script, not the GPU; GPU_CHECK_DRY_RUN=1 too)
#
# Figures go to stdout and to ${OUT:-results/gpu_check} (summary.json, summary.txt, one JSON per part,
# logs/<part>.log). Every part has its own timeout; a failed part is reported and the others still run;
# the exit status is the number of failed parts.
set -euo pipefail

SELF="${BASH_SOURCE[0]}"
export OUT="${OUT:-results/gpu_check}"
export WORK="$OUT/work"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [[ -z "${PY:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PY

# Part settings: small enough for the time budget on one H100/H200.
MID=configs/models/mid.yaml
METHOD_STEPS=20 METHOD_WARMUP=3 METHOD_BATCH=8
GEN_QUESTIONS=64 GEN_TOKENS=8 GEN_REPEATS=2
AGREE_STEPS=30 AGREE_LIMIT=32

cvqa() { "$PY" -m cvqa_bench.cli "$@"; }

part_env() {
    "$PY" - <<'EOF'
import json, os, platform, subprocess
import torch
info = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda, "python": platform.python_version(),
        "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "dry_run": os.environ["DRY_RUN"] == "1"}
try:
    info["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
except OSError:
    info["git_commit"] = None
json.dump(info, open(os.path.join(os.environ["OUT"], "env.json"), "w"), indent=2)
print(json.dumps(info))
EOF
}

part_prepare() {
    # The mid model and the synthetic data are built into the cache here, so that the benchmark parts
    # time only themselves. The stand-ins: a CoIN data root, a tiny llava-hf folder, two sequence YAMLs.
    "$PY" - <<'EOF'
import os, sys
from pathlib import Path
import yaml
sys.path.insert(0, "tests")  # tests/coin_standins.py (not a test module)
import coin_standins as standins
from cvqa_bench.bench.common import question_pool
from cvqa_bench.config import ModelSpec
from cvqa_bench.models.load import model_directory

work = Path(os.environ["WORK"])
if os.environ["DRY_RUN"] != "1":
    print("mid model:", model_directory(ModelSpec(tiny=os.environ["MID"])))
question_pool("synthetic", 1)  # materialises the synthetic sequence the benchmarks read
root = standins.build_coin_root(work / "CoIN")
model = standins.build_tiny_llava(work / "llava-tiny-hf")
coin8 = yaml.safe_load(Path("tasks/coin8.yaml").read_text())
keep = ("ScienceQA", "TextVQA", "Grounding")  # three scorers: choice, vqa_evalai, grounding
coin8.update(name="coin8-3task", description="CoIN stand-in, 3 tasks (benchmarks/gpu_check.sh)",
             tasks=[t for t in coin8["tasks"] if t["name"] in keep])
(work / "coin8-3task.yaml").write_text(yaml.safe_dump(coin8, sort_keys=False))
tasks = {"color": ("vqa", "last_line"), "shape": ("contains", "last_line"), "count": ("exact", "last_line")}
agree = {"name": "agree3", "description": "synthetic, 3 tasks (benchmarks/gpu_check.sh)", "image_folder": "images",
         "generator": {"name": "synthetic", "seed": 0, "n_train": 64, "n_test": int(os.environ["AGREE_LIMIT"]),
                       "image_size": 32},
         "tasks": [{"name": n, "train": f"{n}/train.json", "test": f"{n}/test.json", "scorer": s,
                    "instruction": rule, "max_new_tokens": 8} for n, (s, rule) in tasks.items()]}
(work / "agree3.yaml").write_text(yaml.safe_dump(agree, sort_keys=False))
print("coin root:", root, "| model:", model, "| sequences:", work / "coin8-3task.yaml", work / "agree3.yaml")
EOF
}

part_methods() {
    local model=$MID device=cuda steps=$METHOD_STEPS warmup=$METHOD_WARMUP batch=$METHOD_BATCH
    if [[ "$DRY_RUN" == 1 ]]; then model=configs/models/tiny.yaml device=cpu steps=3 warmup=1 batch=2; fi
    "$PY" benchmarks/bench_methods.py --tiny "$model" --dtype bfloat16 --device "$device" \
        --methods finetune llaca --no-llaca-loop --batch-size "$batch" --steps "$steps" --warmup "$warmup" \
        --threads 1 --out "$OUT/methods.json"
}

part_generation() {
    local model=$MID device=cuda questions=$GEN_QUESTIONS repeats=$GEN_REPEATS
    if [[ "$DRY_RUN" == 1 ]]; then model=configs/models/tiny.yaml device=cpu questions=32 repeats=1; fi
    "$PY" benchmarks/bench_generation.py --tiny "$model" --dtype bfloat16 --device "$device" \
        --batch-sizes 1 32 --n-questions "$questions" --max-new-tokens "$GEN_TOKENS" --repeats "$repeats" \
        --threads 1 --out "$OUT/generation.json"
}

part_coin8() {
    if [[ "$DRY_RUN" == 1 ]]; then export CUDA_VISIBLE_DEVICES=""; fi
    cvqa run --sequence "$WORK/coin8-3task.yaml" --data-root "$WORK/CoIN" --model "$WORK/llava-tiny-hf" \
        --set protocol=official --set train.max_steps=5 --set eval.limit=8 --out "$OUT/coin8-official"
}

agree_run() {  # the same float32 tiny-model run; the device is whatever CUDA_VISIBLE_DEVICES leaves
    cvqa run --sequence "$WORK/agree3.yaml" --method finetune --seed 0 --set model.dtype=float32 \
        --set train.max_steps="$AGREE_STEPS" --set train.batch_size=8 --set train.lr=5e-3 \
        --set train.scheduler=constant --set eval.batch_size=16 --set eval.limit="$AGREE_LIMIT" --out "$1"
}

part_agree_cpu() { CUDA_VISIBLE_DEVICES="" OMP_NUM_THREADS=1 agree_run "$OUT/agree/cpu"; }

part_agree_cuda() { agree_run "$OUT/agree/cuda"; }

part_agree_compare() {
    "$PY" - <<'EOF'
import json, os
from pathlib import Path
import torch
from cvqa_bench.bench.common import load_task_rows
from cvqa_bench.config import load_run_config, load_sequence
from cvqa_bench.methods.base import Trainables
from cvqa_bench.models.load import load_model
from cvqa_bench.run.state.checkpoint import load_tensors
from cvqa_bench.run.evaluation.evaluate import generate_predictions

out = Path(os.environ["OUT"])
cpu, cuda = out / "agree" / "cpu", out / "agree" / "cuda"
def read(path): return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
result = {}
if (cuda / "matrix.csv").is_file():  # each device trained its own weights: per stage, all tasks
    per_stage, same, total = {}, 0, 0
    for stage in sorted((cpu / "predictions").iterdir(), key=lambda p: int(p.name.split("-")[0])):
        a = [r["prediction"] for f in sorted(stage.glob("*.jsonl")) for r in read(f)]
        b = [r["prediction"] for f in sorted((cuda / "predictions" / stage.name).glob("*.jsonl")) for r in read(f)]
        assert len(a) == len(b), (stage.name, len(a), len(b))
        hits = sum(x == y for x, y in zip(a, b))
        per_stage[stage.name] = hits / len(a)
        same, total = same + hits, total + len(a)
    result["end_to_end"] = {"identical": same / total, "n": total, "per_stage": per_stage}
# Generation alone: the CPU run's final weights, evaluated here on CUDA (CPU in a dry run), against the
# predictions the CPU run wrote for that stage with the same rows and batches.
config = load_run_config(cpu / "config.yaml")
seq_path = os.path.join(os.environ["WORK"], "agree3.yaml")
seq, _ = load_sequence(seq_path)
last = max((cpu / "stages").iterdir(), key=lambda p: int(p.name.split("-")[0]))
device = torch.device("cpu" if os.environ["DRY_RUN"] == "1" else "cuda")
loaded = load_model(config.model, device)
Trainables(loaded.model).load(load_tensors(last / "weights.safetensors", device))
same = total = 0
for task in seq.tasks:
    rows = load_task_rows(seq_path, task.name, "test")[: config.eval.limit]
    got = generate_predictions(loaded.model, loaded.processor, rows, batch_size=config.eval.batch_size,
                               max_new_tokens=task.max_new_tokens, pad_to_square=config.model.pad_to_square)
    ref = read(cpu / "predictions" / last.name / f"{task.name}.jsonl")
    assert [r["id"] for r in got] == [r["id"] for r in ref]
    same += sum(g["prediction"] == r["prediction"] for g, r in zip(got, ref))
    total += len(ref)
result["eval_only"] = {"stage": last.name, "device": str(device), "identical": same / total, "n": total}
(out / "agreement.json").write_text(json.dumps(result, indent=2))
print(json.dumps(result))
EOF
}

summary() {
    "$PY" - <<'EOF'
import csv, json, os
from pathlib import Path
out = Path(os.environ["OUT"])
def load(name):
    path = out / name
    return json.loads(path.read_text()) if path.is_file() else None
lines, figures = [], {"parts": json.loads((out / "parts.json").read_text())}
env = load("env.json") or {}
lines.append(f"device: {env.get('device_name')}  torch {env.get('torch')}  dry run: {env.get('dry_run')}")
methods = load("methods.json")
if methods:
    figures["methods"] = {}
    lines.append(f"methods ({methods['source']}, {methods['dtype']}, {methods['device']}, "
                 f"batch {methods['batch_size']}, {methods['tokens_per_step']} tokens/step, "
                 f"{methods['trainable_params']} trainable):")
    for label, row in methods["methods"].items():
        peak = row["peak_memory_bytes"]
        figures["methods"][label] = {"median_ms": row["median_ms"], "ratio_vs_finetune": row["ratio_vs_finetune"],
                                     "peak_memory_gib": peak / 2**30 if peak else None,
                                     "copies_ratio": row["copies_ratio"]}
        peak_text = "n/a" if peak is None else f"{peak / 2**30:.2f} GiB"
        lines.append(f"  {label:9s} {row['median_ms']:8.2f} ms/step  x{row['ratio_vs_finetune']:.3f} vs finetune  "
                     f"peak {peak_text}  state {row['copies_ratio']:.1f}x trainable")
generation = load("generation.json")
if generation:
    figures["generation"] = {}
    lines.append(f"generation ({generation['dtype']}, {generation['device']}, "
                 f"{generation['n_questions']} questions, {generation['max_new_tokens']} new tokens):")
    for run in generation["runs"]:
        keys = ("questions_per_s", "speedup", "agreement")
        figures["generation"][f"batch_{run['batch_size']}"] = {k: run[k] for k in keys}
        lines.append(f"  batch {run['batch_size']:3d}  {run['questions_per_s']:8.2f} questions/s  "
                     f"x{run['speedup']:.2f}  same answers as batch {generation['reference_batch_size']}: "
                     f"{run['agreement']:.3f}")
coin8 = out / "coin8-official"
if (coin8 / "metrics.json").is_file():
    rows = list(csv.reader(open(coin8 / "matrix.csv", newline="")))
    metrics = json.loads((coin8 / "metrics.json").read_text())["metrics"]
    figures["coin8"] = {"matrix": rows, "metrics": metrics}
    lines.append(f"coin8 3-task stand-in (protocol=official): final_avg {metrics.get('final_avg')}, matrix:")
    lines += ["  " + ",".join(r) for r in rows]
agreement = load("agreement.json")
if agreement:
    figures["agreement"] = agreement
    if "end_to_end" in agreement:
        e2e = agreement["end_to_end"]
        lines.append(f"GPU vs CPU, each trains: {e2e['identical']:.3f} identical of {e2e['n']} predictions; "
                     + ", ".join(f"{k} {v:.3f}" for k, v in e2e["per_stage"].items()))
    ev = agreement["eval_only"]
    lines.append(f"CPU-trained weights ({ev['stage']}) generated on {ev['device']} vs on CPU: "
                 f"{ev['identical']:.3f} identical of {ev['n']}")
for name, part in figures["parts"].items():
    lines.append(f"part {name:14s} {part['status']:8s} {part['seconds']:6.1f} s")
text = "\n".join(lines)
(out / "summary.txt").write_text(text + "\n")
(out / "summary.json").write_text(json.dumps(figures, indent=2))
print(text)
EOF
}

if [[ "${1:-}" == "--part" ]]; then  # one part, in its own process so that `timeout` can stop it whole
    "part_$2"
    exit 0
fi

export DRY_RUN="${GPU_CHECK_DRY_RUN:-0}"
if [[ "${1:-}" == "--dry-run" ]]; then DRY_RUN=1; fi
export MID METHOD_STEPS METHOD_WARMUP METHOD_BATCH GEN_QUESTIONS GEN_TOKENS GEN_REPEATS AGREE_STEPS AGREE_LIMIT
if [[ "$DRY_RUN" != 1 ]] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "gpu_check: torch sees no CUDA device; run with --dry-run to check the script on CPU" >&2
    exit 2
fi

mkdir -p "$OUT"
# What an earlier check left (cvqa run refuses to write into an existing run folder).
rm -rf "$WORK" "$OUT/coin8-official" "$OUT/agree" "$OUT/logs"
rm -f "$OUT"/{env,methods,generation,agreement,summary,parts}.json "$OUT/summary.txt"
mkdir -p "$WORK" "$OUT/logs"

failed=0
echo "{}" > "$OUT/parts.json"
run_part() {  # NAME SECONDS [skip]
    local name=$1 seconds=$2 start status rc=0
    start=$(date +%s.%N)
    if [[ "${3:-}" == skip ]]; then
        status=skipped
    elif timeout --kill-after=10 "$seconds" bash "$SELF" --part "$name" > "$OUT/logs/$name.log" 2>&1; then
        status=ok
    else
        rc=$?
        status=$([[ $rc == 124 || $rc == 137 ]] && echo timeout || echo failed)
        failed=$((failed + 1))
        echo "--- part $name: $status (exit $rc, limit ${seconds}s); last lines of $OUT/logs/$name.log:"
        tail -n 15 "$OUT/logs/$name.log" | sed 's/^/    /'
    fi
    "$PY" - "$name" "$status" "$start" "$(date +%s.%N)" "$rc" <<'EOF'
import json, os, sys
name, status, start, end, rc = sys.argv[1:]
path = os.path.join(os.environ["OUT"], "parts.json")
parts = json.load(open(path))
parts[name] = {"status": status, "seconds": round(float(end) - float(start), 1), "exit": int(rc)}
json.dump(parts, open(path, "w"), indent=2)
EOF
    echo "part $name: $status"
}

cuda_only=""
if [[ "$DRY_RUN" == 1 ]]; then cuda_only=skip; echo "dry run: no CUDA; benchmarks on the tiny model on CPU"; fi
# The limits sum to 455 s (+10 s grace each at most): under 8 minutes even if parts time out.
run_part env 20
run_part prepare 75
run_part methods 90
run_part generation 90
run_part coin8 50
run_part agree_cpu 50
run_part agree_cuda 40 $cuda_only
run_part agree_compare 40
summary
exit "$failed"
