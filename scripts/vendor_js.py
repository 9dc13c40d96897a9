"""Copy the viewer's graph library from its npm lock, or check that the committed copy equals it.

    python scripts/vendor_js.py           # npm ci from the lock, copy the files into vendor/
    python scripts/vendor_js.py --check   # exit 1 if a committed file differs from the lock's

`persona view` pages embed `src/persona_server/viewer/vendor/cytoscape.min.js`, committed so that
the viewer works wherever the Python package is installed (no Node.js needed at view time).
`package-lock.json` pins the version and the tarball's sha512; `npm ci` verifies it.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

VENDOR = Path(__file__).resolve().parent.parent / "src" / "persona_server" / "viewer" / "vendor"
# (file in the npm package, file in vendor/)
FILES = (
    ("cytoscape/dist/cytoscape.min.js", "cytoscape.min.js"),
    ("cytoscape/LICENSE", "LICENSE.cytoscape"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of copying")
    args = parser.parse_args()
    npm = shutil.which("npm")
    if npm is None:
        print("npm not found: install Node.js and npm to check the vendored JavaScript")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(VENDOR / name, work / name)
        subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=work,
            check=True,
        )
        differ = []
        for source, target in FILES:
            fresh = (work / "node_modules" / source).read_bytes()
            if args.check:
                if not (VENDOR / target).exists() or (VENDOR / target).read_bytes() != fresh:
                    differ.append(target)
            else:
                (VENDOR / target).write_bytes(fresh)
    if differ:
        print(f"vendored files differ from package-lock.json: {', '.join(differ)}")
        print("run `python scripts/vendor_js.py` (or `make vendor-js`) and commit the result")
        return 1
    print("vendored JavaScript " + ("matches package-lock.json" if args.check else "updated"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
