"""Helpers for testing evoforge and code built on it: conformance suites and test domains."""
