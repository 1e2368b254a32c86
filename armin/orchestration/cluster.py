"""Connecting the driver to Ray, checked before the study row or any trial is touched.

Why this is its own step: Ray's own `ray.init` hangs for minutes (deaf to Ctrl-C and SIGTERM) on an
address nothing listens at, silently rejoins a dead cluster recorded by an earlier `ray start` when no
address is given, retries for 20 s and prints pages of C++ log lines when the token authentication
modes differ, and queues a trial the cluster can never place forever. Here:

- no `--address` and no `$RAY_ADDRESS`: a fresh local cluster (`address="local"`), never the one
  named in /tmp/ray/ray_current_cluster;
- an address is parsed first (`HOST:PORT`, `ray://HOST:PORT`, `auto`, `local`) and a TCP connection
  to it is tried with a timeout before Ray is asked (interruptible, one line if nothing answers);
- Ray's failure to connect (token mode mismatch included) becomes one line naming RAY_AUTH_MODE;
- one trial's resources must fit on one live node of the cluster, or the start is refused;
- Ray's token-authentication notice, printed on every local start, is silenced.
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from armin.errors import ClusterError

CONNECT_TIMEOUT_S = 10.0  # a TCP connection to the address, then about as long for Ray's own retries
CONNECT_TIMEOUT_ENV = "ARMIN_CONNECT_TIMEOUT_S"  # overrides it: a slow network, or a test that need not wait
TOKEN_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"  # logs the token notice
AUTH_HINT = ("if the cluster was started by `ray start --head` (token authentication by default in Ray 2.60), set "
             "RAY_AUTH_MODE=token here with the cluster's token in ~/.ray/auth_token or $RAY_AUTH_TOKEN, or start "
             "every node and this driver with RAY_AUTH_MODE=disabled")
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.\-]+):(?P<port>\d{1,5})$")


def connect_timeout_s() -> float:
    """The connect timeout: $ARMIN_CONNECT_TIMEOUT_S if set (a positive number of seconds), else the default."""
    raw = os.environ.get(CONNECT_TIMEOUT_ENV)
    if raw is None:
        return CONNECT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ClusterError(f"${CONNECT_TIMEOUT_ENV}: expected a positive number of seconds, got {raw!r}")
    return value


def resolve_address(address: str | None) -> tuple[str, str | None, tuple[str, int] | None]:
    """(where it came from, what to pass to `ray.init`, the (host, port) to probe or None).

    Without an address (option or $RAY_ADDRESS) this is "local": a fresh cluster, whatever an earlier
    `ray start` recorded.
    """
    source = "--address"
    if not address:
        address, source = os.environ.get("RAY_ADDRESS") or None, "$RAY_ADDRESS"
    if address is None:
        return "a local cluster", "local", None
    text = address.strip()
    if text in ("auto", "local"):
        return f"{source} {text}", text, None
    m = _HOST_PORT.match(text.removeprefix("ray://"))
    if m is None or not 0 < int(m["port"]) < 65536:
        raise ClusterError(f"{source}: expected HOST:PORT (e.g. 10.0.0.5:6379), ray://HOST:PORT, auto or local; "
                           f"got {address!r}")
    return f"{source} {text}", text, (m["host"].strip("[]"), int(m["port"]))


def probe(where: str, host: str, port: int, timeout_s: float) -> None:
    """A plain TCP connection: refused or silent within the timeout is one line, not a Ray hang."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except socket.gaierror as e:
        raise ClusterError(f"{where}: cannot resolve host {host!r} ({e.strerror})") from None
    except TimeoutError:
        raise ClusterError(f"{where}: no answer within {timeout_s:g} s; is the Ray head node up and port {port} "
                           f"reachable from here?") from None
    except OSError as e:
        raise ClusterError(f"{where}: nothing accepts connections there ({e.strerror}); start the head with "
                           f"`ray start --head --port {port}`") from None


def silence_token_notice() -> None:
    """Ray 2.60 logs a token-authentication notice on every local start; armin's runs don't repeat it."""
    logging.getLogger(TOKEN_NOTICE_LOGGER).setLevel(logging.ERROR)


@contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Ray's C++ core logs connection retries straight to file descriptor 2: keep them out of the terminal
    while connecting; they are handed back in the yielded list (read after the block) to explain a failure."""
    out: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as f:
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            out.append(f.read().decode(errors="replace"))


def join_timeouts(timeout_s: float) -> dict[str, str]:
    """Ray's connect retries, bounded (the user's own settings win): each attempt waits at most
    `timeout_s` for the GCS, and two attempts are made, instead of minutes."""
    return {"RAY_py_gcs_connect_timeout_s": str(max(1, round(timeout_s))),
            "RAY_gcs_rpc_server_connect_timeout_s": str(max(1, round(timeout_s / 2))),
            "RAY_gcs_server_port_wait_time_s": "2"}


@contextmanager
def _ray_timeouts(joining: bool, timeout_s: float) -> Iterator[None]:
    """Ray reads these from the environment into a cached config: set them, reload it, and put the
    environment back afterwards (a local start's processes never see them)."""
    if not joining:
        yield
        return
    from ray._raylet import Config

    added = {k: v for k, v in join_timeouts(timeout_s).items() if k not in os.environ}
    os.environ.update(added)
    Config.initialize("")  # what Ray itself does after changing RAY_AUTH_MODE in-process
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


@contextmanager
def _signals_raise(interrupt: type[BaseException]) -> Iterator[None]:
    """While connecting, SIGTERM raises like Ctrl-C (`interrupt(signum)`) instead of killing the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum, frame):
        raise interrupt(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def connect(address: str | None, interrupt: type[BaseException] = KeyboardInterrupt) -> str:
    """Start or join the cluster; return how it was reached (for messages). Raise `ClusterError` on failure."""
    import ray

    where, target, hostport = resolve_address(address)
    timeout_s = connect_timeout_s()
    silence_token_notice()
    with _signals_raise(interrupt):
        if hostport is not None:
            probe(where, *hostport, timeout_s)
        try:
            # Only when joining: a local start's child processes would inherit the captured descriptor.
            with _ray_timeouts(hostport is not None, timeout_s), \
                    (_captured_stderr() if hostport is not None else nullcontext([])) as log:
                try:
                    ray.init(address=target, include_dashboard=False, log_to_driver=False, configure_logging=False)
                except BaseException as e:
                    ray.shutdown()  # whatever it started (a local cluster half up) goes with it
                    if isinstance(e, SystemExit) and e.code == signal.SIGTERM:  # ray.init's own SIGTERM handler
                        raise interrupt(signal.SIGTERM) from None
                    raise
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as e:
            text = f"{e} {' '.join(log)}"
            first = (str(e).splitlines() or [type(e).__name__])[0][:200]
            if "Unauthenticated" in text or "InvalidAuthToken" in text or "uthentication" in first:
                raise ClusterError(f"{where}: the cluster refused this driver's authentication; {AUTH_HINT}") from None
            raise ClusterError(f"{where}: cannot connect to Ray ({first}) within about {3 * timeout_s:g} s; "
                               f"is a Ray head node (`ray start --head`) listening there?") from None
    return where


def check_resources(where: str, cpus: float, gpus: float) -> None:
    """One trial's CPUs and GPUs must fit on one live node; otherwise Ray would queue it forever."""
    import ray

    refuse_unless_fits(where, cpus, gpus, [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")])


def refuse_unless_fits(where: str, cpus: float, gpus: float, nodes: list[dict]) -> None:
    """`nodes`: each live node's resources ({"CPU": ..., "GPU": ...}); one of them must hold one trial."""
    if any(n.get("CPU", 0) + 1e-9 >= cpus and n.get("GPU", 0) + 1e-9 >= gpus for n in nodes):
        return
    biggest_cpu = max((n.get("CPU", 0) for n in nodes), default=0)
    biggest_gpu = max((n.get("GPU", 0) for n in nodes), default=0)
    raise ClusterError(f"[resources] one trial needs cpus = {cpus:g}, gpus = {gpus:g} on one node, but the largest "
                       f"node of {where} has {biggest_cpu:g} CPUs and {biggest_gpu:g} GPUs ({len(nodes)} live "
                       f"nodes); lower [resources] or join a bigger cluster")


@contextmanager
def connected(address: str | None, cpus: float, gpus: float,
              interrupt: type[BaseException] = KeyboardInterrupt) -> Iterator[None]:
    """Ray for one driver run: joined (or started) and checked on entry, shut down on exit if we started it.

    A Ray already initialised in this process (tests, notebooks) is used as it is, and still checked.
    """
    import ray

    owns = not ray.is_initialized()
    where = connect(address, interrupt) if owns else "the Ray cluster this process is connected to"
    try:
        check_resources(where, cpus, gpus)
        yield
    finally:
        if owns:
            ray.shutdown()
