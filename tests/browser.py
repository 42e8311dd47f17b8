"""Headless Chromium for the report tests: load a page, run a probe script, read back what it found."""
import html
import json
import os
import re
import shutil
import subprocess

import pytest


def in_browser(page, tmp_path, probe_js: str, width: int = 1300):
    """Load ``page`` with ``probe_js`` (a function body returning a JSON-able value, may be async) run after load.

    The probe's return value comes back as a Python object; the window is ``width`` pixels wide. Skips
    without Chromium, fails on CI.
    """
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs Debian's chromium package")
        pytest.skip("headless Chromium not installed (apt-get install chromium)")
    script = ("<script>window.addEventListener('load', async () => { const out = await (async () => {"
              + probe_js + "})(); const p = document.createElement('pre'); p.id = 'probe';"
              " p.textContent = JSON.stringify(out); document.body.appendChild(p); });</script>")
    probe = page.with_name(f"probe-{page.name}")
    text = page.read_text()
    cut = text.rindex("</body>")  # the last one: inlined scripts may contain the string too
    probe.write_text(text[:cut] + script + text[cut:])
    try:
        out = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=10000", "--dump-dom",
             f"--window-size={width},900",
             probe.as_uri()], capture_output=True, text=True, timeout=180)
    finally:
        probe.unlink()
    found = re.search(r'<pre id="probe">(.*?)</pre>', out.stdout, re.S)
    assert found, out.stderr[-2000:]
    return json.loads(html.unescape(found.group(1)))
