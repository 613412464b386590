"""The OpenAI surface over loopback with real clients (requests, and the official openai package):
completions and chat, streaming and not, usage, stop strings, seeds, the bad-request corpus, auth, 429."""
import concurrent.futures
import json
import math
import socket
import sys
import threading
import unittest

from serve_util import (Server, require_modules, sse_events, stories260k_args, synthetic_model)

require_modules("requests", "openai")
import openai  # noqa: E402
import requests  # noqa: E402

MODEL = "stories260K"
PROMPT = "Once upon a time"


class CompletionsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server(stories260k_args()).__enter__()
        cls.url = cls.server.url

    @classmethod
    def tearDownClass(cls):
        cls.server.__exit__(None, None, None)
        assert cls.server.process.returncode == 0, cls.server.output

    def complete(self, **fields):
        body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 24, "temperature": 0, **fields}
        return requests.post(self.url + "/v1/completions", json=body, timeout=60)

    def stream(self, **fields):
        body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 24, "temperature": 0, "stream": True, **fields}
        with requests.post(self.url + "/v1/completions", json=body, stream=True, timeout=60) as response:
            self.assertEqual(response.status_code, 200)
            self.assertTrue(response.headers["Content-Type"].startswith("text/event-stream"))
            return sse_events(response)

    def test_completion_and_usage(self):
        r = self.complete()
        self.assertEqual(r.status_code, 200, r.text)
        body = r.json()
        self.assertEqual(body["object"], "text_completion")
        self.assertEqual(body["model"], MODEL)
        choice = body["choices"][0]
        # stories260K's greedy continuation (its golden text starts the same way).
        self.assertTrue(choice["text"].startswith(", there was a little"), choice["text"])
        self.assertEqual(choice["finish_reason"], "length")
        self.assertEqual(body["usage"]["completion_tokens"], 24)
        self.assertEqual(body["usage"]["prompt_tokens"], 5)  # BOS + 4 pieces
        self.assertEqual(body["usage"]["total_tokens"], 29)

    def test_stream_equals_whole_response(self):
        whole = self.complete().json()
        chunks, done = self.stream(stream_options={"include_usage": True})
        self.assertTrue(done)
        text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
        self.assertEqual(text, whole["choices"][0]["text"])
        finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
        self.assertEqual([c["choices"][0]["finish_reason"] for c in finals], ["length"])
        self.assertEqual(chunks[-1]["choices"], [])
        self.assertEqual(chunks[-1]["usage"], whole["usage"])
        # Without include_usage no usage chunk is sent.
        chunks, done = self.stream()
        self.assertTrue(done)
        self.assertFalse(any("usage" in c for c in chunks))

    def test_stop_strings_never_emitted(self):
        full = self.complete(max_tokens=40).json()["choices"][0]["text"]
        stop = "little girl"  # spans several tokens
        self.assertIn(stop, full)
        r = self.complete(max_tokens=40, stop=[stop, "zzz"]).json()
        self.assertEqual(r["choices"][0]["text"], full[:full.index(stop)])
        self.assertEqual(r["choices"][0]["finish_reason"], "stop")
        chunks, done = self.stream(max_tokens=40, stop=stop)
        self.assertTrue(done)
        self.assertEqual("".join(c["choices"][0]["text"] for c in chunks), full[:full.index(stop)])
        self.assertEqual(chunks[-1]["choices"][0]["finish_reason"], "stop")

    def test_seeds_reproducible(self):
        a = self.complete(temperature=1.0, seed=7, max_tokens=32).json()["choices"][0]["text"]
        b = self.complete(temperature=1.0, seed=7, max_tokens=32).json()["choices"][0]["text"]
        c = self.complete(temperature=1.0, seed=8, max_tokens=32).json()["choices"][0]["text"]
        self.assertEqual(a, b)
        self.assertNotEqual(a, c)

    def test_token_id_prompt(self):
        text = self.complete(prompt=[1, 403, 407, 261, 378]).json()
        self.assertEqual(text["usage"]["prompt_tokens"], 5)

    def test_models_health_metrics(self):
        models = requests.get(self.url + "/v1/models", timeout=10).json()
        self.assertEqual(models["data"][0]["id"], MODEL)
        self.assertEqual(requests.get(self.url + "/v1/models/" + MODEL, timeout=10).status_code, 200)
        self.assertEqual(requests.get(self.url + "/v1/models/nope", timeout=10).status_code, 404)
        self.assertEqual(requests.get(self.url + "/health", timeout=10).json(), {"status": "ok"})
        self.complete()
        metrics = requests.get(self.url + "/metrics", timeout=10)
        self.assertTrue(metrics.headers["Content-Type"].startswith("text/plain"))
        for name in ["infer_requests_total{status=\"200\"}", "infer_time_to_first_token_seconds_bucket{le=\"+Inf\"}",
                     "infer_kv_blocks{state=\"free\"}", "infer_requests_running", "infer_generation_tokens_total"]:
            self.assertIn(name, metrics.text)

    def test_bad_request_corpus(self):
        """Each bad request gets its 4xx and an OpenAI error body, while a long request streams on."""
        good = {"model": MODEL, "prompt": PROMPT, "max_tokens": 200, "temperature": 0, "stream": True,
                "ignore_eos": True}
        result = {}

        def long_request():
            with requests.post(self.url + "/v1/completions", json=good, stream=True, timeout=120) as r:
                result["chunks"], result["done"] = sse_events(r)

        runner = threading.Thread(target=long_request)
        runner.start()
        C, H = "/v1/completions", "/v1/chat/completions"
        base = '{"model": "stories260K", "prompt": "hi", '
        corpus = [
            (C, b'{"model": "stories260K", "prompt": ', 400),                  # malformed JSON
            (C, b'[1, 2, 3]', 400),                                            # not an object
            (C, base.encode() + b'"max_tokens": "10"}', 400),                 # wrong type
            (C, base.encode() + b'"max_tokens": -5}', 400),                   # negative
            (C, base.encode() + b'"max_tokens": 100000000}', 400),            # huge (beyond the context)
            (C, base.encode() + b'"temperature": NaN}', 400),                 # NaN
            (C, base.encode() + b'"temperature": 1e999}', 400),               # overflow
            (C, base.encode() + b'"top_p": 7}', 400),                         # out of range
            (C, base.encode() + b'"frobnicate": 1}', 400),                    # unknown field
            (C, base.encode() + b'"n": 3}', 400),                             # n != 1
            (C, b'{"model": "gpt-4", "prompt": "hi"}', 404),                  # unknown model
            (C, b'{"model": "stories260K", "prompt": "' + b"word " * 2000 + b'"}', 400),   # over-long prompt
            (C, b'{"model": "stories260K", "prompt": "\xff\xfe"}', 400),      # invalid UTF-8
            (C, b'{"model": "stories260K", "prompt": [1, 99999]}', 400),      # token id outside the vocabulary
            (C, b'{"model": "stories260K", "prompt": "' + b"x" * (2 << 20) + b'"}', 413),  # oversized body
            (C, base.encode() + b'"logprobs": 6}', 400),                      # legacy logprobs: 0..5
            (C, base.encode() + b'"logprobs": true}', 400),                   # legacy logprobs: an integer
            (C, base.encode() + b'"top_logprobs": 2}', 400),                  # chat's field, not this endpoint's
            (H, b'{"model": "stories260K", "messages": [{"role": "user", "content": "hi"}]}', 400),  # no template
            (H, b'{"model": "stories260K", "messages": "hi"}', 400),
            ("/v1/nothing", b'{}', 404),
        ]
        for path, body, status in corpus:
            with self.subTest(path=path, body=body[:60]):
                r = requests.post(self.url + path, data=body, headers={"Content-Type": "application/json"}, timeout=30)
                self.assertEqual(r.status_code, status, r.text[:300])
                error = r.json()["error"]
                self.assertIsInstance(error["message"], str)
                self.assertTrue(error["message"])
                self.assertIn("type", error)
                self.assertIn("param", error)
                self.assertIn("code", error)
        # A request cut off after its headers, and garbage instead of HTTP: the server carries on.
        with socket.create_connection(("127.0.0.1", self.server.port)) as s:
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"mo")
        with socket.create_connection(("127.0.0.1", self.server.port)) as s:
            s.sendall(b"\x00\x01garbage\r\n\r\n")
            s.recv(100)
        runner.join()
        self.assertTrue(result["done"])
        text_chunks = [c for c in result["chunks"] if c["choices"] and c["choices"][0]["text"]]
        self.assertGreater(len(text_chunks), 0)
        self.assertEqual(result["chunks"][-1]["choices"][0]["finish_reason"], "length")
        self.assertEqual(self.complete().status_code, 200)

    def test_openai_client(self):
        client = openai.OpenAI(base_url=self.url + "/v1", api_key="unused")
        whole = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=16, temperature=0)
        self.assertEqual(whole.usage.completion_tokens, 16)
        stream = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=16, temperature=0, stream=True)
        self.assertEqual("".join(chunk.choices[0].text for chunk in stream if chunk.choices), whole.choices[0].text)
        with self.assertRaises(openai.NotFoundError):
            client.completions.create(model="nope", prompt=PROMPT, max_tokens=4)
        with self.assertRaises(openai.BadRequestError):
            client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4, n=2)


def check_top_list(test, chosen_logprob, top, n, greedy):
    """A top-N list: N entries, most likely first, every logprob <= 0, probabilities summing to <= 1; under
    greedy decoding the chosen token is the first."""
    test.assertEqual(len(top), n)
    logprobs = [t[1] for t in top]
    test.assertEqual(logprobs, sorted(logprobs, reverse=True))
    test.assertTrue(all(lp <= 0 for lp in logprobs))
    test.assertLessEqual(sum(math.exp(lp) for lp in logprobs), 1 + 1e-5)
    test.assertLessEqual(chosen_logprob, 0)
    if greedy and n > 0:
        test.assertAlmostEqual(chosen_logprob, logprobs[0], places=5)


class LogprobsTest(unittest.TestCase):
    """logprobs / top_logprobs: the legacy completions shape on stories260K, the chat shape on a synthetic
    model with a ChatML template; streamed chunks carry the same numbers as the whole response."""

    def test_completions_logprobs(self):
        with Server(stories260k_args()) as server:
            body = {"model": MODEL, "prompt": PROMPT, "max_tokens": 20, "temperature": 0, "logprobs": 3}
            r = requests.post(server.url + "/v1/completions", json=body, timeout=60)
            self.assertEqual(r.status_code, 200, r.text)
            choice = r.json()["choices"][0]
            lp = choice["logprobs"]
            n = r.json()["usage"]["completion_tokens"]
            for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
                self.assertEqual(len(lp[key]), n, key)
            self.assertEqual("".join(lp["tokens"]), choice["text"])  # ASCII story text: one string per token
            offsets = [0]
            for token in lp["tokens"][:-1]:
                offsets.append(offsets[-1] + len(token.encode()))
            self.assertEqual(lp["text_offset"], offsets)
            for token, logprob, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
                items = sorted(top.items(), key=lambda kv: -kv[1])
                check_top_list(self, logprob, items, len(items), greedy=True)
                self.assertGreaterEqual(len(items), 1)
                self.assertEqual(items[0][0], token)
            # The same request without logprobs: the same text, and logprobs null.
            plain = requests.post(server.url + "/v1/completions", json={**body, "logprobs": None}, timeout=60).json()
            self.assertIsNone(plain["choices"][0]["logprobs"])
            self.assertEqual(plain["choices"][0]["text"], choice["text"])
            # Streamed: the chunks' logprobs, concatenated, are the whole response's.
            with requests.post(server.url + "/v1/completions", json={**body, "stream": True}, stream=True,
                               timeout=60) as streamed:
                chunks, done = sse_events(streamed)
            self.assertTrue(done)
            tokens, logprobs, offsets = [], [], []
            for c in chunks:
                if c["choices"] and c["choices"][0]["logprobs"]:
                    tokens += c["choices"][0]["logprobs"]["tokens"]
                    logprobs += c["choices"][0]["logprobs"]["token_logprobs"]
                    offsets += c["choices"][0]["logprobs"]["text_offset"]
            self.assertEqual(tokens, lp["tokens"])
            self.assertEqual(offsets, lp["text_offset"])
            for a, b in zip(logprobs, lp["token_logprobs"]):
                self.assertAlmostEqual(a, b, places=5)
            # logprobs 0: the chosen token's logprob, no alternatives. The openai client parses it.
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
            zero = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=8, temperature=0, logprobs=0)
            self.assertEqual(len(zero.choices[0].logprobs.token_logprobs), 8)
            self.assertTrue(all(t == {} for t in zero.choices[0].logprobs.top_logprobs))
            for lp0, full in zip(zero.choices[0].logprobs.token_logprobs, lp["token_logprobs"]):
                self.assertAlmostEqual(lp0, full, places=5)

    def test_chat_logprobs(self):
        model = synthetic_model("tiny", "--preset", "tiny")
        with Server(["--model", model]) as server:
            name = requests.get(server.url + "/v1/models", timeout=10).json()["data"][0]["id"]
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
            messages = [{"role": "user", "content": "Hello!"}]
            whole = client.chat.completions.create(model=name, messages=messages, max_tokens=12, temperature=0,
                                                   logprobs=True, top_logprobs=5, extra_body={"ignore_eos": True})
            content = whole.choices[0].logprobs.content
            self.assertEqual(len(content), whole.usage.completion_tokens)
            for entry in content:
                self.assertIsInstance(entry.token, str)
                try:  # "token" is the bytes as text; half a UTF-8 character becomes U+FFFD
                    self.assertEqual(bytes(entry.bytes).decode(), entry.token)
                except UnicodeDecodeError:
                    self.assertIn("\ufffd", entry.token)
                check_top_list(self, entry.logprob, [(t.token, t.logprob) for t in entry.top_logprobs], 5, greedy=True)
            stream = client.chat.completions.create(model=name, messages=messages, max_tokens=12, temperature=0,
                                                    logprobs=True, top_logprobs=5, stream=True,
                                                    extra_body={"ignore_eos": True})
            streamed = [e for c in stream if c.choices and c.choices[0].logprobs
                        for e in c.choices[0].logprobs.content]
            self.assertEqual([e.token for e in streamed], [e.token for e in content])
            for a, b in zip(streamed, content):
                self.assertAlmostEqual(a.logprob, b.logprob, places=5)
            # logprobs true alone: the chosen token's logprob and an empty top list.
            alone = client.chat.completions.create(model=name, messages=messages, max_tokens=4, temperature=0,
                                                   logprobs=True, extra_body={"ignore_eos": True})
            self.assertTrue(all(e.top_logprobs == [] for e in alone.choices[0].logprobs.content))
            # Sampled with a temperature: the logprobs are still the model's own (log_softmax of the raw logits).
            sampled = client.chat.completions.create(model=name, messages=messages, max_tokens=12, temperature=1.5,
                                                     seed=3, logprobs=True, top_logprobs=20,
                                                     extra_body={"ignore_eos": True})
            for entry in sampled.choices[0].logprobs.content:
                check_top_list(self, entry.logprob, [(t.token, t.logprob) for t in entry.top_logprobs], 20,
                               greedy=False)
            # Bad values name their parameter.
            base = {"model": name, "messages": messages, "max_tokens": 4}
            for extra, param in [({"top_logprobs": 2}, "top_logprobs"),
                                 ({"logprobs": False, "top_logprobs": 2}, "top_logprobs"),
                                 ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
                                 ({"logprobs": True, "top_logprobs": -1}, "top_logprobs"),
                                 ({"logprobs": "yes"}, "logprobs")]:
                with self.subTest(extra=extra):
                    r = requests.post(server.url + "/v1/chat/completions", json={**base, **extra}, timeout=30)
                    self.assertEqual(r.status_code, 400, r.text)
                    self.assertEqual(r.json()["error"]["param"], param)


class ChatTest(unittest.TestCase):
    """Chat on a synthetic model with SmolLM2's ChatML template (random weights: the text is gibberish, the
    protocol is what is tested) behind an API key; a queue of one answering 429."""

    def test_chat_openai_client_and_auth(self):
        model = synthetic_model("tiny", "--preset", "tiny")
        with Server(["--model", model], "--api-key", "sekret") as server:
            name = requests.get(server.url + "/v1/models", headers={"Authorization": "Bearer sekret"}, timeout=10).json()["data"][0]["id"]
            r = requests.post(server.url + "/v1/chat/completions", json={"model": name, "messages": []}, timeout=10)
            self.assertEqual(r.status_code, 401)
            self.assertEqual(r.json()["error"]["type"], "authentication_error")
            client = openai.OpenAI(base_url=server.url + "/v1", api_key="sekret")
            messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
            whole = client.chat.completions.create(model=name, messages=messages, max_tokens=12, temperature=0, seed=1)
            self.assertEqual(whole.choices[0].message.role, "assistant")
            self.assertGreater(whole.usage.prompt_tokens, 5)
            stream = client.chat.completions.create(model=name, messages=messages, max_tokens=12, temperature=0,
                                                    stream=True, stream_options={"include_usage": True})
            chunks = list(stream)
            self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            self.assertEqual(text, whole.choices[0].message.content)
            self.assertEqual(chunks[-1].usage.completion_tokens, whole.usage.completion_tokens)
            with self.assertRaises(openai.AuthenticationError):
                openai.OpenAI(base_url=server.url + "/v1", api_key="wrong").models.list()

            # Batch 1 + queue 1: with two long requests in, a third gets 429 at once. (200 tokens of this tiny
            # model take tens of ms: the holders must still be running when the third arrives, so the holders
            # use a slower model below.)

    def test_429_when_the_queue_is_full(self):
        # ~ms per token on one thread: two 200-token requests hold the batch of one and the queue of one for
        # a second or more, long after the third request is answered.
        model = synthetic_model("slow", "--preset", "tiny", "--dim", "512", "--hidden-dim", "1536", "--layers", "8",
                                "--heads", "8", "--kv-heads", "4", "--head-dim", "64", "--vocab", "512")
        with Server(["--model", model], "--max-batch", "1", "--max-queued", "1") as server:
            name = requests.get(server.url + "/v1/models", timeout=10).json()["data"][0]["id"]
            body = {"model": name, "prompt": [1, 5, 6, 7], "max_tokens": 200, "ignore_eos": True, "stream": True}
            holders = [requests.post(server.url + "/v1/completions", json=body, stream=True, timeout=120)
                       for _ in range(2)]
            third = requests.post(server.url + "/v1/completions", json=body, timeout=60)
            self.assertEqual(third.status_code, 429, third.text)
            self.assertEqual(third.json()["error"]["type"], "rate_limit_error")
            for h in holders:
                chunks, done = sse_events(h)
                self.assertTrue(done)
                h.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
