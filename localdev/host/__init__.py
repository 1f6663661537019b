"""A local stand-in for the Azure Functions host (see docs/localhost.md).

Serves a Python v2 ``function_app.py`` from its own metadata
(``app.get_functions()``): HTTP triggers at ``/{routePrefix}/{route}`` with
auth levels and keys, the Event Grid webhook, NCRONTAB timers, the admin
invoke/status APIs, host-style invocation logs.
"""

from __future__ import annotations

from .invocation import InvocationContext, InvocationIdFilter, current_invocation_id
from .keys import HostKeys, load_or_create_keys
from .loader import FunctionInfo, FunctionLoadError, import_function_app
from .ncrontab import CronSchedule, ScheduleError, parse_schedule
from .process import HostProcess, HostStartError
from .server import HostRuntime, create_host_app, get_runtime
from .timers import ManualClock, SystemClock, TimerScheduler

__all__ = [
    "CronSchedule",
    "FunctionInfo",
    "FunctionLoadError",
    "HostKeys",
    "HostProcess",
    "HostRuntime",
    "HostStartError",
    "InvocationContext",
    "InvocationIdFilter",
    "ManualClock",
    "ScheduleError",
    "SystemClock",
    "TimerScheduler",
    "create_host_app",
    "current_invocation_id",
    "get_runtime",
    "import_function_app",
    "load_or_create_keys",
    "parse_schedule",
]
