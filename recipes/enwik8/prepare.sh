#!/usr/bin/env bash
# enwik8 -> data-bin/enwik8 (fairseq binarized, one token per byte). Usage and variables:
# recipes/enwik8/README.md. Common settings: ENWIK8_ZIP=/path/enwik8.zip (else downloaded to
# DOWNLOAD_DIR=data), DATA_BIN=data-bin/enwik8, TRAIN_SIZE/VALID_SIZE/TEST_SIZE, SKIP_CHECKSUM=1.
set -euo pipefail
export CORPUS=enwik8
# The official archive http://mattmahoney.net/dc/enwik8.zip. Mahoney's site publishes no hash; this
# SHA-256 and size are the ones Hugging Face `datasets` pins for that URL
# (github.com/huggingface/datasets, datasets/enwik8/dataset_infos.json, commit 040102f1:
# "num_bytes": 36445475, "checksum": "547994d9...34bc"), and several unrelated projects pin the same.
export EXPECTED_SIZE="${EXPECTED_SIZE:-36445475}"
export EXPECTED_SHA256="${EXPECTED_SHA256:-547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc}"
exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../lm/prepare.sh"
