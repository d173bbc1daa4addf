"""smoacs-bench: evaluation."""

if __name__ != "smoacs_bench.evaluation":  # the folder, imported bare from the repository root
    raise ImportError(f"{__name__!r}: this folder installs as smoacs_bench.evaluation; after `pip install -e .` "
                      "import smoacs_bench.evaluation")

