"""Loopback servers for judge tests and benchmarks (127.0.0.1 only).

- :class:`FaultServer`: a tiny OpenAI-compatible server (``/v1/chat/completions`` and
  ``/v1/completions``) in a thread, with scripted faults per prompt (429 + Retry-After, 500,
  a 500 whose body echoes the request headers, a hang longer than the client timeout, malformed
  JSON, empty choices, 401), a fixed latency, and a log of every request it received.
- :func:`transformers_serve`: ``transformers serve`` as a subprocess on a free port, polled until
  ready (bounded), killed on exit; offline (``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOST = "127.0.0.1"
FAULTS = ("ok", "429", "429-date", "500", "500-echo", "timeout", "malformed", "text", "empty",
          "401")

# Log-probabilities the fault server reports at the yes/no token (see ``expected_p_yes``).
TOP_FOR_YES = {"Yes": 0.7, " yes": 0.1, "No": 0.15, "The": 0.05}
TOP_FOR_NO = {"No": 0.6, " no": 0.2, "Yes": 0.1, "I": 0.1}


def expected_p_yes(reply_yes: bool) -> float:
    """P(yes)/(P(yes)+P(no)) over variants, computed by hand from the tables above."""
    return 0.8 / 0.95 if reply_yes else 0.1 / 0.9


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def default_reply(prompt: str) -> str:
    """"Yes" when the candidate answer contains the marker ``[T]``, else "No"."""
    return "Yes" if "[T]" in prompt else "No"


@dataclass
class Received:
    time: float
    path: str
    headers: dict[str, str]
    body: dict
    fault: str


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up mid-request (a judge aborting on a fatal 401, a timeout fault) is
    normal here: don't print socketserver's traceback for it (tests read stderr)."""

    def handle_error(self, request, client_address) -> None:
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@dataclass
class FaultServer:
    """``faults`` maps a substring of a prompt (or a tuple of substrings that must all occur)
    to the faults its successive requests get; once the list is used up, requests succeed.
    ``latency_s`` delays every answer; ``max_in_flight`` records the most concurrent requests."""

    faults: dict[str | tuple[str, ...], list[str]] = field(default_factory=dict)
    latency_s: float = 0.0
    hang_s: float = 3.0
    retry_after: str = "1"
    logprobs: bool = True
    reply: Callable[[str], str] = default_reply
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        bad = [f for fs in self.faults.values() for f in fs if f not in FAULTS]
        if bad:
            raise ValueError(f"unknown faults {bad}; choose from {FAULTS}")
        self._lock = threading.Lock()
        self._used: dict[str | tuple[str, ...], int] = {}
        self._in_flight = 0
        self.max_in_flight = 0
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://{HOST}:{self._httpd.server_address[1]}/v1"

    def requests_for(self, marker: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if marker in _prompt_of(r.body)]

    def _next_fault(self, prompt: str) -> str:
        with self._lock:
            for marker, script in self.faults.items():
                parts = (marker,) if isinstance(marker, str) else marker
                if all(p in prompt for p in parts):
                    n = self._used.get(marker, 0)
                    self._used[marker] = n + 1
                    return script[n] if n < len(script) else "ok"
            return "ok"

    def __enter__(self) -> FaultServer:
        return self.start()

    def start(self, port: int = 0) -> FaultServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints do
            disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls on kept-alive sockets

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/stats"):
                    with server._lock:
                        stats = {"requests": len(server.received),
                                 "max_in_flight": server.max_in_flight}
                    return _send(self, 200, stats)
                _send(self, 404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                with server._lock:
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                try:
                    self._handle()
                finally:
                    with server._lock:
                        server._in_flight -= 1

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = {}
                prompt = _prompt_of(body)
                fault = server._next_fault(prompt)
                with server._lock:
                    server.received.append(Received(time.monotonic(), self.path,
                                                    dict(self.headers), body, fault))
                if server.latency_s:
                    time.sleep(server.latency_s)
                try:
                    server._answer(self, body, prompt, fault)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout fault)

        self._httpd = _QuietServer((HOST, port), Handler)
        self._httpd.daemon_threads = True
        self._httpd.request_queue_size = 128
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def _answer(self, h: BaseHTTPRequestHandler, body: dict, prompt: str, fault: str) -> None:
        if fault == "timeout":
            time.sleep(self.hang_s)
            fault = "ok"
        if fault in ("429", "429-date"):
            after = (self.retry_after if fault == "429" else
                     time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 2)))
            return _send(h, 429, {"error": {"message": "rate limited"}}, {"Retry-After": after})
        if fault == "500":
            return _send(h, 500, {"error": {"message": "internal error"}})
        if fault == "500-echo":  # a careless server that echoes the request headers
            return _send(h, 500, {"error": {"message": f"failed request {dict(h.headers)}"}})
        if fault == "401":
            return _send(h, 401, {"error": {"message": "invalid api key "
                                            f"{h.headers.get('authorization')}"}})
        if fault == "malformed":
            return _send_raw(h, 200, b'{"choices": [{"message": ', "application/json")
        if fault == "text":
            return _send_raw(h, 200, b"<html>gateway says hi</html>", "text/html")
        if fault == "empty":
            return _send(h, 200, {"id": "x", "object": "chat.completion", "choices": []})
        _send(h, 200, self._completion(h.path, body, prompt))

    def _completion(self, path: str, body: dict, prompt: str) -> dict:
        text = self.reply(prompt)
        yes = text.strip().lower().startswith("yes")
        table = TOP_FOR_YES if yes else TOP_FOR_NO
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": 1,
                 "total_tokens": len(prompt.split()) + 1}
        if path.endswith("/completions") and "/chat/" not in path:
            text = " " + text.lower()
            choice = {"index": 0, "text": text, "finish_reason": "length", "logprobs": None}
            if self.logprobs and body.get("logprobs"):
                top = {t: math.log(p) for t, p in table.items()}
                choice["logprobs"] = {"tokens": [text], "top_logprobs": [top]}
            return {"id": "c", "object": "text_completion", "model": body.get("model"),
                    "choices": [choice], "usage": usage}
        choice = {"index": 0, "message": {"role": "assistant", "content": text},
                  "finish_reason": "stop"}
        if self.logprobs and body.get("logprobs"):
            token = text.split()[0] if text.split() else text
            top = [{"token": t, "logprob": math.log(p)} for t, p in table.items()]
            choice["logprobs"] = {"content": [{"token": token, "logprob": math.log(table.get(
                token, 0.5)), "top_logprobs": top[: int(body.get("top_logprobs") or 0)]}]}
        return {"id": "cc", "object": "chat.completion", "model": body.get("model"),
                "choices": [choice], "usage": usage}


def _prompt_of(body: dict) -> str:
    if "prompt" in body:
        return str(body["prompt"])
    return "\n".join(str(m.get("content", "")) for m in body.get("messages") or []
                     if isinstance(m, dict))


def _send(h: BaseHTTPRequestHandler, status: int, obj: dict,
          headers: dict[str, str] | None = None) -> None:
    _send_raw(h, status, json.dumps(obj).encode(), "application/json", headers)


def _send_raw(h: BaseHTTPRequestHandler, status: int, data: bytes, ctype: str,
              headers: dict[str, str] | None = None) -> None:
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(data)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(data)


@contextlib.contextmanager
def transformers_serve(model_dir: str | Path, *, ready_timeout_s: float = 120.0,
                       log_path: Path | None = None) -> Iterator[str]:
    """Run ``transformers serve MODEL_DIR`` on a free loopback port; yield its ``/v1`` base URL."""
    port = free_port()
    exe = Path(sys.executable).with_name("transformers")
    cmd = [str(exe), "serve", "--host", HOST, "--port", str(port), "--device", "cpu",
           "--log-level", "warning", str(model_dir)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               OMP_NUM_THREADS="1")
    log = open(log_path or os.devnull, "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited with code {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"transformers serve not ready after {ready_timeout_s:.0f} s")
            time.sleep(0.5)
        yield f"http://{HOST}:{port}/v1"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def serve_main(argv: list[str] | None = None) -> None:
    """Run a fault-free :class:`FaultServer` in its own process (for benchmarks):
    ``python -m tests.evals.judges.servers --port P --latency S``; GET /v1/stats counts requests."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args(argv)
    server = FaultServer(latency_s=args.latency).start(args.port)
    print(f"serving {server.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.__exit__()


@contextlib.contextmanager
def fault_server_process(latency_s: float = 0.0, ready_timeout_s: float = 30.0) -> Iterator[str]:
    """A :class:`FaultServer` in a child process (no GIL shared with the client); yields its
    ``/v1`` base URL. ``request_count(base_url)`` reads how many requests it received."""
    port = free_port()
    repo = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen([sys.executable, "-m", "tests.evals.judges.servers", "--port", str(port),
                             "--latency", str(latency_s)], cwd=repo, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://{HOST}:{port}/v1"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            try:
                request_count(url)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("fault server process did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def request_count(base_url: str) -> int:
    with urllib.request.urlopen(f"{base_url}/stats", timeout=5) as resp:
        return int(json.loads(resp.read())["requests"])


if __name__ == "__main__":
    serve_main()
