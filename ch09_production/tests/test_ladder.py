"""`ch09_production ladder` end to end on stories260K (seconds): every row of both views is there, including
ch07's quantized rows and ch08's speculative rows; the correctness checks the ladder makes hold (the f32 rows'
tokens identical, each quantized format's batched tokens equal to its batch-1 tokens, speculative output equal
to plain greedy decoding of its target); every number in report.json is a number; report.md and ladder.png are
written. The speeds themselves are not checked (a test never asserts a timing)."""
import json
import os
import subprocess
import tempfile
import unittest

from serve_util import env_path, stories260k_args


def run_ladder(out_dir, *extra):
    args = [env_path("CH09_BINARY"), "ladder", *stories260k_args(), "--weights", "f32", "--threads", "1",
            "--max-tokens", "24", "--requests", "4", "--http-pairs", "1", "--bandwidth-gb-s", "10",
            "--out-dir", out_dir, *extra]
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)


class LadderTest(unittest.TestCase):
    def test_every_row_and_check(self):
        with tempfile.TemporaryDirectory() as out:
            result = run_ladder(out)
            self.assertEqual(result.returncode, 0, result.stdout)
            report = json.load(open(os.path.join(out, "report.json")))
            names = [row["variant"] for row in report["rows"]]
            for expected in ["single: naive", "single: + KV cache", "single: + paged engine (batch 1)",
                             "single: + quantized weights int8 (q8_0) (batch 1)",
                             "single: + quantized weights int4 (q4_1) (batch 1)",
                             "single: + speculative decoding (q4_1 target, prompt lookup draft)",
                             "single: + speculative decoding (q4_1 target, early exit 1/5 draft)",
                             "throughput: + continuous batching (4 at once)",
                             "throughput: + HTTP server (4 streaming clients)",
                             "throughput: + quantized weights int8 (q8_0) (4 at once)",
                             "throughput: + quantized weights int4 (q4_1) (4 at once)",
                             "throughput: + speculative decoding (prompt lookup in the engine, q4_1 target, 4 at once)"]:
                self.assertIn(expected, names)
            for row in report["rows"]:
                for key in ["tok_per_s", "vs_previous", "vs_naive", "usd_per_m_tokens", "bandwidth_pct"]:
                    self.assertIsInstance(row[key], (int, float), f"{row['variant']}: {key}")
                    self.assertGreaterEqual(row[key], 0)
                self.assertIsInstance(row["side"], bool)
            self.assertTrue(report["tokens_identical"])
            self.assertTrue(report["blocks_free_after"])
            self.assertTrue(report["speculative_identical"])
            self.assertEqual([q["format"] for q in report["quantized"]], ["q8_0", "q4_1"])
            for q in report["quantized"]:
                self.assertTrue(q["batched_equals_batch_1"], q)
                self.assertLessEqual(q["greedy_tokens_equal_to_f32"], q["compared_tokens"])
            self.assertEqual(len(report["speculative"]), 3)  # two single-stream drafts, prompt lookup in the engine
            for s in report["speculative"]:
                self.assertTrue(s["equals_plain_greedy"], s)
            for s in report["speculative"][:2]:
                self.assertLessEqual(s["target_passes"], s["tokens"])
            engine = report["speculative"][2]
            self.assertEqual(engine["requests"], 4)
            self.assertLessEqual(engine["accepted"], engine["proposed"])
            self.assertLessEqual(engine["speculating_steps"], engine["steps"])
            self.assertIsInstance(report["http_vs_in_process"], float)
            self.assertEqual(len(report["http_vs_in_process_pairs"]), 1)
            # Every step of both views ran.
            self.assertEqual(report["absent"], [])
            self.assertIn("| single | + quantized weights int8 (q8_0) (batch 1) |", open(os.path.join(out, "report.md")).read())
            with open(os.path.join(out, "ladder.png"), "rb") as png:
                self.assertEqual(png.read(8), b"\x89PNG\r\n\x1a\n")

    def test_no_quantized_lists_them_absent(self):
        with tempfile.TemporaryDirectory() as out:
            result = run_ladder(out, "--no-quantized", "--int4", "q4_0")
            self.assertEqual(result.returncode, 0, result.stdout)
            report = json.load(open(os.path.join(out, "report.json")))
            self.assertFalse(any("quantized" in row["variant"] or "speculative" in row["variant"] for row in report["rows"]))
            steps = [a["step"] for a in report["absent"]]
            self.assertIn("+ quantized weights (int8, int4)", steps)
            self.assertIn("+ speculative decoding", steps)


if __name__ == "__main__":
    unittest.main(verbosity=2)
