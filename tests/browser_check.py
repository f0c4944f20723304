"""Open every page of the built book in headless Chromium, offline: ``make browser-check``.

``python -m tests.browser_check [HTML_DIR] [--screenshots DIR]`` serves ``HTML_DIR`` (default
``_build/html``) on 127.0.0.1 and drives Debian's ``chromium`` through the DevTools protocol
(websocket-client, which the pinned Jupyter stack installs). Every host name but 127.0.0.1
resolves to nothing, so a page that needs the network fails here as it would on a train. For
each page, at a 1280 x 900 window (both sidebars shown), it checks that

- the page loads, with no failed request, no request leaving 127.0.0.1, no script error;
- MathJax typesets every formula (each ``.math`` element holds an ``mjx-container``), with no
  MathJax error node and no raw TeX delimiter (``\\(``, ``\\[``, ``$$``) left in the prose;
- every image loads (``naturalWidth > 0``);
- every internal link reaches a built file, and its ``#anchor`` an element of that page;
- nothing scrolls sideways: not the page, and on chapter pages not a code cell or output.

Screenshots (not committed) go to ``--screenshots`` when given. Exit status 0 when every
check passes; the last line reads ``browser check: N passed, M failed``.
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from base64 import b64decode
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

from tests.book import ROOT

WIDTH, HEIGHT = 1280, 900
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
    # Offline: every host name but the local server's resolves to nothing.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    f"--window-size={WIDTH},{HEIGHT}", "--remote-debugging-port=0", "about:blank",
]
PAGE_TIMEOUT = 60.0  # seconds for one page to load and typeset (the longest takes about 5)

# Runs in the page once it has loaded: waits for MathJax, loads lazy images, then measures.
# scrollWidth and clientWidth are whole pixels rounded from fractional layout widths, so an
# element that fits can still report scrollWidth = clientWidth + 1: overflow means more than 1.
PAGE_PROBE = r"""
(async () => {
  const result = {};
  if (!document.body) return null;  // a redirect (index.html) that has already moved on
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await Promise.race([MathJax.startup.promise,
                        new Promise(r => setTimeout(r, 30000))]);
    result.mathjax = true;
  } else { result.mathjax = false; }
  const images = Array.from(document.images);
  images.forEach(img => { img.loading = "eager"; });
  await Promise.all(images.map(img => img.decode().catch(() => null)));
  result.images = images.map(img => ({src: img.getAttribute("src"),
                                      ok: img.complete && img.naturalWidth > 0}));
  const math = Array.from(document.querySelectorAll(".math"));
  result.math = math.length;
  result.mathUnrendered = math.filter(m => !m.querySelector("mjx-container"))
                              .slice(0, 5).map(m => m.textContent.slice(0, 80));
  // MathJax's own record of each formula: its TeX source and its tree. A TeX error becomes
  // an merror node; an undefined macro (the noundefined extension) red text naming it.
  const errors = new Set();
  for (const item of (window.MathJax && MathJax.startup && MathJax.startup.document
                      ? Array.from(MathJax.startup.document.math) : [])) {
    if (!item.root) continue;
    item.root.walkTree(node => {
      if (node.isKind("merror")) {
        errors.add(`${node.attributes.get("data-mjx-error") || "error"} in ${item.math}`);
      } else if (node.isKind("mtext") && node.attributes.get("mathcolor") === "red"
                 && node.getText().startsWith("\\")) {
        errors.add(`undefined ${node.getText()} in ${item.math}`);
      }
    });
  }
  if (!errors.size) {  // the typeset page itself, should MathJax's record be unavailable
    document.querySelectorAll("mjx-merror").forEach(
        e => errors.add(e.getAttribute("data-mjx-error") || e.textContent));
  }
  result.mathErrors = Array.from(errors).slice(0, 5).map(t => t.slice(0, 120));
  // Raw TeX in the prose: text outside code, scripts and typeset math. An API signature
  // (Sphinx's .sig, a constant's value among them) is code too: a regular expression's
  // "\\[" there is not TeX.
  const skip = "pre, code, script, style, textarea, mjx-container, .highlight, .math, .sig";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const raw = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest(skip)) continue;
    const text = node.textContent;
    const m = text.match(/\\\(|\\\)|\\\[|\\\]|\$\$/);
    if (m) raw.push(text.slice(Math.max(0, m.index - 40), m.index + 40));
  }
  result.rawTex = raw.slice(0, 5);
  result.ids = Array.from(document.querySelectorAll("[id]"), e => e.id)
      .concat(Array.from(document.querySelectorAll("a[name]"), e => e.name));
  result.links = Array.from(document.querySelectorAll("a[href]"), a => a.href);
  const doc = document.documentElement;
  result.page = {scrollWidth: doc.scrollWidth, clientWidth: doc.clientWidth};
  const blocks = Array.from(document.querySelectorAll(
      "div.cell pre, div.cell_output pre, div.highlight pre, .output pre, table"));
  result.wide = blocks.filter(b => b.offsetParent !== null && b.scrollWidth > b.clientWidth + 1)
      .map(b => ({what: b.tagName.toLowerCase(), scrollWidth: b.scrollWidth,
                  clientWidth: b.clientWidth,
                  text: (b.textContent.split("\n").reduce(
                      (a, l) => l.length > a.length ? l : a, "")).slice(0, 120)}));
  result.blocks = blocks.length;
  const shown = sel => { const e = document.querySelector(sel);
                         return !!e && getComputedStyle(e).display !== "none"
                                && e.getBoundingClientRect().width > 0; };
  result.sidebars = {primary: shown(".bd-sidebar-primary"),
                     secondary: shown(".bd-sidebar-secondary")};
  result.figures = document.querySelectorAll(".course-figure").length;
  return result;
})()
"""

# Runs on a page with interactive figures (utils.interactive): waits for each to be drawn, then
# moves every control through every option, the others at their first values, as a reader
# would (setting the HTML input and firing its events). After each move it reads the points
# the figure draws (the scene graph's symbols) and compares them with the rows the notebook
# stored in the figure, filtered as the controls say. Returns one report per figure.
FIGURE_PROBE = r"""
(async () => {
  const divs = Array.from(document.querySelectorAll(".course-figure"));
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline &&
         divs.some(d => !(window.courseFigures && window.courseFigures[d.id]))) {
    await new Promise(r => setTimeout(r, 100));
  }
  const reports = [];
  for (const div of divs) {
    const figure = window.courseFigures && window.courseFigures[div.id];
    if (!figure) { reports.push({id: div.id, error: "never drawn"}); continue; }
    const {view, spec, meta} = figure;
    const keyFields = [meta.x, meta.y, meta.color, meta.panel].filter(f => f);
    const key = d => JSON.stringify(keyFields.map(f => d[f]));
    const plotted = () => {
      const out = [];
      const walk = node => {
        if (!node) return;
        if (node.marktype === "symbol" && node.role === "mark") {
          node.items.forEach(item => { if (item.datum) out.push(key(item.datum)); });
        }
        (node.items || []).forEach(item => (item.items || []).forEach(walk));
      };
      (view.scenegraph().root.items || []).forEach(item => (item.items || []).forEach(walk));
      return out.sort();
    };
    const values = () => Object.fromEntries(meta.controls.map(c => [c.field, view.signal(c.parameter)]));
    const expected = setting => spec.data.values.filter(row => meta.controls.every(c =>
        (c.everything !== null && setting[c.field] === c.everything) || row[c.field] === setting[c.field]))
        .map(key).sort();
    const report = {id: div.id, moves: 0, mismatches: [], unchanged: [], missingInputs: []};
    const initial = values();
    const first = plotted();
    if (JSON.stringify(first) !== JSON.stringify(expected(initial))) {
      report.mismatches.push({setting: initial, plotted: first.length,
                              expected: expected(initial).length});
    }
    for (const control of meta.controls) {
      const binding = Array.from(div.querySelectorAll(".vega-bind")).find(
          b => (b.querySelector(".vega-bind-name") || {}).textContent.trim() === control.label);
      if (!binding) { report.missingInputs.push(control.label); continue; }
      const options = control.options.concat(control.everything !== null ? [control.everything] : []);
      const seen = new Set();
      for (const option of options) {
        const radio = Array.from(binding.querySelectorAll("input[type=radio]"))
            .find(r => r.value === String(option));
        const input = binding.querySelector("select, input[type=range]");
        if (radio) { radio.click(); }
        else if (input) {
          input.value = String(option);
          input.dispatchEvent(new Event("input", {bubbles: true}));
          input.dispatchEvent(new Event("change", {bubbles: true}));
        } else { report.missingInputs.push(control.label); break; }
        await view.runAsync();
        report.moves += 1;
        const setting = values();
        if (setting[control.field] !== option) {
          report.mismatches.push({control: control.label, option: option,
                                  signal: setting[control.field]});
          continue;
        }
        const now = plotted();
        seen.add(JSON.stringify(now));
        if (JSON.stringify(now) !== JSON.stringify(expected(setting))) {
          report.mismatches.push({control: control.label, option: option,
                                  plotted: now.length, expected: expected(setting).length});
        }
      }
      if (options.length > 1 && seen.size < 2) report.unchanged.push(control.label);
      // back to the first value before the next control moves
      const back = initial[control.field];
      const radio = Array.from(binding.querySelectorAll("input[type=radio]"))
          .find(r => r.value === String(back));
      const input = binding.querySelector("select, input[type=range]");
      if (radio) radio.click();
      else if (input) { input.value = String(back);
                        input.dispatchEvent(new Event("input", {bubbles: true}));
                        input.dispatchEvent(new Event("change", {bubbles: true})); }
      await view.runAsync();
    }
    reports.push(report);
  }
  return reports;
})()
"""


def figure_failures(page: str, reports: list[dict]) -> list[str]:
    """The failures in :data:`FIGURE_PROBE`'s reports for one page."""
    failures = []
    for report in reports:
        name = f"{page}: figure {report['id']}"
        if "error" in report:
            failures.append(f"{name}: {report['error']}")
            continue
        failures += [f"{name}: no input for the control {label!r}"
                     for label in report["missingInputs"]]
        failures += [f"{name}: drawn points do not match the stored rows: {m}"
                     for m in report["mismatches"]]
        failures += [f"{name}: moving {label!r} changes nothing drawn"
                     for label in report["unchanged"]]
        if report["moves"] == 0:
            failures.append(f"{name}: no control was moved")
    return failures


class DevTools:
    """A minimal DevTools-protocol client over one websocket (commands and their events)."""

    def __init__(self, ws_url: str) -> None:
        import websocket  # websocket-client, installed with the Jupyter stack

        self._ws = websocket.create_connection(ws_url, timeout=PAGE_TIMEOUT,
                                               suppress_origin=True, enable_multithread=True)
        self._next = 0
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        self._next += 1
        ident = self._next
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_for(self, method: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event["method"] == method:
                    return self.events.pop(i)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {timeout:.0f} s")
            self._ws.settimeout(max(0.1, deadline - time.monotonic()))
            message = json.loads(self._ws.recv())
            if "method" in message:
                self.events.append(message)

    def close(self) -> None:
        self._ws.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # The browser drops a connection when it leaves a page mid-transfer: not an error of
        # the book (a request that really fails is reported by the browser itself).
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``directory`` on 127.0.0.1 (a free port) in a daemon thread; return its root URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = _Server(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def start_chromium(profile: Path) -> tuple[subprocess.Popen, str]:
    """Start headless Chromium with a fresh profile; return it and its page's websocket URL."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise FileNotFoundError("chromium not found; `make browser-check` installs it")
    process = subprocess.Popen([chromium, f"--user-data-dir={profile}", *CHROMIUM_FLAGS],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while not (port_file.exists() and port_file.read_text().strip()):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("chromium did not open its DevTools port")
        time.sleep(0.1)
    port = port_file.read_text().split()[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
        targets = json.load(reply)
    page = next(t for t in targets if t["type"] == "page")
    return process, page["webSocketDebuggerUrl"]


def pages_of(html: Path) -> list[str]:
    """Every page of the build, relative to ``html`` (not the theme's macro files in _static)."""
    return sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html")
                  if "_static" not in p.relative_to(html).parts)


def is_chapter(page: str) -> bool:
    """A notebook's page (a chapter's landing page, ``index.html``, has no cells)."""
    return page.startswith("notebooks/") and not page.endswith("/index.html")


_EMPTY_FINDINGS = {"mathjax": False, "images": [], "math": 0, "mathUnrendered": [], "figures": 0,
                   "mathErrors": [], "rawTex": [], "ids": [], "links": [],
                   "page": {"scrollWidth": 0, "clientWidth": 0}, "wide": [], "blocks": 0,
                   "sidebars": {"primary": False, "secondary": False}}


def _is_own_favicon_probe(event: dict, url: str) -> bool:
    params = event.get("params", {})
    address = (params.get("request", {}).get("url") or params.get("response", {}).get("url")
               or params.get("entry", {}).get("url") or "")
    return urlsplit(address).path == "/favicon.ico" and urlsplit(url).netloc == urlsplit(
        address).netloc


def visit(tools: DevTools, url: str) -> tuple[dict, list[str]]:
    """Load one page, run the probe; return its findings and the problems the browser saw."""
    tools.events.clear()
    tools.send("Page.navigate", url=url)
    tools.wait_for("Page.loadEventFired", PAGE_TIMEOUT)
    found = tools.send("Runtime.evaluate", expression=PAGE_PROBE, awaitPromise=True,
                       returnByValue=True, timeout=PAGE_TIMEOUT * 1000)
    if "exceptionDetails" in found:
        raise RuntimeError(f"probe failed on {url}: {found['exceptionDetails']}")
    problems = []
    if found["result"].get("value") is None:
        found["result"]["value"] = _EMPTY_FINDINGS
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
    for event in tools.events:
        method, params = event["method"], event.get("params", {})
        if _is_own_favicon_probe(event, url):
            continue  # the browser asks every site for /favicon.ico; the book names none
        if method == "Network.requestWillBeSent":
            requested = params["request"]["url"]
            if not requested.startswith((origin, "data:", "blob:", "about:")):
                problems.append(f"request leaves the machine: {requested}")
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            problems.append(f"request failed: {params.get('errorText')} "
                            f"({params.get('type')}, request {params.get('requestId')})")
        elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
            problems.append(f"HTTP {params['response']['status']}: {params['response']['url']}")
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            problems.append("script error: " + details.get("exception", {}).get(
                "description", details.get("text", "?")).splitlines()[0])
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            problems.append(f"console error: {params['entry'].get('text', '')[:200]}")
    return found["result"]["value"], problems


def check(html: Path, screenshots: Path | None = None) -> list[str]:
    """All checks on the build in ``html``; return the failures (empty when all pass)."""
    pages = pages_of(html)
    if not pages:
        return [f"no pages under {html}: build the book first (make book)"]
    server, root = serve(html)
    profile = Path(tempfile.mkdtemp(prefix="browser-check-"))
    process, ws_url = start_chromium(profile)
    failures: list[str] = []
    findings: dict[str, dict] = {}
    try:
        tools = DevTools(ws_url)
        for domain in ("Page", "Network", "Runtime", "Log"):
            tools.send(f"{domain}.enable")
        tools.send("Network.setCacheDisabled", cacheDisabled=True)
        tools.send("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT,
                   deviceScaleFactor=1, mobile=False)
        for page in pages:
            start = time.monotonic()
            try:
                found, problems = visit(tools, root + page)
            except (TimeoutError, RuntimeError) as error:
                failures.append(f"{page}: {error}")
                continue
            findings[page] = found
            failures += [f"{page}: {p}" for p in problems]
            failures += _page_failures(page, found)
            if found.get("figures"):
                moved = tools.send("Runtime.evaluate", expression=FIGURE_PROBE,
                                   awaitPromise=True, returnByValue=True,
                                   timeout=PAGE_TIMEOUT * 1000)
                if "exceptionDetails" in moved:
                    failures.append(f"{page}: figure probe failed: "
                                    f"{moved['exceptionDetails'].get('text', '?')}")
                else:
                    reports = moved["result"].get("value") or []
                    failures += figure_failures(page, reports)
                    print(f"  {page}: {len(reports)} interactive figure(s), "
                          f"{sum(r.get('moves', 0) for r in reports)} control moves",
                          flush=True)
            print(f"  {page}: {found['math']} formulas, {len(found['images'])} images, "
                  f"{len(found['links'])} links, {found['blocks']} code blocks, "
                  f"{time.monotonic() - start:.1f} s", flush=True)
            if screenshots is not None and page in _SCREENSHOT_PAGES:
                screenshots.mkdir(parents=True, exist_ok=True)
                shot = tools.send("Page.captureScreenshot", format="png")
                name = page.replace("/", "_").replace(".html", ".png")
                (screenshots / name).write_bytes(b64decode(shot["data"]))
        tools.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    failures += _link_failures(html, root, findings)
    return failures


_SCREENSHOT_PAGES = {"book/intro.html", "notebooks/02_variance_scaling.html",
                     "notebooks/06_beyond_variance.html"}


def _page_failures(page: str, found: dict) -> list[str]:
    failures = []
    if found["math"] and not found["mathjax"]:
        failures.append(f"{page}: {found['math']} formulas but MathJax did not start")
    failures += [f"{page}: formula not typeset: {t!r}" for t in found["mathUnrendered"]]
    failures += [f"{page}: MathJax error: {t!r}" for t in found["mathErrors"]]
    failures += [f"{page}: raw TeX in the text: {t!r}" for t in found["rawTex"]]
    failures += [f"{page}: image does not load: {i['src']}" for i in found["images"]
                 if not i["ok"]]
    width = found["page"]
    if width["scrollWidth"] > width["clientWidth"] + 1:
        failures.append(f"{page}: the page scrolls sideways ({width['scrollWidth']} px of "
                        f"content in {width['clientWidth']} px)")
    if is_chapter(page):
        if not (found["sidebars"]["primary"] and found["sidebars"]["secondary"]):
            failures.append(f"{page}: not both sidebars shown at {WIDTH} px: "
                            f"{found['sidebars']}")
        failures += [f"{page}: a {w['what']} scrolls sideways ({w['scrollWidth']} px in "
                     f"{w['clientWidth']} px), longest line {w['text']!r}"
                     for w in found["wide"]]
    return failures


def _link_failures(html: Path, root: str, findings: dict[str, dict]) -> list[str]:
    failures = []
    for page, found in findings.items():
        for href in found["links"]:
            if not href.startswith(root):
                continue  # an external link: followed by the reader, not loaded by the page
            address, fragment = urldefrag(href)
            target = unquote(urlsplit(address).path[len(urlsplit(root).path):]) or "index.html"
            if target.endswith("/"):
                target += "index.html"
            if not (html / target).is_file():
                failures.append(f"{page}: broken link {href}")
            elif fragment and target.endswith(".html"):
                ids = findings.get(target, {}).get("ids")
                if ids is not None and unquote(fragment) not in ids:
                    failures.append(f"{page}: broken anchor {href}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.browser_check")
    parser.add_argument("html", nargs="?", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument("--screenshots", type=Path, default=None,
                        help="write PNG screenshots of a few pages to this folder")
    args = parser.parse_args(argv)
    start = time.monotonic()
    pages = pages_of(args.html)
    print(f"browser check: {len(pages)} pages of {args.html}, offline, {WIDTH} x {HEIGHT}")
    failures = check(args.html, args.screenshots)
    for failure in failures:
        print("FAIL", failure)
    failed_pages = {f.split(":", 1)[0] for f in failures}
    passed = len([p for p in pages if p not in failed_pages])
    print(f"browser check finished in {time.monotonic() - start:.0f} s")
    print(f"browser check: {passed} passed, {len(pages) - passed} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
