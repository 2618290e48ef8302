"""The subword recipes (recipes/text/{prepare,train,eval}.sh and recipes/wikitext103/), run as a user
runs them: on a small corpus written here from real text (Python's argparse source, with tab-indented
and non-ASCII lines so byte fallback and whitespace-holding pieces are exercised), a tiny model and
a few updates; wikitext-103's prepare.sh on a small archive in the official layout."""
import math
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch

from helpers import REPO, TINY_LM, USER_DIR, run, stdlib_text
from test_recipes_lm import assert_one_line_error, fake_fairseq_train, flag, sha256

RECIPES = REPO / "recipes"
VOCAB = "800"
EVAL_TOKENS = 256
TRAIN_ENV = {
    "TOKENS_PER_SAMPLE": "128", "MAX_TOKENS": "512", "UPDATE_FREQ": "1", "WARMUP": "2", "MAX_UPDATE": "4",
    "SAVE_INTERVAL_UPDATES": "0", "LOG_INTERVAL": "1", "NUM_WORKERS": "0", "GPUS": "0",
    "MODEL_ARGS": " ".join(TINY_LM),
}


def corpus_splits() -> dict:
    """train / valid / test text: argparse's source; train also tab-indented, test with non-ASCII lines."""
    text = stdlib_text(90_000).decode("utf-8")
    train = text[:60_000]
    tabbed = "".join(line.replace("    ", "\t") + "\n" for line in train.splitlines()[:400])
    test = text[66_000:72_000] + "caf\u00e9 \u2603 \u6f22\u5b57 na\u00efve\n\tindented\u00a0no-break\n"
    return {"train": train + tabbed, "valid": text[60_000:66_000], "test": test.rstrip("\n")}  # test: no final newline


def prepare(data_bin: Path, check: bool = True, **env) -> subprocess.CompletedProcess:
    full = {"DATA_BIN": str(data_bin), "VOCAB": VOCAB, "WORKERS": "1", **env}
    return run(["bash", str(RECIPES / "text" / "prepare.sh")], cwd=data_bin.parent, env=full, check=check)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(text dir, data-bin, save dir): prepare.sh, then 4 updates of train.sh."""
    root = tmp_path_factory.mktemp("text")
    text_dir = root / "corpus"
    text_dir.mkdir()
    for split, text in corpus_splits().items():
        (text_dir / f"{split}.txt").write_text(text, encoding="utf-8")
    data_bin = root / "data-bin" / "text"
    data_bin.parent.mkdir()
    out = prepare(data_bin, TEXT_DIR=str(text_dir)).stdout
    assert f"wrote {data_bin}" in out
    save_dir = root / "ckpt"
    log = run(["bash", str(RECIPES / "text" / "train.sh")], cwd=root,
              env={**TRAIN_ENV, "DATA_BIN": str(data_bin), "SAVE_DIR": str(save_dir)}).stdout
    assert "filter=selective" in log and "num_updates: 4 >= max_update: 4" in log
    return text_dir, data_bin, save_dir


def prepared_counts(data_bin: Path) -> dict:
    return {k: v for k, v in (line.split(" ", 1) for line in (data_bin / "PREPARED").read_text().splitlines())}


def split_tokens(data_bin: Path, split: str):
    from fairseq.data import Dictionary, data_utils
    vocab = Dictionary.load(str(data_bin / "dict.txt"))
    ds = data_utils.load_indexed_dataset(str(data_bin / split), vocab)
    return vocab, [ds[i] for i in range(len(ds))]


# ---- prepare.sh ----------------------------------------------------------------------------------

@pytest.mark.slow
def test_prepare_is_lossless_and_counts_bytes_and_words(trained):
    """Decoding every binarized line of every split with the sentencepiece model gives back the text."""
    import sentencepiece as spm
    text_dir, data_bin, _ = trained
    sp = spm.SentencePieceProcessor(model_file=str(data_bin / "spm.model"))
    counts = prepared_counts(data_bin)
    assert int(counts["spelled_pieces"]) > 0  # the tabs made pieces that fairseq would split: spelled as bytes
    for split in ("train", "valid", "test"):
        raw = (text_dir / f"{split}.txt").read_bytes()
        lines = raw.decode("utf-8").split("\n")
        if raw.endswith(b"\n"):
            lines.pop()
        vocab, rows = split_tokens(data_bin, split)
        assert len(rows) == len(lines)
        assert all(row[-1] == vocab.eos() for row in rows)
        ids = torch.cat(rows).tolist()
        assert vocab.unk() not in ids
        decoded = [sp.decode_pieces([vocab[i] for i in row[:-1].tolist()]) for row in rows]
        assert decoded == lines, split
        assert not any(any(c.isspace() for c in vocab[i]) for i in set(ids))
        # one "\n" per line, added when the file does not end with one
        assert int(counts[f"{split}_bytes"]) == len(raw) + (0 if raw.endswith(b"\n") else 1)
        assert int(counts[f"{split}_words"]) == sum(len(line.split()) + 1 for line in lines)
        assert int(counts[f"{split}_tokens"]) == len(ids)
    assert "\u2603" in (text_dir / "test.txt").read_text()  # the byte-fallback line really is in the test split


@pytest.mark.slow
def test_prepare_bad_inputs_are_one_line_errors_and_leave_nothing(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    for split, text in corpus_splits().items():
        (good / f"{split}.txt").write_text(text[:20_000], encoding="utf-8")
    empty_valid = tmp_path / "empty_valid"
    empty_valid.mkdir()
    for split in ("train", "test"):
        (empty_valid / f"{split}.txt").write_bytes((good / f"{split}.txt").read_bytes())
    (empty_valid / "valid.txt").write_text("\n  \n")
    not_utf8 = tmp_path / "not_utf8"
    not_utf8.mkdir()
    for split in ("train", "valid", "test"):
        (not_utf8 / f"{split}.txt").write_bytes((good / f"{split}.txt").read_bytes())
    (not_utf8 / "test.txt").write_bytes(b"fine\nbad \xff byte\n")
    out = tmp_path / "out"
    out.mkdir()
    data_bin = out / "text"
    cases = [
        ({}, r"no corpus given: set TEXT_DIR"),
        ({"TEXT_DIR": str(tmp_path / "missing")}, r"TEXT_DIR=\S+ is not a directory"),
        ({"TEXT_DIR": str(tmp_path)}, r"corpus file not found: TRAIN_TEXT=\S+train\.txt"),
        ({"TEXT_DIR": str(empty_valid)}, r"valid split \S+ is empty"),
        ({"TEXT_DIR": str(not_utf8)}, r"test split \S+ is not UTF-8 text \(line 2, byte 4\)"),
        ({"TEXT_DIR": str(good), "VOCAB": "50000"},
         r"VOCAB=50000 is larger than the training text allows: sentencepiece \(bpe\) can make at most \d+ pieces"),
        ({"TEXT_DIR": str(good), "VOCAB": "50000", "MODEL_TYPE": "unigram"}, r"sentencepiece \(unigram\) can make at most \d+"),
        ({"TEXT_DIR": str(good), "MODEL_TYPE": "wordpiece"}, r"MODEL_TYPE must be bpe or unigram"),
    ]
    for env, pattern in cases:
        proc = prepare(data_bin, check=False, **env)
        assert_one_line_error(proc, pattern)
        assert list(out.iterdir()) == [], env  # no data-bin, no temporary directory

    # the largest vocabulary the message names is accepted
    limit = re.search(r"at most (\d+)", prepare(data_bin, check=False, TEXT_DIR=str(good), VOCAB="50000").stderr).group(1)
    prepare(data_bin, TEXT_DIR=str(good), VOCAB=limit)
    assert len((data_bin / "dict.txt").read_text().splitlines()) == int(limit) - 3  # all but <unk>, <s>, </s>


# ---- train.sh / eval.sh --------------------------------------------------------------------------

LINE = re.compile(r"^test (ppl per token|bits per byte|word-level ppl) = (\S+) \(protocol: (\w+):", re.M)


def direct_total_bits(data_bin: Path, checkpoint: Path, block: int) -> float:
    """-log2 p summed over the test split, scored as fairseq-eval-lm's blocks protocol feeds it: blocks of
    ``block`` tokens of the whole stream, each fed its previous token (eos for the first) as first input."""
    from fairseq import checkpoint_utils
    import fairseq_focus  # noqa: F401  (registers the focus_lm task and model)
    models, _, _ = checkpoint_utils.load_model_ensemble_and_task(
        [str(checkpoint)], arg_overrides={"data": str(data_bin), "user_dir": USER_DIR})
    model = models[0].eval()
    vocab, rows = split_tokens(data_bin, "test")
    stream = torch.cat(rows)
    inputs = torch.cat([torch.tensor([vocab.eos()]), stream[:-1]])
    total = 0.0
    with torch.no_grad():
        for start in range(0, stream.numel(), block):
            logits = model(inputs[start:start + block].unsqueeze(0))[0][0]
            lprobs = logits.double().log_softmax(-1).gather(-1, stream[start:start + block].unsqueeze(-1))
            total -= lprobs.sum().item() / math.log(2)
    return total


@pytest.mark.slow
def test_eval_prints_ppl_and_bits_per_byte_equal_to_a_direct_computation(trained):
    text_dir, data_bin, save_dir = trained
    out = run(["bash", str(RECIPES / "text" / "eval.sh")], cwd=save_dir.parent,
              env={"DATA_BIN": str(data_bin), "SAVE_DIR": str(save_dir), "EVAL_TOKENS": str(EVAL_TOKENS),
                   "CONTEXT_WINDOW": "192", "MAX_TOKENS": "4096"}).stdout
    results = {(m.group(3), m.group(1)): float(m.group(2)) for m in LINE.finditer(out)}
    assert {p for p, _ in results} == {"blocks", "sliding", "stream"} and len(results) == 9, out
    assert all(math.isfinite(v) and v > 0 for v in results.values())

    raw = (text_dir / "test.txt").read_bytes()
    num_bytes = len(raw) + 1  # the file has no final newline: one is counted for the last line's </s>
    lines = raw.decode("utf-8").split("\n")
    num_words = sum(len(line.split()) + 1 for line in lines)
    num_tokens = sum(len(row) for row in split_tokens(data_bin, "test")[1])
    bits = direct_total_bits(data_bin, save_dir / "checkpoint_best.pt", EVAL_TOKENS)
    assert results[("blocks", "bits per byte")] == pytest.approx(bits / num_bytes, abs=2e-4)
    assert results[("blocks", "ppl per token")] == pytest.approx(2 ** (bits / num_tokens), rel=1e-3)
    assert results[("blocks", "word-level ppl")] == pytest.approx(2 ** (bits / num_words), rel=1e-3)
    assert f"over {num_bytes} bytes of text" in out and f"; {num_tokens} tokens)" in out
    # stream (segments of EVAL_TOKENS, state carried) = one parallel forward over the whole split
    whole = direct_total_bits(data_bin, save_dir / "checkpoint_best.pt", num_tokens)
    assert whole != pytest.approx(bits, abs=1e-2)  # the protocols differ on this text, so the check below means something
    assert results[("stream", "bits per byte")] == pytest.approx(whole / num_bytes, abs=2e-4)
    assert results[("stream", "ppl per token")] == pytest.approx(2 ** (whole / num_tokens), rel=1e-3)


@pytest.mark.slow
def test_fairseq_interactive_with_sentencepiece_returns_text(trained, tmp_path):
    _, data_bin, save_dir = trained
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("def parse_args(self\nclass Namespace\n")
    out = run(["fairseq-interactive", str(data_bin), "--user-dir", USER_DIR, "--task", "focus_lm",
               "--path", str(save_dir / "checkpoint_best.pt"), "--bpe", "sentencepiece",
               "--sentencepiece-model", str(data_bin / "spm.model"), "--sampling", "--sampling-topk", "20",
               "--beam", "1", "--min-len", "10", "--max-len-b", "20", "--seed", "1", "--input", str(prompts),
               "--cpu"]).stdout
    sources = [line.split("\t")[1] for line in out.splitlines() if line.startswith("S-")]
    texts = [line.split("\t")[2] for line in out.splitlines() if line.startswith("D-")]
    assert sources[0].split()[0] == "\u2581def"  # the prompt went through sentencepiece
    assert len(texts) == 2 and texts[0].startswith("def parse_args(self") and texts[1].startswith("class Namespace")
    assert all(len(t) > len("def parse_args(self") and "\u2581" not in t for t in texts)  # pieces joined to text


def test_text_train_maps_variant_and_model_args_to_fairseq_flags(tmp_path):
    env = fake_fairseq_train(tmp_path)
    script = str(RECIPES / "text" / "train.sh")
    args = run(["bash", script], env={**env, "GPUS": "0", "VARIANT": "static", "MODEL_ARGS": "--decoder-layers 3"}).stdout.splitlines()
    assert flag(args, "--arch") == "focus_lm" and flag(args, "--focus-filter") == "static"
    assert flag(args, "--decoder-layers") == "3" and "--cpu" in args
    assert flag(args, "--save-dir") == env["SAVE_DIR"]
    args = run(["bash", script], env={**env, "GPUS": "0", "ARCH": "focus_lm_enwik8_ema"}).stdout.splitlines()
    assert flag(args, "--arch") == "focus_lm_enwik8_ema" and "--focus-filter" not in args  # the arch's own filter
    args = run(["bash", str(RECIPES / "wikitext103" / "train.sh")],
               env={**env, "GPUS": "1", "VARIANT": "ema", "SAVE_DIR": ""}).stdout.splitlines()
    assert flag(args, "--focus-filter") == "ema" and flag(args, "--save-dir") == "checkpoints/wikitext103_focus_lm_ema"
    assert flag(args, "--block-wiring") == "mega"  # VARIANT=ema is MEGA's block
    # MEGA's wikitext-103 model and settings (mega_lm_adaptive_big; examples/mega/README.lm.md)
    for name, value in {"--decoder-layers": "16", "--decoder-embed-dim": "1024", "--decoder-hidden-dim": "2048",
                        "--decoder-ffn-embed-dim": "2048", "--decoder-z-dim": "256", "--chunk-size": "1024",
                        "--dropout": "0.3", "--attention-dropout": "0.1", "--hidden-dropout": "0.1",
                        "--max-tokens": "6144", "--update-freq": "24", "--lr": "5e-3", "--warmup-updates": "24000",
                        "--max-update": "400000", "--clip-norm": "0.25", "--weight-decay": "0.1"}.items():
        assert flag(args, name) == value, name
    proc = run(["bash", script], env={**env, "VARIANT": "mega"}, check=False)
    assert_one_line_error(proc, "VARIANT must be focus, adaptive, static or ema")
    proc = run(["bash", script], env={**env, "DATA_BIN": str(tmp_path / "nothing")}, check=False)
    assert_one_line_error(proc, r"is not a directory \(run recipes/text/prepare.sh first\)")


# ---- wikitext103/prepare.sh ----------------------------------------------------------------------

def wikitext_zip(path: Path, members: dict) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path


@pytest.mark.slow
def test_wikitext103_prepare_on_an_archive_in_the_official_layout(tmp_path):
    splits = corpus_splits()
    members = {f"wikitext-103-raw/wiki.{s}.raw": splits[s] + "\n" for s in ("train", "valid", "test")}
    archive = wikitext_zip(tmp_path / "wikitext-103-raw-v1.zip", members)
    out = tmp_path / "out"
    out.mkdir()
    data_bin = out / "wikitext103"
    env = {"WIKITEXT103_ZIP": str(archive), "DATA_BIN": str(data_bin), "VOCAB": VOCAB, "WORKERS": "1"}
    script = str(RECIPES / "wikitext103" / "prepare.sh")

    wrong = wikitext_zip(tmp_path / "wrong.zip", {"wikitext-103/wiki.train.tokens": "x\n"})
    bad_cases = [
        ({"WIKITEXT103_ZIP": str(tmp_path / "missing.zip")}, r"archive not found"),
        ({}, rf"has {archive.stat().st_size} bytes, expected 191984949"),  # the default: the official size
        ({"WIKITEXT103_ZIP": str(wrong), "SKIP_CHECKSUM": "1"}, r"has no file named 'wikitext-103-raw/wiki.train.raw'"),
        ({"EXPECTED_SIZE": str(archive.stat().st_size), "EXPECTED_SHA256": "0" * 64}, r"SHA-256 [0-9a-f]{64}, expected 0{64}"),
    ]
    for bad, pattern in bad_cases:
        proc = run(["bash", script], cwd=tmp_path, env={**env, **bad}, check=False)
        assert_one_line_error(proc, pattern)
        assert list(out.iterdir()) == [], bad

    proc = run(["bash", script], cwd=tmp_path,
               env={**env, "EXPECTED_SIZE": str(archive.stat().st_size), "EXPECTED_SHA256": sha256(archive)})
    assert f"checked {archive}" in proc.stdout and f"wrote {data_bin}" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["wikitext103"]  # the extracted .raw files are gone
    counts = prepared_counts(data_bin)
    assert int(counts["test_bytes"]) == len(members["wikitext-103-raw/wiki.test.raw"].encode("utf-8"))
    assert int(counts["test_words"]) == sum(len(line.split()) + 1 for line in splits["test"].split("\n"))
    assert "already exists" in run(["bash", script], cwd=tmp_path, env=env).stdout


# ---- the hub on a subword model ------------------------------------------------------------------

def hub_for(data_bin: Path, save_dir: Path, **kwargs):
    from fairseq_focus.inference.hub import FocusLMHub
    return FocusLMHub.from_pretrained(str(save_dir), "checkpoint_best.pt", str(data_bin), **kwargs)


@pytest.mark.slow
def test_hub_encodes_like_prepare_and_bpc_is_bits_over_bytes(trained):
    text_dir, data_bin, save_dir = trained
    lm = hub_for(data_bin, save_dir, bpe="sentencepiece", sentencepiece_model=str(data_bin / "spm.model"))
    assert lm.is_subword
    text = (text_dir / "test.txt").read_text(encoding="utf-8")  # tabs, a no-break space, byte-fallback characters
    tokens = lm.encode(text + "\n")
    assert torch.equal(tokens, torch.cat(split_tokens(data_bin, "test")[1]))  # what prepare.sh binarized
    assert lm.decode(tokens) == text + "\n" and lm.decode(lm.encode(text)) == text
    assert (lm.encode(text) == lm.dictionary.eos()).sum() == text.count("\n")  # one </s> per newline

    # bits per byte = -sum log2 p over the tokens (one parallel forward, the first after </s>) / UTF-8 bytes
    sample_text = "\n".join(text.split("\n")[-12:])  # the non-ASCII lines, no final newline
    ids = lm.encode(sample_text)
    inputs = torch.cat([torch.tensor([lm.dictionary.eos()]), ids[:-1]]).unsqueeze(0)
    with torch.no_grad():
        lprobs = lm.model.decoder(inputs)[0][0].double().log_softmax(-1)
    bits = -lprobs.gather(-1, ids.unsqueeze(-1)).sum().item() / math.log(2)
    num_bytes = len(sample_text.encode("utf-8"))
    assert num_bytes > ids.numel()  # subwords: bits per byte is not bits per token
    assert lm.bpc(sample_text, segment_len=50) == pytest.approx(bits / num_bytes, rel=1e-5)
    # the data-bin's spm.model is found without bpe= (what recipes/text/prepare.sh writes)
    assert hub_for(data_bin, save_dir).bpc(sample_text) == pytest.approx(bits / num_bytes, rel=1e-5)


@pytest.mark.slow
def test_hub_samples_subword_tokens_decoded_by_sentencepiece(trained):
    import sentencepiece as spm
    _, data_bin, save_dir = trained
    lm = hub_for(data_bin, save_dir)
    prompt = "def parse_args(self"
    sample = lm.sample(prompt, n_tokens=30, seed=1)
    assert sample.startswith(prompt) and len(sample) > len(prompt)
    assert "\u2581" not in sample and "<0x" not in sample  # pieces joined and byte pieces decoded to text
    assert sample == lm.sample(prompt, n_tokens=30, seed=1)  # seeded
    # greedy (top-1) through the incremental state = argmax of parallel forwards, decoded by sentencepiece
    sp = spm.SentencePieceProcessor(model_file=str(data_bin / "spm.model"))
    prefix = torch.cat([torch.tensor([lm.dictionary.eos()]), lm.encode(prompt)])
    for _ in range(8):
        with torch.no_grad():
            logits = lm.model.decoder(prefix.unsqueeze(0))[0][0, -1]
        logits[~lm._emittable] = float("-inf")
        prefix = torch.cat([prefix, logits.argmax().view(1)])
    lines = [[]]
    for i in prefix[1:].tolist():
        if i == lm.dictionary.eos():
            lines.append([])
        else:
            lines[-1].append(lm.dictionary[i])
    assert lm.sample(prompt, n_tokens=8, top_k=1) == "\n".join(sp.decode_pieces(pieces) for pieces in lines)
    with pytest.raises(ValueError, match="use n_tokens="):
        lm.sample(prompt, n_bytes=10)
    with pytest.raises(ValueError, match="not byte-level"):
        hub_for(data_bin, save_dir, bpe="focus_bytes")
