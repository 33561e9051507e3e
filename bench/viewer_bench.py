"""The browser viewer, measured in headless Chromium (the page of tests/support/viewer_browser.py):
watch a server-side source, click CLICKS times on the running video (each click waits for its
mask), then watch SECONDS with the clicked object. Prints JSON: the page's own click-to-mask
times, the server's stages over the watched frames (p50 and p99, preview included) and the
viewer's results per second of new frames.

    viewer_bench.py --url http://127.0.0.1:PORT/ --source clip [--clicks 24] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
from viewer_browser import Page, object_of  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--clicks", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    page = Page(args.url, Path(tempfile.mkdtemp(prefix="viewer-bench-")))
    try:
        page.wait("the source list", lambda _s: any(
            o.get_attribute("value") == args.source for o in Select(page.driver.find_element(By.ID, "source")).options))
        Select(page.driver.find_element(By.ID, "source")).select_by_value(args.source)
        page.driver.find_element(By.ID, "connect").click()
        first = page.wait("frames", lambda s: s if s["framesDrawn"] >= 3 and s["sessionId"] else None)
        width, height = first["width"], first["height"]
        for i in range(args.clicks):
            before = page.snapshot()["revision"]
            page.click(width * (0.3 + 0.015 * i), height * 0.5)
            page.wait(f"click {i + 1}'s mask", lambda s, r=before: s["revision"] > r and object_of(s, 1))
        start = page.snapshot()
        started = time.monotonic()
        time.sleep(args.seconds)
        end = page.snapshot()
        elapsed = time.monotonic() - started
    finally:
        page.driver.quit()
    print(json.dumps({
        "click_to_mask_ms": start["clickToMask"],
        "stages_p50_ms": end["stages"],
        "stages_p99_ms": end["stagesP99"],
        "results_per_second": (end["frameResults"] - start["frameResults"]) / elapsed,
        "frame": [width, height],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
