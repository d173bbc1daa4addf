"""smoacs-bench: benchmark."""

if __name__ != "smoacs_bench.benchmark":  # the folder, imported bare from the repository root
    raise ImportError(f"{__name__!r}: this folder installs as smoacs_bench.benchmark; after `pip install -e .` "
                      "import smoacs_bench.benchmark")

