"""The whole token service locally: ``python -m localdev.stack`` (``make run``) or, for tests,
``with Stack(data_dir) as stack: ...``. See docs/local-stack.md.
"""

from .children import PortInUseError, StackError
from .core import (
    ADMIN_ROLE,
    AUDIENCE,
    AZURITE_DEFAULT_PORTS,
    STATE_FILE,
    Stack,
    func_executable,
    read_stack_info,
)

__all__ = [
    "ADMIN_ROLE",
    "AUDIENCE",
    "AZURITE_DEFAULT_PORTS",
    "STATE_FILE",
    "PortInUseError",
    "Stack",
    "StackError",
    "func_executable",
    "read_stack_info",
]
