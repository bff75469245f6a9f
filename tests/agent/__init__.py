"""Tests of the per-host agent (obshub_agent)."""
