#!/usr/bin/env bash
# GPU check of the masked-LM evaluator (issue 15, "Throughput of one evaluator"), on a machine with CUDA:
#   1. the masked-LM tests that need CUDA (pytest -m cuda tests/objectives; skipped without CUDA elsewhere),
#   2. masks per second of the embedded SmolLM2-135M and of a Llama-3.2-1B-shaped model built from its
#      config (random weights, bf16), one mask per pass vs masks per pass picked from free memory,
#      with and without prefix reuse (python -m benchmarks.throughput),
#   3. the main job (`headrepair run` with its defaults) with the metric sizes scaled up: 80 perplexity
#      windows instead of 8 (10x) and every pronoun occupation of a split instead of 16 (the data hold
#      ~33 per split: 306 items on search instead of 144, ~2.1x; the 9 templates are all used already).
#
# Usage (repository root):  bash benchmarks/gpu_check.sh [OUTDIR]
#   OUTDIR defaults to $OUT, else out/gpu_check.  Figures go to OUTDIR/figures.txt (and throughput.json,
#   main_job.json); logs to OUTDIR/*.log.  At most 8 files, so a device tool can bring them all back.
# Environment:
#   PYTHON            interpreter with torch+CUDA and transformers (default: python3)
#   HEADREPAIR_CACHE  the cache holding models/smollm2-135m and corpora/ (default: .cache-headrepair in the
#                     repository if present, else ~/.cache/headrepair).  Without the embedded model the steps
#                     that need it are skipped (said in figures.txt); the 1B model needs nothing.
#   .whl/             wheels of missing packages (e.g. moocore, pymoo, vaderSentiment, gguf): installed to
#                     /tmp/site when present.
#   GPU_CHECK_STEPS   which steps to run (default "tests throughput mainjob")
#   GPU_CHECK_INSTALL 0: do not `pip install -e .` (the package is installed already)
set -u
cd "$(dirname "$0")/.."
OUTDIR="${1:-${OUT:-out/gpu_check}}"
mkdir -p "$OUTDIR"
PY="${PYTHON:-python3}"
STEPS="${GPU_CHECK_STEPS:-tests throughput mainjob}"
FIG="$OUTDIR/figures.txt"
: >"$FIG"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
if [ -z "${HEADREPAIR_CACHE:-}" ]; then
  if [ -d .cache-headrepair ]; then export HEADREPAIR_CACHE="$PWD/.cache-headrepair"
  else export HEADREPAIR_CACHE="$HOME/.cache/headrepair"; fi
fi
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# the registries find the built-in problems and strategies through the package's entry points
if [ "${GPU_CHECK_INSTALL:-1}" = 1 ]; then
  "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$OUTDIR/setup.log" 2>&1 \
    || echo "note: editable install failed (see setup.log); the CLI may not find the built-in entries" | tee -a "$FIG"
fi

{
  echo "# gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
  "$PY" - <<'EOF'
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    free, total = torch.cuda.mem_get_info()
    print("gpu", torch.cuda.get_device_name(0), f"free {free / 2**30:.1f} / {total / 2**30:.1f} GiB")
missing = []
for mod in ("transformers", "safetensors", "accelerate", "numpy", "scipy", "networkx", "moocore", "pymoo", "yaml",
            "matplotlib", "tqdm", "sklearn", "botorch", "gpytorch", "vaderSentiment", "gguf", "pytest",
            "pytest_benchmark"):
    try:
        importlib.import_module(mod)
    except Exception:
        missing.append(mod)
import transformers
print("transformers", transformers.__version__, "(pinned 5.24.0 where tested)")
print("missing python packages:", ", ".join(missing) or "none",
      "(carry them as wheels in .whl/, see /work/.library/device/README.md)" if missing else "")
EOF
} 2>&1 | tee -a "$FIG"
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA device: nothing to check" | tee -a "$FIG"
  exit 1
fi
HAVE_EMBEDDED=0
[ -f "$HEADREPAIR_CACHE/models/smollm2-135m/config.json" ] && HAVE_EMBEDDED=1
echo "embedded model in $HEADREPAIR_CACHE: $([ $HAVE_EMBEDDED = 1 ] && echo yes || echo 'no (steps that need it are skipped)')" \
  | tee -a "$FIG"
status=0

case " $STEPS " in *" tests "*)
  echo "## 1. masked-LM tests that need CUDA" | tee -a "$FIG"
  timeout 300 "$PY" -m pytest -q -p no:cacheprovider -m cuda tests/objectives -rs >"$OUTDIR/cuda_tests.log" 2>&1
  rc=$?; [ $rc = 0 ] || status=1
  echo "pytest -m cuda tests/objectives: exit $rc; $(tail -n 1 "$OUTDIR/cuda_tests.log")" | tee -a "$FIG"
esac

case " $STEPS " in *" throughput "*)
  echo "## 2. masks per second (bf16, default problem's pass shapes; python -m benchmarks.throughput)" | tee -a "$FIG"
  MODELS=llama-1b; [ $HAVE_EMBEDDED = 1 ] && MODELS=embedded,llama-1b
  timeout 400 "$PY" -m benchmarks.throughput --device cuda --models "$MODELS" --n-masks 32 --per-pass 1,auto \
    --repeats 2 --out "$OUTDIR" >"$OUTDIR/throughput.log" 2>&1
  rc=$?; [ $rc = 0 ] || status=1
  grep -E "masks/s|wrote|Error|error" "$OUTDIR/throughput.log" | tee -a "$FIG"
  [ $rc = 0 ] || { echo "throughput: exit $rc (see throughput.log)" | tee -a "$FIG"; tail -n 5 "$OUTDIR/throughput.log"; }
esac

case " $STEPS " in *" mainjob "*)
  echo "## 3. main job, metric sizes scaled up (n_windows=80, all pronoun occupations)" | tee -a "$FIG"
  if [ $HAVE_EMBEDDED = 1 ]; then
    RUN=$(mktemp -d /tmp/gpu_check_run.XXXX)
    t0=$(date +%s)
    timeout 480 headrepair run --device cuda --set n_windows=80 --set n_pronoun_occupations=null --no-export \
      --out "$RUN/run" >"$OUTDIR/main_job.log" 2>&1 \
      || timeout 480 "$PY" -m framework.cli run --device cuda --set n_windows=80 --set n_pronoun_occupations=null \
           --no-export --out "$RUN/run" >>"$OUTDIR/main_job.log" 2>&1
    rc=$?; t1=$(date +%s); [ $rc = 0 ] || status=1
    "$PY" - "$RUN/run" "$OUTDIR/main_job.json" "$((t1 - t0))" "$rc" <<'EOF' | tee -a "$FIG"
import json, sys
from pathlib import Path
run, out, wall, rc = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fig = {"exit": rc, "wall_s": wall}
res = run / "result.json"
if res.is_file():
    r = json.loads(res.read_text())
    fig.update(n_evaluations=r.get("n_evaluations"), hypervolume=r.get("hypervolume"),
               evaluation_time_s=r.get("evaluation_time_s"), wall_time_s=r.get("wall_time_s"),
               front_size=len(r.get("front", [])))
    if r.get("evaluation_time_s") and r.get("n_evaluations"):
        fig["evaluations_per_hour_evaluating"] = 3600 * r["n_evaluations"] / r["evaluation_time_s"]
chosen = run / "chosen_mask.json"
if chosen.is_file():
    c = json.loads(chosen.read_text())
    fig["verdict"] = c.get("verdict", {}).get("status")
if fig.get("n_evaluations"):
    fig["evaluations_per_hour_whole_job"] = 3600 * fig["n_evaluations"] / max(wall, 1)
out.write_text(json.dumps(fig, indent=1))
print("main job:", json.dumps(fig))
EOF
  else
    echo "skipped: the embedded model is not in $HEADREPAIR_CACHE" | tee -a "$FIG"
  fi
esac
echo "figures in $FIG" | tee -a "$FIG"
exit $status
