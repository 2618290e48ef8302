"""The byte-corpus writer used by the demo: encoding round trip, token count, atomic output."""
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
