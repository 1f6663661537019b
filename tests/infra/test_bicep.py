"""Static checks of the azd infrastructure (infra/*.bicep, main.parameters.json, azure.yaml).

There is no Bicep compiler and no Azure access in CI, so every Bicep file is parsed with
pycep-parser and the resulting JSON is inspected. pycep renders identifiers and string literals
the same way (``scope: rg`` and ``name: 'rg'`` both become ``"rg"``), so references are resolved
by name against the file's params/vars, which is what the helpers below do.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

REQUIRED_APP_SETTINGS = (
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__tableServiceUri",
    "COMMUNICATION_SERVICES_ENDPOINT",
    "IDENTITY_TABLE_SERVICE_URI",
    "IDENTITY_TABLE_NAME",
    "AZURE_CLIENT_ID",
    "AUTH_MODE",
    "AUTH_ISSUER",
    "AUTH_AUDIENCE",
    "AUTH_ADMIN_ROLE",
    "ALLOWED_SCOPES",
    "DEFAULT_SCOPES",
    "TOKEN_LIFETIME_MINUTES",
    "DELETION_GRACE_MINUTES",
    "PURGE_SCHEDULE",
    "REVOKE_QUEUE_NAME",
    "EVENT_ACTIONS",
)

# Settings consumed by the Functions host / Azure SDKs rather than by shared/config.py.
PLATFORM_SETTING_PREFIXES = ("AzureWebJobs", "APPLICATIONINSIGHTS_", "FUNCTIONS_", "WEBSITE_")
PLATFORM_SETTINGS = frozenset({"AZURE_CLIENT_ID"})

FORBIDDEN_APP_SETTINGS = frozenset(
    {
        "AzureWebJobsStorage",
        "COMMUNICATION_SERVICES_CONNECTION_STRING",
        "IDENTITY_TABLE_CONNECTION",
        "IDENTITY_TABLE_CONNECTION_STRING",
        "APPINSIGHTS_INSTRUMENTATIONKEY",
        "AZURE_CLIENT_SECRET",
    }
)

ROLE_STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
ROLE_STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
ROLE_STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
ROLE_MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
ROLE_CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
ROLE_COMMUNICATION_AND_EMAIL_SERVICE_OWNER = "09976791-48a7-449e-bb21-39d1a415f350"
ROLE_STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
ACS_ROLES = frozenset({ROLE_CONTRIBUTOR, ROLE_COMMUNICATION_AND_EMAIL_SERVICE_OWNER})

STORAGE_ACCOUNTS = "Microsoft.Storage/storageAccounts"
COMMUNICATION_SERVICES = "Microsoft.Communication/communicationServices"
APP_INSIGHTS = "Microsoft.Insights/components"
ROLE_ASSIGNMENTS = "Microsoft.Authorization/roleAssignments"
BLOB_CONTAINERS = "Microsoft.Storage/storageAccounts/blobServices/containers"

DEAD_LETTER_CONTAINER = "eventgrid-deadletter"

GUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
INTERPOLATION_RE = re.compile(r"\$\{([^}]*)\}")
IDENTIFIER_RE = re.compile(r"[A-Za-z_]\w*")


# ---------------------------------------------------------------------------------------------
# Parsing and lookup helpers
# ---------------------------------------------------------------------------------------------


@functools.cache
def _parser() -> BicepParser:
    return BicepParser()


@functools.cache
def parse(path: Path) -> dict[str, Any]:
    return _parser().parse(file_path=path)


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def has_default(param: dict[str, Any]) -> bool:
    """pycep reports a parameter without default as ``default: None``."""
    return param.get("default") is not None


def unwrap(resource_or_module: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Return (body, condition) of a resource/module, looking through `= if (cond) {...}`."""
    config = resource_or_module["config"]
    if "condition" in config and isinstance(config.get("config"), dict):
        return config["config"], config["condition"]
    return config, None


def resources(type_: str | None = None) -> Iterator[tuple[Path, str, dict[str, Any]]]:
    """Every resource declaration in infra/, optionally filtered by type (case-insensitive)."""
    for path in BICEP_FILES:
        for name, res in parse(path).get("resources", {}).items():
            if type_ is None or res["type"].lower() == type_.lower():
                yield path, name, res


def single(type_: str, *, existing: bool = False) -> tuple[Path, str, dict[str, Any]]:
    found = [r for r in resources(type_) if r[2]["existing"] is existing]
    kind = f"existing {type_}" if existing else type_
    assert len(found) == 1, f"expected exactly one {kind}: {found}"
    return found[0]


def leaves(node: Any) -> Iterator[Any]:
    """All scalar values in a parsed expression tree."""
    if isinstance(node, dict):
        for value in node.values():
            yield from leaves(value)
    elif isinstance(node, list):
        for value in node:
            yield from leaves(value)
    else:
        yield node


def resolve(doc: dict[str, Any], node: Any, _seen: frozenset[str] = frozenset()) -> set[Any]:
    """Possible scalar values of an expression: literals plus what referenced vars/param
    defaults evaluate to (including names used in ``${...}`` interpolations)."""
    out: set[Any] = set()
    variables = doc.get("variables", {})
    params = doc.get("parameters", {})
    for leaf in leaves(node):
        if not isinstance(leaf, str):
            out.add(leaf)
            continue
        names = {leaf} if leaf in variables or leaf in params else set()
        if leaf not in variables and not has_default(params.get(leaf, {})):
            out.add(leaf)  # a literal, or a parameter without default (resolved by callers)
        for expr in INTERPOLATION_RE.findall(leaf):
            names.update(IDENTIFIER_RE.findall(expr))
        for name in names - _seen:
            if name in variables:
                out |= resolve(doc, variables[name]["value"], _seen | {name})
            elif name in params and has_default(params[name]):
                out |= resolve(doc, params[name]["default"], _seen | {name})
    return out


def module_calls(target: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(caller file, module body) for every local module that deploys `target`."""
    calls = []
    for path in BICEP_FILES:
        for module in parse(path).get("modules", {}).values():
            if module["type"] != "local":
                continue
            if (path.parent / module["detail"]["path"]).resolve() == target.resolve():
                calls.append((path, unwrap(module)[0]))
    return calls


def param_values(path: Path, name: str) -> set[Any]:
    """Possible values of param `name` of `path`: its default plus what callers pass."""
    doc = parse(path)
    param = doc["parameters"][name]
    values = resolve(doc, param["default"]) if has_default(param) else set()
    for caller, body in module_calls(path):
        if name in body.get("params", {}):
            values |= resolve(parse(caller), body["params"][name])
    return values


def value_of(path: Path, node: Any) -> set[Any]:
    """Possible values of an expression in `path`, following params through module calls."""
    doc = parse(path)
    values: set[Any] = set()
    for value in resolve(doc, node):
        if isinstance(value, str) and value in doc.get("parameters", {}):
            values |= param_values(path, value)
        else:
            values.add(value)
    return values


def accessor(node: Any) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]`` (a bare identifier as ``["a"]``), else None."""
    if isinstance(node, str):
        return [node]
    operator = node.get("operator") if isinstance(node, dict) else None
    if not operator or operator.get("type") != "property_accessor":
        return None
    left = accessor(operator["operands"]["operand_1"])
    right = accessor(operator["operands"]["operand_2"])
    return left + right if left and right else None


def referenced_resources(path: Path, node: Any, type_: str) -> set[tuple[Path, str]]:
    """Resources of `type_` (file, symbol) that an expression in `path` names: a parameter is
    followed through every module call, ``module.outputs.x`` into the module's output ``x``,
    and ``symbol`` / ``symbol.prop`` is a resource of this file."""
    doc = parse(path)
    chain = accessor(node)
    if not chain:
        return set()
    found: set[tuple[Path, str]] = set()
    if len(chain) == 1 and chain[0] in doc.get("parameters", {}):
        for caller, body in module_calls(path):
            if chain[0] in body.get("params", {}):
                found |= referenced_resources(caller, body["params"][chain[0]], type_)
        return found
    module = doc.get("modules", {}).get(chain[0])
    if module and len(chain) == 3 and chain[1] == "outputs":
        target = (path.parent / module["detail"]["path"]).resolve()
        output = parse(target)["outputs"][chain[2]]["value"]
        for leaf in set(leaves(output)):
            found |= referenced_resources(target, leaf, type_)
        return found
    resource = doc.get("resources", {}).get(chain[0])
    if resource and resource["type"].lower() == type_.lower():
        found.add((path, chain[0]))
    return found


def get(node: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        assert isinstance(node, dict), f"{dotted!r}: not an object at {key!r}"
        assert key in node, f"missing {dotted!r} (at {key!r})"
        node = node[key]
    return node


def app_settings() -> dict[str, Any]:
    """Merged app settings of the Function App (sites/config 'appsettings' + siteConfig)."""
    settings: dict[str, Any] = {}
    for _, _, res in resources("Microsoft.Web/sites/config"):
        body, _ = unwrap(res)
        if body.get("name") != "appsettings":
            continue
        for node in [body.get("properties", {}), *_object_args(body.get("properties", {}))]:
            settings.update({k.strip("'"): v for k, v in node.items() if k != "function"})
    for _, _, res in resources("Microsoft.Web/sites"):
        body, _ = unwrap(res)
        for item in body.get("properties", {}).get("siteConfig", {}).get("appSettings", []):
            if isinstance(item, dict) and "name" in item:
                settings[item["name"]] = item.get("value")
    return settings


def _object_args(node: Any) -> Iterator[dict[str, Any]]:
    """Object literals passed to functions such as union(...)."""
    if isinstance(node, dict) and "function" in node:
        for arg in node["function"].get("parameters", {}).values():
            if isinstance(arg, dict) and "function" not in arg and "operator" not in arg:
                yield arg
            yield from _object_args(arg)


# ---------------------------------------------------------------------------------------------
# Files and parsing
# ---------------------------------------------------------------------------------------------


def test_infra_has_the_expected_bicep_files() -> None:
    names = {rel(p) for p in BICEP_FILES}
    assert "infra/main.bicep" in names
    assert len(names) >= 5, names


@pytest.mark.parametrize("path", BICEP_FILES, ids=rel)
def test_every_bicep_file_parses(path: Path) -> None:
    doc = parse(path)
    assert doc.get("resources") or doc.get("modules"), f"{rel(path)} declares nothing"


def test_no_registry_modules() -> None:
    for path in BICEP_FILES:
        for name, module in parse(path).get("modules", {}).items():
            assert module["type"] == "local", f"{rel(path)}: module {name} is not a local file"
            assert (path.parent / module["detail"]["path"]).is_file(), (
                f"{rel(path)}: module {name} points at a missing file"
            )


def test_module_calls_match_module_parameters() -> None:
    """What a Bicep compiler would catch: unknown params and missing required params."""
    for path in BICEP_FILES:
        for name, module in parse(path).get("modules", {}).items():
            target = (path.parent / module["detail"]["path"]).resolve()
            declared = parse(target).get("parameters", {})
            passed = set(unwrap(module)[0].get("params", {}))
            unknown = passed - set(declared)
            assert not unknown, f"{rel(path)}: module {name} passes unknown params {unknown}"
            required = {p for p, spec in declared.items() if not has_default(spec)}
            missing = required - passed
            assert not missing, f"{rel(path)}: module {name} misses required params {missing}"


def test_main_is_subscription_scoped_with_azd_resource_group() -> None:
    doc = parse(MAIN)
    assert doc["globals"]["scope"]["value"] == "subscription"
    for param in ("environmentName", "location", "principalId"):
        assert param in doc["parameters"]
    _, _, rg = single("Microsoft.Resources/resourceGroups")
    body, _ = unwrap(rg)
    assert "rg-${environmentName}" in resolve(doc, body["name"])


def test_azure_yaml_declares_the_function_service() -> None:
    yaml = pytest.importorskip("yaml")
    spec = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert spec["name"] == "acs-token-service"
    api = spec["services"]["api"]
    assert api["project"] == "."
    assert api["language"] == "python"
    assert api["host"] == "function"
    # azd finds the deployment target through this tag
    _, _, site = single("Microsoft.Web/sites")
    assert "api" in resolve({}, unwrap(site)[0].get("tags", {}))


# ---------------------------------------------------------------------------------------------
# Function App
# ---------------------------------------------------------------------------------------------


def test_function_app_runs_on_flex_consumption() -> None:
    _, _, plan = single("Microsoft.Web/serverfarms")
    body, _ = unwrap(plan)
    assert body["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert body["properties"]["reserved"] is True

    path, _, site = single("Microsoft.Web/sites")
    body, _ = unwrap(site)
    assert body["kind"] == "functionapp,linux"
    config = body["properties"]["functionAppConfig"]
    assert value_of(path, get(config, "runtime.name")) == {"python"}
    assert value_of(path, get(config, "runtime.version")) == {"3.12"}
    assert 2048 in value_of(path, get(config, "scaleAndConcurrency.instanceMemoryMB"))
    assert 100 in value_of(path, get(config, "scaleAndConcurrency.maximumInstanceCount"))
    assert value_of(MAIN, "instanceMemoryMB") == {2048}
    assert value_of(MAIN, "maximumInstanceCount") == {100}

    storage = get(config, "deployment.storage")
    assert storage["type"] == "blobContainer"
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    assert storage["authentication"]["userAssignedIdentityResourceId"] == "identityId"


def test_function_app_uses_only_a_user_assigned_identity() -> None:
    path, _, site = single("Microsoft.Web/sites")
    body, _ = unwrap(site)
    identity = body["identity"]
    assert identity["type"] == "UserAssigned"
    keys = [k.strip("'") for k in identity["userAssignedIdentities"]]
    assert keys == ["${identityId}"]
    # ... and that identity is the user-assigned identity resource created by main.bicep
    [(caller, call)] = module_calls(path)
    assert caller == MAIN
    identity_module = call["params"]["identityId"]
    client_module = call["params"]["identityClientId"]
    assert {"identity", "resourceId"} <= set(leaves(identity_module))
    assert {"identity", "clientId"} <= set(leaves(client_module))
    module = parse(MAIN)["modules"]["identity"]
    target = (MAIN.parent / module["detail"]["path"]).resolve()
    assert next(iter(parse(target)["resources"].values()))["type"] == (
        "Microsoft.ManagedIdentity/userAssignedIdentities"
    )


# ---------------------------------------------------------------------------------------------
# Data services
# ---------------------------------------------------------------------------------------------


def test_storage_account_rejects_shared_keys() -> None:
    _, _, account = single(STORAGE_ACCOUNTS)
    props = unwrap(account)[0]["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props.get("supportsHttpsTrafficOnly", True) is True


def test_storage_declares_deployment_container_and_identity_table() -> None:
    containers = [r for _, _, r in resources(BLOB_CONTAINERS) if not r["existing"]]
    [deployment] = [c for c in containers if unwrap(c)[0]["name"] == "deploymentContainerName"]
    body, condition = unwrap(deployment)
    assert condition is None
    assert body["properties"]["publicAccess"] == "None"
    single("Microsoft.Storage/storageAccounts/tableServices")
    path, _, table = single("Microsoft.Storage/storageAccounts/tableServices/tables")
    assert "AcsIdentities" in value_of(path, unwrap(table)[0]["name"])
    assert value_of(MAIN, "identityTableName") == {"AcsIdentities"}


def test_communication_services_disables_local_auth() -> None:
    path, _, acs = single(COMMUNICATION_SERVICES)
    body, _ = unwrap(acs)
    assert body["location"] == "global"
    assert body["properties"]["disableLocalAuth"] is True
    assert "United States" in value_of(path, body["properties"]["dataLocation"])
    assert value_of(MAIN, "communicationServicesDataLocation") == {"United States"}


def test_application_insights_requires_entra_auth() -> None:
    _, _, ai = single(APP_INSIGHTS)
    props = unwrap(ai)[0]["properties"]
    assert props["DisableLocalAuth"] is True
    assert props["WorkspaceResourceId"]
    single("Microsoft.OperationalInsights/workspaces")
    settings = app_settings()
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == (
        "ClientId=${identityClientId};Authorization=AAD"
    )
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in settings


# ---------------------------------------------------------------------------------------------
# Role assignments
# ---------------------------------------------------------------------------------------------


def _role_assignments() -> list[dict[str, Any]]:
    found = []
    for path, name, res in resources(ROLE_ASSIGNMENTS):
        doc = parse(path)
        body, condition = unwrap(res)
        props = body["properties"]
        scope = body.get("scope")
        scope_type = doc["resources"][scope]["type"] if scope in doc.get("resources", {}) else None
        found.append(
            {
                "where": f"{rel(path)}:{name}",
                "path": path,
                "roles": {v for v in resolve(doc, props["roleDefinitionId"]) if _is_guid(v)},
                "principal": props["principalId"],
                "principal_types": value_of(path, props["principalType"]),
                "scope_type": scope_type,
                "condition": condition,
            }
        )
    return found


def _is_guid(value: Any) -> bool:
    return isinstance(value, str) and GUID_RE.fullmatch(value) is not None


def _app_identity(assignment: dict[str, Any]) -> bool:
    """Principal is the user-assigned identity's principalId passed in by main.bicep."""
    if assignment["principal_types"] != {"ServicePrincipal"}:
        return False
    calls = module_calls(assignment["path"])
    return bool(calls) and all(
        {"identity", "principalId"} <= set(leaves(body["params"][assignment["principal"]]))
        for _, body in calls
    )


def _deploying_user(assignment: dict[str, Any]) -> bool:
    """Principal is main.bicep's principalId (azd AZURE_PRINCIPAL_ID), typed User by default."""
    if "User" not in assignment["principal_types"]:
        return False
    calls = module_calls(assignment["path"])
    return bool(calls) and all(
        body["params"][assignment["principal"]] == "principalId" for _, body in calls
    )


@pytest.mark.parametrize(
    ("roles", "scope_type", "for_user"),
    [
        ({ROLE_STORAGE_BLOB_DATA_OWNER}, STORAGE_ACCOUNTS, True),
        ({ROLE_STORAGE_QUEUE_DATA_CONTRIBUTOR}, STORAGE_ACCOUNTS, True),
        ({ROLE_STORAGE_TABLE_DATA_CONTRIBUTOR}, STORAGE_ACCOUNTS, True),
        (ACS_ROLES, COMMUNICATION_SERVICES, True),
        ({ROLE_MONITORING_METRICS_PUBLISHER}, APP_INSIGHTS, False),
    ],
    ids=["blob-owner", "queue-contributor", "table-contributor", "acs", "metrics-publisher"],
)
def test_role_is_assigned(roles: set[str], scope_type: str, for_user: bool) -> None:
    matching = [
        a
        for a in _role_assignments()
        if a["roles"] and a["roles"] <= roles and a["scope_type"] == scope_type
    ]
    app = [a for a in matching if _app_identity(a)]
    assert app, f"no assignment of {roles} on {scope_type} to the app identity"
    assert all(a["condition"] is None for a in app), "app identity roles must be unconditional"
    if for_user:
        user = [a for a in matching if _deploying_user(a)]
        assert user, f"no assignment of {roles} on {scope_type} to the deploying user"


def test_acs_role_choice_is_a_documented_built_in_role() -> None:
    text = "\n".join(p.read_text() for p in BICEP_FILES)
    assert ROLE_CONTRIBUTOR in text
    assert ROLE_COMMUNICATION_AND_EMAIL_SERVICE_OWNER in text
    defaults = value_of(MAIN, "communicationServicesRole")
    assert defaults == {"Contributor"}
    deploy_doc = ROOT / "docs" / "deploy.md"
    if deploy_doc.exists():
        assert "Communication and Email Service Owner" in deploy_doc.read_text()


def test_user_principal_comes_from_azd() -> None:
    doc = parse(MAIN)
    assert doc["parameters"]["principalId"]["default"] == ""
    assert value_of(MAIN, "principalType") == {"User"}


# ---------------------------------------------------------------------------------------------
# App settings
# ---------------------------------------------------------------------------------------------


def test_app_settings_include_every_required_name() -> None:
    missing = set(REQUIRED_APP_SETTINGS) - set(app_settings())
    assert not missing, f"app settings missing: {sorted(missing)}"


def test_app_settings_are_identity_based() -> None:
    settings = app_settings()
    assert not FORBIDDEN_APP_SETTINGS & set(settings)
    for name in settings:
        if name == "APPLICATIONINSIGHTS_CONNECTION_STRING":
            continue  # locator only; App Insights local auth is disabled
        assert not re.search(r"CONNECTION(_STRING)?$|KEY$|SECRET|PASSWORD|SAS", name, re.I), name
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    for name in ("AzureWebJobsStorage__clientId", "AZURE_CLIENT_ID"):
        assert settings[name] == "identityClientId", name
    assert settings["COMMUNICATION_SERVICES_ENDPOINT"].startswith("https://")
    assert settings["IDENTITY_TABLE_SERVICE_URI"].startswith("https://")
    assert ".table." in settings["IDENTITY_TABLE_SERVICE_URI"]


def test_no_keys_or_secrets_anywhere_in_infra() -> None:
    for path in sorted(p for p in INFRA.rglob("*") if p.is_file()):
        text = path.read_text().lower()
        for needle in ("accountkey", "accesskey=", "listkeys(", "sharedaccesskey", "@secure()"):
            assert needle not in text, f"{rel(path)} contains {needle!r}"


def test_app_setting_values_come_from_parameters() -> None:
    path, _, _ = single("Microsoft.Web/sites")
    settings = app_settings()
    expected = {
        "AUTH_MODE": {"jwt"},
        "AUTH_ADMIN_ROLE": {"TokenService.Admin"},
        "ALLOWED_SCOPES": {"chat,voip"},
        "DEFAULT_SCOPES": {"chat,voip"},
        "PURGE_SCHEDULE": {"0 */5 * * * *"},
    }
    for name, values in expected.items():
        assert values <= value_of(path, settings[name]), name
    for name in ("TOKEN_LIFETIME_MINUTES", "DELETION_GRACE_MINUTES"):
        assert 1440 in value_of(path, settings[name]), name
    # required, supplied per environment
    for name, param in (("AUTH_ISSUER", "authIssuer"), ("AUTH_AUDIENCE", "authAudience")):
        assert settings[name] == param
        assert not has_default(parse(MAIN)["parameters"][param])


def _app_config() -> Any:
    """The app's shared.config module, or None while it does not exist yet. Import errors of
    an existing module are real failures and propagate."""
    if not (ROOT / "shared" / "config.py").is_file():
        return None
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("shared.config")


def _app_setting_names() -> tuple[str, ...] | None:
    """shared/config.py's SETTING_NAMES, when the module and the tuple exist."""
    names = getattr(_app_config(), "SETTING_NAMES", None)
    return tuple(names) if names else None


def _is_platform_setting(name: str) -> bool:
    return name in PLATFORM_SETTINGS or name.startswith(PLATFORM_SETTING_PREFIXES)


def test_bicep_defaults_agree_with_the_app_defaults() -> None:
    """Where the app has its own default for a setting, Bicep should not silently differ."""
    default_actions = getattr(_app_config(), "DEFAULT_EVENT_ACTIONS", None)
    if default_actions is not None:
        bicep_default = parse(MAIN)["parameters"]["eventActions"]["default"]
        assert _event_actions(bicep_default) == _event_actions(default_actions)


def test_app_settings_agree_with_the_app_settings_module() -> None:
    known = _app_setting_names() or REQUIRED_APP_SETTINGS
    bicep_app_settings = {n for n in app_settings() if not _is_platform_setting(n)}
    unknown = bicep_app_settings - set(known)
    assert not unknown, f"Bicep sets settings the app does not read: {sorted(unknown)}"
    required_app_settings = {n for n in REQUIRED_APP_SETTINGS if not _is_platform_setting(n)}
    unread = required_app_settings - set(known)
    assert not unread, f"required settings missing from shared.config.SETTING_NAMES: {unread}"


# ---------------------------------------------------------------------------------------------
# Event Grid
# ---------------------------------------------------------------------------------------------


def _event_subscriptions() -> list[tuple[Path, str, dict[str, Any], Any]]:
    found = []
    for path, name, res in resources():
        if res["type"].lower().endswith("/eventsubscriptions"):
            body, condition = unwrap(res)
            found.append((path, name, body, condition))
    return found


def test_event_subscriptions_target_on_user_event() -> None:
    subs = _event_subscriptions()
    types = {
        res["type"]
        for _, _, res in resources()
        if res["type"].lower().endswith("/eventsubscriptions")
    }
    assert "Microsoft.EventGrid/topics/eventSubscriptions" in types
    assert "Microsoft.EventGrid/partnerTopics/eventSubscriptions" in types
    for path, name, body, condition in subs:
        dest = body["properties"]["destination"]
        assert dest["endpointType"] == "AzureFunction", name
        assert dest["properties"]["resourceId"] == "${functionApp.id}/functions/on_user_event"
        assert body["properties"]["eventDeliverySchema"] == "CloudEventSchemaV1_0", name
        assert condition is not None, f"{rel(path)}:{name} must be optional"


def test_custom_topic_accepts_cloud_events_with_entra_auth_only() -> None:
    _, _, topic = single("Microsoft.EventGrid/topics")
    body, condition = unwrap(topic)
    assert condition == "enableCustomEvents"
    assert body["properties"]["inputSchema"] == "CloudEventSchemaV1_0"
    assert body["properties"]["disableLocalAuth"] is True
    [(_, _, sub, _)] = [s for s in _event_subscriptions() if s[2].get("parent") == "customTopic"]
    assert set(sub["properties"]["filter"]["includedEventTypes"]) == {
        "TokenService.RevokeTokens",
        "TokenService.DeleteUser",
    }


def test_graph_events_use_the_microsoft_graph_partner() -> None:
    _, _, config = single("Microsoft.EventGrid/partnerConfigurations")
    body, condition = unwrap(config)
    assert condition == "enableGraphEvents"
    [partner] = body["properties"]["partnerAuthorization"]["authorizedPartnersList"]
    path = single("Microsoft.EventGrid/partnerConfigurations")[0]
    assert "MicrosoftGraphAPI" in resolve(parse(path), partner["partnerName"])
    _, _, topic = single("Microsoft.EventGrid/partnerTopics", existing=True)
    assert unwrap(topic)[0]["name"] == "graphPartnerTopicName"


def _event_actions(raw: str) -> dict[str, str]:
    pairs = (part.strip().partition("=") for part in raw.split(",") if part.strip())
    return {event_type.strip(): action.strip() for event_type, _, action in pairs}


def test_every_subscribed_event_type_has_an_event_action() -> None:
    """An event routed to on_user_event but absent from EVENT_ACTIONS would be dropped."""
    actions = _event_actions(parse(MAIN)["parameters"]["eventActions"]["default"])
    assert set(actions.values()) <= {"revoke", "delete"}, actions
    for path, name, body, _ in _event_subscriptions():
        for event_type in body["properties"]["filter"]["includedEventTypes"]:
            assert event_type in actions, f"{rel(path)}:{name}: {event_type} has no EVENT_ACTION"


def _container_names(path: Path, container: str) -> set[Any]:
    """Possible names of a container symbol of `path`, following its name parameter to callers
    even when the parameter has a default (value_of stops at the default)."""
    name = unwrap(parse(path)["resources"][container])[0]["name"]
    if isinstance(name, str) and name in parse(path).get("parameters", {}):
        return param_values(path, name)
    return value_of(path, name)


def _created_container(path: Path, node: Any) -> tuple[Path, str]:
    """The one (non-existing) blob container a container-name expression resolves to."""
    found = {
        (p, n)
        for p, n in referenced_resources(path, node, BLOB_CONTAINERS)
        if not parse(p)["resources"][n]["existing"]
    }
    assert len(found) == 1, f"{rel(path)}: {node!r} names no single created container: {found}"
    return found.pop()


def _parent_account(path: Path, container: str) -> str:
    """Symbol of the storage account a container symbol of `path` belongs to."""
    doc = parse(path)
    blob_service = unwrap(doc["resources"][container])[0]["parent"]
    assert doc["resources"][blob_service]["type"].endswith("/blobServices")
    account = unwrap(doc["resources"][blob_service])[0]["parent"]
    assert doc["resources"][account]["type"] == STORAGE_ACCOUNTS
    return account


def test_dead_letter_container_exists_with_the_event_features() -> None:
    created = [
        (path, name, res)
        for path, name, res in resources(BLOB_CONTAINERS)
        if not res["existing"] and DEAD_LETTER_CONTAINER in _container_names(path, name)
    ]
    assert len(created) == 1, created
    path, name, res = created[0]
    body, condition = unwrap(res)
    assert body["properties"]["publicAccess"] == "None"
    assert condition is not None, "the dead-letter container is only for the event features"
    # in the app's (only) storage account
    account_path, account, _ = single(STORAGE_ACCOUNTS)
    assert (path, _parent_account(path, name)) == (account_path, account)
    # main.bicep asks for it exactly when it deploys the eventing module
    [(_, storage_call)] = module_calls(path)
    passed = storage_call["params"][body["name"]]["operator"]
    assert passed["type"] == "conditional"
    assert DEAD_LETTER_CONTAINER in resolve(parse(MAIN), passed["operands"]["true_value"])
    assert passed["operands"]["false_value"] == ""
    [eventing] = [
        m for m in parse(MAIN)["modules"].values() if m["detail"]["path"].endswith("eventing.bicep")
    ]
    assert passed["operands"]["condition"] == unwrap(eventing)[1]
    flags = set(leaves(parse(MAIN)["variables"][unwrap(eventing)[1]]["value"]))
    assert {"enableCustomEvents", "enableGraphEvents"} <= flags
    deploy_doc = ROOT / "docs" / "deploy.md"
    if deploy_doc.exists():
        text = deploy_doc.read_text()
        assert DEAD_LETTER_CONTAINER in text
        assert ROLE_STORAGE_BLOB_DATA_CONTRIBUTOR in text


@pytest.mark.parametrize(
    "topic_type",
    ["Microsoft.EventGrid/topics", "Microsoft.EventGrid/partnerTopics"],
    ids=["custom-topic", "graph-partner-topic"],
)
def test_event_subscription_dead_letters_with_the_topic_identity(topic_type: str) -> None:
    [(path, name, body, condition)] = [
        s
        for s in _event_subscriptions()
        if s[2].get("parent") and parse(s[0])["resources"][s[2]["parent"]]["type"] == topic_type
    ]
    doc = parse(path)
    props = body["properties"]
    where = f"{rel(path)}:{name}"

    assert props["retryPolicy"] == {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440}
    # secret-free: no plain deadLetterDestination (Event Grid's own, key/SAS-style access)
    assert "deadLetterDestination" not in props, where
    dead_letter = props["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"] == {"type": "SystemAssigned"}, where
    destination = dead_letter["deadLetterDestination"]
    assert destination["endpointType"] == "StorageBlob"

    # ... into the dead-letter container of the app's storage account
    container_path, container = _created_container(
        path, destination["properties"]["blobContainerName"]
    )
    assert DEAD_LETTER_CONTAINER in _container_names(container_path, container)
    account_ref = accessor(destination["properties"]["resourceId"])
    assert account_ref and account_ref[1:] == ["id"], where
    account_res = unwrap(doc["resources"][account_ref[0]])[0]
    assert referenced_resources(path, account_res["name"], STORAGE_ACCOUNTS) == {
        (container_path, _parent_account(container_path, container))
    }

    # the topic's system-assigned identity has Storage Blob Data Contributor on that container
    topic = body["parent"]
    topic_res = doc["resources"][topic]
    if not topic_res["existing"]:
        assert unwrap(topic_res)[0]["identity"] == {"type": "SystemAssigned"}
    writers = [
        a
        for a in _role_assignments()
        if a["path"] == path and accessor(a["principal"]) == [topic, "identity", "principalId"]
    ]
    assert len(writers) == 1, f"{where}: no single role assignment for {topic}'s identity"
    [writer] = writers
    assert writer["roles"] == {ROLE_STORAGE_BLOB_DATA_CONTRIBUTOR}
    assert writer["principal_types"] == {"ServicePrincipal"}
    assert writer["condition"] == condition, "the role exists exactly when the subscription does"
    scope = unwrap(doc["resources"][writer["where"].rsplit(":", 1)[1]])[0]["scope"]
    if writer["scope_type"] == BLOB_CONTAINERS:
        scope_res = unwrap(doc["resources"][scope])[0]
        assert scope_res["name"] == destination["properties"]["blobContainerName"]
        assert _parent_account(path, scope) == account_ref[0]
    else:
        assert writer["scope_type"] == STORAGE_ACCOUNTS
        assert scope == account_ref[0]
    # granted before the subscription exists
    assert writer["where"].rsplit(":", 1)[1] in body.get("dependsOn", []), where


def test_event_features_are_off_by_default() -> None:
    params = parse(MAIN)["parameters"]
    assert params["enableGraphEvents"]["default"] is False
    assert params["enableCustomEvents"]["default"] is False
    assert params["graphPartnerTopicName"]["default"] == ""


# ---------------------------------------------------------------------------------------------
# Parameters, defaults and outputs
# ---------------------------------------------------------------------------------------------


def _parameters_json() -> dict[str, Any]:
    return json.loads((INFRA / "main.parameters.json").read_text())["parameters"]


def test_parameters_json_maps_every_required_parameter() -> None:
    declared = parse(MAIN)["parameters"]
    mapped = _parameters_json()
    assert set(mapped) <= set(declared), f"unknown: {set(mapped) - set(declared)}"
    required = {name for name, spec in declared.items() if not has_default(spec)}
    assert required <= set(mapped), f"unmapped required params: {required - set(mapped)}"
    expected = {
        "environmentName": "${AZURE_ENV_NAME}",
        "location": "${AZURE_LOCATION}",
        "principalId": "${AZURE_PRINCIPAL_ID}",
        "authIssuer": "${AUTH_ISSUER}",
        "authAudience": "${AUTH_AUDIENCE}",
    }
    for name, value in expected.items():
        assert mapped[name]["value"] == value, name


def test_parameters_json_defaults_match_bicep_defaults() -> None:
    declared = parse(MAIN)["parameters"]
    for name, spec in _parameters_json().items():
        match = re.fullmatch(r"\$\{\w+=(.*)\}", str(spec["value"]))
        if match and has_default(declared[name]):
            default = declared[name]["default"]
            text = str(default).lower() if isinstance(default, bool) else str(default)
            assert match.group(1) == text, name


def test_main_parameter_defaults() -> None:
    params = parse(MAIN)["parameters"]
    defaults = {
        "authMode": "jwt",
        "adminRole": "TokenService.Admin",
        "deletionGraceMinutes": 1440,
        "allowedScopes": "chat,voip",
        "defaultScopes": "chat,voip",
        "tokenLifetimeMinutes": 1440,
        "purgeSchedule": "0 */5 * * * *",
        "communicationServicesDataLocation": "United States",
        "enableGraphEvents": False,
        "enableCustomEvents": False,
    }
    for name, default in defaults.items():
        assert params[name]["default"] == default, name


def test_outputs_for_azd() -> None:
    outputs = parse(MAIN)["outputs"]
    for name in (
        "AZURE_FUNCTION_APP_NAME",
        "AZURE_FUNCTION_URI",
        "COMMUNICATION_SERVICES_ENDPOINT",
        "AZURE_STORAGE_ACCOUNT_NAME",
        "AZURE_RESOURCE_GROUP",
        "AZURE_LOCATION",
        "AZURE_TENANT_ID",
    ):
        assert name in outputs, name
    # never write the app identity's client id as AZURE_CLIENT_ID into the developer's .env:
    # DefaultAzureCredential would then try to use a managed identity locally
    assert "AZURE_CLIENT_ID" not in outputs
    api = parse(INFRA / "app" / "api.bicep")["outputs"]
    assert api["uri"]["value"] == "https://${functionApp.properties.defaultHostName}/api"


# ---------------------------------------------------------------------------------------------
# Browser access (platform CORS)
# ---------------------------------------------------------------------------------------------


def _evaluate(node: Any, scope: dict[str, Any]) -> Any:
    """Evaluate the small Bicep subset the CORS list is built with (split, trim, map, filter,
    empty, !, lambdas), so the test checks what the platform would receive, not just names."""
    if isinstance(node, str):
        return scope.get(node, node)
    if not isinstance(node, dict):
        return node
    if "operator" in node:
        op = node["operator"]
        assert op["type"] == "not", f"unsupported operator {op['type']}"
        return not _evaluate(op["operands"]["bool_value"], scope)
    fn = node["function"]
    args = list(fn["parameters"].values())

    def call(lam: dict[str, Any], value: Any) -> Any:
        assert lam["type"] == "lambda_expression"
        return _evaluate(lam["detail"]["expression"], {**scope, lam["detail"]["var_1"]: value})

    match fn["type"]:
        case "split":
            return _evaluate(args[0], scope).split(_evaluate(args[1], scope))
        case "trim":
            return _evaluate(args[0], scope).strip()
        case "empty":
            return len(_evaluate(args[0], scope)) == 0
        case "map":
            return [call(args[1], v) for v in _evaluate(args[0], scope)]
        case "filter":
            return [v for v in _evaluate(args[0], scope) if call(args[1], v)]
    raise AssertionError(f"unsupported function {fn['type']}")


def test_allowed_origins_reach_site_config_cors() -> None:
    """ALLOWED_ORIGINS (azd env) -> main.parameters.json -> main.bicep allowedOrigins ->
    app/api.bicep -> the function app's siteConfig.cors.allowedOrigins (the platform CORS that
    `az functionapp cors add` edits; Microsoft.Web/sites siteConfig.cors.allowedOrigins)."""
    assert _parameters_json()["allowedOrigins"]["value"] == "${ALLOWED_ORIGINS}"
    assert parse(MAIN)["parameters"]["allowedOrigins"]["default"] == ""  # unset: no CORS

    path, _, site = single("Microsoft.Web/sites")
    [(caller, call)] = module_calls(path)
    assert caller == MAIN
    assert call["params"]["allowedOrigins"] == "allowedOrigins"

    cors = get(unwrap(site)[0], "properties.siteConfig.cors")
    # Bearer tokens, not cookies: no credentialed CORS (and so '*' stays legal).
    assert cors["supportCredentials"] is False
    doc = parse(path)
    expression = cors["allowedOrigins"]
    if isinstance(expression, str) and expression in doc.get("variables", {}):
        expression = doc["variables"][expression]["value"]

    def origins(setting: str) -> Any:
        return _evaluate(expression, {"allowedOrigins": setting})

    assert origins("") == []
    assert origins("https://app.contoso.com") == ["https://app.contoso.com"]
    assert origins(" https://app.contoso.com , http://localhost:5173,") == [
        "https://app.contoso.com",
        "http://localhost:5173",
    ]
    assert origins("*") == ["*"]
