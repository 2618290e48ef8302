#!/usr/bin/env bash
# text8 -> data-bin/text8 (fairseq binarized, one token per character, "_" for space). Usage and
# variables: recipes/text8/README.md. Common settings: TEXT8_ZIP=/path/text8.zip (else downloaded
# to DOWNLOAD_DIR=data), DATA_BIN=data-bin/text8, TRAIN_SIZE/VALID_SIZE/TEST_SIZE, SKIP_CHECKSUM=1.
set -euo pipefail
export CORPUS=text8
# The official archive http://mattmahoney.net/dc/text8.zip. Mahoney's site publishes no hash.
# Size: 31,344,016 bytes, the value TensorFlow's word2vec tutorial (word2vec_basic.py,
# maybe_download('text8.zip', 31344016)) checks. SHA-256: no authoritative publisher found; this is
# the value pinned identically by several independent public repositories (e.g. a torchtext-based
# word2vec loader passing it to _download_extract_validate, and Haskell/Python text8 loaders).
# If your download differs, compare with a second mirror before using SKIP_CHECKSUM=1.
export EXPECTED_SIZE="${EXPECTED_SIZE:-31344016}"
export EXPECTED_SHA256="${EXPECTED_SHA256:-a6640522afe85d1963ad56c05b0ede0a0c000dddc9671758a6cc09b7a38e5232}"
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../lm/prepare.sh"
