"""Write a directory all at once: into a temporary directory beside it, moved into place on success."""
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union


@contextmanager
def atomic_directory(out_dir: Union[str, Path], replace: bool) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``out_dir``; when the block ends normally, it becomes
    ``out_dir`` (an existing one is removed first if ``replace``, else FileExistsError); when the
    block raises, it is removed, so nothing half-written is left behind."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not replace:
        raise FileExistsError(f"{out_dir} already exists")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp made it private
        if replace and out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
