"""Screenshots of TensorBoard as a person sees it: `tensorboard --logdir <logdir>` on loopback, opened
in headless Chromium (Debian's `chromium`), each tab given real time to draw before it is captured.

    python docs/dashboard/take_screens.py <logdir> <name> [--wait 15] [--tabs timeseries text ...]
        [--click "PARALLEL COORDINATES VIEW"]

writes docs/dashboard/<name>_<tab>.png (with --click, after clicking the element showing that text,
e.g. an HParams view: <name>_<tab>_<text>.png). Needs `chromium` and `pip install websocket-client`; the
browser is driven through its DevTools protocol (no virtual time: charts draw in a web worker).
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
TABS = ("timeseries", "text", "images", "hparams", "custom_scalars")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float = 60) -> None:
    end = time.time() + seconds
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(url)


# Click the innermost element whose text is the given one, looking through shadow roots (TensorBoard's
# Polymer dashboards keep their tabs there).
CLICK = """(() => {
  const want = %s, stack = [document];
  let best = null;
  while (stack.length) {
    const root = stack.pop();
    for (const el of root.querySelectorAll("*")) {
      if (el.shadowRoot) stack.push(el.shadowRoot);
      if ((el.innerText || "").trim() === want) best = el;
    }
  }
  if (best) best.click();
  return Boolean(best);
})()"""


class Browser:
    """Headless Chromium driven over the DevTools protocol: navigate, wait, capture."""

    def __init__(self, width: int, height: int):
        import websocket

        port = free_port()
        self.profile = tempfile.TemporaryDirectory()
        self.proc = subprocess.Popen(
            ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", f"--remote-debugging-port={port}",
             f"--window-size={width},{height}", f"--user-data-dir={self.profile.name}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(f"http://127.0.0.1:{port}/json/version")
        pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json").read())
        page = next(p for p in pages if p["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60)
        self.next_id = 0
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                return reply.get("result", {})

    def shot(self, url: str, out: Path, wait: float, click: str | None = None) -> None:
        self.call("Page.navigate", url="about:blank")
        self.call("Page.navigate", url=url)
        time.sleep(wait)  # real time: TensorBoard loads its data and draws the charts
        if click:
            found = self.call("Runtime.evaluate", expression=CLICK % json.dumps(click), returnByValue=True)
            if not found.get("result", {}).get("value"):
                raise RuntimeError(f"nothing shows {click!r}")
            time.sleep(wait)
        out.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        self.ws.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.profile.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logdir")
    parser.add_argument("name")
    parser.add_argument("--tabs", nargs="+", default=list(TABS))
    parser.add_argument("--wait", type=float, default=15.0, help="seconds each tab is given to draw")
    parser.add_argument("--size", default="1400x1000")
    parser.add_argument("--out", default=str(HERE))
    parser.add_argument("--query", default="", help="a query string for TensorBoard's URL, e.g. runColorGroup=...")
    parser.add_argument("--click", default=None, help="the text of an element to click before the capture")
    args = parser.parse_args()
    width, height = (int(x) for x in args.size.split("x"))
    port = free_port()
    tb = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", args.logdir, "--host", "127.0.0.1",
                           "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    browser = None
    try:
        wait_for(f"http://127.0.0.1:{port}/data/runs")
        time.sleep(3)  # the first load of the event files
        browser = Browser(width, height)
        for tab in args.tabs:
            suffix = "" if not args.click else "_" + args.click.lower().split()[0]
            out = Path(args.out) / f"{args.name}_{tab}{suffix}.png"
            query = f"?{args.query}" if args.query else ""
            browser.shot(f"http://127.0.0.1:{port}/{query}#{tab}", out, args.wait, args.click)
            print(out)
    finally:
        if browser is not None:
            browser.close()
        tb.terminate()
        tb.wait(timeout=30)


if __name__ == "__main__":
    main()
