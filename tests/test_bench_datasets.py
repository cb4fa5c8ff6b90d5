"""Where benchmark data is found (bench.datasets): one rule for benchmarks and tests, and `make bench-data`'s link."""

from __future__ import annotations

from pathlib import Path

from bench import datasets


def _nab(folder: Path) -> Path:
    marker = folder / "nab" / datasets.DATASETS["nab"].marker
    marker.parent.mkdir(parents=True)
    marker.write_text("{}")
    return folder


def test_the_variable_wins_and_a_missing_set_says_where_it_looked_and_how_to_get_it(tmp_path: Path) -> None:
    env = {"AIOPS_BENCH_DATA": str(tmp_path)}
    assert datasets.path("nab", env) == tmp_path / "nab"
    why = datasets.missing("nab", env)
    assert why is not None and str(tmp_path / "nab") in why and "numenta/NAB" in why and "make bench-data" in why
    _nab(tmp_path)
    assert datasets.missing("nab", env) is None
    assert datasets.missing("loghub_2k", env) is not None


def test_link_points_at_a_folder_of_data_sets_and_replaces_an_old_link(tmp_path: Path, capsys) -> None:
    source, dest = _nab(tmp_path / "src"), tmp_path / "data"
    dest.symlink_to(tmp_path, target_is_directory=True)  # an old link is replaced
    assert datasets.link(source, dest) == 1  # linked; 1 because loghub and pyrca are still missing
    assert dest.resolve() == source.resolve()
    out = capsys.readouterr().out
    assert "nab         ok" in out and "MISSING: loghub_2k" in out


def test_link_refuses_what_holds_no_data_set_and_leaves_no_link(tmp_path: Path, capsys) -> None:
    dest = tmp_path / "data"
    assert datasets.link(tmp_path / "nope", dest) == 2
    assert "is not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert datasets.link(tmp_path / "empty", dest) == 2
    assert "holds none of nab" in capsys.readouterr().err
    assert not dest.exists() and not dest.is_symlink()
    dest.mkdir()  # a real folder is the user's: never replaced
    assert datasets.link(_nab(tmp_path / "src"), dest) == 2
    assert dest.is_dir() and not dest.is_symlink()
