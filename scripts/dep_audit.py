#!/usr/bin/env python3
"""Dependency vulnerability check of the pinned requirements (``constraints.txt``): ``make audit``.

Two sources, both real advisory data (the PyPA advisory database, as OSV publishes it):

``osv`` (the full audit)
    ``pip-audit -r constraints.txt --no-deps --disable-pip -s osv``: every pin checked against
    api.osv.dev. pip-audit's other service, ``pypi``, reads ``/pypi/<name>/<version>/json``; where that
    endpoint is not served (a registry proxy) pip-audit marks every package "skipped" and still prints
    "No known vulnerabilities found", so it is never used here.
``pypi-latest`` (the fallback, partial)
    PyPI's project JSON (``/pypi/<name>/json``) lists the known vulnerabilities of the project's
    *latest* release. For every pin that *is* the latest release that list is exactly the pin's
    vulnerabilities; pins older than the latest are reported as not covered, never as clean.

``auto`` (default) runs ``osv`` and, when api.osv.dev cannot be reached, says so and runs
``pypi-latest``. Exit codes: 0 no known vulnerability and the audit was complete; 1 vulnerabilities
found; 2 the audit could not be completed (service unreachable, or pins not covered) and found nothing
in what it could check -- never reported as a pass; 3 usage error.

    python scripts/dep_audit.py [--service auto|osv|pypi-latest] [-r constraints.txt] [--json out.json]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXIT_CLEAN, EXIT_VULNERABLE, EXIT_INCOMPLETE, EXIT_USAGE = 0, 1, 2, 3
PYPI_JSON = os.environ.get("CASCADE_AUDIT_PYPI_URL", "https://pypi.org/pypi/{name}/json")
_UNREACHABLE = re.compile(
    r"ConnectionError|NameResolution|Failed to resolve|Max retries exceeded|timed out|Temporary failure|"
    r"Connection refused|Network is unreachable|ProxyError|SSLError",
    re.I,
)
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")


def pins(requirements: Path) -> list[tuple[str, str]]:
    out = []
    for line in requirements.read_text().splitlines():
        m = _PIN.match(line)
        if m:
            out.append((m.group(1), m.group(2).split("+", 1)[0]))  # torch==2.13.0+cpu -> 2.13.0
    return out


def _pip_audit_exe() -> list[str]:
    exe = Path(sys.executable).with_name("pip-audit")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "pip_audit"]


def run_osv(requirements: Path) -> tuple[int, str]:
    """pip-audit against OSV: (exit code, report)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audit.json"
        proc = subprocess.run(
            [*_pip_audit_exe(), "-r", str(requirements), "--no-deps", "--disable-pip", "--progress-spinner",
             "off", "-s", "osv", "-f", "json", "-o", str(out), "--timeout", "20"],
            capture_output=True, text=True, timeout=900,
        )
        if not out.exists():
            err = (proc.stderr or proc.stdout).strip().splitlines()
            last = err[-1] if err else f"pip-audit exited {proc.returncode}"
            if _UNREACHABLE.search(proc.stderr or ""):
                return EXIT_INCOMPLETE, f"vulnerability service unreachable (api.osv.dev): {last[:300]}"
            return EXIT_USAGE, f"pip-audit failed ({proc.returncode}): {last[:500]}"
        doc = json.loads(out.read_text())
    deps = doc.get("dependencies", [])
    vulns = [(d["name"], d.get("version"), v) for d in deps for v in d.get("vulns", [])]
    skipped = [d for d in deps if d.get("skip_reason")]
    lines = [f"pip-audit (OSV): {len(deps)} pinned packages, {len(vulns)} known vulnerabilities, "
             f"{len(skipped)} skipped"]
    for name, version, v in vulns:
        lines.append(f"  VULNERABLE {name}=={version}: {v['id']} fixed in {', '.join(v.get('fix_versions') or []) or '-'}"
                     f" {' '.join(v.get('aliases') or [])}")
    for d in skipped:
        lines.append(f"  skipped {d['name']}: {d['skip_reason']}")
    if vulns:
        return EXIT_VULNERABLE, "\n".join(lines)
    return (EXIT_INCOMPLETE if skipped else EXIT_CLEAN), "\n".join(lines)


def _project(name: str) -> dict:
    with urllib.request.urlopen(PYPI_JSON.format(name=name), timeout=20) as r:
        return json.load(r)


def run_pypi_latest(requirements: Path) -> tuple[int, str]:
    """Pins that are their project's latest release, against PyPI's vulnerability list of that release."""
    pinned = pins(requirements)
    if not pinned:
        return EXIT_USAGE, f"no name==version pins in {requirements}"
    results: dict[str, dict | Exception] = {}
    with cf.ThreadPoolExecutor(24) as ex:  # network-bound (~2 s a look-up through a proxy)
        futs = {ex.submit(_project, n): n for n, _ in pinned}
        for f in cf.as_completed(futs):
            try:
                results[futs[f]] = f.result()
            except Exception as e:  # noqa: BLE001 - reported per package
                results[futs[f]] = e
    failed = {n: e for n, e in results.items() if isinstance(e, Exception)}
    if len(failed) == len(pinned) and all(not isinstance(e, urllib.error.HTTPError) for e in failed.values()):
        first = next(iter(failed.values()))
        return EXIT_INCOMPLETE, f"vulnerability data unreachable (PyPI JSON API): {first}"
    vulnerable, covered, not_covered = [], [], []
    for name, version in pinned:
        doc = results[name]
        if isinstance(doc, Exception):
            not_covered.append(f"{name}=={version} (lookup failed: {doc})")
            continue
        latest = doc["info"]["version"]
        if latest != version:
            not_covered.append(f"{name}=={version} (latest is {latest})")
            continue
        covered.append(name)
        for v in doc.get("vulnerabilities") or []:
            if v.get("withdrawn"):
                continue
            vulnerable.append(f"  VULNERABLE {name}=={version}: {v.get('id')} "
                              f"fixed in {', '.join(v.get('fixed_in') or []) or '-'} {' '.join(v.get('aliases') or [])}")
    lines = [f"PyPI advisories (latest releases only): {len(covered)} of {len(pinned)} pins checked, "
             f"{len(vulnerable)} known vulnerabilities", *vulnerable]
    if not_covered:
        lines.append(f"  not covered ({len(not_covered)}; need the full OSV audit): " + "; ".join(not_covered))
    if vulnerable:
        return EXIT_VULNERABLE, "\n".join(lines)
    return (EXIT_INCOMPLETE if not_covered else EXIT_CLEAN), "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--service", choices=("auto", "osv", "pypi-latest"), default="auto")
    p.add_argument("-r", "--requirements", type=Path, default=ROOT / "constraints.txt")
    args = p.parse_args(argv)
    if not args.requirements.is_file():
        print(f"dep_audit: {args.requirements} not found", file=sys.stderr)
        return EXIT_USAGE
    if args.service in ("auto", "osv"):
        code, report = run_osv(args.requirements)
        print(report)
        if args.service == "osv" or code != EXIT_INCOMPLETE or "unreachable" not in report:
            return code
        print("falling back to PyPI's advisories of the latest releases (partial: see the coverage below)")
    code, report = run_pypi_latest(args.requirements)
    print(report)
    if code == EXIT_INCOMPLETE:
        print("AUDIT INCOMPLETE: no vulnerability found in what could be checked, but not every pin was "
              "checked (see above): this is not a pass")
    return code


if __name__ == "__main__":
    sys.exit(main())
