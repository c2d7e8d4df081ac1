"""Image environments: each step runs on its SageMaker image's Python and packages.

The public API, for the engine and the CLI:

- ``resolve(image_uri, user_map, *, project_root=None) -> ImageSpec`` (``match``)
- ``choose_cached(spec, cache_dir) -> Environment | None`` (one marker read; the fast path)
- ``ensure_environment(spec, cache_dir, *, offline, strict, allow_download, progress)
  -> Environment`` (builds with uv the first time)
- ``derived_environment(env, requirements_path, cache_dir, *, offline, log) -> Environment``
  (script mode's ``requirements.txt``)
- ``default_cache_dir(environ)``, ``find_interpreters(...)``, ``load_catalogue()``

Errors: ``ConfigError`` for an unknown image or a strict mismatch; ``EnvironmentBuildError`` for
an offline, conflicting or uninstallable build. Each is one line.
"""

from sagepipe.images.catalogue import CatalogueEntry, load_catalogue
from sagepipe.images.environments import (
    Environment,
    choose_cached,
    default_cache_dir,
    derived_environment,
    ensure_environment,
    list_environments,
    spec_key,
)
from sagepipe.images.installer import EnvironmentBuildError, uv_bin
from sagepipe.images.interpreters import Interpreter, choose_interpreter, find_interpreters
from sagepipe.images.match import ImageSpec, parse_image_uri, resolve

__all__ = [
    "CatalogueEntry",
    "Environment",
    "EnvironmentBuildError",
    "ImageSpec",
    "Interpreter",
    "choose_cached",
    "choose_interpreter",
    "default_cache_dir",
    "derived_environment",
    "ensure_environment",
    "find_interpreters",
    "list_environments",
    "load_catalogue",
    "parse_image_uri",
    "resolve",
    "spec_key",
    "uv_bin",
]
