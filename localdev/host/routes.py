"""ASP.NET Core route templates, as the Functions host uses them for HTTP triggers.

Supported: literal segments (matched case-insensitively), ``{name}``,
``{name?}`` (optional), ``{name=default}``, ``{*name}`` / ``{**name}``
(catch-all, last segment), inline constraints ``{name:int}``,
``{name:int:min(1)}`` and complex segments such as ``{name}.{ext}``.

Constraints: int, long, bool, guid, alpha, decimal, double, float, datetime,
min(n), max(n), range(a,b), length(n) / length(a,b), minlength(n),
maxlength(n), regex(expr), required.

Route values are percent-decoded like Kestrel decodes the request path: every
escape except ``%2F``/``%2f``, which stays as written (so ``a%2Fb`` gives the
value ``a%2Fb``, and ``a%252Fb`` gives it too; dotnet/aspnetcore#2655, #17864,
aspnet/KestrelHttpServer#124).  Candidate routes are ordered like ASP.NET Core's inbound
precedence: literal segments first, then complex, then
constrained parameters, then plain parameters, catch-alls last.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from urllib.parse import unquote_to_bytes

__all__ = ["RouteTemplate", "RouteTemplateError", "decode_segment", "split_path"]


class RouteTemplateError(ValueError):
    """Invalid route template."""


def _int_check(bits: int) -> Callable[[str], bool]:
    hi: int = (1 << (bits - 1)) - 1
    lo: int = -hi - 1

    def check(v: str) -> bool:
        if not re.fullmatch(r"[+-]?\d+", v.strip()):
            return False
        n = int(v)
        return lo <= n <= hi

    return check


def _float_check(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return v.strip().lower() not in {"nan", "inf", "-inf", "+inf", "infinity"}


def _decimal_check(v: str) -> bool:
    try:
        Decimal(v)
    except InvalidOperation:
        return False
    return re.fullmatch(r"\s*[+-]?(\d+\.?\d*|\.\d+)\s*", v) is not None


def _guid_check(v: str) -> bool:
    try:
        uuid.UUID(v)
    except ValueError:
        return False
    return True


def _datetime_check(v: str) -> bool:
    try:
        dt.datetime.fromisoformat(v)
    except ValueError:
        return False
    return True


_SIMPLE_CONSTRAINTS: dict[str, Callable[[str], bool]] = {
    "int": _int_check(32),
    "long": _int_check(64),
    "bool": lambda v: v.lower() in ("true", "false"),
    "guid": _guid_check,
    "alpha": lambda v: re.fullmatch(r"[a-zA-Z]+", v) is not None,
    "decimal": _decimal_check,
    "double": _float_check,
    "float": _float_check,
    "datetime": _datetime_check,
    "required": lambda v: v != "",
    "nonfile": lambda v: "." not in v,
    "file": lambda v: "." in v,
}


def _make_constraint(spec: str) -> Callable[[str], bool]:
    m = re.fullmatch(r"(\w+)(?:\((.*)\))?", spec, re.S)
    if not m:
        raise RouteTemplateError(f"invalid route constraint '{spec}'")
    name, arg = m.group(1).lower(), m.group(2)
    if arg is None:
        if name not in _SIMPLE_CONSTRAINTS:
            raise RouteTemplateError(f"unknown route constraint '{spec}'")
        return _SIMPLE_CONSTRAINTS[name]
    is_long = _int_check(64)

    def num(v: str) -> int | None:
        return int(v) if is_long(v) else None

    if name == "regex":
        rx = re.compile(arg, re.IGNORECASE)
        return lambda v: rx.search(v) is not None
    args = [a.strip() for a in arg.split(",")]
    try:
        ints = [int(a) for a in args]
    except ValueError:
        raise RouteTemplateError(f"invalid route constraint '{spec}'") from None
    if name == "min" and len(ints) == 1:
        return lambda v: (n := num(v)) is not None and n >= ints[0]
    if name == "max" and len(ints) == 1:
        return lambda v: (n := num(v)) is not None and n <= ints[0]
    if name == "range" and len(ints) == 2:
        return lambda v: (n := num(v)) is not None and ints[0] <= n <= ints[1]
    if name == "length" and len(ints) == 1:
        return lambda v: len(v) == ints[0]
    if name == "length" and len(ints) == 2:
        return lambda v: ints[0] <= len(v) <= ints[1]
    if name == "minlength" and len(ints) == 1:
        return lambda v: len(v) >= ints[0]
    if name == "maxlength" and len(ints) == 1:
        return lambda v: len(v) <= ints[0]
    raise RouteTemplateError(f"unknown route constraint '{spec}'")


@dataclass
class _Param:
    name: str
    optional: bool = False
    catch_all: bool = False
    default: str | None = None
    constraints: list[Callable[[str], bool]] = field(default_factory=list)
    constrained: bool = False

    def accepts(self, value: str) -> bool:
        return all(c(value) for c in self.constraints)


@dataclass
class _Segment:
    parts: list[str | _Param]  # literal text or parameter

    @property
    def is_literal(self) -> bool:
        return all(isinstance(p, str) for p in self.parts)

    @property
    def single_param(self) -> _Param | None:
        if len(self.parts) == 1 and isinstance(self.parts[0], _Param):
            return self.parts[0]
        return None

    def precedence(self) -> float:
        # ASP.NET Core RoutePrecedence.ComputeInboundPrecedenceDigit (lower wins)
        if self.is_literal:
            return 1
        p = self.single_param
        if p is None:
            return 2
        if p.catch_all:
            return 5
        return 3 if p.constrained else 4


_PARAM_RE = re.compile(r"\{([^{}]*(?:\([^)]*\))?[^{}]*)\}")


def _parse_param(body: str) -> _Param:
    catch_all = False
    if body.startswith("**"):
        catch_all, body = True, body[2:]
    elif body.startswith("*"):
        catch_all, body = True, body[1:]
    default: str | None = None
    optional = False
    # split name from constraints at the first ':' (constraint args may contain ':')
    name_part, _, constraint_part = body.partition(":")
    if "=" in (constraint_part or name_part):
        if constraint_part:
            # default after constraints: "{id:int=5}"
            constraint_part, _, default = constraint_part.rpartition("=")
        else:
            name_part, _, default = name_part.partition("=")
    if (constraint_part or name_part).endswith("?"):
        optional = True
        if constraint_part:
            constraint_part = constraint_part[:-1]
        else:
            name_part = name_part[:-1]
    name = name_part.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", name or "-"):
        raise RouteTemplateError(f"invalid route parameter name '{{{body}}}'")
    constraints: list[Callable[[str], bool]] = []
    specs: list[str] = []
    if constraint_part:
        # split on ':' not inside parentheses
        depth, cur = 0, ""
        for ch in constraint_part:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            if ch == ":" and depth == 0:
                specs.append(cur)
                cur = ""
            else:
                cur += ch
        specs.append(cur)
    for spec in specs:
        constraints.append(_make_constraint(spec))
    return _Param(
        name=name,
        optional=optional,
        catch_all=catch_all,
        default=default,
        constraints=constraints,
        constrained=bool(specs),
    )


_ENCODED_SLASH = re.compile("(%2[fF])")
_ESCAPE_RUN = re.compile("(?:%[0-9A-Fa-f]{2})+")


def _utf8_length(lead: int) -> int:
    """Bytes a UTF-8 sequence with this lead byte claims (0: not a lead byte)."""
    if lead < 0x80:
        return 1
    if lead & 0xE0 == 0xC0:
        return 2
    if lead & 0xF0 == 0xE0:
        return 3
    if lead & 0xF8 == 0xF0:
        return 4
    return 0


def _decode_run(run: str) -> str:
    """One run of ``%XX`` escapes, as Kestrel's UrlDecoder (dotnet/aspnetcore
    src/Shared/UrlDecoder/UrlDecoder.cs, ``DecodeCore`` / ``Copy``): each escaped UTF-8
    sequence that is valid is decoded; an invalid one (bad lead byte, a missing or wrong
    continuation byte, an overlong form, a surrogate, beyond U+10FFFF) is kept as written and
    decoding resumes at the next escape. Python's strict UTF-8 codec refuses exactly those
    sequences. Never U+FFFD: the real host would not turn ``%FF`` into a second spelling of
    ``%EF%BF%BD``."""
    data = unquote_to_bytes(run)
    out: list[str] = []
    i = 0
    while i < len(data):
        n = _utf8_length(data[i])
        try:
            if n == 0 or i + n > len(data):
                raise UnicodeDecodeError("utf-8", data, i, i + 1, "invalid sequence")
            out.append(data[i : i + n].decode("utf-8"))
            i += n
        except UnicodeDecodeError:
            out.append(run[3 * i : 3 * i + 3])  # this escape as written (case kept)
            i += 1
    return "".join(out)


def decode_segment(raw: str) -> str:
    """Percent-decode one raw path segment as Kestrel does: ``%2F`` (either case) is kept
    as written, since decoding it would change which segments the path has; every other
    escape of a valid UTF-8 sequence is decoded, an invalid sequence is kept as written
    (see ``_decode_run``)."""
    parts = _ENCODED_SLASH.split(raw)
    return "".join(
        part if i % 2 else _ESCAPE_RUN.sub(lambda m: _decode_run(m.group(0)), part)
        for i, part in enumerate(parts)
    )


def split_path(raw_path: str) -> list[str]:
    """Split a raw (percent-encoded) path into raw segments, without empties at ends."""
    path = raw_path.strip("/")
    return path.split("/") if path else []


class RouteTemplate:
    """A compiled route template; ``match(segments)`` → route values or None."""

    def __init__(self, template: str) -> None:
        self.template = template
        text = template.strip().lstrip("~").strip("/")
        self.segments: list[_Segment] = []
        names: set[str] = set()
        raw_segments = text.split("/") if text else []
        for i, raw in enumerate(raw_segments):
            if raw == "":
                raise RouteTemplateError(f"route template '{template}' has an empty segment")
            parts: list[str | _Param] = []
            pos = 0
            for m in _PARAM_RE.finditer(raw):
                if m.start() > pos:
                    parts.append(raw[pos : m.start()])
                param = _parse_param(m.group(1))
                if param.name.lower() in names:
                    raise RouteTemplateError(
                        f"route template '{template}' repeats parameter '{param.name}'"
                    )
                names.add(param.name.lower())
                parts.append(param)
                pos = m.end()
            if pos < len(raw):
                parts.append(raw[pos:])
            for p in parts:
                if isinstance(p, str) and ("{" in p or "}" in p):
                    raise RouteTemplateError(f"invalid route template '{template}'")
            seg = _Segment(parts)
            params = [p for p in parts if isinstance(p, _Param)]
            if any(p.catch_all for p in params) and (
                seg.single_param is None or i != len(raw_segments) - 1
            ):
                raise RouteTemplateError(
                    f"a catch-all parameter must be the last segment of '{template}'"
                )
            self.segments.append(seg)
        self.precedence = tuple(s.precedence() for s in self.segments)

    def __repr__(self) -> str:
        return f"RouteTemplate({self.template!r})"

    def sort_key(self) -> tuple[tuple[float, ...], int]:
        # Lower precedence digits first; longer templates before their prefixes.
        return (self.precedence, -len(self.segments))

    def match(self, raw_segments: list[str]) -> dict[str, str] | None:
        values: dict[str, str] = {}
        segs = self.segments
        n = len(raw_segments)
        for i, seg in enumerate(segs):
            p = seg.single_param
            if p is not None and p.catch_all:
                rest = "/".join(decode_segment(s) for s in raw_segments[i:])
                if rest == "" and p.default is not None:
                    rest = p.default
                if rest != "" and not p.accepts(rest):
                    return None
                if rest != "" or p.default is not None:
                    values[p.name] = rest
                return values
            if i >= n:
                # remaining template segments must all be optional / defaulted
                for rest_seg in segs[i:]:
                    rp = rest_seg.single_param
                    if rp is None or not (rp.optional or rp.default is not None or rp.catch_all):
                        return None
                    if rp.default is not None:
                        values[rp.name] = rp.default
                return values
            raw = raw_segments[i]
            if seg.is_literal:
                if decode_segment(raw).lower() != "".join(seg.parts).lower():  # type: ignore[arg-type]
                    return None
                continue
            if p is not None:
                value = decode_segment(raw)
                if value == "" or not p.accepts(value):
                    return None
                values[p.name] = value
                continue
            got = self._match_complex(seg, decode_segment(raw))
            if got is None:
                return None
            values.update(got)
        if n > len(segs):
            return None
        return values

    @staticmethod
    def _match_complex(seg: _Segment, value: str) -> dict[str, str] | None:
        pattern = ""
        params: list[_Param] = []
        for part in seg.parts:
            if isinstance(part, str):
                pattern += re.escape(part)
            else:
                params.append(part)
                # greedy: ASP.NET matches complex segments right to left
                pattern += "(.+)" if not part.optional else "(.*)"
        m = re.fullmatch(pattern, value, re.IGNORECASE | re.S)
        if m is None:
            return None
        out: dict[str, str] = {}
        for p, v in zip(params, m.groups(), strict=True):
            if v == "" and p.optional:
                continue
            if not p.accepts(v):
                return None
            out[p.name] = v
        return out
