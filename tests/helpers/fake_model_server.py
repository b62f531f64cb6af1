"""A fake OpenAI-compatible model server for fault tests, run as a second process (standard library only).

    python -m tests.helpers.fake_model_server --port 8123 [--reply "move forward 25 cm"]

Prints `listening <port>` once it accepts connections. `POST /v1/chat/completions` answers with
`--reply`, unless the user text contains `REPLY:`; then with the rest of that line (a model that
obeys a prompt injection word for word). `POST /mode` with `{"mode": "ok" | "hang"}` switches
behaviour: in `hang` mode requests are accepted and never answered (until the mode is `ok` again);
`GET /stats` returns the request count. Kill the process (SIGKILL) for a model process that crashes.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {"mode": "ok", "requests": 0, "reply": "move forward 25 cm"}
LOCK = threading.Lock()


def _user_text(body: dict) -> str:
    parts = []
    for message in body.get("messages", []):
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") == "text"]
    return "\n".join(parts)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/stats"):
            self._send(200, {"requests": STATE["requests"], "mode": STATE["mode"]})
        elif self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send(400, {"error": "bad json"})
            return
        if self.path.rstrip("/").endswith("/mode"):
            with LOCK:
                STATE["mode"] = str(body.get("mode", "ok"))
            self._send(200, {"mode": STATE["mode"]})
            return
        with LOCK:
            STATE["requests"] += 1
        while STATE["mode"] == "hang":  # accepted, never answered (a hung model)
            time.sleep(0.05)
        text = _user_text(body)
        reply = text.split("REPLY:", 1)[1].strip().splitlines()[0] if "REPLY:" in text else STATE["reply"]
        self._send(200, {
            "id": "fake", "object": "chat.completion", "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        })


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reply", default="move forward 25 cm")
    args = parser.parse_args(argv)
    STATE["reply"] = args.reply
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
