"""Benchmarks: `make bench` (suite.py), `make bench-delivery` (delivery.py), chart.py; see docs/performance.md."""
