"""``labtorch mirrors [NAME|URL ...]``: can this machine reach what a deploy fetches?

Fetches from here, for each mirror, what a deploy would fetch from it (each conda channel's
noarch/repodata.json, the PyPI page of torch, the variant's PyTorch wheel page) and says per URL
whether it answers, is blocked (a 403 block page, with its code), missing, handed to another
host, or unreachable, and what to do. Run it on a lab host, or on a machine behind the same
address, to see what the fleet will see. Without arguments: every mirror of the catalog but
upstream. Only the first 4 KiB of each answer is read.

Exit status: 0 every endpoint answers; 1 one does not; 2 bad input (an unknown mirror name).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from labtorch.data.mirrors import UPSTREAM, Mirror, load_catalog, tuna_layout_mirror
from labtorch.report.reachability import Answer, Endpoint, Outcome, classify, endpoints, render

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
HEAD_BYTES = 4096
USER_AGENT = "labtorch-mirrors"


def add_mirrors_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``mirrors`` to a parser's subcommands."""
    mirrors = subparsers.add_parser(
        "mirrors",
        help="check from here that the mirrors answer; exit 1 when one does not",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mirrors.add_argument(
        "mirrors", nargs="*", metavar="NAME|URL", help="catalog names, or TUNA-layout base URLs"
    )
    mirrors.add_argument("--variant", default="cpu", help="the PyTorch wheel page to check")
    mirrors.add_argument("--timeout", type=float, default=10.0, help="seconds per URL")
    mirrors.add_argument("--json", action="store_true", help="print one JSON object")
    mirrors.set_defaults(handler=mirrors_command)
    return mirrors


def _chosen(names: list[str]) -> list[Mirror]:
    catalog = load_catalog()
    if not names:
        return [mirror for name, mirror in catalog.mirrors.items() if name != UPSTREAM]
    chosen = []
    for name in names:
        if "://" in name:
            chosen.append(tuna_layout_mirror(name, name))
        elif name in catalog.mirrors:
            chosen.append(catalog.mirrors[name])
        else:
            raise KeyError(
                f"unknown mirror {name!r}; known: {', '.join(catalog.mirrors)}, or a URL"
            )
    return chosen


def fetch(url: str, timeout: float) -> Answer:
    """GET ``url`` (redirects followed) and keep the status, final URL and first bytes."""
    # Imported here: `labtorch plan` shares the parser and must not pay 0.15 s for requests.
    import requests

    start = time.monotonic()
    try:
        with requests.get(
            url, stream=True, timeout=timeout, headers={"User-Agent": USER_AGENT}
        ) as response:
            head = next(response.iter_content(HEAD_BYTES), b"")
            return Answer(response.status_code, response.url, head, time.monotonic() - start)
    except requests.RequestException as exc:
        return Answer(error=type(exc).__name__, seconds=time.monotonic() - start)


def check(mirrors: list[Mirror], variant: str, timeout: float) -> list[Outcome]:
    """Every endpoint of every mirror, fetched in parallel, in order."""
    todo: list[Endpoint] = [e for mirror in mirrors for e in endpoints(mirror, variant)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda endpoint: fetch(endpoint.url, timeout), todo))
    return [classify(endpoint, answer) for endpoint, answer in zip(todo, answers, strict=True)]


def mirrors_command(args: argparse.Namespace) -> int:
    try:
        mirrors = _chosen(args.mirrors)
    except KeyError as exc:
        print(f"labtorch mirrors: error: {exc.args[0]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    outcomes = check(mirrors, args.variant, args.timeout)
    if args.json:
        print(json.dumps({"outcomes": [asdict(o) for o in outcomes]}, indent=2))
    else:
        print(render(outcomes))
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_FAILED
