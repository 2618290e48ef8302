"""examples/focus_layer.py, the standalone block of ``--arch focus_lm``, computes what the package's block computes.

The package's block is built as the package builds it (FocusStack from a FocusStackConfig with the selective
head, stable Θ, carried state, paper wiring, simple bias), its zero-initialised ``up`` projection stirred so that
Θ and the gain really move with the input, and its state_dict loaded into the standalone block unchanged.
"""
import ast
import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from fairseq_focus.modules.config import FocusStackConfig
from fairseq_focus.modules.focus_stack import FocusStack
from helpers import REPO, stir

EXAMPLE = REPO / "examples" / "focus_layer.py"
DIM, ZDIM, HDIM, FFN, CHUNK, RANK = 16, 8, 24, 32, 8, 4


def load_example():
    spec = importlib.util.spec_from_file_location("focus_layer_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(num_filters: int):
    """The package's one-block stack and the standalone block with the same weights, float64, eval mode."""
    torch.manual_seed(0)
    cfg = FocusStackConfig(
        decoder_embed_dim=DIM, decoder_layers=1, decoder_hidden_dim=HDIM, decoder_ffn_embed_dim=FFN, decoder_z_dim=ZDIM,
        chunk_size=CHUNK, num_filters=num_filters, selective_rank=RANK, focus_filter="selective", iir_mode="carry",
        theta_param="stable", block_wiring="paper", rel_pos_bias="simple", dropout=0.0,
    )
    stack = FocusStack(cfg).double().eval()
    stir(stack)
    block = load_example().FocusBlock(DIM, ZDIM, HDIM, FFN, CHUNK, num_filters, RANK).double().eval()
    block.load_state_dict(stack.blocks[0].state_dict())  # strict: the same parameter names and shapes
    return stack, block


def test_the_head_is_selective():
    """Guard for the comparisons below: after stir, Θ and the gain change from token to token."""
    stack, _ = build(2)
    x = torch.randn(2, 3 * CHUNK, DIM, dtype=torch.float64)
    theta, gain = stack.blocks[0].attn.filter.theta_and_gain(x)
    assert theta.std(dim=1).min() > 1e-3 and gain.std(dim=1).min() > 1e-3


@pytest.mark.parametrize("num_filters", [1, 2])
def test_parallel_forward_matches_package(num_filters):
    stack, block = build(num_filters)
    x = torch.randn(2, 3 * CHUNK, DIM, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(block(x), stack.blocks[0](x, None, None), rtol=1e-12, atol=1e-12)
        # a length that is not whole chunks: the stack right-pads, the standalone pads its attention
        short = x[:, : 2 * CHUNK + 5]
        torch.testing.assert_close(stack.final_norm(block(short)), stack(short), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("num_filters", [1, 2])
def test_step_by_step_matches_package_forward(num_filters):
    """Token by token through the standalone ``step`` (across chunk starts) == the package's parallel forward."""
    stack, block = build(num_filters)
    x = torch.randn(2, 2 * CHUNK + 5, DIM, dtype=torch.float64)
    with torch.no_grad():
        state, outputs = None, []
        for t in range(x.size(1)):
            y_t, state = block.step(x[:, t], state)
            outputs.append(y_t)
        torch.testing.assert_close(stack.final_norm(torch.stack(outputs, 1)), stack(x), rtol=1e-11, atol=1e-11)


def test_example_is_plain_pytorch():
    tree = ast.parse(EXAMPLE.read_text())
    roots = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    roots |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert roots <= {"sys", "math", "torch"}, roots


def test_example_runs_as_a_script():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and all(": ok (" in line for line in lines), proc.stdout
