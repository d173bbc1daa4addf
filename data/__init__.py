"""smoacs-bench: data."""

if __name__ != "smoacs_bench.data":  # the folder, imported bare from the repository root
    raise ImportError(f"{__name__!r}: this folder installs as smoacs_bench.data; after `pip install -e .` "
                      "import smoacs_bench.data")

