"""Settings: defaults, TOML file, environment overrides, and one clear sentence for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.errors import ConfigError
from registry.settings import DEFAULT_PORT, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for var in [v for v in os.environ if v.startswith("MODELPACK_")]:
        monkeypatch.delenv(var)


def test_defaults_are_embedded_and_local(tmp_path: Path) -> None:
    s = load_settings(None, storage={"data_dir": str(tmp_path)})
    assert s.server.host == "127.0.0.1" and s.server.port == DEFAULT_PORT not in (5001, 8080)
    assert s.database_url == f"sqlite+aiosqlite:///{tmp_path / 'index.sqlite3'}"
    assert s.replication.replication_min == 2 and s.replication.replication_max == 3


def test_file_then_env_then_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[server]\nport = 9001\nhost = "127.0.0.1"\n[jobs]\nworkers = 7\n')
    assert load_settings(cfg).server.port == 9001
    monkeypatch.setenv("MODELPACK_SERVER__PORT", "9002")
    s = load_settings(cfg)
    assert s.server.port == 9002 and s.jobs.workers == 7
    assert load_settings(cfg, server={"port": 9003}).server.port == 9003


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[server]\nprot = 1\n", "unknown setting 'server.prot' in config file"),
        ("[nosuch]\nx = 1\n", "unknown setting 'nosuch'"),
        ("[server]\nport = 70000\n", "bad value for 'server.port' in config file"),
        ("[replication]\nreplication_min = 5\nreplication_max = 2\n", "replication_min (5) exceeds"),
        ("[unixfs]\nhash_workers = 0\n", "bad value for 'unixfs.hash_workers'"),
        ("[server\n", "is not valid TOML"),
        ('[database]\nurl = "mysql://x"\n', "unsupported database url 'mysql://x'"),
    ],
)
def test_bad_config_file_names_the_key_and_value(tmp_path: Path, toml: str, message: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as e:
        load_settings(cfg)
    assert message in e.value.message
    assert "\n" not in e.value.message


def test_bad_environment_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPACK_SERVER__PORT", "eighty")
    with pytest.raises(ConfigError, match="environment variable MODELPACK_SERVER__PORT: 'eighty'"):
        load_settings(None)
    monkeypatch.delenv("MODELPACK_SERVER__PORT")
    monkeypatch.setenv("MODELPACK_SREVER__PORT", "1")
    with pytest.raises(ConfigError, match="MODELPACK_SREVER__PORT"):
        load_settings(None)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("name", "intent"),
    [
        ("MODELPACK_DATA_DIR", "MODELPACK_STORAGE__DATA_DIR"),  # the key without its section
        ("MODELPACK_SREVER__PORT", "MODELPACK_SERVER__PORT"),  # a mistyped section
        ("MODELPACK_SERVER__PROT", "MODELPACK_SERVER__PORT"),  # a mistyped key in a known section
        ("MODELPACK_DATABASE_URL", "MODELPACK_DATABASE__URL"),  # one underscore short
        ("MODELPACK_WORKER", "MODELPACK_JOBS__WORKERS"),  # a key close to a known one, no section
        ("MODELPACK_REGISTY", "MODELPACK_REGISTRY"),  # the CLI's own variables are candidates too
    ],
)
def test_a_mistyped_variable_names_its_likely_intent(
    monkeypatch: pytest.MonkeyPatch, name: str, intent: str
) -> None:
    monkeypatch.setenv(name, "1")
    with pytest.raises(ConfigError) as e:
        load_settings(None)
    assert f"environment variable {name}; did you mean {intent}?" in e.value.message
    assert "\n" not in e.value.message and e.value.message.count("?") == 1


def test_an_unknown_variable_like_no_setting_gets_no_guess(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPACK_ZZZ", "1")
    with pytest.raises(ConfigError) as e:
        load_settings(None)
    assert e.value.message == "unknown setting in environment variable MODELPACK_ZZZ"


def test_a_mistyped_file_key_names_its_likely_intent(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'server.prot' .*; did you mean server.port\?"):
        load_settings(cfg)


@pytest.mark.parametrize("name", ["MODELPACK_REGISTRY", "MODELPACK_TOKEN", "MODELPACK_NODE_TOKEN"])
def test_the_cli_variables_are_not_settings_and_not_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    monkeypatch.setenv(name, "x")
    assert load_settings(None, storage={"data_dir": str(tmp_path)}).server.port == DEFAULT_PORT
