"""Check a report in a real browser: headless Chromium opens ``report.html``, measures
it, and takes a full-page screenshot.

How: a copy of the page gets a small script that runs on ``load`` (when every image has
loaded or failed) and writes its measurements into the DOM as JSON; Chromium's
``--dump-dom`` prints the DOM, from which :func:`check_report` reads them back. No
browser-driver library is needed. A second run with ``--screenshot`` and a window as tall
as the page (measured by the first run) captures the whole report.

Measured: every ``<img>``'s natural size (0 when it failed to decode) and drawn width,
the page's scroll width, and every element whose box reaches past the viewport's right
or left edge (a table or image that overflows the page).

Run it on a report: ``python -m offrec.report.browser runs/quickstart/report.html
--screenshot runs/quickstart/report.png`` (exit code 1 when a check fails, 2 when no
Chromium is found).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offrec.core.errors import MissingInputError, OffrecError

CHROMIUM_NAMES: tuple[str, ...] = ("chromium", "chromium-browser", "google-chrome", "chrome")
"""Executables tried, in order, after the ``OFFREC_CHROMIUM`` environment variable."""

FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)

_PROBE = """
<script>
window.addEventListener('load', function () {
  var vw = document.documentElement.clientWidth;
  var imgs = Array.prototype.map.call(document.images, function (i) {
    return {alt: i.alt, natural_width: i.naturalWidth, natural_height: i.naturalHeight,
            drawn_width: Math.round(i.getBoundingClientRect().width)};
  });
  var over = [];
  document.querySelectorAll('body *').forEach(function (el) {
    if (el.id === 'offrec-check') return;
    var r = el.getBoundingClientRect();
    if (r.width > 0 && (r.right > vw + 0.5 || r.left < -0.5)) {
      over.push(el.tagName.toLowerCase() + (el.className ? '.' + el.className : '') +
                ' right=' + Math.round(r.right) + ': ' + (el.textContent || el.alt || '').slice(0, 60));
    }
  });
  var out = {viewport_width: vw, scroll_width: document.documentElement.scrollWidth,
             page_height: document.documentElement.scrollHeight, images: imgs,
             overflowing: over};
  var pre = document.createElement('pre');
  pre.id = 'offrec-check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


class BrowserUnavailable(OffrecError):
    """No Chromium executable was found, or it could not run."""


@dataclass
class BrowserCheck:
    """What the browser saw. ``ok`` when every image decoded and nothing overflows."""

    viewport_width: int
    scroll_width: int
    page_height: int
    images: list[dict[str, Any]]
    overflowing: list[str]
    screenshot: Path | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def find_chromium() -> str | None:
    """The Chromium executable: ``$OFFREC_CHROMIUM``, else the first of
    :data:`CHROMIUM_NAMES` on the PATH, else None."""
    env = os.environ.get("OFFREC_CHROMIUM")
    if env:
        return env
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(chromium: str, args: list[str], user_dir: str, timeout: float) -> str:
    cmd = [chromium, *FLAGS, f"--user-data-dir={user_dir}", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrowserUnavailable(f"chromium could not run ({chromium}): {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        raise BrowserUnavailable(f"chromium exited with {proc.returncode}: {' | '.join(tail)}")
    return proc.stdout


def check_report(
    html_path: str | Path,
    *,
    screenshot: str | Path | None = None,
    width: int = 1280,
    max_height: int = 30_000,
    chromium: str | None = None,
    timeout: float = 120.0,
) -> BrowserCheck:
    """Open ``html_path`` in headless Chromium at ``width`` CSS pixels and check it.

    Args:
        html_path: the report (self-contained HTML).
        screenshot: where to write a full-page PNG (its height is the page's, capped at
            ``max_height``); None for no screenshot.
        width: the window width in CSS pixels.
        chromium: the executable; default :func:`find_chromium`.
        timeout: seconds per Chromium run.

    Raises:
        MissingInputError: ``html_path`` does not exist.
        BrowserUnavailable: no Chromium, or it failed to run.
    """
    html_path = Path(html_path)
    if not html_path.is_file():
        raise MissingInputError(f"html_path must be an existing file; got {str(html_path)!r}")
    exe = chromium or find_chromium()
    if exe is None:
        raise BrowserUnavailable(
            f"no Chromium found (tried $OFFREC_CHROMIUM and {list(CHROMIUM_NAMES)}); "
            "on Debian: apt-get install chromium"
        )
    page = html_path.read_text(encoding="utf-8")
    probed = page.replace("</body>", _PROBE + "</body>", 1) if "</body>" in page else page + _PROBE
    with tempfile.TemporaryDirectory(prefix="offrec-browser-") as tmp:
        probe_path = Path(tmp) / "probe.html"
        probe_path.write_text(probed, encoding="utf-8")
        dom = _run(
            exe,
            [
                f"--window-size={width},1000",
                "--virtual-time-budget=10000",
                "--dump-dom",
                probe_path.as_uri(),
            ],
            str(Path(tmp) / "profile1"),
            timeout,
        )
        m = re.search(r'<pre id="offrec-check">(.*?)</pre>', dom, re.S)
        if m is None:
            raise BrowserUnavailable("chromium returned a DOM without the check results")
        import html as _html

        res = json.loads(_html.unescape(m.group(1)))
        shot = None
        if screenshot is not None:
            shot = Path(screenshot)
            shot.parent.mkdir(parents=True, exist_ok=True)
            height = min(int(res["page_height"]), max_height)
            _run(
                exe,
                [
                    f"--window-size={width},{height}",
                    "--virtual-time-budget=10000",
                    f"--screenshot={shot.resolve()}",
                    html_path.resolve().as_uri(),
                ],
                str(Path(tmp) / "profile2"),
                timeout,
            )
            if not shot.is_file():
                raise BrowserUnavailable(f"chromium did not write the screenshot {shot}")
    check = BrowserCheck(
        viewport_width=int(res["viewport_width"]),
        scroll_width=int(res["scroll_width"]),
        page_height=int(res["page_height"]),
        images=list(res["images"]),
        overflowing=list(res["overflowing"]),
        screenshot=shot,
    )
    bad = [i["alt"] for i in check.images if not i["natural_width"]]
    if bad:
        check.problems.append(f"{len(bad)} image(s) did not decode: {bad}")
    if check.overflowing:
        check.problems.append(
            f"{len(check.overflowing)} element(s) overflow the page width "
            f"({check.viewport_width}px): {check.overflowing[:5]}"
        )
    if check.scroll_width > check.viewport_width:
        check.problems.append(
            f"the page scrolls sideways: scroll width {check.scroll_width}px > "
            f"viewport {check.viewport_width}px"
        )
    return check


def main(argv: list[str] | None = None) -> int:
    """``python -m offrec.report.browser REPORT.html [--screenshot PNG] [--width PX]``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m offrec.report.browser", description=__doc__)
    ap.add_argument("html", type=Path)
    ap.add_argument("--screenshot", type=Path)
    ap.add_argument("--width", type=int, default=1280)
    args = ap.parse_args(argv)
    try:
        check = check_report(args.html, screenshot=args.screenshot, width=args.width)
    except BrowserUnavailable as exc:
        print(f"skipped: {exc}")
        return 2
    n = len(check.images)
    print(
        f"{n} images, all decoded"
        if n and not any(not i["natural_width"] for i in check.images)
        else f"{n} images"
    )
    for p in check.problems:
        print("problem:", p)
    if check.screenshot:
        print(f"screenshot: {check.screenshot} ({check.viewport_width} x {check.page_height} px)")
    return 0 if check.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
