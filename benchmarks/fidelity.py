"""Paper fidelity on the toy world (thin wrapper over ``noise_search.toyworld.fidelity``).

    python benchmarks/fidelity.py [--quick] [--out docs/fidelity]

Same as ``python -m noise_search bench fidelity``: prints the JSON report and writes fidelity.json and the
PNG plots to --out (docs/fidelity/ holds the committed full run).
"""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    try:
        import noise_search  # noqa: F401 - the installed (editable) pack
    except ImportError:  # a plain checkout: import the repository root as the package
        spec = importlib.util.spec_from_file_location("noise_search", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)])
        module = importlib.util.module_from_spec(spec)
        sys.modules["noise_search"] = module
        spec.loader.exec_module(module)
    from noise_search.cli import main

    sys.exit(main(["bench", "fidelity", *sys.argv[1:]]))
