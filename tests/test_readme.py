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


def test_readme_federated_example_runs(tmp_path, monkeypatch, capsys):
    text = README.read_text(encoding="utf-8")
    own = re.findall(r"```python\n(.*?)```", text[text.index("## Use it on your own model"):text.index("## A tour")], re.S)[0]
    fed = text[text.index("## Federated learning"):text.index("## Python API")]
    (code,) = re.findall(r"```python\n(.*?)```", fed, re.S)
    monkeypatch.chdir(tmp_path)
    scope = {"__name__": "readme"}
    exec(compile(own, "README.md", "exec"), scope)
    exec(compile(code, "README.md", "exec"), scope)
    assert "uplink" in capsys.readouterr().out
    assert scope["fl"].Base.from_bytes(scope["blob"]).fingerprint == scope["base"].fingerprint
