"""Loading an app like Core Tools + the Python worker do.

* settings: ``local.settings.json`` "Values" go into the environment without
  overriding variables that are set and not empty, and each one skipped is reported
  with Core Tools' message (StartHostAction.UpdateEnvironmentVariables in
  Azure/azure-functions-core-tools: ``string.IsNullOrEmpty`` decides, so an empty
  variable is replaced);
* host.json: ``extensions.http.routePrefix`` (default "api"), the optional
  ``functions`` allow-list;
* ``function_app.py`` imported with the app dir on ``sys.path``; the
  FunctionApp is the module attribute ``app`` or, like the worker, the single
  ``FunctionRegister`` instance found in the module;
* functions indexed from ``app.get_functions()`` and their raw bindings (what
  the worker sends to the host), with the worker's parameter checks;
* ``AzureWebJobs.<name>.Disabled`` = true/1 disables a function.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import sys
import types
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "FunctionInfo",
    "FunctionLoadError",
    "HostConfig",
    "find_function_app",
    "import_function_app",
    "index_functions",
    "load_local_settings",
    "read_host_json",
]


class FunctionLoadError(RuntimeError):
    """The app cannot be indexed (the host would refuse to start it)."""


@dataclass
class FunctionInfo:
    name: str
    func: Callable[..., Any]
    is_async: bool
    trigger_type: str
    trigger_name: str
    trigger: dict[str, Any]
    bindings: list[dict[str, Any]]
    wants_context: bool = False
    out_binding_names: list[str] = field(default_factory=list)
    in_binding_names: list[str] = field(default_factory=list)
    binding_types: dict[str, str] = field(default_factory=dict)
    disabled: bool = False

    @property
    def is_http(self) -> bool:
        return self.trigger_type.lower() == "httptrigger"

    @property
    def http_output_name(self) -> str | None:
        for b in self.bindings:
            if str(b.get("type", "")).lower() == "http" and _is_out(b):
                return str(b.get("name"))
        return None

    def is_http_output(self, name: str) -> bool:
        return self.binding_types.get(name, "").lower() == "http"


def _is_out(binding: Mapping[str, Any]) -> bool:
    return str(binding.get("direction", "")).lower() in ("out", "inout")


@dataclass
class HostConfig:
    route_prefix: str = "api"
    functions_allow_list: list[str] | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def read_host_json(app_dir: str | os.PathLike[str]) -> HostConfig:
    path = Path(app_dir) / "host.json"
    if not path.exists():
        return HostConfig()
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except ValueError as exc:
        raise FunctionLoadError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise FunctionLoadError(f"{path}: expected a JSON object")
    prefix = "api"
    http = (data.get("extensions") or {}).get("http") or {}
    if isinstance(http, dict) and "routePrefix" in http:
        prefix = str(http.get("routePrefix") or "")
    allow = data.get("functions")
    return HostConfig(
        route_prefix=prefix.strip("/"),
        functions_allow_list=[str(x) for x in allow] if isinstance(allow, list) else None,
        raw=data,
    )


def load_local_settings(
    path: str | os.PathLike[str],
    environ: MutableMapping[str, str] | None = None,
    skipped: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Apply "Values" to ``environ`` (default os.environ) where the variable is unset or
    empty; ``skipped`` gets Core Tools' message for each one the environment keeps.
    Return the file."""
    env = os.environ if environ is None else environ
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))
    except ValueError as exc:
        raise FunctionLoadError(f"{p}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise FunctionLoadError(f"{p}: expected a JSON object")
    if data.get("IsEncrypted"):
        raise FunctionLoadError(f"{p}: encrypted settings (IsEncrypted=true) are not supported")
    values = data.get("Values") or {}
    if not isinstance(values, dict):
        raise FunctionLoadError(f"{p}: 'Values' must be an object")
    for key, value in values.items():
        if env.get(key):
            if skipped is not None:
                skipped(
                    f"Skipping '{key}' from local settings as it's already defined in "
                    "current environment variables."
                )
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif value is None:
            text = ""
        else:
            text = value if isinstance(value, str) else json.dumps(value)
        env[str(key)] = text
    return data


def import_function_app(
    app_dir: str | os.PathLike[str], module_name: str = "function_app"
) -> types.ModuleType:
    """Import DIR/function_app.py; DIR goes first on sys.path (for its own imports)."""
    directory = str(Path(app_dir).resolve())
    script = Path(directory) / "function_app.py"
    if not script.exists():
        raise FunctionLoadError(f"{script} does not exist")
    if directory not in sys.path:
        sys.path.insert(0, directory)
    if module_name == "function_app":
        existing = sys.modules.get("function_app")
        if (
            existing is not None
            and Path(getattr(existing, "__file__", "") or "").resolve() == script
        ):
            return existing
        sys.modules.pop("function_app", None)
        return importlib.import_module("function_app")
    spec = importlib.util.spec_from_file_location(module_name, script)
    if spec is None or spec.loader is None:
        raise FunctionLoadError(f"cannot import {script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def find_function_app(module_or_app: Any) -> Any:
    """The FunctionApp: the object itself, module.app, or the one FunctionRegister in it."""
    if hasattr(module_or_app, "get_functions") and not isinstance(module_or_app, types.ModuleType):
        return module_or_app
    app = getattr(module_or_app, "app", None)
    if app is not None and hasattr(app, "get_functions"):
        return app
    from azure.functions.decorators.function_app import FunctionRegister

    found = [v for v in vars(module_or_app).values() if isinstance(v, FunctionRegister)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise FunctionLoadError(
            f"no FunctionApp found in {getattr(module_or_app, '__name__', module_or_app)!r}"
        )
    raise FunctionLoadError("more than one FunctionApp instance found in function_app.py")


def _get_functions(app: Any) -> list[Any]:
    try:
        return list(app.get_functions())
    except ValueError:
        # FunctionRegister.get_functions() remembers the names it has seen and
        # refuses a second call; reset that memo once and retry.
        if getattr(app, "functions_bindings", None):
            app.functions_bindings = None
            return list(app.get_functions())
        raise


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true")


def index_functions(
    app: Any,
    environ: Mapping[str, str] | None = None,
    allow_list: list[str] | None = None,
) -> list[FunctionInfo]:
    env = os.environ if environ is None else environ
    infos: list[FunctionInfo] = []
    for fn in _get_functions(app):
        name = str(fn.get_function_name())
        if allow_list is not None and name.lower() not in {n.lower() for n in allow_list}:
            continue
        user_func = fn.get_user_function()
        trigger = fn.get_trigger()
        bindings = [json.loads(b) for b in fn.get_raw_bindings()]
        trigger_name = str(trigger.name)
        trigger_dict = next(
            (
                b
                for b in bindings
                if b.get("name") == trigger_name and str(b.get("type", "")).endswith("Trigger")
            ),
            None,
        )
        if trigger_dict is None:
            trigger_dict = json.loads(json.dumps(trigger.get_dict_repr(), default=str))
        assert trigger_dict is not None
        binding_names = {str(b["name"]) for b in bindings if b.get("name") != "$return"}
        params = inspect.signature(user_func).parameters
        wants_context = "context" in params and "context" not in binding_names
        param_names = set(params) - ({"context"} if wants_context else set())
        missing_in_bindings = param_names - binding_names
        if missing_in_bindings:
            raise FunctionLoadError(
                f"FunctionLoadError: cannot load the {name} function: the following "
                f"parameters are declared in Python but not in the function definition: "
                f"{sorted(missing_in_bindings)!r}"
            )
        missing_in_python = binding_names - param_names
        if missing_in_python:
            raise FunctionLoadError(
                f"FunctionLoadError: cannot load the {name} function: the following "
                f"parameters are declared in the function definition but not in Python: "
                f"{sorted(missing_in_python)!r}"
            )
        out_names = [str(b["name"]) for b in bindings if _is_out(b) and b.get("name") != "$return"]
        in_names = [
            str(b["name"])
            for b in bindings
            if not _is_out(b) and b.get("name") not in ("$return", trigger_name)
        ]
        infos.append(
            FunctionInfo(
                name=name,
                func=user_func,
                is_async=inspect.iscoroutinefunction(user_func),
                trigger_type=str(trigger_dict.get("type")),
                trigger_name=trigger_name,
                trigger=trigger_dict,
                bindings=bindings,
                wants_context=wants_context,
                out_binding_names=out_names,
                in_binding_names=in_names,
                binding_types={str(b.get("name")): str(b.get("type")) for b in bindings},
                disabled=_truthy(env.get(f"AzureWebJobs.{name}.Disabled")),
            )
        )
    return infos
