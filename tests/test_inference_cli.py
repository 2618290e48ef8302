"""End to end on a tiny byte LM trained by fairseq-train: fairseq-generate / fairseq-interactive
(incremental decoding through fairseq's SequenceGenerator), streaming scoring, the hub API and
the filter plots. New modules are run as ``python -m fairseq_focus.<module>`` from the repository
root, so the worktree's package is used whatever the installed console scripts are.
"""
import math
import sys

import numpy as np
import pytest
import torch

from helpers import REPO, TINY_LM, USER_DIR, run

pytestmark = pytest.mark.slow


def _train(byte_corpus, save_dir, iir_mode):
    """causal / carry: the paper's hypernetwork head (focus_lm_paper); selective: the default --arch focus_lm."""
    model = ["--arch", "focus_lm"] if iir_mode == "selective" else ["--arch", "focus_lm_paper", "--iir-mode", iir_mode]
    run(["fairseq-train", str(byte_corpus), "--user-dir", USER_DIR, "--task", "focus_lm", *model,
         *TINY_LM, "--tokens-per-sample", "256", "--sample-break-mode", "none",
         "--max-tokens", "1024", "--optimizer", "adam", "--lr", "3e-3", "--max-update", "15",
         "--save-dir", str(save_dir), "--no-epoch-checkpoints", "--cpu", "--num-workers", "0",
         "--log-format", "simple", "--seed", "1"])
    return save_dir / "checkpoint_last.pt"


@pytest.fixture(scope="module")
def checkpoints(byte_corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    return {mode: _train(byte_corpus, root / mode, mode) for mode in ("causal", "carry", "selective")}


def test_fairseq_generate_samples_text(byte_corpus, checkpoints):
    out = run(["fairseq-generate", str(byte_corpus), "--user-dir", USER_DIR, "--task", "focus_lm",
               "--path", str(checkpoints["causal"]), "--gen-subset", "valid", "--sampling", "--beam", "1",
               "--prefix-size", "8", "--max-len-b", "24", "--batch-size", "4", "--required-batch-size-multiple", "1",
               "--bpe", "focus_bytes", "--cpu", "--seed", "1"]).stdout
    hyps = [line.split("\t") for line in out.splitlines() if line.startswith("H-")]
    texts = [line.split("\t")[2] for line in out.splitlines() if line.startswith("D-")]
    assert len(hyps) >= 3 and len(texts) == len(hyps)
    for _, score, tokens in hyps:
        assert math.isfinite(float(score)) and len(tokens.split()) >= 8  # the forced 8-byte prefix, then samples


def test_fairseq_interactive_beam_search_prints_text(byte_corpus, checkpoints, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("def parse(\nclass Arg\n")
    out = run(["fairseq-interactive", str(byte_corpus), "--user-dir", USER_DIR, "--task", "focus_lm",
               "--path", str(checkpoints["carry"]), "--beam", "3", "--nbest", "2", "--max-len-b", "20",
               "--min-len", "12", "--bpe", "focus_bytes", "--input", str(prompts), "--cpu"]).stdout
    texts = [line.split("\t")[2] for line in out.splitlines() if line.startswith("D-")]
    assert len(texts) == 4  # 2 prompts × nbest 2
    assert sum(t.startswith("def parse(") for t in texts) == 2 and sum(t.startswith("class Arg") for t in texts) == 2
    assert all(len(t) > len("def parse(") for t in texts)


@pytest.mark.parametrize("mode", ["carry", "causal", "selective"])
def test_score_stream_equals_one_parallel_forward(byte_corpus, checkpoints, mode):
    """Segments of 100 with state carried = one parallel forward over the whole test stream."""
    out = run([sys.executable, "-m", "fairseq_focus.tools.score_stream", str(byte_corpus), "--path", str(checkpoints[mode]),
               "--gen-subset", "test", "--segment-len", "100", "--cpu"], cwd=REPO).stdout.strip().splitlines()[-1]
    from fairseq_focus.inference.stream_scoring import load_model, load_stream
    model, task = load_model(str(checkpoints[mode]), str(byte_corpus), cpu=True)
    eos = task.target_dictionary.eos()
    stream = load_stream(str(byte_corpus), "test", task.target_dictionary)
    inputs = torch.cat([torch.tensor([eos]), stream[:-1]]).unsqueeze(0)
    with torch.no_grad():
        lprobs = model.decoder(inputs)[0][0].float().log_softmax(-1)
    bpc = -lprobs.gather(-1, stream.unsqueeze(-1)).double().mean().item() / math.log(2)
    assert out == f"streaming BPC = {bpc:.4f} over {stream.numel()} tokens (segments of 100, state carried)"


def test_score_stream_bad_input_is_one_line_error(byte_corpus, tmp_path):
    proc = run([sys.executable, "-m", "fairseq_focus.tools.score_stream", str(byte_corpus), "--path",
                str(tmp_path / "missing.pt"), "--cpu"], cwd=REPO, check=False)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("error: checkpoint not found")


@pytest.mark.parametrize("mode", ["carry", "selective"])
def test_hub_bpc_and_sample(byte_corpus, checkpoints, mode):
    from fairseq_focus.inference.hub import FocusLMHub
    ckpt = checkpoints[mode]
    lm = FocusLMHub.from_pretrained(str(ckpt.parent), ckpt.name, str(byte_corpus))
    text = "import sys\nclass Namespace(object):\n    pass\n"
    tokens = lm.encode(text)
    assert lm.decode(tokens) == text and (tokens == lm.dictionary.eos()).sum() == 3
    # bpc = mean -log2 p of each byte after an initial eos, from one parallel forward
    inputs = torch.cat([torch.tensor([lm.dictionary.eos()]), tokens[:-1]]).unsqueeze(0)
    with torch.no_grad():
        lprobs = lm.model.decoder(inputs)[0][0].log_softmax(-1)
    expected = -lprobs.gather(-1, tokens.unsqueeze(-1)).mean().item() / math.log(2)
    assert math.isclose(lm.bpc(text), expected, rel_tol=1e-5)
    sample = lm.sample("class ", n_bytes=40, seed=3)
    assert sample.startswith("class ") and len(lm.encode(sample)) >= 40  # undecodable bytes become U+FFFD
    assert sample == lm.sample("class ", n_bytes=40, seed=3)  # seeded
    # greedy decoding (top-1) through the incremental state = argmax of parallel forwards
    greedy = lm.encode(lm.sample("def ", n_bytes=12, top_k=1))
    prefix = torch.cat([torch.tensor([lm.dictionary.eos()]), greedy])
    with torch.no_grad():
        logits = lm.model.decoder(prefix[:-1].unsqueeze(0))[0][0]
    logits[:, ~lm._emittable] = float("-inf")
    assert torch.equal(logits[4:].argmax(-1), greedy[4:])  # logits[i] predicts prefix[i + 1]


def test_plot_filters_writes_pngs_of_the_models_theta(byte_corpus, checkpoints, tmp_path):
    from scipy.signal import freqz, lfilter

    from fairseq_focus.modules.global_filter import AdaptiveIIRFilter
    from fairseq_focus.inference.stream_scoring import load_model
    ckpt = checkpoints["causal"]
    text = "def main(argv=None):\n    parser = argparse.ArgumentParser()\n" * 3
    out_dir = tmp_path / "plots"
    run([sys.executable, "-m", "fairseq_focus.tools.plot_filters", "--path", str(ckpt), "--data", str(byte_corpus),
         "--text", text, "--out-dir", str(out_dir), "--channel", "3", "--cpu"], cwd=REPO)
    arrays = np.load(out_dir / "filters.npz")
    # Θ the model produced for this input: record AdaptiveIIRFilter.theta during a forward
    model, task = load_model(str(ckpt), str(byte_corpus), cpu=True)
    recorded = []
    original = AdaptiveIIRFilter.theta

    def recording(self, x, e):
        theta = original(self, x, e)
        recorded.append(theta)
        return theta

    AdaptiveIIRFilter.theta = recording
    try:
        with torch.no_grad():
            model.decoder(torch.from_numpy(arrays["tokens"]).unsqueeze(0))
    finally:
        AdaptiveIIRFilter.theta = original
    nbins = -(-arrays["tokens"].size // 16)  # TINY_LM bins of 16
    assert len(recorded) == 2
    for layer, theta in enumerate(recorded):
        png = out_dir / f"layer{layer}_frequency_response.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert (out_dir / f"layer{layer}_impulse_response.png").stat().st_size > 5000
        saved = arrays[f"theta_layer{layer}"]
        np.testing.assert_allclose(saved, theta[0, :nbins].numpy(), rtol=1e-6, atol=1e-7)
        # the drawn curves, channel 3, against scipy's filter design oracles
        for b in (0, nbins // 2, nbins - 1):
            coeffs = saved[b, 3].astype(np.float64)  # (F, 2)
            w = 2 * np.pi * arrays["freqs"]
            response = sum(freqz([1.0], [1.0, t0, t1], worN=w)[1] for t0, t1 in coeffs)
            np.testing.assert_allclose(arrays[f"response_layer{layer}"][b], np.abs(response), rtol=1e-5)
            delta = np.eye(1, arrays[f"impulse_layer{layer}"].shape[1]).ravel()
            impulse = sum(lfilter([1.0], [1.0, t0, t1], delta) for t0, t1 in coeffs)
            np.testing.assert_allclose(arrays[f"impulse_layer{layer}"][b], impulse, rtol=1e-5, atol=1e-8)


def test_plot_filters_refuses_an_ema_model_cleanly(byte_corpus, tmp_path):
    ckpt_dir = tmp_path / "ema"
    run(["fairseq-train", str(byte_corpus), "--user-dir", USER_DIR, "--task", "focus_lm", "--arch", "focus_lm",
         *TINY_LM, "--focus-filter", "ema", "--tokens-per-sample", "64", "--max-tokens", "256", "--optimizer", "adam",
         "--lr", "1e-3", "--max-update", "1", "--save-dir", str(ckpt_dir), "--no-epoch-checkpoints", "--cpu",
         "--num-workers", "0", "--disable-validation"])
    proc = run([sys.executable, "-m", "fairseq_focus.tools.plot_filters", "--path", str(ckpt_dir / "checkpoint_last.pt"),
                "--data", str(byte_corpus), "--text", "hello", "--out-dir", str(tmp_path / "plots"), "--cpu"],
               cwd=REPO, check=False)
    assert proc.returncode == 1 and "needs IIR filters" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "plots").exists()
