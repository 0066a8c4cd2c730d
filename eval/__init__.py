"""Evaluation: error rates (metrics), test sets (data), transcribers (providers), the CLI (eval) and the benchmark (bench)."""
