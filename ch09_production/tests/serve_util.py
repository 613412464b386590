"""Shared by the ch09 loopback tests: start `ch09_production serve` on a free port, wait for /health, stop it.

The tests get their paths from the environment (ch09_production/CMakeLists.txt sets them for ctest):
  CH09_BINARY   the ch09_production executable
  SYNTH_BINARY  tools/synth (writes the synthetic models the chat and load tests use)
  SHARED_MODELS ../shared/models (stories260K)
  SCRATCH_DIR   a folder for the synthetic models
A test that cannot run prints "SKIPPED: <why>" (ctest shows it as skipped) and exits 0.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request


def skip(reason):
    print(f"SKIPPED: {reason}")
    sys.exit(0)


def require_modules(*names):
    for name in names:
        try:
            __import__(name)
        except ImportError:
            skip(f"python module '{name}' missing (scripts/test.sh installs it in build/<preset>/serve-venv)")


def env_path(name):
    value = os.environ.get(name)
    if not value:
        skip(f"{name} not set (run through ctest)")
    return value


def find_model_file(name):
    """The model search order of common/include/infer/core/model_search.h: INFER_MODELS_DIR, the repository's
    models/, then ../shared/models (SHARED_MODELS); none of them with INFER_HIDE_SHARED_MODELS=1."""
    if os.environ.get("INFER_HIDE_SHARED_MODELS") == "1":
        return None
    repo_models = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models")
    folders = [os.environ.get("INFER_MODELS_DIR"), repo_models, env_path("SHARED_MODELS")]
    for folder in folders:
        if folder and os.path.exists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return None


def stories260k_args():
    model = find_model_file(os.path.join("stories260K", "stories260K.bin"))
    tokenizer = find_model_file(os.path.join("stories260K", "tok512.bin"))
    if model is None or tokenizer is None:
        hidden = os.environ.get("INFER_HIDE_SHARED_MODELS") == "1"
        if os.environ.get("INFER_REQUIRE_MODELS") == "1" and not hidden:  # CI: a missing model fails
            print("FAILED: stories260K/stories260K.bin or tok512.bin missing and INFER_REQUIRE_MODELS=1")
            sys.exit(1)
        skip("stories260K/stories260K.bin or tok512.bin missing (searched INFER_MODELS_DIR, models/, ../shared/models)")
    return ["--model", model, "--tokenizer", tokenizer]


def synthetic_model(name, *synth_args):
    """A synthetic GGUF (ChatML template, random weights) written once per scratch folder."""
    scratch = env_path("SCRATCH_DIR")
    os.makedirs(scratch, exist_ok=True)
    path = os.path.join(scratch, name + ".gguf")
    if not os.path.exists(path):
        subprocess.run([env_path("SYNTH_BINARY"), "--out", path, *synth_args], check=True,
                       stdout=subprocess.DEVNULL)
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`ch09_production serve` on a free loopback port, for a `with` block."""

    def __init__(self, model_args, *extra):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [env_path("CH09_BINARY"), "serve", *model_args, "--port", str(self.port), "--threads", "1", *extra]
        self.process = None

    def __enter__(self):
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.process.stdout.read()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("server did not answer /health within 60 s")

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.output = self.process.stdout.read()
        self.process.stdout.close()

    def metrics(self):
        """The /metrics samples as {"name{labels}": value}."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as response:
            text = response.read().decode()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples

    def wait_blocks_free(self, timeout=30):
        """Waits until nothing runs and every KV block is free; returns the last metrics."""
        deadline = time.time() + timeout
        while True:
            m = self.metrics()
            idle = m["infer_requests_running"] == 0 and m["infer_requests_waiting"] == 0
            if idle and m['infer_kv_blocks{state="used"}'] == 0:
                return m
            if time.time() > deadline:
                raise AssertionError(f"blocks not free after {timeout} s: {m}")
            time.sleep(0.05)


def sse_events(response):
    """The JSON chunks of a streamed response (requests, stream=True) and whether [DONE] ended it."""
    chunks, done = [], False
    for line in response.iter_lines(decode_unicode=True):
        if not line or not line.startswith("data: "):
            continue
        data = line[len("data: "):]
        if data == "[DONE]":
            done = True
            continue
        chunks.append(json.loads(data))
    return chunks, done
