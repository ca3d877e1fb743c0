"""The README screenshot: the top of a finished report, rendered by headless Chromium at 1280 px.

    python benchmarks/report_screenshot.py torchtrust-report docs/figures/report.png [--height 1500]

Takes the ``index.html`` of a finished run (the README's shows the full default run, ``torchtrust
run``), waits for its embedded images, and writes a PNG of the first ``--height`` pixels. Refuses to
overwrite an existing file that is not a PNG, and a report folder without ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    sys.exit("headless Chromium is not installed (chromium, chromium-browser or google-chrome on PATH)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("report", type=Path, help="the folder of a finished run (holds index.html, results.json)")
    ap.add_argument("png", type=Path, help="where to write the screenshot")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1500)
    args = ap.parse_args()
    page, results = args.report / "index.html", args.report / "results.json"
    if not page.is_file() or not results.is_file():
        sys.exit(f"{args.report} is not the folder of a finished run (no index.html / results.json)")
    if args.png.exists() and args.png.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"{args.png} exists and is not a PNG; not overwriting it")
    cfg = json.loads(results.read_text())["config"]
    with tempfile.TemporaryDirectory() as home:
        proc = subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={home}/profile", f"--window-size={args.width},{args.height}",
             "--virtual-time-budget=5000", f"--screenshot={args.png.resolve()}", page.resolve().as_uri()],
            capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": home},
        )
    if proc.returncode != 0 or not args.png.is_file():
        sys.exit(f"Chromium failed ({proc.returncode}): {proc.stderr[-2000:]}")
    kind = "--quick" if cfg.get("quick") else "full default"
    print(f"{args.png}: {args.width} x {args.height} px of {page} ({kind} run, seeds {cfg['seed']}.."
          f"{cfg['seed'] + cfg.get('seeds', 1) - 1})")


if __name__ == "__main__":
    main()
