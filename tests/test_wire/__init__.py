"""Tests of the wire contract (edgestream.wire)."""
