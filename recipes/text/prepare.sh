#!/usr/bin/env bash
# A folder of text -> a subword data-bin: trains sentencepiece (BPE or unigram) on the train split
# only, encodes train/valid/test with it and binarizes them with fairseq-preprocess. Usage and
# variables: recipes/text/README.md. Common settings:
#   TEXT_DIR=folder with train.txt valid.txt test.txt (or TRAIN_TEXT / VALID_TEXT / TEST_TEXT),
#   VOCAB=32000, MODEL_TYPE=bpe|unigram, CORPUS=text (names DATA_BIN=data-bin/$CORPUS), WORKERS.
# Everything is written under a temporary sibling of DATA_BIN and moved into place only when it is
# complete: a failure or Ctrl-C leaves no data-bin.
set -euo pipefail

# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"
VOCAB="${VOCAB:-32000}"
MODEL_TYPE="${MODEL_TYPE:-bpe}"
CHARACTER_COVERAGE="${CHARACTER_COVERAGE:-0.9995}"
SPM_SENTENCES="${SPM_SENTENCES:-2000000}"    # train lines sampled for sentencepiece training
WORKERS="${WORKERS:-$(nproc 2>/dev/null || echo 4)}"
PYTHON="${PYTHON:-python3}"

if [[ -e "$DATA_BIN" ]]; then
    if [[ -f "$DATA_BIN/dict.txt" && -f "$DATA_BIN/test.bin" && -f "$DATA_BIN/spm.model" ]]; then
        echo "$DATA_BIN already exists; nothing to do (remove it to prepare again)"
        exit 0
    fi
    die "$DATA_BIN exists but is not a data-bin from this script (no dict.txt/test.bin/spm.model); remove it first"
fi
if [[ -z "${TEXT_DIR:-}" && -z "${TRAIN_TEXT:-}" ]]; then
    die "no corpus given: set TEXT_DIR to a folder holding train.txt, valid.txt and test.txt (or TRAIN_TEXT, VALID_TEXT, TEST_TEXT)"
fi
if [[ -n "${TEXT_DIR:-}" && ! -d "$TEXT_DIR" ]]; then
    die "TEXT_DIR=$TEXT_DIR is not a directory"
fi
TRAIN_TEXT="${TRAIN_TEXT:-$TEXT_DIR/train.txt}"
VALID_TEXT="${VALID_TEXT:-${TEXT_DIR:-$(dirname "$TRAIN_TEXT")}/valid.txt}"
TEST_TEXT="${TEST_TEXT:-${TEXT_DIR:-$(dirname "$TRAIN_TEXT")}/test.txt}"
for split in TRAIN VALID TEST; do
    var="${split}_TEXT"
    [[ -f "${!var}" ]] || die "corpus file not found: $var=${!var}"
done
[[ "$VOCAB" =~ ^[0-9]+$ ]] || die "VOCAB must be a positive integer, got '$VOCAB'"
case "$MODEL_TYPE" in bpe | unigram) ;; *) die "MODEL_TYPE must be bpe or unigram, got '$MODEL_TYPE'" ;; esac

command -v fairseq-preprocess >/dev/null || die "fairseq-preprocess not on PATH (activate the environment with fairseq installed)"
"$PYTHON" -c "import sentencepiece" 2>/dev/null || die "the python package sentencepiece is missing (make setup installs it)"

mkdir -p "$(dirname "$DATA_BIN")"
TMP="$(mktemp -d "${DATA_BIN%/}.tmp.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM   # run the EXIT trap (remove TMP) when interrupted too
mkdir "$TMP/data-bin"

echo "training sentencepiece ($MODEL_TYPE, VOCAB=$VOCAB) on $TRAIN_TEXT"
"$PYTHON" "$TEXT_RECIPE/spm_prepare.py" --train "$TRAIN_TEXT" --valid "$VALID_TEXT" --test "$TEST_TEXT" \
    --out "$TMP/data-bin" --vocab "$VOCAB" --model-type "$MODEL_TYPE" --character-coverage "$CHARACTER_COVERAGE" \
    --input-sentence-size "$SPM_SENTENCES" --threads "$WORKERS" \
    || exit 1  # spm_prepare.py has printed the one-line reason

# --srcdict: the dictionary is sentencepiece's whole vocabulary, so no valid/test piece maps to <unk>.
fairseq-preprocess --only-source --srcdict "$TMP/data-bin/dict.txt" \
    --trainpref "$TMP/data-bin/text/train.txt" --validpref "$TMP/data-bin/text/valid.txt" \
    --testpref "$TMP/data-bin/text/test.txt" \
    --destdir "$TMP/data-bin" --workers "$WORKERS" > "$TMP/preprocess.log" 2>&1 \
    || { cat "$TMP/preprocess.log" >&2; die "fairseq-preprocess failed"; }
if grep -E "tokens, [0-9.]+% replaced" "$TMP/preprocess.log" | grep -qvE "tokens, 0\.0+% replaced"; then
    grep -E "% replaced" "$TMP/preprocess.log" >&2
    die "fairseq-preprocess replaced pieces by <unk>: dict.txt does not cover the encoded text"
fi
mv "$TMP/preprocess.log" "$TMP/data-bin/preprocess.log"
if [[ "${KEEP_TEXT:-0}" != 1 ]]; then
    rm -r "$TMP/data-bin/text"
fi
mv "$TMP/data-bin" "$DATA_BIN"
echo "wrote $DATA_BIN (sentencepiece model: $DATA_BIN/spm.model)"
