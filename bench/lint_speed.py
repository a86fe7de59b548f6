"""How long `lint` takes on 200 copies of the sample specs (not a timed test; prints seconds).

    python bench/lint_speed.py [copies]

Each copy gets its own connector names, so nothing is shared between copies but the text of
their expressions (which lint compiles once per distinct text, as the engine does).
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import ROOT  # noqa: E402
from engine.specs import lint_paths  # noqa: E402


def make_copies(target: Path, copies: int) -> int:
    """Copy every sample spec `copies` times (renamed, with its examples); returns file count."""
    sources = [p for d in ("connectors", "samples") for p in (ROOT / d).rglob("*.y*ml")
               if "examples" not in p.relative_to(ROOT).parts]
    count = 0
    for index in range(copies):
        folder = target / f"copy{index}"
        (folder / "examples").mkdir(parents=True)
        for example in (ROOT / "connectors" / "examples").glob("*"):
            (folder / "examples" / example.name).write_bytes(example.read_bytes())
        for source in sources:
            text = re.sub(r"^name: (\S+)", rf"name: \g<1>-{index}", source.read_text(), flags=re.M)
            text = re.sub(r"connector: (\S+)", rf"connector: \g<1>-{index}", text)
            text = text.replace("../examples/", "examples/")
            (folder / source.name).write_text(text)
            count += 1
    return count


def main(copies: int = 200) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = make_copies(Path(tmp), copies)
        start = time.perf_counter()
        findings = lint_paths([tmp])
        elapsed = time.perf_counter() - start
    print(f"lint: {files} spec files ({copies} copies) in {elapsed:.2f} s "
          f"({elapsed / files * 1000:.1f} ms per file), {len(findings)} findings")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
