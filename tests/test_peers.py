"""The peers (models/peer_lm.py): their ops against loop twins, and the models in fairseq's harness —
causal by perturbation, incremental == parallel, beam reorder, registered names, parameter-matched."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq.models import MODEL_REGISTRY

from fairseq_focus.models.peer_lm import (GatedDeltaNetLanguageModel, Mamba2LanguageModel,
                                          TransformerPPLanguageModel)
from fairseq_focus.ops.gated_delta import gated_delta_chunk, gated_delta_recurrent, gated_delta_step
from fairseq_focus.ops.ssd import ssd_chunk, ssd_recurrent, ssd_step
from causality import assert_causal
from helpers import USER_DIR

PEERS = {"mamba2_lm": Mamba2LanguageModel, "gated_deltanet_lm": GatedDeltaNetLanguageModel,
         "transformer_pp_lm": TransformerPPLanguageModel}
TINY = {"mamba2_lm": ["--decoder-embed-dim", "16", "--decoder-layers", "2", "--mamba-d-state", "6",
                      "--mamba-head-dim", "8", "--mamba-chunk", "5"],
        "gated_deltanet_lm": ["--decoder-embed-dim", "16", "--decoder-layers", "2", "--gdn-heads", "2",
                              "--gdn-head-k-dim", "4", "--gdn-head-v-dim", "6", "--gdn-chunk", "5",
                              "--decoder-ffn-embed-dim", "24"],
        "transformer_pp_lm": ["--decoder-embed-dim", "16", "--decoder-layers", "2", "--decoder-attention-heads", "2",
                              "--decoder-ffn-embed-dim", "24"]}


# ---- ops: chunked form == loop twin (values, final state, gradients), any cut of the stream ----------------

def _ssd_inputs(length, seed=0, heads=3, hdim=5, nstate=4, groups=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, length, heads, hdim, generator=g, dtype=torch.float64)
    dt = torch.rand(2, length, heads, generator=g, dtype=torch.float64) * 0.7
    A = -torch.rand(heads, generator=g, dtype=torch.float64) * 4
    B = torch.randn(2, length, groups, nstate, generator=g, dtype=torch.float64)
    C = torch.randn(2, length, groups, nstate, generator=g, dtype=torch.float64)
    s0 = torch.randn(2, heads, hdim, nstate, generator=g, dtype=torch.float64)
    return [x, dt, A, B, C, s0]


def _gdn_inputs(length, seed=0, heads=2, kdim=4, vdim=6):
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(2, length, heads, kdim, generator=g, dtype=torch.float64), dim=-1)
    k = F.normalize(torch.randn(2, length, heads, kdim, generator=g, dtype=torch.float64), dim=-1)
    v = torch.randn(2, length, heads, vdim, generator=g, dtype=torch.float64)
    gate = -torch.rand(2, length, heads, generator=g, dtype=torch.float64) * 2
    beta = torch.rand(2, length, heads, generator=g, dtype=torch.float64)
    s0 = torch.randn(2, heads, kdim, vdim, generator=g, dtype=torch.float64)
    return [q, k, v, gate, beta, s0]


OPS = {"ssd": (ssd_chunk, ssd_recurrent, _ssd_inputs), "gated_delta": (gated_delta_chunk, gated_delta_recurrent, _gdn_inputs)}


def _grads(fn, inputs, weights):
    ins = [t.clone().requires_grad_() for t in inputs]
    y, state = fn(*ins)
    ((y * weights[0]).sum() + (state * weights[1]).sum()).backward()
    return y.detach(), state.detach(), [t.grad for t in ins]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("length,chunk", [(1, 4), (7, 4), (37, 8), (64, 16), (23, 64)])
def test_chunked_equals_loop_values_state_and_gradients(op, length, chunk):
    fast, ref, make = OPS[op]
    inputs = make(length)
    y_ref, s_ref = ref(*inputs)
    weights = (torch.randn_like(y_ref), torch.randn_like(s_ref))
    y1, s1, g1 = _grads(lambda *a: fast(*a, chunk=chunk), inputs, weights)
    y2, s2, g2 = _grads(ref, inputs, weights)
    torch.testing.assert_close(y1, y2, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s1, s2, rtol=1e-10, atol=1e-10)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("op", OPS)
def test_chunked_form_streams_across_any_cut(op):
    fast, _, make = OPS[op]
    *args, s0 = make(41, seed=3)
    whole, s_whole = fast(*args, s0, chunk=8)
    state, outs = s0, []
    for lo, hi in [(0, 3), (3, 4), (4, 21), (21, 41)]:
        seg = [a if a.dim() == 1 else a[:, lo:hi] for a in args]
        y, state = fast(*seg, state, chunk=8)
        outs.append(y)
    torch.testing.assert_close(torch.cat(outs, 1), whole, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(state, s_whole, rtol=1e-10, atol=1e-10)


def test_ssd_groups_share_maps_across_heads():
    x, dt, A, B, C, s0 = _ssd_inputs(9, heads=4, groups=2)
    y, _ = ssd_chunk(x, dt, A, B, C, s0, chunk=4)
    y_heads, _ = ssd_recurrent(x, dt, A, B.repeat_interleave(2, 2), C.repeat_interleave(2, 2), s0)
    torch.testing.assert_close(y, y_heads)


def test_steps_are_the_loops_first_step():
    x, dt, A, B, C, s0 = _ssd_inputs(1)
    y, s = ssd_step(x[:, 0], dt[:, 0], A, B[:, 0].expand(-1, 3, -1), C[:, 0].expand(-1, 3, -1), s0)
    y_ref, s_ref = ssd_recurrent(x, dt, A, B, C, s0)
    torch.testing.assert_close(y, y_ref[:, 0]) and torch.testing.assert_close(s, s_ref)
    q, k, v, g, beta, m0 = _gdn_inputs(1)
    o, m = gated_delta_step(q[:, 0], k[:, 0], v[:, 0], g[:, 0], beta[:, 0], m0)
    o_ref, m_ref = gated_delta_recurrent(q, k, v, g, beta, m0)
    torch.testing.assert_close(o, o_ref[:, 0])
    torch.testing.assert_close(m, m_ref)


def test_delta_rule_recalls_what_it_wrote():
    """Independent check of the rule's meaning: with no decay (g = 0) and β = 1, writing v under a unit key
    k and reading with q = k returns v exactly, whatever was stored under keys orthogonal to k."""
    kdim, vdim = 4, 3
    keys = torch.eye(kdim, dtype=torch.float64)[None, :, None, :]                 # 4 orthonormal keys
    vals = torch.randn(1, kdim, 1, vdim, dtype=torch.float64)
    zeros, ones = torch.zeros(1, kdim, 1, dtype=torch.float64), torch.ones(1, kdim, 1, dtype=torch.float64)
    _, memory = gated_delta_chunk(keys, keys, vals, zeros, ones, None, chunk=2)
    recalled = torch.einsum("hkv,k->hv", memory[0], keys[0, 2, 0])
    torch.testing.assert_close(recalled[0], vals[0, 2, 0])


# ---- models in fairseq's harness -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("peers")
    (root / "dict.txt").write_text("".join(f"{c} 1\n" for c in "abcdefghijkl"))
    return root


def build(data_dir: Path, arch: str, extra=(), seed: int = 0):
    torch.manual_seed(seed)
    args = options.parse_args_and_arch(options.get_training_parser(), [
        str(data_dir), "--user-dir", USER_DIR, "--task", "language_modeling", "--arch", arch,
        "--tokens-per-sample", "64", *extra])
    cfg = convert_namespace_to_omegaconf(args)
    model = tasks.setup_task(cfg.task).build_model(cfg.model)
    return model.eval()


@pytest.mark.parametrize("arch", PEERS)
def test_registered_names_resolve_to_our_classes(arch):
    assert MODEL_REGISTRY[arch] is PEERS[arch]


@pytest.mark.parametrize("arch", PEERS)
def test_peer_is_causal_by_perturbation(data_dir, arch):
    model = build(data_dir, arch, TINY[arch])
    tokens = torch.randint(4, 16, (2, 29))
    for t in (0, 6, 17, 27):
        assert_causal(lambda x: model(x)[0], tokens, t, range(4, 16))


@pytest.mark.parametrize("arch", PEERS)
def test_incremental_decoding_equals_parallel(data_dir, arch):
    model = build(data_dir, arch, TINY[arch])
    tokens = torch.randint(4, 16, (3, 23))
    with torch.no_grad():
        full = model(tokens)[0]
        state, steps = {}, []
        steps.append(model(tokens[:, :6], incremental_state=state)[0])          # a prompt of 6, then one by one
        for t in range(7, 24):
            steps.append(model(tokens[:, :t], incremental_state=state)[0])
    torch.testing.assert_close(torch.cat(steps, 1), full[:, 5:], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", PEERS)
def test_beam_reorder_selects_the_streams_state(data_dir, arch):
    model = build(data_dir, arch, TINY[arch])
    tokens = torch.randint(4, 16, (3, 12))
    order = torch.tensor([2, 2, 0])
    with torch.no_grad():
        state = {}
        model(tokens[:, :8], incremental_state=state)
        model.decoder.reorder_incremental_state_scripting(state, order)
        nxt = tokens[order, :9]
        stepped = model(nxt, incremental_state=state)[0]
        expected = model(nxt)[0][:, -1:]
    torch.testing.assert_close(stepped, expected, rtol=1e-4, atol=1e-5)


def test_defaults_are_parameter_matched_to_focus_lm(data_dir):
    """At the study's dictionary size (200 symbols) every peer's default, and focus_lm_deep, is within ±5% of
    --arch focus_lm."""
    big = data_dir / "big"
    big.mkdir(exist_ok=True)
    (big / "dict.txt").write_text("".join(f"s{i} 1\n" for i in range(196)))  # + 4 specials = 200
    matched = [*PEERS, "focus_lm_deep"]
    count = {arch: sum(p.numel() for p in build(big, arch).parameters()) for arch in [*matched, "focus_lm"]}
    for arch in matched:
        assert abs(count[arch] / count["focus_lm"] - 1) <= 0.05, count


def test_bench_decode_times_the_peers_through_their_states(capsys):
    """tools/bench_decode.py builds a peer at its defaults and decodes through its incremental state."""
    from fairseq_focus.tools.bench_decode import build_decoder, main
    decoder = build_decoder("mamba2_lm")
    assert decoder.stack.blocks[0].mixer.d_state == 64
    with pytest.raises(ValueError, match="neither a focus_lm arch nor a peer"):
        build_decoder("transformer_lm")
    main(["--arch", "gated_deltanet_lm", "--prefix", "8", "--steps", "2", "--repeats", "1", "--threads", "1"])
    assert "| gated_deltanet_lm | 0.6M | 8 |" in capsys.readouterr().out


def test_lm_cost_prints_every_selected_model(tmp_path, capsys):
    import sys as _sys
    _sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "recipes" / "study"))
    import lm_cost
    (tmp_path / "dict.txt").write_text("".join(f"s{i} 1\n" for i in range(20)))
    assert lm_cost.main([str(tmp_path), "--only", "mamba2", "transformer-pp", "--tokens-per-sample", "16",
                         "--repeats", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| mamba2") or
            line.startswith("| transformer-pp")]
    assert len(rows) == 2
    assert lm_cost.main([str(tmp_path / "missing")]) == 2
