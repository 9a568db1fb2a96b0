"""The run-summary panel renders any JSON object as a key/value table."""

from __future__ import annotations

from vggt_sparse_ns.viewer.summary import flatten, summary_markdown


def test_nested_objects_become_dotted_keys_in_order():
    summary = {"frames": 20, "graph": {"edges": 42, "degree": {"mean": 4.2}}, "empty": {}}
    assert flatten(summary) == [("frames", 20), ("graph.edges", 42), ("graph.degree.mean", 4.2), ("empty", {})]


def test_table_shows_every_key_with_readable_values():
    text = summary_markdown({"strategy": "a|b", "seconds": 1.23456789, "stages": ["load", "run"], "ok": True})
    lines = text.splitlines()
    assert lines[:2] == ["| key | value |", "| --- | --- |"]
    assert "| strategy | a\\|b |" in lines
    assert "| seconds | 1.235 |" in lines
    assert '| stages | ["load", "run"] |' in lines
    assert "| ok | true |" in lines


def test_long_values_are_cut_and_missing_summary_is_said():
    assert "…" in summary_markdown({"edges": list(range(100))})
    assert "No `vggt/summary.json`" in summary_markdown(None)
