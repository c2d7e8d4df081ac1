"""Settings: environment over .env over pyproject over defaults; region and endpoint rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sagepipe.config import Settings, find_project_root
from sagepipe.errors import ConfigError


def test_precedence_and_dotenv_never_overrides(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.sagepipe]\nbucket = "from-pyproject"\nmax_parallel = 3\n'
    )
    (tmp_path / ".env").write_text(
        "SAGEPIPE_BUCKET=from-dotenv\nAWS_DEFAULT_REGION=eu-west-1\nAWS_ACCESS_KEY_ID=dotenv-key\n"
    )
    s = Settings.from_env(cwd=tmp_path, environ={"AWS_ACCESS_KEY_ID": "env-key"})
    assert s.bucket == "from-dotenv"
    assert s.region == "eu-west-1"
    assert s.env["AWS_ACCESS_KEY_ID"] == "env-key"
    assert s.max_parallel == 3
    assert (
        Settings.from_env(cwd=tmp_path, environ={"SAGEPIPE_BUCKET": "from-env"}).bucket
        == "from-env"
    )


def test_aws_region_is_honoured_before_default_region(tmp_path: Path) -> None:
    s = Settings.from_env(
        cwd=tmp_path, environ={"AWS_REGION": "ap-south-1", "AWS_DEFAULT_REGION": "us-west-2"}
    )
    assert s.region == "ap-south-1"


def test_endpoint_and_store(tmp_path: Path) -> None:
    s = Settings.from_env(
        cwd=tmp_path, environ={"AWS_ENDPOINT_URL": "http://a", "AWS_ENDPOINT_URL_S3": "http://b"}
    )
    assert s.endpoint_url == "http://b"
    with pytest.raises(ConfigError, match="SAGEPIPE_STORE='nfs'"):
        Settings.from_env(cwd=tmp_path, environ={"SAGEPIPE_STORE": "nfs"})


def test_credentials_are_not_in_repr(tmp_path: Path) -> None:
    s = Settings.from_env(cwd=tmp_path, environ={"AWS_SECRET_ACCESS_KEY": "very-secret"})
    assert "very-secret" not in repr(s)


def test_project_root_and_home(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.sagepipe]\n")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    assert find_project_root(nested) == tmp_path
    s = Settings.from_env(cwd=nested, environ={})
    assert s.home == tmp_path / ".sagepipe"
    moved = Settings.from_env(cwd=nested, environ={"SAGEPIPE_HOME": str(tmp_path / "elsewhere")})
    assert moved.history_path == tmp_path / "elsewhere" / "history.sqlite"


def test_bucket_layout_is_configurable(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.sagepipe.bucket]\nname = "team"\nfolders = ["code/", "runs/"]\n'
    )
    s = Settings.from_env(cwd=tmp_path, environ={})
    assert s.bucket == "team"
    assert s.bucket_folders == ("code/", "runs/")


@pytest.mark.parametrize(
    ("pyproject", "environ", "says"),
    [
        ("[tool.sagepipe]\nstore = 5\n", {}, "store must be a string"),
        ('[tool.sagepipe]\nmax_parallel = "x"\n', {}, "must be an integer"),
        ('[tool.sagepipe.images]\n"(" = "{python}"\n', {}, "not a valid regex"),
        ("[tool.sagepipe]\n", {"SAGEPIPE_BUCKET": "Bad_Name"}, "not valid on S3"),
        ("[tool.sagepipe]\n", {"SAGEPIPE_PREWARM": "sometimes"}, "on or off"),
        ("[tool.sagepipe]\n", {"AWS_ENDPOINT_URL": "localhost:9000"}, "http(s)://"),
        ("[tool.sagepipe]\n", {"SAGEPIPE_PYTHON": "/no/python"}, "not found"),
    ],
)
def test_wrong_values_are_one_config_error(
    tmp_path: Path, pyproject: str, environ: dict[str, str], says: str
) -> None:
    (tmp_path / "pyproject.toml").write_text(pyproject)
    with pytest.raises(ConfigError, match=re.escape(says)):
        Settings.from_env(cwd=tmp_path, environ=environ)


def test_home_naming_a_file_and_a_dotenv_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        Settings.from_env(cwd=tmp_path, environ={"SAGEPIPE_HOME": str(tmp_path / "afile")})
    (tmp_path / ".env").write_bytes(b"A=\xff\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        Settings.from_env(cwd=tmp_path, environ={})


def test_overrides_are_checked_too(tmp_path: Path) -> None:
    s = Settings.from_env(cwd=tmp_path, environ={})
    assert s.with_overrides(bucket="other", role_arn=None).bucket == "other"
    with pytest.raises(ConfigError, match="not valid on S3"):
        s.with_overrides(bucket="x")


def test_image_settings_from_environment_pyproject_and_defaults(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.sagepipe]\nimages_strict = true\ncache_dir = "/srv/envs"\n'
    )
    s = Settings.from_env(cwd=tmp_path, environ={"SAGEPIPE_IMAGES_OFFLINE": "1"})
    assert (s.images_strict, s.images_offline, s.cache_dir) == (True, True, Path("/srv/envs"))
    moved = Settings.from_env(
        cwd=tmp_path,
        environ={"SAGEPIPE_CACHE_DIR": str(tmp_path / "c"), "SAGEPIPE_IMAGES_STRICT": "off"},
    )
    assert moved.cache_dir == tmp_path / "c" and not moved.images_strict
    plain = Settings.from_env(cwd=tmp_path / "..", environ={"XDG_CACHE_HOME": "/x"})
    assert plain.cache_dir == Path("/x/sagepipe") and not plain.images_offline
    with pytest.raises(ConfigError, match="SAGEPIPE_IMAGES_STRICT / images_strict"):
        Settings.from_env(cwd=tmp_path, environ={"SAGEPIPE_IMAGES_STRICT": "maybe"})


def test_dotenv_is_found_above_the_working_directory_and_not_loaded_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    (tmp_path / ".env").write_text("SAGEPIPE_BUCKET=from-parent-dotenv\n")
    below = tmp_path / "a" / "b"
    below.mkdir(parents=True)
    monkeypatch.chdir(below)
    assert Settings.from_env(cwd=below, environ={}).bucket == "from-parent-dotenv"
    (tmp_path / ".env").unlink()
    (tmp_path / "a" / ".env").mkdir()  # not a file: ignored, as python-dotenv does
    assert Settings.from_env(cwd=below, environ={}).bucket == "sagepipe-local"
    code = (
        "import sys; from sagepipe.config import Settings; Settings.from_env(environ={}); "
        "print('dotenv' in sys.modules)"
    )
    for where, loads in ((below, True), (tmp_path, False)):
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=where, capture_output=True, text=True, check=True
        )
        assert done.stdout.strip() == str(loads)
