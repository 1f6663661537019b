"""The fair ceiling: the least a hosted Python function can do for a repeat token.

A bench-only v2 app with one async HTTP function that does the two unavoidable round
trips of a repeat token with the raw aio SDKs (one Table point read, one ACS get_token)
and answers ``{"token", "expiresOn"}``. It has no authentication, no mapping logic, no
deadline and no error handling: nothing of ours. What it does pay is what the Functions
worker charges every Python function, however bare, and which the raw SDK loop
(``bench.worker.run_raw_ceiling``) never paid: it is indexed and invoked through the
same ``localdev.host.invocation.InProcessFunctions`` as function_app, so each call has
the invoker's log records (formatted and forwarded under the worker's logging), its
``Context``, the ``func.HttpRequest`` the worker builds from the RPC message and the
``func.HttpResponse`` it returns (azure-functions-python-worker
``azure_functions_worker/dispatcher.py``, ``Dispatcher._handle__invocation_request``, as of
commit 22c5d3d: an INFO ``Received FunctionInvocationRequest, ...`` record per invocation,
``bindings.from_incoming_proto`` for the trigger, ``_get_context`` for every invocation,
``bindings.to_outgoing_proto`` for the ``$return`` value; workers of 2020 also logged
``Successfully processed FunctionInvocationRequest`` at INFO). The invoker logs two INFO
records per invocation (the host's ``Executing``/``Executed`` lines), one more than the
current worker; both sides pay it alike, and at a ratio near 1 it moves the ratio by
less than 0.005.

The caller names its row by the ``x-user-key`` header (the user's partition key, from
``shared.keys.user_key``, computed by the load generator), so the function parses
nothing. SDK clients are created once per worker, lazily, as any app should; the Azure
SDK loggers are set to WARNING as ours sets them (``shared.telemetry.quiet_sdk_loggers``),
since any app under the worker's INFO logging would otherwise format every request's
headers. ``shared.telemetry.round_trips`` counts the round trips, as for every scenario.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

SCOPES = ["chat", "voip"]
TOKEN_LIFETIME = timedelta(minutes=1440)  # what ours asks of ACS by default

_clients: tuple[Any, Any, Any] | None = None


def clients() -> tuple[Any, Any, Any]:
    """(TableClient, CommunicationIdentityClient, CommunicationUserIdentifier), built on
    first use and shared by every call of this worker (the raw ceiling uses them too)."""
    global _clients
    if _clients is None:
        from azure.communication.identity import CommunicationUserIdentifier
        from azure.communication.identity.aio import CommunicationIdentityClient
        from azure.data.tables.aio import TableClient

        from shared.telemetry import quiet_sdk_loggers, round_trips

        quiet_sdk_loggers()
        table = TableClient.from_connection_string(
            os.environ["IDENTITY_TABLE_CONNECTION"], os.environ["IDENTITY_TABLE_NAME"],
            raw_request_hook=round_trips.table_hook, use_env_settings=False)
        identity = CommunicationIdentityClient.from_connection_string(
            os.environ["COMMUNICATION_SERVICES_CONNECTION_STRING"],
            raw_request_hook=round_trips.acs_hook, use_env_settings=False)
        _clients = (table, identity, CommunicationUserIdentifier)
    return _clients


async def close() -> None:
    global _clients
    if _clients is not None:
        table, identity, _ = _clients
        _clients = None
        await table.close()
        await identity.close()


@app.route(route="token", methods=["POST"])
async def issue_token(req: func.HttpRequest) -> func.HttpResponse:
    table, identity, user = clients()
    entity = await table.get_entity(req.headers["x-user-key"], "user")
    token = await identity.get_token(user(entity["AcsUserId"]), SCOPES,
                                     token_expires_in=TOKEN_LIFETIME)
    # expiresOn as the SDK gives it (azure-communication-identity 1.5.0 passes ACS's ISO
    # 8601 string through): a bare function has no reason to parse it.
    return func.HttpResponse(
        json.dumps({"token": token.token, "expiresOn": str(token.expires_on)}),
        mimetype="application/json")
