"""The README's "Use it on your own model" block runs as printed (a user would paste it)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_own_model_example_runs(tmp_path, monkeypatch, capsys):
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Use it on your own model"):text.index("## A tour")]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "smaller than dense fp32" in out
    assert (tmp_path / "model.pt").exists() and (tmp_path / "model.fzp").exists()
