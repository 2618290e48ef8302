"""fairseq_focus: the Focus layer (adaptive IIR filters + chunked attention) as a fairseq plugin.

The per-token IIR scan has a compiled CPU kernel (fairseq_focus/csrc/selective_scan_cpu.cpp, built here as
fairseq_focus._selective_cpu with torch's C++ extension tools). Install torch first and build without
isolation (`pip install --no-build-isolation -e .`, as `make setup` does); without torch at build time the
package installs without the kernel and the op falls back to its chunked torch scan (ops/selective_fused.py).
"""
from setuptools import find_packages, setup

try:
    from torch.utils.cpp_extension import BuildExtension, CppExtension
except ImportError:  # no torch at build time: pure-Python install
    extensions, commands = [], {}
else:
    extensions = [CppExtension("fairseq_focus._selective_cpu", ["fairseq_focus/csrc/selective_scan_cpu.cpp"],
                               extra_compile_args=["-O3"])]
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
