"""Route template matching (ASP.NET Core syntax as used by the Functions host)."""

from __future__ import annotations

import pytest

from localdev.host.routes import RouteTemplate, RouteTemplateError, decode_segment, split_path


def m(template: str, path: str) -> dict[str, str] | None:
    return RouteTemplate(template).match(split_path(path))


# Kestrel's UrlDecoder (dotnet/aspnetcore src/Shared/UrlDecoder/UrlDecoder.cs): DecodeCore
# refuses an invalid lead byte, a non-continuation byte, an overlong form, a UTF-16 surrogate
# (0xD800-0xDFFF) and anything above U+10FFFF; Copy then writes the escapes it scanned as they
# were written, never U+FFFD. So "%FF" is not a second spelling of "%EF%BF%BD".
@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("%FF", "%FF"),  # not a UTF-8 lead byte
        ("%ff", "%ff"),  # kept as written, case included
        ("%C0%AF", "%C0%AF"),  # overlong '/'
        ("%ED%A0%80", "%ED%A0%80"),  # surrogate U+D800
        ("%F4%90%80%80", "%F4%90%80%80"),  # above U+10FFFF
        ("%E2%82", "%E2%82"),  # truncated sequence
        ("%E2%82x", "%E2%82x"),
        ("%80", "%80"),  # lone continuation byte
        ("%EF%BF%BD", "\ufffd"),  # U+FFFD itself, validly encoded
        ("%C3%A9", "\u00e9"),
        ("%E2%82%AC", "\u20ac"),
        ("%F0%9F%98%80", "\U0001f600"),
        ("%C3%A9%FF%41", "\u00e9%FFA"),  # the valid escapes around an invalid one decode
        ("%E2%41", "%E2A"),  # decoding resumes at the escape that broke the sequence
        ("a%2F%FF%20b", "a%2F%FF b"),
    ],
)
def test_decode_segment_keeps_invalid_utf8_as_written(raw: str, decoded: str) -> None:
    assert decode_segment(raw) == decoded


def test_invalid_utf8_is_not_another_spelling_of_the_replacement_character() -> None:
    assert decode_segment("%FF") != decode_segment("%EF%BF%BD")
    assert m("users/{id}", "users/%FF") == {"id": "%FF"}


def test_literals_are_case_insensitive() -> None:
    assert m("Products/List", "products/LIST") == {}
    assert m("products/list", "products") is None
    assert m("products", "products/list") is None


def test_parameters_and_decoding() -> None:
    assert m("users/{id}/posts/{post}", "users/42/posts/a%20b") == {"id": "42", "post": "a b"}
    # Kestrel leaves %2F encoded in route values and decodes every other escape
    # (dotnet/aspnetcore#2655 "the only exception seems to be %2F", #17864)
    assert m("p/{x}", "p/a%2Fb") == {"x": "a%2Fb"}
    assert m("p/{x}", "p/a%2fb") == {"x": "a%2fb"}
    assert m("p/{x}", "p/a%252Fb") == {"x": "a%2Fb"}
    assert m("p/{x}", "p/%25%3F%23%20%C3%A9") == {"x": "%?# é"}
    assert m("files/{*rest}", "files/a/b%2Fc%20d") == {"rest": "a/b%2Fc d"}


@pytest.mark.parametrize(
    ("template", "good", "bad"),
    [
        ("{v:int}", "-12", "1.5"),
        ("{v:int}", "2147483647", "2147483648"),
        ("{v:long}", "2147483648", "x"),
        ("{v:alpha}", "Abc", "abc1"),
        ("{v:bool}", "TRUE", "yes"),
        ("{v:guid}", "0f8fad5b-d9cb-469f-a165-70867728950e", "0f8fad5b"),
        ("{v:double}", "1.5", "abc"),
        ("{v:min(10)}", "10", "9"),
        ("{v:range(1,3)}", "3", "4"),
        ("{v:length(2)}", "ab", "abc"),
        ("{v:maxlength(2)}", "ab", "abc"),
        ("{v:regex(^a+$)}", "aaa", "aab"),
        ("{v:int:min(5)}", "7", "3"),
    ],
)
def test_constraints(template: str, good: str, bad: str) -> None:
    assert m(template, good) == {"v": good}
    assert m(template, bad) is None


def test_optional_default_and_catch_all() -> None:
    assert m("opt/{name?}", "opt") == {}
    assert m("opt/{name?}", "opt/x") == {"name": "x"}
    assert m("def/{name=abc}", "def") == {"name": "abc"}
    assert m("files/{*rest}", "files/a/b%20c/d.txt") == {"rest": "a/b c/d.txt"}
    assert m("files/{*rest}", "files") == {}
    assert m("files/{*rest}", "other/a") is None


def test_complex_segment() -> None:
    assert m("dl/{name}.{ext}", "dl/report.final.pdf") == {"name": "report.final", "ext": "pdf"}
    assert m("dl/{name}.{ext}", "dl/report") is None


def test_precedence_orders_literals_before_parameters() -> None:
    templates = ["items/{*rest}", "items/{slug}", "items/{id:int}", "items/new"]
    ordered = sorted((RouteTemplate(t) for t in templates), key=lambda r: r.sort_key())
    assert [r.template for r in ordered] == [
        "items/new",
        "items/{id:int}",
        "items/{slug}",
        "items/{*rest}",
    ]


@pytest.mark.parametrize("template", ["a/{*b}/c", "a//b", "{x}/{X}", "{x:nosuch}", "a/{b"])
def test_invalid_templates(template: str) -> None:
    with pytest.raises(RouteTemplateError):
        RouteTemplate(template)
