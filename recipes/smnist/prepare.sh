#!/usr/bin/env bash
# MNIST -> prepared splits for sMNIST and pMNIST (the permutation is applied at training time).
#
#   DEST              output directory (default data-bin/mnist); created atomically, never overwritten
#   MNIST_DIR         a local directory holding the four official .gz files (then nothing is downloaded)
#   RAW_DIR           where downloads go (default raw/mnist)
#   VALID_SIZE        the last VALID_SIZE of the 60,000 training images become the valid split (5000)
#   VERIFY_CHECKSUMS  1 (default): check the MD5s torchvision checks; 0: skip, with a one-line note on stderr
#                     (any other real 28x28 grey set in the official IDX layout and names, or test-made files)
#   MNIST_MIRRORS     space-separated base URLs, tried in order
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
DEST="${DEST:-data-bin/mnist}"
RAW_DIR="${RAW_DIR:-raw/mnist}"
MNIST_DIR="${MNIST_DIR:-}"
VALID_SIZE="${VALID_SIZE:-5000}"
VERIFY_CHECKSUMS="${VERIFY_CHECKSUMS:-1}"
# torchvision's mirrors (torchvision/datasets/mnist.py); yann.lecun.com often refuses downloads now
MNIST_MIRRORS="${MNIST_MIRRORS:-https://ossci-datasets.s3.amazonaws.com/mnist/ http://yann.lecun.com/exdb/mnist/}"
FILES=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)

if [[ -f "$DEST/test-labels.idx" ]]; then
    echo "$DEST is already prepared (remove it to prepare again)"
    exit 0
fi

# shellcheck source=../common/download.sh
source "$REPO/recipes/common/download.sh"

if [[ -n "$MNIST_DIR" ]]; then
    SRC="$MNIST_DIR"
else
    SRC="$RAW_DIR"
    mkdir -p "$SRC"
    for f in "${FILES[@]}"; do
        [[ -f "$SRC/$f" ]] && continue
        for mirror in $MNIST_MIRRORS; do
            if fetch_url "$mirror$f" "$SRC/$f"; then break; fi
        done
        [[ -f "$SRC/$f" ]] || { echo "error: could not download $f from any of: $MNIST_MIRRORS" >&2; exit 1; }
    done
fi

verify=()
if [[ "$VERIFY_CHECKSUMS" != 1 ]]; then
    verify=(--no-verify)
    echo "note: VERIFY_CHECKSUMS=0: the MD5s of the official MNIST files are not checked; the IDX files in $SRC are used as given (another 28x28 set in MNIST's layout, e.g. Fashion-MNIST, is fine)" >&2
fi
python -m fairseq_focus.data.prepare_pixels mnist --raw-dir "$SRC" --out "$DEST" --valid-size "$VALID_SIZE" "${verify[@]}"
