"""The server under load and faults, over loopback: 32 concurrent streaming clients each get the greedy text
of the same request sent alone and the KV pool is full again afterwards; a client that disconnects
mid-stream has its request aborted and its blocks freed; SIGTERM drains the requests in flight and exits 0."""
import concurrent.futures
import json
import signal
import socket
import time
import unittest

from serve_util import Server, require_modules, sse_events, stories260k_args, synthetic_model

require_modules("requests")
import requests  # noqa: E402

# stories260K's tokenizer: ids 3..511 are ordinary pieces.
PROMPTS = [[1] + [3 + (7 * i + 13 * j) % 500 for j in range(4 + i % 9)] for i in range(32)]


def stream_text(url, model, prompt, max_tokens):
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "ignore_eos": True}
    with requests.post(url + "/v1/completions", json=body, stream=True, timeout=300) as r:
        assert r.status_code == 200, r.text
        chunks, done = sse_events(r)
    assert done
    return "".join(c["choices"][0]["text"] for c in chunks if c["choices"])


class LoadTest(unittest.TestCase):
    def test_32_concurrent_streams_equal_their_solo_text(self):
        with Server(stories260k_args(), "--max-batch", "32") as server:
            alone = [stream_text(server.url, "stories260K", p, 48) for p in PROMPTS]
            blocks_total = server.wait_blocks_free()['infer_kv_blocks{state="free"}']
            with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
                together = list(pool.map(lambda p: stream_text(server.url, "stories260K", p, 48), PROMPTS))
            for i, (a, b) in enumerate(zip(alone, together)):
                self.assertEqual(a, b, f"request {i}")
            self.assertGreater(len(set(alone)), 1)  # different prompts, different texts
            m = server.wait_blocks_free()
            self.assertEqual(m['infer_kv_blocks{state="free"}'], blocks_total)

    def test_speculative_prompt_lookup_gives_the_plain_texts(self):
        # --speculative prompt-lookup: ch08's prompt lookup inside the engine. Greedy texts equal the plain
        # server's, alone and 8 at once; /metrics reports the acceptance of the guesses.
        # Story openings that repeat themselves: the continuation copies them, which prompt lookup guesses.
        names = ["Lily", "Tom", "Sue", "Ben", "Mia", "Max", "Sam", "Amy"]
        prompts = [f"Once upon a time, there was a little girl named {n}. {n} liked to play. Once upon a time"
                   for n in names]
        with Server(stories260k_args(), "--max-batch", "8") as plain:
            expected = [stream_text(plain.url, "stories260K", p, 48) for p in prompts]
        with Server(stories260k_args(), "--max-batch", "8", "--speculative", "prompt-lookup") as server:
            alone = [stream_text(server.url, "stories260K", p, 48) for p in prompts]
            with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
                together = list(pool.map(lambda p: stream_text(server.url, "stories260K", p, 48), prompts))
            self.assertEqual(alone, expected)
            self.assertEqual(together, expected)
            m = server.wait_blocks_free()
            acceptance = m["infer_speculative_acceptance_ratio"]
            self.assertGreater(acceptance, 0.0)  # stories260K repeats itself: prompt lookup guesses right
            self.assertLessEqual(acceptance, 1.0)
            self.assertEqual(m['infer_kv_blocks{state="used"}'], 0)

    def test_disconnect_mid_stream_frees_blocks(self):
        # A model slow enough (~ms per token on one thread) that the request is still running when we leave.
        model = synthetic_model("slow", "--preset", "tiny", "--dim", "512", "--hidden-dim", "1536", "--layers", "8",
                                "--heads", "8", "--kv-heads", "4", "--head-dim", "64", "--vocab", "512")
        with Server(["--model", model]) as server:
            name = requests.get(server.url + "/v1/models", timeout=10).json()["data"][0]["id"]
            before = server.wait_blocks_free()
            body = {"model": name, "prompt": [1, 5, 6, 7], "max_tokens": 240, "ignore_eos": True, "stream": True}
            payload = json.dumps(body).encode()
            client = socket.create_connection(("127.0.0.1", server.port))
            client.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
            received = b""
            while received.count(b"data: ") < 3:
                received += client.recv(4096)
            self.assertGreater(server.metrics()["infer_requests_running"], 0, "the request finished before the disconnect")
            client.close()  # the client goes away mid-stream
            after = server.wait_blocks_free(timeout=10)
            self.assertEqual(after['infer_kv_blocks{state="free"}'], before['infer_kv_blocks{state="free"}'])
            self.assertEqual(after["infer_requests_cancelled_total"], before["infer_requests_cancelled_total"] + 1)
            # The generation stopped early: far fewer than 240 tokens were produced.
            self.assertLess(after["infer_engine_generated_tokens_total"] - before["infer_engine_generated_tokens_total"], 200)

    def test_disconnect_while_waiting_for_a_whole_response_frees_blocks(self):
        # Not streamed: nothing is written until the end, so only the server watching the connection notices.
        model = synthetic_model("slow", "--preset", "tiny", "--dim", "512", "--hidden-dim", "1536", "--layers", "8",
                                "--heads", "8", "--kv-heads", "4", "--head-dim", "64", "--vocab", "512")
        with Server(["--model", model]) as server:
            name = requests.get(server.url + "/v1/models", timeout=10).json()["data"][0]["id"]
            before = server.wait_blocks_free()
            body = {"model": name, "prompt": [1, 5, 6, 7], "max_tokens": 240, "ignore_eos": True}
            payload = json.dumps(body).encode()
            client = socket.create_connection(("127.0.0.1", server.port))
            client.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload)
            deadline = time.time() + 30
            while server.metrics()["infer_engine_generated_tokens_total"] < before["infer_engine_generated_tokens_total"] + 3:
                self.assertLess(time.time(), deadline, "the request never started generating")
                time.sleep(0.01)
            self.assertGreater(server.metrics()["infer_requests_running"], 0, "the request finished before the disconnect")
            client.close()  # the client goes away while the server is still generating
            left = time.time()
            after = server.wait_blocks_free(timeout=10)
            self.assertLess(time.time() - left, 5.0)
            self.assertEqual(after['infer_kv_blocks{state="free"}'], before['infer_kv_blocks{state="free"}'])
            self.assertEqual(after["infer_requests_cancelled_total"], before["infer_requests_cancelled_total"] + 1)
            self.assertLess(after["infer_engine_generated_tokens_total"] - before["infer_engine_generated_tokens_total"], 200)
            # The server carries on.
            r = requests.post(server.url + "/v1/completions", json={**body, "max_tokens": 4}, timeout=60)
            self.assertEqual(r.status_code, 200, r.text)

    def test_sigterm_drains_in_flight_requests_and_exits_0(self):
        model = synthetic_model("slow", "--preset", "tiny", "--dim", "512", "--hidden-dim", "1536", "--layers", "8",
                                "--heads", "8", "--kv-heads", "4", "--head-dim", "64", "--vocab", "512")
        server = Server(["--model", model], "--grace-seconds", "60").__enter__()
        name = requests.get(server.url + "/v1/models", timeout=10).json()["data"][0]["id"]
        body = {"model": name, "prompt": [1, 5, 6, 7], "max_tokens": 120, "ignore_eos": True, "stream": True,
                "stream_options": {"include_usage": True}}
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            def run():
                with requests.post(server.url + "/v1/completions", json=body, stream=True, timeout=120) as r:
                    return sse_events(r)
            futures = [pool.submit(run) for _ in range(2)]
            while server.metrics()["infer_requests_running"] < 2:
                time.sleep(0.02)
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            # Draining: new requests are refused, /health says so.
            self.assertEqual(requests.get(server.url + "/health", timeout=5).status_code, 503)
            late = requests.post(server.url + "/v1/completions", json={**body, "stream": False, "stream_options": None},
                                 timeout=5)
            self.assertEqual(late.status_code, 503, late.text)
            for future in futures:
                chunks, done = future.result()
                self.assertTrue(done)
                self.assertEqual(chunks[-1]["usage"]["completion_tokens"], 120)
        self.assertEqual(server.process.wait(timeout=60), 0)
        with self.assertRaises(requests.ConnectionError):  # gone
            requests.get(server.url + "/health", timeout=5)
        server.__exit__(None, None, None)
        self.assertIn("draining", server.output)


if __name__ == "__main__":
    unittest.main(verbosity=2)
