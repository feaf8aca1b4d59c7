"""Benchmark: machine instructions per rating Gather, in process, beside the bare Flask endpoint.

The webhook benchmarks' rates move by a tenth or more on these shared machines, more than most
changes of the code. An instruction count does not: valgrind's callgrind counts what the process
executes, whatever else the machine does (two runs agree within a few hundredths of a percent). Each
side runs in a process of its own under callgrind: the public app on a SQLite store of surveys
waiting at the rating menu (bench/voice_webhook.py builds it), and the bare endpoint
(bench/bare_app.py); both take their requests straight through WSGI (no server, no network), after
warm-up requests that are not counted. Prints the instructions per request of both and their ratio;
the issue sets no target for these figures (they are for comparing two versions of the code).

    .venv/bin/python bench/voice_instructions.py [--requests N]
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from results import is_quick, report  # noqa: E402

WARM_UP = 50
BARE_REQUEST = ("/twilio/voice/gather", "Digits=1", "x")


def environ(path: str, body: str, signature: str) -> dict[str, Any]:
    """The WSGI environ of a signed Twilio POST as gunicorn would pass it."""
    route, _, query = path.partition("?")
    data = body.encode()
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": route,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(data)),
        "HTTP_X_TWILIO_SIGNATURE": signature,
        "wsgi.input": io.BytesIO(data),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def serve(app: Callable[..., Iterable[bytes]], requests: list[tuple[str, str, str]]) -> None:
    """Warm up, then pass the requests through the app with callgrind counting; check each answer."""
    statuses: list[str] = []

    def start_response(status: str, _headers: Any, _exc_info: Any = None) -> None:
        statuses.append(status)

    def call(request: tuple[str, str, str]) -> None:
        body = app(environ(*request), start_response)
        b"".join(body)
        getattr(body, "close", lambda: None)()

    def counting(state: str) -> None:
        command = ["callgrind_control", f"--instr={state}", str(os.getpid())]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)

    for request in requests[:WARM_UP]:
        call(request)
    counting("on")
    for request in requests[WARM_UP:]:
        call(request)
    counting("off")
    if set(statuses) != {"200 OK"}:
        raise SystemExit(f"unexpected answers: {sorted(set(statuses))}")


def child(kind: str, workdir: Path) -> None:
    """The measured process: the public app on the store in `workdir`, or the bare endpoint."""
    import gc

    if kind == "bare":
        from bare_app import app

        requests = [BARE_REQUEST] * int((workdir / "count").read_text())
    else:
        os.environ["RETURNVISIT_CONFIG"] = str(workdir / "config.toml")
        # The app as a gunicorn worker loads it (its JSON log lines go to stderr: /dev/null here).
        from ivr.wsgi import app

        requests = pickle.loads((workdir / "requests.pickle").read_bytes())
    gc.collect()
    gc.freeze()  # as ivr.wsgi does in a gunicorn worker
    serve(app, requests)


def count_instructions(valgrind: str, kind: str, workdir: Path) -> int:
    """Run the child under callgrind; return the instructions it executed while counting."""
    out = workdir / f"{kind}.callgrind"
    subprocess.run(
        [
            valgrind,
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            "--child",
            kind,
            str(workdir),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    match = re.search(r"^totals: (\d+)", out.read_text(), re.MULTILINE)
    if not match:
        raise SystemExit(f"no instruction total in {out}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100 if is_quick() else 400, help="counted")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    from voice_webhook import build_store
    from webhook_load import ensure_tool, settle_store

    valgrind = ensure_tool("valgrind")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir}/rv_bench_instructions.db"
        total = WARM_UP + args.requests
        (workdir / "requests.pickle").write_bytes(pickle.dumps(build_store(url, total)))
        settle_store(url)
        (workdir / "config.toml").write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
        (workdir / "count").write_text(str(total))
        print(f"{args.requests} requests a side under callgrind, after {WARM_UP} not counted")
        gather = count_instructions(valgrind, "gather", workdir) / args.requests
        bare = count_instructions(valgrind, "bare", workdir) / args.requests
    print(f"{'in process':<28}{'instructions/request':>22}")
    print(f"{'bare Flask endpoint':<28}{bare:>22,.0f}")
    print(f"{'rating Gather (SQLite)':<28}{gather:>22,.0f}")
    print(f"bare / Gather: {bare / gather:.1%} (no target: for comparing versions of the code)")
    note = f"in process under callgrind, {args.requests} requests after {WARM_UP} not counted"
    report("rating Gather, SQLite: instructions per request", gather, "instructions", note=note)
    report("bare Flask endpoint: instructions per request", bare, "instructions", note=note)
    report(
        "bare / Gather instructions",
        100 * bare / gather,
        "%",
        note="the cost ratio without server or network",
    )


if __name__ == "__main__":
    main()
