"""Paper fidelity on the toy world (thin wrapper over ``noise_search.toyworld.fidelity``).

    python benchmarks/fidelity.py [--quick] [--out docs/fidelity]

Same as ``python -m noise_search bench fidelity``: prints the JSON report and writes fidelity.json and the
PNG plots to --out (docs/fidelity/ holds the committed full run).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import import_pack  # noqa: E402

if __name__ == "__main__":
    import_pack()
    from noise_search.cli import main

    sys.exit(main(["bench", "fidelity", *sys.argv[1:]]))
