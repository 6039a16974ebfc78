"""``python -m flamingo_vlm.train CONFIG.yaml [--key.sub value ...]``: the entry point torchrun launches.

    torchrun --nproc_per_node 8 -m flamingo_vlm.train run.yaml --distributed fsdp
"""

from __future__ import annotations

import sys

from flamingo_vlm.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
