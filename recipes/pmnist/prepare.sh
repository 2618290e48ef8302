#!/usr/bin/env bash
# pMNIST uses the same prepared MNIST splits as sMNIST; the fixed permutation is applied by the task
# (--permute-seed) when training and is recorded in the checkpoint. Variables: see ../smnist/prepare.sh.
set -euo pipefail
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../smnist/prepare.sh"
