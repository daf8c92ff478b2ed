"""Build the course site (Jupyter Book 1.x) from executed notebooks, and check it in headless Chromium.

    python book/build.py --from DIR [--out outputs/book] [--check] [--screenshots DIR]

``DIR`` holds the notebooks *already executed* (``<stem>.ipynb``: the ci-mode run of the tests in CI, or
``tutorfinetune notebooks --out X`` whose ``X/notebooks``): the site never executes code. The pages are this
folder's Markdown (``index.md``), the repository's ``docs/`` (methods reference, glossary) and one page per
notebook listed in ``_toc.yml``. ``run.py book`` wraps this script (and executes the notebooks first when no
folder is given).

``--check`` opens every page in headless Chromium (Debian's ``chromium`` through playwright) and fails when a
page does not load, a figure has not rendered (an ``<img>`` that is not complete or has no width), or a page
shows an error output (a Python traceback); it saves a full-page screenshot of each page.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DOCS = REPO / "docs"


class BookError(RuntimeError):
    pass


def toc_files(toc: Path = HERE / "_toc.yml") -> list[str]:
    """The page names of ``_toc.yml`` in order (``root`` first)."""
    import yaml

    data = yaml.safe_load(toc.read_text(encoding="utf-8"))
    names = [data["root"]]
    for part in data.get("parts", []):
        names += [c["file"] for c in part.get("chapters", [])]
    names += [c["file"] for c in data.get("chapters", [])]
    return names


MATHJAX = "mathjax@3"  # npm package; its es5/tex-svg.js renders the pages' math with no fonts to fetch


def local_mathjax(cache: Path) -> Path | None:
    """MathJax's single-file SVG build, from the npm registry (cached), so the site renders its math offline;
    None when npm is missing or offline (the pages then load MathJax from its CDN, as Sphinx does by default)."""
    js = cache / "tex-svg.js"
    if js.is_file():
        return js
    npm = shutil.which("npm")
    if npm is None:
        return None
    import tarfile
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([npm, "pack", MATHJAX, "--silent"], cwd=tmp, capture_output=True, text=True, timeout=300)
        tgz = next(Path(tmp).glob("mathjax-*.tgz"), None)
        if proc.returncode != 0 or tgz is None:
            return None
        with tarfile.open(tgz) as tar:
            member = tar.extractfile("package/es5/tex-svg.js")
            if member is None:
                return None
            cache.mkdir(parents=True, exist_ok=True)
            js.write_bytes(member.read())
    return js


def _solution_sources(stem: str) -> list[dict] | None:
    """The instructors' cells of notebook ``stem`` (solutions in), or None without a source."""
    import importlib.util

    path = REPO / "notebooks" / "src" / f"{stem}.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("nb_build", REPO / "notebooks" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.read_source(path, solutions=True)


def with_solutions(nb: dict, stem: str) -> dict:
    """The executed notebook with its exercise cells' code replaced by the solutions (their outputs, which
    show the unanswered checks, are dropped and replaced by a note)."""
    solved = _solution_sources(stem)
    own = [c for c in nb["cells"] if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    if solved is None or len(solved) != len(own):  # papermill adds a cell of parameters; the rest match the source
        return nb
    for cell, sol in zip(own, solved):
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "code" and sol["source"] != text:
            cell["source"] = sol["source"]
            cell["outputs"] = [{"output_type": "stream", "name": "stdout",
                                "text": "Solution (instructors' edition): run it to see the checks pass.\n"}]
    return nb


def stage(executed: Path, src: Path, mathjax: Path | None = None, solutions: bool = False) -> list[str]:
    """Copy the book's sources and the executed notebooks into ``src``; returns the page names. With
    ``mathjax`` (a local ``tex-svg.js``) the site serves MathJax itself instead of loading it from a CDN; with
    ``solutions`` the exercise cells show their solutions (the instructors' edition)."""
    import yaml

    pages = toc_files()
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    shutil.copy2(HERE / "_toc.yml", src / "_toc.yml")
    config = yaml.safe_load((HERE / "_config.yml").read_text(encoding="utf-8"))
    if mathjax is not None:
        (src / "_static" / "mathjax").mkdir(parents=True)
        shutil.copy2(mathjax, src / "_static" / "mathjax" / "tex-svg.js")
        sphinx_cfg = config.setdefault("sphinx", {}).setdefault("config", {})
        sphinx_cfg.update(mathjax_path="mathjax/tex-svg.js", html_static_path=["_static"])
    (src / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    missing = []
    for page in pages:
        for candidate in (HERE / f"{page}.md", DOCS / f"{page}.md", executed / f"{page}.ipynb"):
            if candidate.is_file():
                shutil.copy2(candidate, src / candidate.name)
                break
        else:
            missing.append(page)
    if missing:
        raise BookError(f"No source for page(s) {missing}: executed notebooks are read from {executed} (run the "
                        "notebooks first: `python3 run.py book` executes them in ci mode) and Markdown pages from "
                        f"{HERE} or {DOCS}.")
    for page in pages:  # an executed notebook must have outputs: the site shows results, not code only
        nb_path = src / f"{page}.ipynb"
        if nb_path.is_file():
            nb = json.loads(nb_path.read_text(encoding="utf-8"))
            if not any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"):
                raise BookError(f"{executed / nb_path.name} has no outputs: pass a folder of *executed* notebooks.")
            for c in nb["cells"]:  # links that work on GitHub (notebooks/ -> ../docs/) point at the book's pages
                if c["cell_type"] == "markdown":
                    text = "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                    c["source"] = text.replace("](../docs/", "](")
            if solutions:
                nb = with_solutions(nb, page)
            nb_path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return pages


def build(src: Path, out: Path) -> Path:
    """Run Jupyter Book on ``src``; returns the HTML folder."""
    exe = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or shutil.which("jupyter-book")
    if exe is None:
        raise BookError("jupyter-book is not installed: pip install -e '.[dev]' (or 'jupyter-book>=1.0.4,<2').")
    if out.exists():
        shutil.rmtree(out)
    proc = subprocess.run([exe, "build", str(src), "--path-output", str(out), "--all"], capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    (out).mkdir(parents=True, exist_ok=True)
    (out / "build.log").write_text(log, encoding="utf-8")
    if proc.returncode != 0:
        raise BookError(f"jupyter-book build failed (code {proc.returncode}); the log is {out / 'build.log'}:\n"
                        + log[-3000:])
    html = out / "_build" / "html"
    if not (html / "index.html").is_file():
        raise BookError(f"jupyter-book wrote no {html / 'index.html'}; see {out / 'build.log'}.")
    return html


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


PAGE_PROBE = r"""() => {
  const main = document.querySelector('main') || document.body;
  // figures: images of cell outputs; every same-origin image must have loaded (external badges are not
  // figures and cannot load offline)
  const figs = Array.from(main.querySelectorAll('.cell_output img'));
  const local = Array.from(main.querySelectorAll('img')).filter(i => !/^https?:/.test(i.getAttribute('src') || '')
      || (i.src || '').startsWith(location.origin));
  const broken = local.filter(i => !i.complete || i.naturalWidth === 0).map(i => (i.getAttribute('src') || '').slice(0, 80));
  const errors = Array.from(main.querySelectorAll('.output.traceback, .output.error'))
      .map(e => e.innerText.slice(0, 300));
  const text = main.innerText || '';
  if (text.includes('Traceback (most recent call last)')) errors.push('a traceback in the page text');
  const h1 = main.querySelector('h1');
  const raw = (text.match(/\\\(|\\\[/g) || []).length;  // math left as TeX source: MathJax did not run
  return {title: h1 ? h1.innerText : '', figures: figs.length, broken: broken, errors: errors,
          outputs: main.querySelectorAll('.cell_output').length,
          math: document.querySelectorAll('mjx-container').length, raw_math: raw};
}"""


def check(html: Path, pages: list[str], screenshots: Path, math: bool = False) -> list[dict]:
    """Open every page in headless Chromium; returns one report per page; raises BookError on a failure.
    ``math=True`` (MathJax served by the site) also fails a page whose math was left as TeX source."""
    from playwright.sync_api import sync_playwright

    browser_path = _chromium()
    if browser_path is None:
        raise BookError("No Chromium found for the site check: install Debian's `chromium` (apt-get install chromium).")
    handler = functools.partial(_Quiet, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    screenshots.mkdir(parents=True, exist_ok=True)
    reports, problems = [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            # only the site itself: badges and CDN assets cannot load offline, and a network that drops
            # packets instead of refusing them would hold every page's load event for minutes
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith((base, "data:"))
                       else route.abort())
            for name in pages:
                resp = page.goto(f"{base}/{name}.html", wait_until="load", timeout=60_000)
                status = resp.status if resp else 0
                if math:  # MathJax typesets after load
                    page.wait_for_function("() => !window.MathJax || !MathJax.startup || MathJax.startup.promise",
                                           timeout=30_000)
                    page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
                info = page.evaluate(PAGE_PROBE)
                page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)
                info.update(page=name, status=status)
                reports.append(info)
                if status != 200 or not info["title"]:
                    problems.append(f"{name}: did not load (HTTP {status}, title {info['title']!r})")
                if info["broken"]:
                    problems.append(f"{name}: {len(info['broken'])} figure(s) not rendered: {info['broken'][:3]}")
                if math and info["raw_math"]:
                    problems.append(f"{name}: {info['raw_math']} formula(s) not typeset (MathJax did not run)")
                if info["errors"]:
                    problems.append(f"{name}: error output: {info['errors'][0][:200]}")
                if name[:2].isdigit() and name != "00_start_here" and info["figures"] < 2:
                    problems.append(f"{name}: {info['figures']} figure(s); a notebook page shows at least two")
            browser.close()
    finally:
        server.shutdown()
    (screenshots / "report.json").write_text(json.dumps(reports, indent=2), encoding="utf-8")
    if problems:
        raise BookError("The site check failed:\n  " + "\n  ".join(problems))
    return reports


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="executed", type=Path, required=True, help="folder of executed notebooks")
    ap.add_argument("--out", type=Path, default=REPO / "outputs" / "book")
    ap.add_argument("--check", action="store_true", help="open every page in headless Chromium (see above)")
    ap.add_argument("--screenshots", type=Path, default=None, help="default: OUT/screenshots")
    ap.add_argument("--solutions", action="store_true", help="the instructors' edition: exercises with solutions")
    args = ap.parse_args(argv)
    try:
        mathjax = local_mathjax(args.out / "cache")
        if mathjax is None:
            print("MathJax could not be fetched with npm: the pages load it from its CDN (no math offline).")
        pages = stage(args.executed, args.out / "src", mathjax, solutions=args.solutions)
        html = build(args.out / "src", args.out / "site")
        print(f"site: {html / 'index.html'} ({len(pages)} pages)")
        if args.check:
            reports = check(html, pages, args.screenshots or args.out / "screenshots", math=mathjax is not None)
            for r in reports:
                print(f"  {r['page']:28s} HTTP {r['status']}  {r['figures']:3d} figures  {r['outputs']:3d} outputs  "
                      f"{r['math']:3d} formulas  ok")
            print(f"site check passed: {len(reports)} pages; screenshots in {args.screenshots or args.out / 'screenshots'}")
    except BookError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
