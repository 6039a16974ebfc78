"""Side-by-side benchmarks: this project against OpenFlamingo 2.0.1 and flamingo-pytorch 0.1.2.

Entry point: ``python -m benchmarks.run --suite cpu-small`` (see ``benchmarks/README.md``).

The modules here import only the standard library at import time; torch, transformers and the peers are imported
inside the functions that need them, so the peer side runs in its own interpreter (``/work/peer-venv``) and this
package imports without the peer environment installed.
"""
