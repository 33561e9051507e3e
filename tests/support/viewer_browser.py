"""Drives samstream's browser viewer in real headless Chromium (Selenium, Debian's chromium and
chromium-driver) against a running `samstream serve --viewer` that reads an RTSP camera.

    viewer_browser.py --url http://127.0.0.1:PORT/ --token TOKEN --source cam --out DIR

The test that runs it owns the server: when this script prints "restart" it kills the server,
starts it again on the same port and answers "restarted" on stdin. Screenshots go to DIR; the
last line printed is a JSON summary (click-to-mask times, stage medians). Any failed check
raises, and the exit status says so.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

LONG = 60.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Page:
    def __init__(self, url: str, out: Path) -> None:
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        # A closed network: no background connections, no component updates, a fresh profile.
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1500,1100",
                     f"--user-data-dir={tempfile.mkdtemp(prefix='viewer-chromium-')}"):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        self.driver.get(url)
        self.out = out

    def snapshot(self) -> dict:
        return self.driver.execute_script("return window.samstreamViewer.snapshot();")

    def wait(self, what: str, check, within: float = LONG):
        deadline = time.monotonic() + within
        last = None
        while time.monotonic() < deadline:
            last = self.snapshot()
            value = check(last)
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; page: {json.dumps(last)[:2000]}")

    def screenshot(self, name: str) -> None:
        self.driver.save_screenshot(str(self.out / name))
        log(f"screenshot {self.out / name}")

    def overlay_offset(self, x: float, y: float) -> tuple[int, int]:
        """Selenium offsets (from the overlay's centre) of frame pixel (x, y)."""
        rect = self.driver.execute_script(
            "const c = document.getElementById('overlay'); const r = c.getBoundingClientRect();"
            "return [r.width, r.height, c.width, c.height];")
        shown_w, shown_h, w, h = rect
        return round(x * shown_w / w - shown_w / 2), round(y * shown_h / h - shown_h / 2)

    def click(self, x: float, y: float, shift: bool = False) -> None:
        overlay = self.driver.find_element(By.ID, "overlay")
        dx, dy = self.overlay_offset(x, y)
        chain = ActionChains(self.driver).move_to_element_with_offset(overlay, dx, dy)
        if shift:
            chain = chain.key_down(Keys.SHIFT).click().key_up(Keys.SHIFT)
        else:
            chain = chain.click()
        chain.perform()

    def drag(self, x0: float, y0: float, x1: float, y1: float) -> None:
        overlay = self.driver.find_element(By.ID, "overlay")
        start, end = self.overlay_offset(x0, y0), self.overlay_offset(x1, y1)
        (ActionChains(self.driver).move_to_element_with_offset(overlay, *start).click_and_hold()
         .move_by_offset(end[0] - start[0], end[1] - start[1]).release().perform())

    def tinted(self, box: dict) -> int:
        """Overlay pixels inside `box` (frame pixels) that a mask tinted."""
        return self.driver.execute_script(
            "const [x0, y0, x1, y1] = arguments;"
            "const c = document.getElementById('overlay');"
            "if (x1 <= x0 || y1 <= y0) return 0;"
            "const d = c.getContext('2d').getImageData(x0, y0, x1 - x0, y1 - y0).data;"
            "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] === 115) n++; return n;",
            int(box["x0"]), int(box["y0"]), int(box["x1"]), int(box["y1"]))

    def frame_signature(self) -> int:
        """A checksum of the frame canvas's pixels: changes when a new frame is drawn."""
        return self.driver.execute_script(
            "const c = document.getElementById('frame');"
            "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "let h = 0; for (let i = 0; i < d.length; i += 97) h = (h * 31 + d[i]) | 0; return h;")

    def text(self, element_id: str) -> str:
        return self.driver.find_element(By.ID, element_id).text


def object_of(snapshot: dict, object_id: int) -> dict | None:
    return next((o for o in snapshot["objects"] if o["id"] == object_id), None)


def check_drawn(page: Page, snapshot: dict, object_id: int) -> None:
    """The overlay shows the object's mask as the server sent it: as many tinted pixels in its
    box as its area (other masks may cover a few)."""
    found = object_of(snapshot, object_id)
    assert found, f"object {object_id} in the result: {snapshot['objects']}"
    if found["area"] == 0:
        log(f"object {object_id}: the model returned an empty mask (area 0)")
        return
    tinted = page.tinted(found["bbox"])
    assert tinted >= 0.9 * found["area"], f"object {object_id}: {tinted} tinted pixels in its box for an area of {found['area']}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clicks", type=int, default=20)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    page = Page(args.url, args.out)
    try:
        return run(page, args)
    except Exception:
        page.screenshot("failure.png")
        raise
    finally:
        page.driver.quit()


def run(page: Page, args) -> int:
    # Without a token the server refuses, and the page says so.
    page.wait("UNAUTHENTICATED without a token", lambda s: "UNAUTHENTICATED" in s["status"] and s["statusKind"] == "error")
    page.screenshot("unauthenticated.png")

    token = page.driver.find_element(By.ID, "token")
    token.send_keys(args.token)
    token.send_keys(Keys.TAB)  # change event: the page lists sources again, with the token
    page.wait("the source list", lambda _s: any(
        o.get_attribute("value") == args.source for o in Select(page.driver.find_element(By.ID, "source")).options))
    option = Select(page.driver.find_element(By.ID, "source")).first_selected_option.text
    assert args.source in option and "(" in option, f"the source with its status: {option!r}"
    model = page.text("model")
    assert "MobileSAM" in model or "mobile" in model.lower(), f"model banner: {model!r}"
    warning = page.driver.find_element(By.ID, "model-warning")
    log(f"model banner: {model!r}; warning shown: {warning.is_displayed()} {warning.text!r}")

    page.driver.find_element(By.ID, "connect").click()
    first = page.wait("frames drawn", lambda s: s if s["framesDrawn"] >= 3 and s["sessionId"] else None)
    signature = page.frame_signature()
    page.wait("newer frames", lambda s: s["frameId"] > first["frameId"] + 3 and page.frame_signature() != signature)
    width, height = first["width"], first["height"]
    # The masks' canvas lies over the frame's: it must let the frame show through.
    backdrop = page.driver.execute_script("return getComputedStyle(document.getElementById('overlay')).backgroundColor;")
    assert backdrop in ("rgba(0, 0, 0, 0)", "transparent"), f"the overlay hides the frame: background {backdrop}"
    frame_pixel = page.driver.execute_script(
        "return Array.from(document.getElementById('frame').getContext('2d').getImageData(5, 230, 1, 1).data);")
    assert frame_pixel[3] == 255 and max(frame_pixel[:3]) > 60, f"the camera's grey frame is drawn: {frame_pixel}"
    assert (width, height) == (320, 240), f"the camera's frame size: {width}x{height}"

    # Click: a positive point for a new object (id 1); the mask is drawn where the server says.
    page.click(width * 0.5, height * 0.6)
    clicked = page.wait("object 1's mask", lambda s: s if object_of(s, 1) and s["revision"] >= 1 else None)
    check_drawn(page, clicked, 1)
    page.screenshot("clicked.png")

    # Shift-click: a negative point on the same object raises the revision.
    page.click(width * 0.2, height * 0.8, shift=True)
    page.wait("revision 2", lambda s: s["revision"] >= 2 and object_of(s, 1))
    assert "2 points" in page.text("objects"), page.text("objects")

    # A new object from a dragged box.
    page.driver.find_element(By.ID, "new-object").click()
    page.drag(width * 0.6, height * 0.3, width * 0.9, height * 0.7)
    boxed = page.wait("object 2 from a box", lambda s: s if object_of(s, 2) and s["revision"] >= 3 else None)
    assert "#2 · 0 points + box" in page.text("objects"), page.text("objects")
    check_drawn(page, boxed, 2)

    # Delete object 1: later results no longer carry it.
    page.driver.find_element(By.CSS_SELECTOR, "#objects li[data-object-id='1']").click()
    page.driver.find_element(By.ID, "delete-object").click()
    after = page.wait("object 1 gone", lambda s: s if s["revision"] >= 4 and not object_of(s, 1) and object_of(s, 2) else None)
    page.wait("more frames without object 1", lambda s: s["frameId"] > after["frameId"] + 2 and not object_of(s, 1))

    # Clicks on the running camera, each waiting for its mask: the page times click to mask.
    page.driver.find_element(By.ID, "new-object").click()
    for i in range(args.clicks):
        before = page.snapshot()["revision"]
        page.click(width * (0.1 + 0.04 * (i % 20)), height * 0.5)
        page.wait(f"click {i + 1}'s mask", lambda s, r=before: s["revision"] > r and object_of(s, 3))
    shown = page.wait("the latency panel", lambda s: s if len(s["clickToMask"]) >= args.clicks else None)
    # Read in one script: the panel replaces its rows as results arrive.
    stages = page.driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#stages tbody tr')].map((r) => [r.dataset.stage, r.textContent]));")
    for stage in ("encoder", "decoder", "preview", "total"):
        assert stage in stages and any(ch.isdigit() for ch in stages[stage]), f"the panel shows {stage}: {stages}"
    assert shown["stages"]["encoder"] > 0 and shown["stages"]["preview"] > 0, shown["stages"]
    assert "click-to-mask p50" in page.text("rates"), page.text("rates")
    page.screenshot("viewer.png")

    # One point more than the server allows (the test runs it with --max-points-per-object
    # CLICKS): the page shows the server's reason, which names the field, and forgets the point,
    # so that the prompts it replays after a reconnect are still accepted.
    page.click(width * 0.5, height * 0.3)
    page.wait("the point refused", lambda s: "prompts.upsert[0].points" in s["status"] and s["statusKind"] in ("error", "warn"))
    page.wait("the refused point forgotten", lambda _s: f"#3 · {args.clicks} points" in page.text("objects"))

    # The server goes away and comes back: the page reconnects and replays its prompts.
    old_session = shown["sessionId"]
    print("restart", flush=True)
    assert sys.stdin.readline().strip() == "restarted"
    page.wait("the page noticing", lambda s: s["sessionId"] != old_session)
    back = page.wait("a new session with the prompts replayed",
                     lambda s: s if s["sessionId"] and s["sessionId"] != old_session and object_of(s, 2) and object_of(s, 3) else None)
    page.screenshot("reconnected.png")

    clicks = sorted(shown["clickToMask"])
    summary = {
        "click_to_mask_ms": clicks,
        "click_to_mask_p50_ms": clicks[len(clicks) // 2],
        "click_to_mask_p99_ms": clicks[min(len(clicks) - 1, int(0.99 * len(clicks)))],
        "stage_p50_ms": shown["stages"],
        "results_per_second": shown["resultsPerSecond"],
        "reconnected_session": back["sessionId"] != old_session,
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
