"""What the CLI tells a user beyond its commands: the docs its help and docstrings cite exist, and ``aiops
completion`` prints a shell completion script generated from the parser (tried in a real bash)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aiops.cli import main

REPO = Path(__file__).resolve().parent.parent


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_every_doc_the_code_and_the_help_cite_exists(capsys):
    # A path in the repository, not the tail of a web address (``https://git.k8s.io/.../api-conventions.md``, one
    # split over two string literals: ``...0007-pod-re" "ady%2B%2B.md``).
    cited = {ref for file in (REPO / "aiops").rglob("*.py")
             for ref in re.findall(r"(?<![\w./%:-])[\w./-]+\.md\b", file.read_text(encoding="utf-8"))}
    assert "docs/case-folder.md" in cited
    assert sorted(ref for ref in cited if not (REPO / ref).is_file()) == []
    with pytest.raises(SystemExit):
        main(["diagnose", "--help"])
    help_text = capsys.readouterr().out
    assert "docs/case-folder.md" in help_text and "DESIGN.md" not in help_text


def _complete(script: Path, *words: str) -> list[str]:
    """What bash offers for the last of ``words`` with the script sourced, as it would on pressing tab."""
    line = " ".join(words)
    program = (f'source {script}\nCOMP_WORDS=({" ".join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n'
               f'COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}\n'
               f'_shtab_aiops {words[0]!r} {words[-1]!r} {words[-2]!r}\nprintf "%s\\n" "${{COMPREPLY[@]}}"\n')
    answer = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True, text=True,
                            timeout=30, check=True)
    return answer.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_offers_commands_flags_choices_and_folders(tmp_path, capsys):
    code, out, err = run(capsys, "completion", "bash")
    assert code == 0, err
    script = tmp_path / "aiops.bash"
    script.write_text(out)
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    assert _complete(script, "aiops", "mo") == ["models"]
    assert _complete(script, "aiops", "models", "") == ["list", "show", "promote", "rollback"]
    assert _complete(script, "aiops", "demo", "--sc") == ["--scenario"]
    assert _complete(script, "aiops", "demo", "--format", "") == ["text", "json"]
    assert _complete(script, "aiops", "completion", "") == ["bash", "zsh"]
    # Path arguments complete from the disk: a case is a folder, a config a file.
    (tmp_path / "case-a").mkdir()
    (tmp_path / "case-b.yaml").write_text("")
    assert _complete(script, "aiops", "diagnose", "--case", f"{tmp_path}/case-") == [f"{tmp_path}/case-a"]
    assert sorted(_complete(script, "aiops", "serve", "--config", f"{tmp_path}/case-")) == \
        [f"{tmp_path}/case-a", f"{tmp_path}/case-b.yaml"]


def test_zsh_completion_names_every_command(capsys):
    code, out, err = run(capsys, "completion", "zsh")
    assert code == 0, err
    assert out.startswith("#compdef aiops")
    for command in ("demo", "sim", "serve", "diagnose", "record", "validate", "history", "approve", "train",
                    "models", "completion"):
        assert f"{command}:" in out, command


def test_completion_without_shtab_is_one_line_exit_2(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "shtab", None)  # as if it were not installed: importing it fails
    assert run(capsys, "completion", "bash") == (
        2, "", "aiops: error: completion: needs the shtab package (pip install shtab)\n")


def test_completion_for_an_unknown_shell_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["completion", "fish"])
    assert exit_.value.code == 2
    assert "invalid choice: 'fish'" in capsys.readouterr().err
