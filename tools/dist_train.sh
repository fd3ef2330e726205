#!/usr/bin/env bash
# Distributed training with torchrun:  bash tools/dist_train.sh CONFIG GPUS [train.py options]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node (defaults: 1, 0, 127.0.0.1, 29500).
# On a machine without CUDA it runs GPUS CPU processes over gloo (used by the tests).
set -euo pipefail
CONFIG=${1:?usage: dist_train.sh CONFIG GPUS [args]}
GPUS=${2:?usage: dist_train.sh CONFIG GPUS [args]}
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/tools/launcher_python.sh"  # sets PYTHON: $PYTHON, else the repository's .venv

PYTHONPATH="$ROOT:${PYTHONPATH:-}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}"
