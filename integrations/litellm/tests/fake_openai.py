"""A fake OpenAI-compatible model server for the hook's tests: the
"mocked model responses" LiteLLM's deployments point at.

Each request's behaviour comes from its last user message, a line of
`key=value` words, so a test says what the model does:

    prompt_tokens=12 completion_tokens=30 delay=0.5 fail=500

- prompt_tokens / completion_tokens: the usage the response reports
  (default 10 / 20);
- delay: seconds to wait before answering (a slow model);
- fail: answer with this HTTP status and an OpenAI-style error body;
- chunk_delay: seconds between streamed chunks;
- fail_times=n: with fail, only the first n requests with this same text
  fail (a retry then succeeds).

`stream: true` answers with server-sent events: a few content chunks, then,
when the request asked for `stream_options.include_usage`, a last chunk with
the usage, then `data: [DONE]`. The server counts requests and the most
that were in progress at once, for the tests to read."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def directives(body):
    text = ""
    for message in body.get("messages") or []:
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
            text = content or ""
    if not text and body.get("prompt") is not None:  # a text completion
        prompt = body["prompt"]
        text = " ".join(map(str, prompt)) if isinstance(prompt, list) else str(prompt)
    out = {}
    for word in str(text).split():
        if "=" in word:
            name, value = word.split("=", 1)
            out[name] = value
    return out


class FakeOpenAI:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.active = 0
        self.max_active = 0
        self.bodies = []
        self.seen = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self._json(200, {"object": "list", "data": []})

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake.lock:
                    fake.requests += 1
                    fake.active += 1
                    fake.max_active = max(fake.max_active, fake.active)
                    fake.bodies.append(body)
                try:
                    self._answer(body)
                finally:
                    with fake.lock:
                        fake.active -= 1

            def _answer(self, body):
                d = directives(body)
                delay = float(d.get("delay", 0))
                if delay:
                    time.sleep(delay)
                text = json.dumps(body.get("messages"), sort_keys=True)
                with fake.lock:
                    fake.seen[text] = fake.seen.get(text, 0) + 1
                    nth = fake.seen[text]
                if "fail" in d and ("fail_times" not in d or nth <= int(d["fail_times"])):
                    status = int(d["fail"])
                    self._json(status, {"error": {"message": f"fake model failure {status}",
                                                  "type": "server_error", "code": status}})
                    return
                prompt = int(d.get("prompt_tokens", 10))
                completion = int(d.get("completion_tokens", 20))
                usage = {"prompt_tokens": prompt, "completion_tokens": completion,
                         "total_tokens": prompt + completion}
                model = body.get("model", "fake")
                created = int(time.time())
                if body.get("stream"):
                    self._stream(body, model, created, usage)
                    return
                if self.path.rstrip("/").endswith("/completions") and "/chat/" not in self.path:
                    self._json(200, {
                        "id": "cmpl-fake", "object": "text_completion", "created": created, "model": model,
                        "choices": [{"index": 0, "text": "ok ok", "finish_reason": "stop", "logprobs": None}],
                        "usage": usage,
                    })
                    return
                self._json(200, {
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": created,
                    "model": model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "ok " * 3}}],
                    "usage": usage,
                })

            def _stream(self, body, model, created, usage):
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                        "created": created, "model": model}

                def send(obj):
                    self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
                    self.wfile.flush()

                try:
                    self._chunks(body, base, usage, send)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _chunks(self, body, base, usage, send):
                send(dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""},
                                          "finish_reason": None}]))
                for word in ("hello ", "from ", "fake"):
                    time.sleep(float(directives(body).get("chunk_delay", 0)))
                    send(dict(base, choices=[{"index": 0, "delta": {"content": word},
                                              "finish_reason": None}]))
                send(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
                if (body.get("stream_options") or {}).get("include_usage"):
                    send(dict(base, choices=[], usage=usage))
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

            def _json(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    import sys

    fake = FakeOpenAI()
    if len(sys.argv) > 1:
        fake.server.server_close()
        fake.server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), fake.server.RequestHandlerClass)
    print(f"fake model at http://127.0.0.1:{fake.server.server_address[1]}/v1", flush=True)
    fake.server.serve_forever()
