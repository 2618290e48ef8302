"""fairseq_focus: the Focus layer (adaptive IIR filters + chunked attention) as a fairseq plugin."""
from setuptools import find_packages, setup

setup(
    name="fairseq_focus",
    version="0.1.0",
    description="Focus (adaptive order-2 IIR filters + chunked attention) for fairseq, loaded with --user-dir",
    packages=find_packages(include=["fairseq_focus", "fairseq_focus.*"]),
    python_requires=">=3.9",
    # torch is not listed with a pin here on purpose: CPU and CUDA users install their own build
    # first (see README); fairseq-fixed is the tested fairseq for Python >= 3.11.
    install_requires=["torch>=2.0", "fairseq-fixed>=0.12.3", "numpy", "scipy"],
    entry_points={"console_scripts": ["focus-plot-filters = fairseq_focus.tools.plot_filters:cli_main"]},
    extras_require={"plot": ["matplotlib"], "test": ["pytest", "scipy", "scikit-learn"]},
)
