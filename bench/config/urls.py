"""Endpoint URLs: validation with messages that say what to pass, and redaction for display."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """Drop user:password, the query string and the fragment (where keys hide) from a URL.

    Never raises, so a message about a malformed URL can show it too (through this only).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return _redact_text(url)
    if not parts.netloc:  # "user:pw@host/v1" has no "//": urlsplit reads "user" as the scheme
        return _redact_text(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{port}" if port else "")
    return _printable(urlunsplit((parts.scheme, netloc, parts.path, "", "")))


def _redact_text(url: str) -> str:
    """redact_url by hand, for what urlsplit refuses: keep scheme, host, a numeric port, path."""
    text = re.split(r"[?#]", url, maxsplit=1)[0]
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    netloc, slash, path = rest.partition("/")
    netloc = netloc.rpartition("@")[2]
    host, colon, port = netloc.rpartition(":")
    if colon and not port.isdigit() and not netloc.startswith("["):
        netloc = host  # "http://user:pw/v1" (host forgotten): the "port" may be a password
    return _printable(f"{scheme}{sep}{netloc}{slash}{path}")


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


URL_EXAMPLE = "http://HOST:PORT/v1"


def check_base_url(url: str) -> str:
    """``url`` without a trailing slash (before any query), or a ValueError that says what is
    wrong and what to pass. Messages show the URL only through :func:`redact_url`."""
    problem = _url_problem(url)
    if problem:
        raise ValueError(f"{redact_url(url)!r}: {problem}; pass a base URL like {URL_EXAMPLE}")
    base, sep, query = url.partition("?")
    return base.rstrip("/") + sep + query


def _url_problem(url: str) -> str | None:
    """What is wrong with an endpoint URL, or None. Nothing here reads ``.port`` unguarded:
    urllib raises ValueError for a port it cannot parse."""
    if any(c.isspace() or not c.isprintable() for c in url):
        return "it contains a space or a control character"
    try:
        parts = urlsplit(url)
    except ValueError:
        return _NOT_IPV6
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return "base_url must start with http:// or https://"
    hostport = parts.netloc.rpartition("@")[2]
    after_host = hostport.rpartition("]")[2]
    port = after_host.rpartition(":")[2] if ":" in after_host else ""
    if port and not port.isdigit():
        return "the port is not a number"
    if port and not 0 < int(port) < 65536:
        return f"port {int(port)} is out of range (1-65535)"
    host = parts.hostname or ""
    if not host:
        return "it has no host name"
    if hostport.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return _NOT_IPV6
    elif not host.isascii():
        return "the host name is not ASCII: write it in its xn-- (punycode) form"
    elif re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return "the host is not a valid IPv4 address"
    elif not re.fullmatch(r"[a-z0-9._~%!$&'()*+,;=-]+", host):
        return "the host name has characters a host name cannot have"
    return None


_NOT_IPV6 = "the host is not a valid IPv6 address (write one like http://[::1]:8080/v1)"
