"""Every boolean flag does what its name says, parsed as ``fairseq-train`` parses it, and the old
names keep working: old command lines (``--share-decoder-input-output-embed``) and old checkpoints
whose config still carries ``share_hypernet`` / ``normalize_before`` /
``share_decoder_input_output_embed`` (a dataclass cfg, and an older Namespace ``args``).

Each case goes through ``options.get_training_parser`` + ``parse_args_and_arch`` (with ``--user-dir``),
``convert_namespace_to_omegaconf`` and ``fairseq.models.build_model`` — the path of ``fairseq-train`` —
and asserts on the built model.
"""
import argparse
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from fairseq import checkpoint_utils, options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.models import build_model
from omegaconf import OmegaConf, open_dict

from helpers import USER_DIR

TINY = ["--decoder-layers", "2", "--decoder-embed-dim", "16", "--decoder-hidden-dim", "16",
        "--decoder-ffn-embed-dim", "16", "--decoder-z-dim", "8", "--bin-size", "8", "--chunk-size", "16",
        "--hyper-kernel-size", "32", "--dropout", "0"]


@pytest.fixture(scope="module")
def lm_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flags_lm")
    (root / "dict.txt").write_text("".join(f"{c} 1\n" for c in "abcdefgh"))
    return root


def parse(argv):
    return options.parse_args_and_arch(options.get_training_parser(), argv)


def build_lm(data: Path, flags, arch: str = "focus_lm_paper"):  # the hypernetwork head (its sharing flags)
    args = parse([str(data), "--user-dir", USER_DIR, "--task", "language_modeling", "--arch", arch] + TINY + flags)
    cfg = convert_namespace_to_omegaconf(args)
    return tasks.setup_task(cfg.task).build_model(cfg.model), args


def build_classifier(flags):
    args = parse(["/nonexistent", "--user-dir", USER_DIR, "--task", "pixel_sequence_classification",
                  "--arch", "focus_classifier_paper", "--num-classes", "3"] + TINY + flags)  # the hypernetwork head
    cfg = convert_namespace_to_omegaconf(args)
    task = SimpleNamespace(channels=1, cfg=SimpleNamespace(num_classes=3, permute_seed=None), permutation=None,
                           seq_len=32)
    return build_model(cfg.model, task)


def stack_of(model):
    return model.decoder.stack if hasattr(model, "decoder") else model.stack


def hypernet_shared(stack) -> bool:
    own = [block.attn.filter.own_encoder is not None for block in stack.blocks]
    assert own == [stack.shared_encoder is None] * len(own)  # one or the other, never both
    return stack.shared_encoder is not None


def pre_norm(stack) -> bool:
    in_blocks = {flag for block in stack.blocks for flag in (block.attn.prenorm, block.ffn.prenorm)}
    assert in_blocks == {stack.final_norm is not None}  # pre-norm blocks come with a final norm
    return stack.final_norm is not None


def tied(model) -> bool:
    decoder = model.decoder
    x = torch.randn(3, decoder.embed_tokens.embedding_dim)
    logits = decoder.output_layer(x)
    is_tied = not hasattr(decoder, "out_proj")
    assert torch.allclose(logits, x @ decoder.embed_tokens.weight.t()) == is_tied
    return is_tied


@pytest.mark.parametrize("flags,shared,prenorm,is_tied", [
    ([], True, True, True),
    (["--share-decoder-input-output-embed"], True, True, True),  # transformer_lm's flag: tie (the default)
    (["--no-share-decoder-input-output-embed"], True, True, False),
    (["--share-hypernet"], True, True, True),
    (["--no-share-hypernet"], False, True, True),
    (["--normalize-before"], True, True, True),
    (["--no-normalize-before"], True, False, True),
])
def test_focus_lm_flags_do_what_they_say(lm_data, flags, shared, prenorm, is_tied):
    model, _ = build_lm(lm_data, flags)
    stack = stack_of(model)
    assert (hypernet_shared(stack), pre_norm(stack), tied(model)) == (shared, prenorm, is_tied)


@pytest.mark.parametrize("flags,shared,prenorm", [
    ([], True, True),
    (["--no-share-hypernet"], False, True),
    (["--no-normalize-before"], True, False),
    (["--no-share-hypernet", "--no-normalize-before"], False, False),
])
def test_focus_classifier_flags_do_what_they_say(flags, shared, prenorm):
    stack = build_classifier(flags).stack
    assert (hypernet_shared(stack), pre_norm(stack)) == (shared, prenorm)


@pytest.mark.parametrize("flags", [["--share-hypernet", "--no-share-hypernet"],
                                   ["--normalize-before", "--no-normalize-before"],
                                   ["--share-decoder-input-output-embed", "--no-share-decoder-input-output-embed"]])
def test_old_and_new_name_together_are_refused(lm_data, flags):
    with pytest.raises(ValueError, match="contradict each other"):
        build_lm(lm_data, flags)


OLD_KEYS = {"no_share_hypernet": "share_hypernet", "no_normalize_before": "normalize_before",
            "no_share_decoder_input_output_embed": "share_decoder_input_output_embed"}
NON_DEFAULT = ["--no-share-hypernet", "--no-normalize-before", "--no-share-decoder-input-output-embed"]


def save_old_checkpoint(path: Path, model, args, as_namespace: bool) -> None:
    """A checkpoint whose config spells the non-default settings the old way (old key = False, no new key)."""
    if as_namespace:  # fairseq < 0.10 saved the argparse Namespace as ``args``
        for new, old in OLD_KEYS.items():
            delattr(args, new)
            setattr(args, old, False)
        cfg = None
    else:
        cfg = convert_namespace_to_omegaconf(args)
        with open_dict(cfg):
            for new, old in OLD_KEYS.items():
                del cfg.model[new]
                cfg.model[old] = False
        cfg, args = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), None  # as fairseq's trainer saves it
    history = [{"criterion_name": "cross_entropy", "optimizer_name": "adam", "lr_scheduler_state": {"best": None},
                "num_updates": 0}]
    torch.save({"args": args, "cfg": cfg, "model": model.state_dict(), "optimizer_history": history,
                "extra_state": {"train_iterator": None}, "last_optimizer_state": None}, path)


@pytest.mark.parametrize("arch", ["focus_lm_paper", "focus_lm_text8_adaptive"])  # build_model merges the dataclass / runs the arch
@pytest.mark.parametrize("as_namespace", [False, True])
def test_old_checkpoint_keys_are_migrated(lm_data, tmp_path, arch, as_namespace):
    torch.manual_seed(0)
    model, args = build_lm(lm_data, NON_DEFAULT, arch)
    path = tmp_path / "old.pt"
    save_old_checkpoint(path, model, args, as_namespace)
    state = torch.load(path, weights_only=False)
    assert ("share_hypernet" in vars(state["args"])) if as_namespace else ("no_share_hypernet" not in state["cfg"]["model"])
    # torch >= 2.6 loads weights only by default, which refuses a pickled Namespace: allow it, as a user must
    with torch.serialization.safe_globals([argparse.Namespace]):
        (loaded,), _, _ = checkpoint_utils.load_model_ensemble_and_task([str(path)])
    stack = stack_of(loaded)
    assert (hypernet_shared(stack), pre_norm(stack), tied(loaded)) == (False, False, False)
    tokens = torch.randint(4, 12, (2, 21))
    torch.testing.assert_close(loaded.eval()(tokens)[0], model.eval()(tokens)[0], rtol=0, atol=0)
