"""Train a sentencepiece model on a training text and turn train/valid/test into fairseq token files.

Called by recipes/text/prepare.sh (which then runs fairseq-preprocess on the output). Writes into
OUT (a fresh temporary directory the shell script owns and removes on failure):

    spm.model, spm.vocab    the sentencepiece model, trained on the train split only
    dict.txt                fairseq dictionary: every sentencepiece piece (its train count), so no
                            piece of valid/test can become <unk> in fairseq
    text/{train,valid,test}.txt   one line per input line, the line's pieces separated by spaces
    PREPARED                "key value" lines: per split bytes, lines, words, tokens (eval.sh reads them)

The encoding is lossless: identity normalization, whitespace kept as is, byte fallback for
characters outside the learned vocabulary (<0xNN> pieces), so decoding the pieces gives back every
line exactly. fairseq splits a token file on any whitespace (its tokenizer's ``\\s+``), so a piece
that contains a whitespace character other than sentencepiece's "▁" (a tab, a no-break space...)
is written as "▁" pieces and the byte pieces of its other characters instead.

Counting conventions (README "bits per byte"): a split's bytes are its UTF-8 bytes with one "\\n"
per line (one is added if the file does not end with a newline); fairseq appends one end-of-line
token </s> per line, which stands for that newline byte. Words are whitespace-separated words plus
one end-of-line per line, fairseq's word-level convention for wikitext-103.

Errors are one line on stderr ("error: ...") and exit status 1.
"""
import argparse
import collections
import importlib.util
import re
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Tuple


def _load_subword():
    """fairseq_focus/inference/subword.py of this checkout (the spelling rule the hub shares), loaded
    as a file: importing the package would import torch and fairseq, and their log lines, for nothing."""
    path = Path(__file__).resolve().parents[2] / "fairseq_focus" / "inference" / "subword.py"
    spec = importlib.util.spec_from_file_location("fairseq_focus_subword", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_subword = _load_subword()
SPACE, fairseq_symbols, holds_whitespace = _subword.SPACE, _subword.fairseq_symbols, _subword.holds_whitespace

BATCH_LINES = 10_000
SPLITS = ("train", "valid", "test")
TOO_HIGH = re.compile(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)")


class PrepareError(Exception):
    pass


def read_lines(path: Path, name: str) -> Iterator[str]:
    """The file's lines as text, without their "\\n"; refuses a missing, empty or non-UTF-8 file."""
    if not path.is_file():
        raise PrepareError(f"{name} split not found: {path}")
    has_text = False
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise PrepareError(f"{name} split {path} is not UTF-8 text (line {number}, byte {err.start})") from err
            has_text = has_text or not line.isspace()
            yield line[:-1] if line.endswith("\n") else line
    if not has_text:
        raise PrepareError(f"{name} split {path} is empty (no text, only whitespace or nothing)")


def check_not_empty(path: Path, name: str) -> None:
    """Fail early (before the minutes of sentencepiece training) on an empty or missing split."""
    for _ in read_lines(path, name):
        pass


def train_spm(train: Path, out: Path, vocab: int, model_type: str, coverage: float, sentences: int,
              threads: int, seed_sentencepiece_size: int) -> None:
    import sentencepiece as spm
    try:
        spm.SentencePieceTrainer.train(
            input=str(train), model_prefix=str(out / "spm"), vocab_size=vocab, model_type=model_type,
            character_coverage=coverage, byte_fallback=True, normalization_rule_name="identity",
            remove_extra_whitespaces=False, input_sentence_size=sentences, shuffle_input_sentence=True,
            max_sentence_length=1 << 16, num_threads=threads, seed_sentencepiece_size=seed_sentencepiece_size,
            minloglevel=2,
        )
    except RuntimeError as err:
        too_high = TOO_HIGH.search(str(err))
        if too_high:
            raise PrepareError(
                f"VOCAB={vocab} is larger than the training text allows: sentencepiece ({model_type}) can make "
                f"at most {too_high.group(2)} pieces from {train}; set VOCAB to at most that"
            ) from err
        message = " ".join(str(err).split())
        raise PrepareError(f"sentencepiece training failed (VOCAB={vocab}, MODEL_TYPE={model_type}): {message}") from err


class Encoder:
    """Lines -> fairseq token lines, with pieces that hold whitespace spelled out as byte pieces."""

    def __init__(self, model: Path, threads: int):
        import sentencepiece as spm
        self.sp = spm.SentencePieceProcessor(model_file=str(model))
        self.threads = threads
        self.pieces = [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]
        if self.sp.piece_to_id(SPACE) == self.sp.unk_id():
            raise PrepareError(f"the sentencepiece model has no piece {SPACE!r} (its word-boundary symbol)")
        self.spelled: Dict[int, str] = {}
        for i, piece in enumerate(self.pieces):
            if holds_whitespace(piece):
                self.spelled[i] = " ".join(fairseq_symbols(piece))

    def encode(self, lines: List[str], counts: collections.Counter) -> List[str]:
        out = []
        for ids in self.sp.encode(lines, out_type=int, num_threads=self.threads):
            counts.update(ids)
            if self.spelled and any(i in self.spelled for i in ids):
                out.append(" ".join(self.spelled.get(i, self.pieces[i]) for i in ids))
            else:
                out.append(" ".join(self.pieces[i] for i in ids))
        return out


def encode_split(encoder: Encoder, src: Path, dst: Path, name: str, counts: collections.Counter) -> Dict[str, int]:
    stats = {"bytes": 0, "lines": 0, "words": 0, "tokens": 0}
    with dst.open("w", encoding="utf-8") as f:
        for batch in batches(read_lines(src, name)):
            for line, encoded in zip(batch, encoder.encode(batch, counts)):
                stats["bytes"] += len(line.encode("utf-8")) + 1
                stats["lines"] += 1
                stats["words"] += len(line.split()) + 1
                stats["tokens"] += (encoded.count(" ") + 1 if encoded else 0) + 1
                f.write(encoded + "\n")
    return stats


def batches(lines: Iterator[str]) -> Iterator[List[str]]:
    batch: List[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) == BATCH_LINES:
            yield batch
            batch = []
    if batch:
        yield batch


def write_dict(encoder: Encoder, counts: collections.Counter, path: Path) -> int:
    """Every piece except the control symbols fairseq has its own of (<unk>, <s>, </s>)."""
    sp = encoder.sp
    lines = [f"{piece} {counts[i]}" for i, piece in enumerate(encoder.pieces)
             if not (sp.is_control(i) or sp.is_unknown(i))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def main(argv: List[str]) -> Tuple[Dict[str, Dict[str, int]], int]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for split in SPLITS:
        parser.add_argument(f"--{split}", type=Path, required=True, help=f"{split} text file (UTF-8)")
    parser.add_argument("--out", type=Path, required=True, help="an existing, empty output directory")
    parser.add_argument("--vocab", type=int, required=True, help="sentencepiece vocabulary size (with <unk>, <s>, </s> and 256 byte pieces)")
    parser.add_argument("--model-type", choices=["bpe", "unigram"], default="bpe")
    parser.add_argument("--character-coverage", type=float, default=0.9995)
    parser.add_argument("--input-sentence-size", type=int, default=2_000_000, help="train lines sampled for spm training (0: all)")
    parser.add_argument("--seed-sentencepiece-size", type=int, default=1_000_000, help="unigram seed vocabulary size")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    for split in SPLITS:
        check_not_empty(getattr(args, split), split)
    train_spm(args.train, args.out, args.vocab, args.model_type, args.character_coverage, args.input_sentence_size,
              args.threads, args.seed_sentencepiece_size)
    encoder = Encoder(args.out / "spm.model", args.threads)
    (args.out / "text").mkdir()
    stats, counts = {}, collections.Counter()
    for split in SPLITS:
        stats[split] = encode_split(encoder, getattr(args, split), args.out / "text" / f"{split}.txt", split,
                                    counts if split == "train" else collections.Counter())
    num_pieces = write_dict(encoder, counts, args.out / "dict.txt")
    with (args.out / "PREPARED").open("w", encoding="utf-8") as f:
        f.write(f"sentencepiece {args.model_type} {args.vocab}\n")
        for split in SPLITS:
            f.write(f"{split}_text {getattr(args, split).resolve()}\n")
            for key, value in stats[split].items():
                f.write(f"{split}_{key} {value}\n")
        f.write(f"spelled_pieces {len(encoder.spelled)}\n")
    return stats, num_pieces


if __name__ == "__main__":
    try:
        split_stats, pieces = main(sys.argv[1:])
    except PrepareError as error:
        sys.exit(f"error: {error}")
    for name, s in split_stats.items():
        print(f"{name}: {s['bytes']:,} bytes, {s['lines']:,} lines, {s['words']:,} words, {s['tokens']:,} tokens "
              f"({s['tokens'] / s['bytes']:.3f} tokens per byte)")
    print(f"dictionary: {pieces} sentencepiece pieces")
