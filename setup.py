"""fairseq_focus: the Focus layer (adaptive IIR filters + chunked attention) as a fairseq plugin.

The time-varying IIR scan has a compiled CPU kernel (fairseq_focus/ops/tv_iir/scan_cpu.cpp, built here as
fairseq_focus._selective_cpu with torch's C++ extension tools and OpenMP, so it runs on torch's intra-op threads).
It is compiled against the torch it is built with, so build it with the torch you run: install torch first, then
`pip install --no-build-isolation -e .` (as `make setup` does) or `python setup.py build_ext --inplace`. A plain
`pip install .` builds it too (pyproject.toml names torch as a build requirement), but in an isolated environment
whose torch may differ from yours: the op then refuses to load a mismatched kernel, loudly. Without torch at build
time the package installs without the kernel (a warning here says so) and the op takes its chunked torch scan,
with a WARNING at run time (ops/tv_iir/function.py).
"""
import sys

from setuptools import find_packages, setup

KERNEL_SOURCE = "fairseq_focus/ops/tv_iir/scan_cpu.cpp"

try:
    from torch.utils.cpp_extension import BuildExtension, CppExtension
except ModuleNotFoundError as err:  # no torch at build time: a pure-Python install, said plainly
    if err.name != "torch":
        raise
    print(f"WARNING: torch is not importable at build time, so fairseq_focus._selective_cpu ({KERNEL_SOURCE}) is "
          f"NOT built: the IIR scan will run as its slow chunked torch form. Install torch, then "
          f"`pip install --no-build-isolation .`", file=sys.stderr)
    extensions, commands = [], {}
else:
    # -fopenmp at compile time turns at::parallel_for into an OpenMP loop (without it the loop is serial), and at
    # link time names libgomp, the OpenMP runtime torch's own wheel loads (one runtime, one thread pool).
    extensions = [CppExtension("fairseq_focus._selective_cpu", [KERNEL_SOURCE],
                               extra_compile_args=["-O3", "-fopenmp"], extra_link_args=["-fopenmp"])]
    commands = {"build_ext": BuildExtension}

setup(
    name="fairseq_focus",
    version="0.1.0",
    description="Focus (adaptive order-2 IIR filters + chunked attention) for fairseq, loaded with --user-dir",
    packages=find_packages(include=["fairseq_focus", "fairseq_focus.*"]),
    ext_modules=extensions,
    cmdclass=commands,
    python_requires=">=3.9",
    # torch is not listed with a pin here on purpose: CPU and CUDA users install their own build
    # first (see README); fairseq-fixed is the tested fairseq for Python >= 3.11.
    install_requires=["torch>=2.0", "fairseq-fixed>=0.12.3", "numpy", "scipy"],
    entry_points={"console_scripts": ["focus-plot-filters = fairseq_focus.tools.plot_filters:cli_main"]},
    extras_require={"plot": ["matplotlib"], "test": ["pytest", "scipy", "scikit-learn"]},
)
