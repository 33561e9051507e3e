"""The browser viewer, measured in headless Chromium (the page of tests/support/viewer_browser.py):
watch a server-side source, click CLICKS times on the running video (each click waits for its
mask; every sixth click starts a new object, as a person moves on after a few refining clicks),
then watch SECONDS with the clicked object, while ALONGSIDE (a shell command, e.g. the CLI
watching the same source) runs. Prints JSON: the page's own click-to-mask times, the server's
stages over the watched frames (p50 and p99, preview included) and the viewer's results per
second of new frames.

    viewer_bench.py --url http://127.0.0.1:PORT/ --source clip [--clicks 24] [--seconds 20] [--alongside CMD]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "support"))
from viewer_browser import Page  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402


POINTS_PER_OBJECT = 6


def shown(page: Page, revision: int) -> int:
    """Waits until the page has drawn a result at `revision`; the objects it shows."""
    return page.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "window.samstreamViewer.whenShown(arguments[0]).then(() => done(window.samstreamViewer.snapshot().objects.length));",
        revision)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--clicks", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--alongside", help="a shell command to run while the page watches")
    args = parser.parse_args()
    page = Page(args.url, Path(tempfile.mkdtemp(prefix="viewer-bench-")))
    try:
        page.wait("the source list", lambda _s: any(
            o.get_attribute("value") == args.source for o in Select(page.driver.find_element(By.ID, "source")).options))
        Select(page.driver.find_element(By.ID, "source")).select_by_value(args.source)
        page.driver.find_element(By.ID, "connect").click()
        first = page.wait("frames", lambda s: s if s["framesDrawn"] >= 3 and s["sessionId"] else None)
        width, height = first["width"], first["height"]
        page.driver.set_script_timeout(60)
        overlay = page.driver.find_element(By.ID, "overlay")
        revision = page.snapshot()["revision"]
        for i in range(args.clicks):
            if i and i % POINTS_PER_OBJECT == 0:
                # A person refines an object with a few clicks, then starts the next one.
                page.driver.find_element(By.ID, "clear").click()
                revision += 1
                shown(page, revision)
            # Offsets worked out before the click and one WebDriver call that returns once the
            # page has drawn the click's mask: the harness takes no CPU from the click it times.
            dx, dy = page.overlay_offset(width * (0.2 + 0.012 * (i % 50)), height * 0.5)
            ActionChains(page.driver, duration=0).move_to_element_with_offset(overlay, dx, dy).click().perform()
            revision += 1
            assert shown(page, revision), f"click {i + 1} drew no mask"
        alongside = subprocess.Popen(["bash", "-c", args.alongside]) if args.alongside else None
        start = page.snapshot()
        started = time.monotonic()
        time.sleep(args.seconds)
        end = page.snapshot()
        elapsed = time.monotonic() - started
        if alongside and alongside.wait(timeout=120) != 0:
            raise SystemExit(f"the command alongside failed: {args.alongside}")
    finally:
        page.driver.quit()
    print(json.dumps({
        "click_to_mask_ms": start["clickToMask"],
        "click_server_ms": start["clickServer"],
        "click_decoder_ms": start["clickDecoder"],
        "results": end["frameResults"] - start["frameResults"],
        "stages_p50_ms": end["stages"],
        "stages_p99_ms": end["stagesP99"],
        "results_per_second": (end["frameResults"] - start["frameResults"]) / elapsed,
        "frame": [width, height],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
