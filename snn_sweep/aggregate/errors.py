"""The aggregator's exceptions, and an exception's message on one line."""


class AggregateError(Exception):
    """Bad input: printed as one line, exit status 1."""


class Unusual(Exception):
    """A metrics.csv group that the grouped reading (read_curves) does not vouch for."""


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
