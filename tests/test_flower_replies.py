"""What CineSync's fixes for lost federated replies rely on in Flower 1.42, checked so that an upgrade
that changes it fails here: Flower's own push gives up on a 500 (CineSync's SuperNode tries again), and
the SuperLink's SQLite state waits 5 s for a lock (CineSync's waits longer). The fixes themselves run
with real processes in tests/test_federated_faults.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from federated.supernode import push_retrier

FLOWER = "1.42.0"


def _server_error(code: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://superlink/v1/fleet/push-messages")
    return httpx.HTTPStatusError(str(code), request=request, response=httpx.Response(code, request=request))


class Failing:
    """A call that raises ``errors`` in turn, then returns "stored"; counts its calls."""

    def __init__(self, *errors: Exception) -> None:
        self.errors, self.calls = list(errors), 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "stored"


def test_flower_is_the_version_whose_gaps_cinesync_closes() -> None:
    import flwr

    assert flwr.__version__ == FLOWER, "re-check federated/superlink.py and federated/supernode.py for this Flower"


def test_flowers_own_push_gives_up_on_a_500_and_cinesyncs_tries_again() -> None:
    from flwr.supercore.retry import make_simple_http_retry_invoker

    stock = Failing(_server_error(500))
    with pytest.raises(httpx.HTTPStatusError):
        make_simple_http_retry_invoker().invoke(stock)
    assert stock.calls == 1  # when this fails, Flower retries 500s itself: the SuperNode wrapper may go

    ours = Failing(_server_error(500), _server_error(500))
    assert push_retrier(3).invoke(ours) == "stored" and ours.calls == 3
    refused = Failing(_server_error(403))
    with pytest.raises(httpx.HTTPStatusError):
        push_retrier(3).invoke(refused)
    assert refused.calls == 1  # a refusal is not tried again
    with pytest.raises(httpx.HTTPStatusError):
        push_retrier(2).invoke(Failing(*[_server_error(500)] * 3))  # bounded


def test_the_superlink_state_waits_longer_for_a_lock(tmp_path: Path) -> None:
    probe = """
import sys
from flwr.supercore.sql_mixin import SqlMixin
class State(SqlMixin):
    pass
if sys.argv[2] == "cinesync":
    from federated.superlink import wait_for_locks
    wait_for_locks(43210)
state = State(sys.argv[1])
state.initialize()
print(state.query("PRAGMA busy_timeout")[0]["timeout"])
"""
    timeouts = [subprocess.run([sys.executable, "-c", probe, str(tmp_path / f"{who}.db"), who], check=True,
                               capture_output=True, text=True).stdout.split()[-1] for who in ("flower", "cinesync")]
    assert timeouts == ["5000", "43210"]  # Flower's own 5 s, and what CineSync's SuperLink sets over it
