"""The byte-corpus writer used by the demo: encoding round trip, token count, atomic output."""
import pytest

from fairseq_focus.data.atomic import atomic_directory
from fairseq_focus.data.byte_codec import byte_tokens_to_bytes, bytes_to_text, text_to_byte_tokens
from fairseq_focus.data.byte_corpus import bytes_to_lines, split, write_corpus


def decode(lines: str) -> bytes:
    return b"\n".join(bytes(int(t) for t in line.split()) for line in lines.split("\n")[:-1]) + b"\n"


def test_round_trip_and_one_token_per_byte():
    data = b"ab\n\ncd \xff\n"
    lines = bytes_to_lines(data)
    assert decode(lines) == data
    tokens = sum(len(line.split()) + 1 for line in lines.split("\n")[:-1])  # + </s> per line
    assert tokens == len(data)


def test_split_is_90_5_5_and_covers_everything():
    parts = split(bytes(range(200)) * 5)
    assert [len(parts[k]) for k in ("train", "valid", "test")] == [900, 50, 50]
    assert parts["train"] + parts["valid"] + parts["test"] == bytes(range(200)) * 5


def test_write_corpus_replaces_the_directory_whole(tmp_path):
    out = tmp_path / "corpus"
    write_corpus(b"x" * 1000, out)
    write_corpus(b"y" * 500, out)
    assert (out / "train.raw").read_bytes() == b"y" * 450
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.{e}" for s in ("train", "valid", "test") for e in ("raw", "txt"))
    assert [p.name for p in tmp_path.iterdir()] == ["corpus"]  # no temporary directory left behind


def test_atomic_directory_leaves_nothing_half_written(tmp_path):
    out = tmp_path / "out"
    with atomic_directory(out, replace=True) as tmp:
        (tmp / "a").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_directory(out, replace=True) as tmp:
            (tmp / "a").write_text("new")
            raise RuntimeError("fails half-way")
    assert (out / "a").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out"]
    with pytest.raises(FileExistsError):
        with atomic_directory(out, replace=False):
            pass
    assert (out / "a").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_codec_round_trips_text_and_bytes():
    text = "naïve\nline\n"
    tokens = [text_to_byte_tokens(line) for line in text.split("\n")]
    assert tokens[0] == "110 97 195 175 118 101"
    assert bytes_to_text(byte_tokens_to_bytes(["<unk>", *tokens[0].split(), "300"])) == "naïve"
