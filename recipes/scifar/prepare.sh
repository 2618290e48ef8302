#!/usr/bin/env bash
# CIFAR-10 -> prepared splits for sCIFAR (images stored 32x32x3; the task can make them grayscale).
#
#   DEST              output directory (default data-bin/cifar10); created atomically, never overwritten
#   CIFAR10_TAR       a local cifar-10-python.tar.gz (then nothing is downloaded)
#   RAW_DIR           where the download goes (default raw/cifar10)
#   VALID_SIZE        the last VALID_SIZE of the 50,000 training images become the valid split (5000)
#   VERIFY_CHECKSUMS  1 (default): check the MD5 torchvision checks; 0: skip (for test-made files)
#   CIFAR10_URL       the download URL (default: the official one, https://www.cs.toronto.edu/~kriz/cifar.html)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=../common/download.sh
source "$REPO/recipes/common/download.sh"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
DEST="${DEST:-data-bin/cifar10}"
RAW_DIR="${RAW_DIR:-raw/cifar10}"
CIFAR10_TAR="${CIFAR10_TAR:-}"
VALID_SIZE="${VALID_SIZE:-5000}"
VERIFY_CHECKSUMS="${VERIFY_CHECKSUMS:-1}"
CIFAR10_URL="${CIFAR10_URL:-https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz}"

if [[ -f "$DEST/test-labels.idx" ]]; then
    echo "$DEST is already prepared (remove it to prepare again)"
    exit 0
fi

if [[ -z "$CIFAR10_TAR" ]]; then
    CIFAR10_TAR="$RAW_DIR/cifar-10-python.tar.gz"
    if [[ ! -f "$CIFAR10_TAR" ]]; then
        fetch_url "$CIFAR10_URL" "$CIFAR10_TAR" || { echo "error: could not download $CIFAR10_URL" >&2; exit 1; }
    fi
fi

verify=()
[[ "$VERIFY_CHECKSUMS" == 1 ]] || verify=(--no-verify)
python -m fairseq_focus.data.prepare_pixels cifar10 --tarball "$CIFAR10_TAR" --out "$DEST" --valid-size "$VALID_SIZE" "${verify[@]}"
