#!/usr/bin/env bash
# The prepared GPU check (issue 15): run it on a machine with one NVIDIA GPU (CUDA 12 driver)
# whenever one is available, then record its figures in benchmarks/README.md. In at most
# about 10 minutes it
#   1. installs the CUDA extra (make install-gpu) and checks that JAX sees the GPU (metaopt doctor);
#   2. measures PPO + Adam / OPEN (published Breakout weights) / Optim4RL env steps/s on
#      Breakout with 16 vmapped seeds at 1e6 steps each, with each run's peak GPU memory;
#   3. times one OPEN ES generation at population 64 (reduced inner budget: 4 PPO updates per
#      member) and one pipeline meta-iteration (4 agents, 4 inner updates), compile excluded.
# Writes $OUT/ppo_throughput.json, $OUT/meta_training.json, $OUT/doctor.txt, $OUT/nvidia_smi.txt.
#   bash benchmarks/gpu_check.sh              # OUT=benchmarks/results/gpu_check
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu_check}
mkdir -p "$OUT"
make install-gpu
nvidia-smi > "$OUT/nvidia_smi.txt"
.venv/bin/metaopt doctor --require-gpu | tee "$OUT/doctor.txt"
timeout 300 .venv/bin/python benchmarks/ppo_throughput.py --out "$OUT" \
    --cases breakout_16seeds_1e6 breakout_open_16seeds_1e6 breakout_optim4rl_16seeds_1e6
timeout 240 .venv/bin/python benchmarks/meta_training.py --out "$OUT" \
    --population 64 --updates 4 --width 4 --inner-updates 4 --repeats 2
echo "wrote $OUT: ppo_throughput.json, meta_training.json, doctor.txt, nvidia_smi.txt"
