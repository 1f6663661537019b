"""ACS token service: Azure Functions entry points (Python v2 programming model).

Each function parses its input, calls one service operation and renders the result;
the logic lives in ``shared/`` (see README.md and docs/architecture.md). Importing this
module needs no settings and loads no SDK, so indexing is as fast as an empty app.
"""


import logging

import azure.functions as func

from shared import http as api
from shared.http import Call, Reply

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
log = logging.getLogger("acs_token_service")


@app.route(route="token", methods=["POST"])
@api.endpoint()
async def issue_token(call: Call) -> Reply:
    """A token for the caller, creating the caller's ACS identity on first use."""
    issued = await call.service.issue_token(call.caller, api.token_request(call))
    return api.token_reply(issued)


@app.route(route="token/teams", methods=["POST"])
@api.endpoint()
async def exchange_teams_token(call: Call) -> Reply:
    """An ACS token for a Teams user, in exchange for the user's Entra ID token."""
    token = await call.service.exchange_teams_token(call.caller, api.teams_request(call))
    return Reply(200, {"token": token.token, "expiresOn": api.iso(token.expires_on)},
                 {"Pragma": "no-cache"})


@app.route(route="me", methods=["GET"])
@api.endpoint()
async def get_me(call: Call) -> Reply:
    return api.user_reply(await call.service.get_user(call.caller.user_id))


@app.route(route="me/revoke", methods=["POST"])
@api.endpoint()
async def revoke_me(call: Call) -> Reply:
    await call.service.revoke(call.caller.user_id)
    return Reply(204)


@app.route(route="me", methods=["DELETE"])
@api.endpoint()
async def delete_me(call: Call) -> Reply:
    return api.user_reply(await call.service.delete(call.caller.user_id), 202)


@app.route(route="users/{userId}", methods=["GET"])
@api.endpoint(admin=True)
async def get_user(call: Call) -> Reply:
    return api.user_reply(await call.service.get_user(call.user_id_param()))


@app.route(route="users/{userId}/revoke", methods=["POST"])
@api.endpoint(admin=True)
async def revoke_user(call: Call) -> Reply:
    await call.service.revoke(call.user_id_param())
    return Reply(204)


@app.route(route="users/{userId}", methods=["DELETE"])
@api.endpoint(admin=True)
async def delete_user(call: Call) -> Reply:
    return api.user_reply(await call.service.delete(call.user_id_param()), 202)


@app.route(route="users/{userId}/restore", methods=["POST"])
@api.endpoint(admin=True)
async def restore_user(call: Call) -> Reply:
    return api.user_reply(await call.service.restore(call.user_id_param()))


@app.route(route="health", methods=["GET"])
@api.endpoint(auth=False, service=False)
async def health(call: Call) -> Reply:
    """Settings valid and Table Storage reachable; reveals nothing else."""
    from shared import runtime

    await runtime.check_health()
    return Reply(200, {"status": "ok"})


@app.route(route="openapi.json", methods=["GET"])
@api.endpoint(auth=False, service=False)
async def openapi(call: Call) -> Reply:
    from shared.openapi import document

    return Reply(200, document(), {"Cache-Control": "public, max-age=300"})


@app.timer_trigger(schedule="%PURGE_SCHEDULE%", arg_name="timer", run_on_startup=False,
                   use_monitor=True)
async def purge_deleted_users(timer: func.TimerRequest, context: func.Context) -> None:
    """Delete the ACS identities of users whose deletion grace period is over."""
    from shared import runtime, telemetry

    telemetry.invocation_id.set(context.invocation_id)
    report = await (await runtime.get_service()).purge()
    log.info("purge_deleted_users: %s", report.as_dict())


@app.event_grid_trigger(arg_name="event")
async def on_user_event(event: func.EventGridEvent, context: func.Context) -> None:
    """Revoke or delete on user lifecycle events (Event Grid schema or CloudEvents).

    Malformed and unknown events are logged and acknowledged (retrying cannot fix them);
    transient failures raise, so Event Grid retries the delivery.
    """
    from shared import events, runtime, telemetry
    from shared.config import get_settings
    from shared.errors import BadRequest

    telemetry.invocation_id.set(context.invocation_id)
    try:
        user_event = events.parse_event(event, get_settings().event_actions)
    except BadRequest as exc:
        log.warning("on_user_event: ignored event %s: %s", getattr(event, "id", "?"), exc.message)
        return
    outcome = await (await runtime.get_service()).apply_event(user_event)
    log.info("on_user_event: %s %s -> %s", user_event.event_type, user_event.event_id, outcome)


@app.queue_trigger(arg_name="message", queue_name="%REVOKE_QUEUE_NAME%",
                   connection="AzureWebJobsStorage")
async def revoke_after_delete(message: func.QueueMessage, context: func.Context) -> None:
    """A delete's second revoke, once every token issuance that could have read the user
    as active has ended (docs/protocol.md, "Delete"). Failures raise: the host retries
    the message, then moves it to the poison queue."""
    from shared import queue, runtime, telemetry
    from shared.errors import BadRequest

    telemetry.invocation_id.set(context.invocation_id)
    try:
        user_id = queue.decode(message.get_body())
    except BadRequest:
        log.warning("revoke_after_delete: ignored malformed message %s", message.id)
        return
    outcome = await (await runtime.get_service()).revoke_after_delete(user_id)
    log.info("revoke_after_delete: %s (dequeue count %s)", outcome, message.dequeue_count)
