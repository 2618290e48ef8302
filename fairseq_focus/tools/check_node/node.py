"""Check 5, **node**: what the machine is, and a failure when nvidia-smi lists GPUs that torch cannot see."""
import os
import platform
import shutil
import socket
import subprocess
import time
from typing import Dict, List, Optional


def nvidia_smi_gpus() -> Optional[int]:
    """How many GPUs ``nvidia-smi -L`` lists (None without nvidia-smi or when it fails)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return sum(line.startswith("GPU") for line in proc.stdout.splitlines()) if proc.returncode == 0 else None


def node_info(failures: List[str]) -> Dict:
    import fairseq
    import torch
    info = {"host": socket.gethostname(), "python": platform.python_version(), "torch": torch.__version__,
            "fairseq": fairseq.__version__, "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
            "cpu_count": os.cpu_count(), "nvidia_smi_gpus": nvidia_smi_gpus(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(), gpu_count=torch.cuda.device_count(),
                    gpu_memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1),
                    bf16_units=torch.cuda.is_bf16_supported(including_emulation=False))
    elif info["nvidia_smi_gpus"]:
        failures.append(f"nvidia-smi lists {info['nvidia_smi_gpus']} GPU(s) but torch {torch.__version__} sees none "
                        f"(a CPU build of torch?)")
    return info
