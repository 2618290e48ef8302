#!/usr/bin/env bash
# Shared by recipes/enwik8/prepare.sh and recipes/text8/prepare.sh (they set CORPUS and the
# official archive's size and SHA-256). Downloads or takes the archive, checks it, splits it
# 90M / 5M / 5M, binarizes with fairseq-preprocess, and moves the data-bin into place only when
# everything succeeded. See recipes/lm/README.md (shared) and recipes/<corpus>/README.md for the variables.
set -euo pipefail

die() { echo "error: $*" >&2; exit 1; }

: "${CORPUS:?set CORPUS=enwik8 or CORPUS=text8 (or run recipes/<corpus>/prepare.sh)}"
case "$CORPUS" in enwik8 | text8) ;; *) die "CORPUS must be enwik8 or text8, got '$CORPUS'" ;; esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
UPPER="$(echo "$CORPUS" | tr '[:lower:]' '[:upper:]')"

# The archive: ENWIK8_ZIP / TEXT8_ZIP (a local file, used as is) or a download into DOWNLOAD_DIR.
ZIP_VAR="${UPPER}_ZIP"
URL_VAR="${UPPER}_URL"
ARCHIVE="${!ZIP_VAR:-}"
URL="${!URL_VAR:-http://mattmahoney.net/dc/${CORPUS}.zip}"
DOWNLOAD_DIR="${DOWNLOAD_DIR:-data}"
DATA_BIN="${DATA_BIN:-data-bin/${CORPUS}}"
TRAIN_SIZE="${TRAIN_SIZE:-90000000}"
VALID_SIZE="${VALID_SIZE:-5000000}"
TEST_SIZE="${TEST_SIZE:-5000000}"
WORKERS="${WORKERS:-$(nproc 2>/dev/null || echo 4)}"
EXPECTED_SIZE="${EXPECTED_SIZE:?the corpus script sets the official archive size}"
EXPECTED_SHA256="${EXPECTED_SHA256:?the corpus script sets the official archive SHA-256}"
SKIP_CHECKSUM="${SKIP_CHECKSUM:-0}"
PYTHON="${PYTHON:-python3}"

if [[ -e "$DATA_BIN" ]]; then
    if [[ -f "$DATA_BIN/dict.txt" && -f "$DATA_BIN/test.bin" ]]; then
        echo "$DATA_BIN already exists; nothing to do (remove it to prepare again)"
        exit 0
    fi
    die "$DATA_BIN exists but is not a data-bin from this script (no dict.txt/test.bin); remove it first"
fi
command -v fairseq-preprocess >/dev/null || die "fairseq-preprocess not on PATH (activate the environment with fairseq installed)"

ARCHIVE_FILE="${CORPUS}.zip"
# shellcheck source=fetch_archive.sh
source "$HERE/fetch_archive.sh"

# Everything is written under a temporary sibling of DATA_BIN (same filesystem, so the final mv is
# atomic) and removed on any exit; only a complete data-bin is moved into place.
mkdir -p "$(dirname "$DATA_BIN")"
TMP="$(mktemp -d "${DATA_BIN%/}.tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM   # run the EXIT trap (remove TMP) when interrupted too
mkdir "$TMP/text"

"$PYTHON" "$HERE/split_corpus.py" "$CORPUS" "$ARCHIVE" "$TMP/text" --sizes "$TRAIN_SIZE" "$VALID_SIZE" "$TEST_SIZE" \
    || exit 1  # split_corpus.py has printed the one-line reason

fairseq-preprocess --only-source \
    --trainpref "$TMP/text/train.txt" --validpref "$TMP/text/valid.txt" --testpref "$TMP/text/test.txt" \
    --destdir "$TMP/data-bin" --workers "$WORKERS" > "$TMP/preprocess.log" 2>&1 \
    || { cat "$TMP/preprocess.log" >&2; die "fairseq-preprocess failed"; }
cp "$TMP/preprocess.log" "$TMP/data-bin/preprocess.log"
if [[ "${KEEP_TEXT:-0}" == 1 ]]; then
    mv "$TMP/text" "$TMP/data-bin/text"
fi
cat > "$TMP/data-bin/PREPARED" <<INFO
corpus $CORPUS
archive $ARCHIVE
archive_sha256 $(sha256sum "$ARCHIVE" | cut -d' ' -f1)
split $TRAIN_SIZE $VALID_SIZE $TEST_SIZE
INFO
mv "$TMP/data-bin" "$DATA_BIN"
echo "wrote $DATA_BIN"
