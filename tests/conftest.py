import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def byte_corpus(tmp_path_factory):
    """A binarized byte-level corpus (train/valid/test) from real text, built once per session."""
    from helpers import make_byte_corpus, stdlib_text
    return make_byte_corpus(tmp_path_factory.mktemp("corpus"), stdlib_text(60_000))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end runs through the CLIs (seconds to minutes)")
