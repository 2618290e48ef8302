#!/usr/bin/env bash
# wikitext-103 (raw, v1) -> data-bin/wikitext103: sentencepiece (VOCAB=32000, MODEL_TYPE=bpe) trained
# on wiki.train.raw, then recipes/text/prepare.sh. Usage and variables: recipes/wikitext103/README.md.
# Common settings: WIKITEXT103_ZIP=/path/wikitext-103-raw-v1.zip (else downloaded to DOWNLOAD_DIR=data),
# DATA_BIN=data-bin/wikitext103, VOCAB, MODEL_TYPE, SKIP_CHECKSUM=1, WORKERS.
set -euo pipefail

die() { echo "error: $*" >&2; exit 1; }
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CORPUS=wikitext103
export DATA_BIN="${DATA_BIN:-data-bin/wikitext103}"
export VOCAB="${VOCAB:-32000}"
PYTHON="${PYTHON:-python3}"

# The official archive (Merity et al. 2016), raw variant: the original words, no <unk> (see README).
# The site publishes no hash. Size and SHA-256 as pinned identically by independent loaders, e.g.
# Julia's MLDatasets (DataDeps registration for wikitext-103-raw-v1.zip) and fairseq-based pipelines.
ZIP_VAR=WIKITEXT103_ZIP
ARCHIVE="${WIKITEXT103_ZIP:-}"
ARCHIVE_FILE=wikitext-103-raw-v1.zip
URL="${WIKITEXT103_URL:-https://wikitext.smerity.com/wikitext-103-raw-v1.zip}"
DOWNLOAD_DIR="${DOWNLOAD_DIR:-data}"
EXPECTED_SIZE="${EXPECTED_SIZE:-191984949}"
EXPECTED_SHA256="${EXPECTED_SHA256:-91c00ae287f0d699e18605c84afc9e45c192bc6b7797ff8837e5474655a33794}"
SKIP_CHECKSUM="${SKIP_CHECKSUM:-0}"

if [[ -e "$DATA_BIN" ]]; then
    exec bash "$HERE/../text/prepare.sh"  # says "nothing to do", or refuses a foreign directory
fi
# shellcheck source=../lm/fetch_archive.sh
source "$HERE/../lm/fetch_archive.sh"

# The three .raw files, extracted next to DATA_BIN and removed on any exit.
mkdir -p "$(dirname "$DATA_BIN")"
RAW="$(mktemp -d "${DATA_BIN%/}.raw.XXXXXX")"
trap 'rm -rf "$RAW"' EXIT
trap 'exit 130' INT TERM
"$PYTHON" - "$ARCHIVE" "$RAW" <<'PY' || exit 1
import shutil, sys, zipfile, zlib
archive, out = sys.argv[1], sys.argv[2]
try:
    with zipfile.ZipFile(archive) as zf:
        for split in ("train", "valid", "test"):
            member = f"wikitext-103-raw/wiki.{split}.raw"
            if member not in zf.namelist():
                sys.exit(f"error: {archive} has no file named {member!r} (not the wikitext-103-raw-v1 layout)")
            with zf.open(member) as src, open(f"{out}/{split}.raw", "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
except (zipfile.BadZipFile, zlib.error, EOFError) as err:
    sys.exit(f"error: {archive} is not a readable zip archive (corrupt or truncated): {err}")
PY
TRAIN_TEXT="$RAW/train.raw" VALID_TEXT="$RAW/valid.raw" TEST_TEXT="$RAW/test.raw" \
    bash "$HERE/../text/prepare.sh"
