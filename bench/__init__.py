"""Benchmark workloads behind `keyscope bench …`; each prints a table of measured figures."""
