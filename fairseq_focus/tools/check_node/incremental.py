"""Check 3, **incremental**: token-by-token decoding with an ``incremental_state`` equals the parallel forward."""
import math
from pathlib import Path
from typing import Dict, List

from .archs import build_model
from .process import one_line, say
from .settings import SMALL_FLAGS, TINY_FLAGS, Config


def incremental_difference(decoder, length: int, device: str, seed: int) -> float:
    """max |log p| difference between the parallel forward and token-by-token decoding with an
    incremental_state (fairseq's contract: the whole prefix each step, the last position back)."""
    import torch
    generator = torch.Generator().manual_seed(seed)
    nspecial = decoder.dictionary.nspecial
    tokens = torch.randint(nspecial, len(decoder.dictionary), (2, length), generator=generator).to(device)
    with torch.no_grad():
        full = decoder(tokens)[0].float().log_softmax(-1)
        state: Dict = {}
        steps = [decoder(tokens[:, :t + 1], incremental_state=state)[0].float().log_softmax(-1) for t in range(length)]
    return (torch.cat(steps, dim=1) - full).abs().max().item()


def check_incremental(cfg: Config, dict_dir: Path, failures: List[str]) -> List[Dict]:
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False  # TF32 would make both sides differ by ~1e-3 for no fault
    torch.backends.cudnn.allow_tf32 = False
    flags = TINY_FLAGS if cfg.tiny else SMALL_FLAGS
    rows = []
    for arch in cfg.incr_archs:
        row = {"arch": arch, "flags": flags, "length": cfg.incr_length, "batch": 2, "dtype": "fp32",
               "max_abs_diff": None, "tolerance": cfg.incr_tol}
        torch.manual_seed(cfg.seed)
        try:
            decoder = build_model(arch, flags, dict_dir, cfg.incr_length).decoder.to(cfg.device).eval()
            row["max_abs_diff"] = incremental_difference(decoder, cfg.incr_length, cfg.device, cfg.seed)
            del decoder
        except (ValueError, RuntimeError) as e:  # a model that does not build or run here (CUDA errors, OOM)
            row["error"] = f"{type(e).__name__}: {one_line(e)}"
        diff = row["max_abs_diff"]
        passed = diff is not None and math.isfinite(diff) and diff <= cfg.incr_tol
        rows.append({**row, "status": "passed" if passed else "failed"})
        say(f"incremental {arch}: " + (row.get("error") or f"max |Δ log p| = {diff:.2e}") + f" ({rows[-1]['status']})")
        if not passed:
            failures.append(f"incremental {arch}: " + (row.get("error") or f"max |log p| difference {diff:.2e} > {cfg.incr_tol:g}"))
    if cfg.device == "cuda":
        torch.cuda.empty_cache()  # the bench's subprocesses get the whole GPU
    return rows
