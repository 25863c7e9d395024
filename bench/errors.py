"""The one exception family the CLI turns into a clean message.

Core modules raise a ``BenchError`` subclass whose text tells the user what to do; ``bench.cli``
catches it once and exits with ``exit_code`` (no traceback for user mistakes).
"""


class BenchError(Exception):
    exit_code = 1


class ConfigError(BenchError):
    """bench.yaml, a prompts file or a flag is wrong."""

    exit_code = 2


class EndpointError(BenchError):
    """A server cannot be reached or refuses what we ask."""


class ResultsError(BenchError):
    """A results file is corrupt, too new, missing, or cannot be written."""


class ResponseError(EndpointError):
    """One answer broke the protocol or bench's bounds: that request fails with ``kind``
    (an ``ErrorKind`` of ``bench.results.schema``: "protocol", "runaway", "server_error", "timeout"),
    the run goes on."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
