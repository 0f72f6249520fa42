"""SQLite store: networks, containers and their attachments, one transaction per change.

berthd is the only writer, so the store keeps one connection guarded by a lock; WAL mode lets the
diagnostic readers (tests, ``sqlite3`` by hand) read while berthd writes. Records carry a ``state``
(``pending`` while kernel work is under way, ``active`` once it is done) so that reconciliation after a
crash can tell finished work from interrupted work.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import replace
from ipaddress import ip_address, ip_interface
from pathlib import Path
from typing import Any, Iterator

from berth.errors import BerthError
from berth.model import Attachment, Container, ContainerState, ExternalEndpoint, Network

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    driver TEXT NOT NULL,
    scope TEXT NOT NULL,
    created TEXT NOT NULL,
    enable_ipv6 INTEGER NOT NULL,
    internal INTEGER NOT NULL,
    attachable INTEGER NOT NULL,
    ipam TEXT NOT NULL,
    options TEXT NOT NULL,
    labels TEXT NOT NULL,
    bridge TEXT UNIQUE,
    builtin INTEGER NOT NULL DEFAULT 0,
    user_subnets INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image TEXT NOT NULL,
    image_id TEXT NOT NULL,
    created TEXT NOT NULL,
    config TEXT NOT NULL,
    host_config TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attachments (
    container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    network_id TEXT NOT NULL REFERENCES networks(id),
    seq INTEGER NOT NULL,
    aliases TEXT NOT NULL,
    ipv4_request TEXT NOT NULL,
    ipv6_request TEXT NOT NULL,
    endpoint_id TEXT UNIQUE,
    ifname TEXT,
    host_ifname TEXT UNIQUE,
    ipv4 TEXT,
    ipv6 TEXT,
    mac TEXT,
    gateway4 TEXT,
    gateway6 TEXT,
    state TEXT NOT NULL,
    PRIMARY KEY (container_id, network_id)
);
CREATE INDEX IF NOT EXISTS attachments_by_network ON attachments(network_id);
CREATE TABLE IF NOT EXISTS external_endpoints (
    container_id TEXT NOT NULL,
    network_id TEXT NOT NULL REFERENCES networks(id),
    cni_network TEXT NOT NULL,
    netns TEXT NOT NULL,
    name TEXT NOT NULL,
    aliases TEXT NOT NULL,
    ipv4_request TEXT NOT NULL,
    ipv6_request TEXT NOT NULL,
    endpoint_id TEXT UNIQUE,
    ifname TEXT NOT NULL,
    host_ifname TEXT UNIQUE,
    ipv4 TEXT,
    ipv6 TEXT,
    mac TEXT,
    gateway4 TEXT,
    gateway6 TEXT,
    state TEXT NOT NULL,
    PRIMARY KEY (container_id, ifname)
);
CREATE TABLE IF NOT EXISTS cni_configs (
    network_id TEXT PRIMARY KEY REFERENCES networks(id) ON DELETE CASCADE,
    conflist TEXT NOT NULL,
    source TEXT NOT NULL,
    discovered INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cni_results (
    container_id TEXT NOT NULL,
    network_id TEXT NOT NULL,
    ifname TEXT NOT NULL,
    conflist TEXT NOT NULL,
    result TEXT,
    PRIMARY KEY (container_id, network_id)
);
"""


class StoreError(BerthError):
    """The state database could not be read or written (full disk, read-only directory, corruption)."""


class Store:
    """All of berth's persistent records. Methods are atomic; ``transaction()`` groups several."""

    def __init__(self, path: Path | str) -> None:
        self._lock = threading.RLock()
        self._depth = 0
        # Read-mostly tables are cached until the next write: berthd is the only writer, and every
        # attach looks networks and containers up several times.
        self._networks: dict[str | None, list[Network]] = {}
        self._containers: list[Container] | None = None
        try:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        except sqlite3.Error as err:
            raise StoreError(f"cannot open state database {path}: {err}") from err

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` transaction; nested uses join the outer one."""
        with self._lock:
            outer = self._depth == 0
            try:
                if outer:
                    self._db.execute("BEGIN IMMEDIATE")
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                if outer:
                    self._db.execute("COMMIT")
            except sqlite3.Error as err:
                if outer:
                    self._rollback()
                raise StoreError(f"state database error: {err}") from err
            except BaseException:
                if outer:
                    self._rollback()
                raise

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        self._networks.clear()  # the caches may hold rows of the abandoned transaction
        self._containers = None

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._lock:
            if not sql.startswith("SELECT"):
                if " networks" in sql:
                    self._networks.clear()
                if " containers" in sql:  # not attachments: a container row holds none of them, and
                    self._containers = None  # reloading every container at each connect is O(containers)
            try:
                return self._db.execute(sql, args)
            except sqlite3.Error as err:
                raise StoreError(f"state database error: {err}") from err

    # -- networks -------------------------------------------------------------------------------

    def add_network(self, net: Network, state: str = "pending") -> None:
        self._exec(
            "INSERT INTO networks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                net.id, net.name, net.driver, net.scope, net.created, int(net.enable_ipv6), int(net.internal),
                int(net.attachable), json.dumps(net.ipam), json.dumps(net.options), json.dumps(net.labels),
                net.bridge, int(net.builtin), int(net.user_subnets), state,
            ),
        )

    def set_network_state(self, network_id: str, state: str) -> None:
        self._exec("UPDATE networks SET state=? WHERE id=?", (state, network_id))

    def remove_network(self, network_id: str) -> None:
        self._exec("DELETE FROM networks WHERE id=?", (network_id,))

    def networks(self, state: str | None = "active") -> list[Network]:
        with self._lock:
            cached = self._networks.get(state)
            if cached is None:
                sql = "SELECT * FROM networks" + (" WHERE state=?" if state else "")
                rows = self._exec(sql, (state,) if state else ()).fetchall()
                cached = self._networks[state] = [_network(r) for r in rows]
            return list(cached)

    def network_states(self) -> dict[str, str]:
        return dict(self._exec("SELECT id, state FROM networks").fetchall())

    # -- containers -----------------------------------------------------------------------------

    def add_container(self, c: Container) -> None:
        self._exec(
            "INSERT INTO containers VALUES (?,?,?,?,?,?,?,?)",
            (c.id, c.name, c.image, c.image_id, c.created, json.dumps(c.config), json.dumps(c.host_config),
             json.dumps(c.state.__dict__)),
        )

    def set_container_state(self, container_id: str, state: ContainerState) -> None:
        self._exec("UPDATE containers SET state=? WHERE id=?", (json.dumps(state.__dict__), container_id))

    def set_container_name(self, container_id: str, name: str) -> None:
        self._exec("UPDATE containers SET name=? WHERE id=?", (name, container_id))

    def remove_container(self, container_id: str) -> None:
        self._exec("DELETE FROM containers WHERE id=?", (container_id,))

    def containers(self) -> list[Container]:
        with self._lock:
            if self._containers is None:
                rows = self._exec("SELECT * FROM containers ORDER BY created").fetchall()
                self._containers = [_container(r) for r in rows]
            return list(self._containers)

    def container(self, container_id: str) -> Container | None:
        return next((c for c in self.containers() if c.id == container_id), None)

    # -- attachments ----------------------------------------------------------------------------

    def add_attachment(self, a: Attachment, state: str = "active") -> None:
        self._exec(
            "INSERT INTO attachments VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (a.container_id, a.network_id, a.seq, json.dumps(list(a.aliases)), a.ipv4_request, a.ipv6_request,
             *_endpoint_fields(a), state),
        )

    def put_attachment(self, a: Attachment, state: str) -> None:
        """Insert the attachment with its endpoint, or record the endpoint of the existing one: a
        connect stores the attachment and its pending endpoint in one write (one commit, not two)."""
        self._exec(
            "INSERT INTO attachments VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(container_id, network_id)"
            f" DO UPDATE SET {_SET_ENDPOINT_FROM_INSERT}",
            (a.container_id, a.network_id, a.seq, json.dumps(list(a.aliases)), a.ipv4_request, a.ipv6_request,
             *_endpoint_fields(a), state),
        )

    def set_endpoint(self, a: Attachment, state: str) -> None:
        """Record (or clear, when ``a.endpoint_id`` is None) the runtime half of an attachment."""
        self._exec(
            f"UPDATE attachments SET {_SET_ENDPOINT} WHERE container_id=? AND network_id=?",
            (*_endpoint_fields(a), state, a.container_id, a.network_id),
        )

    def remove_attachment(self, container_id: str, network_id: str) -> None:
        self._exec("DELETE FROM attachments WHERE container_id=? AND network_id=?", (container_id, network_id))

    def attachments(self, container_id: str | None = None, network_id: str | None = None) -> list[Attachment]:
        where, args = [], []
        if container_id:
            where.append("container_id=?")
            args.append(container_id)
        if network_id:
            where.append("network_id=?")
            args.append(network_id)
        sql = "SELECT * FROM attachments" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq"
        return [_attachment(r) for r in self._exec(sql, tuple(args)).fetchall()]

    def attachment_states(self) -> list[tuple[Attachment, str]]:
        rows = self._exec("SELECT * FROM attachments").fetchall()
        return [(_attachment(r), r[14]) for r in rows]

    # -- endpoints in namespaces berth does not own (CNI) ----------------------------------------

    def add_external(self, ep: ExternalEndpoint, state: str = "pending") -> None:
        a = ep.attachment
        self._exec(
            "INSERT INTO external_endpoints VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (a.container_id, a.network_id, ep.cni_network, ep.netns, ep.name, json.dumps(list(a.aliases)),
             a.ipv4_request, a.ipv6_request, *_endpoint_fields(a), state),
        )

    def set_external(self, a: Attachment, state: str) -> None:
        """Record the endpoint half of an external endpoint (``ifname`` is its key and never changes)."""
        self._exec(
            f"UPDATE external_endpoints SET {_SET_ENDPOINT} WHERE container_id=? AND ifname=?",
            (*_endpoint_fields(a), state, a.container_id, a.ifname),
        )

    def remove_external(self, container_id: str, ifname: str) -> None:
        self._exec("DELETE FROM external_endpoints WHERE container_id=? AND ifname=?", (container_id, ifname))

    def externals(self, network_id: str | None = None) -> list[tuple[ExternalEndpoint, str]]:
        """External endpoints with their record state, all or those of one network."""
        sql = "SELECT * FROM external_endpoints" + (" WHERE network_id=?" if network_id else "")
        rows = self._exec(sql, (network_id,) if network_id else ()).fetchall()
        return [(_external(r), r[16]) for r in rows]

    # -- CNI networks: the configuration list each was created from, and each endpoint's ADD result ------

    def set_cni_config(self, network_id: str, conflist: dict[str, Any], source: str, discovered: bool) -> None:
        self._exec("INSERT OR REPLACE INTO cni_configs VALUES (?,?,?,?)",
                   (network_id, json.dumps(conflist), source, int(discovered)))

    def cni_config(self, network_id: str) -> tuple[dict[str, Any], str, bool] | None:
        """A CNI network's configuration list, the file it came from, and whether it was discovered."""
        row = self._exec("SELECT conflist, source, discovered FROM cni_configs WHERE network_id=?",
                         (network_id,)).fetchone()
        return (json.loads(row[0]), row[1], bool(row[2])) if row else None

    def set_cni_result(self, container_id: str, network_id: str, ifname: str, conflist: dict[str, Any],
                       result: dict[str, Any] | None) -> None:
        """Cache an endpoint's chain (before ADD, result None) and then its final ADD result."""
        self._exec("INSERT OR REPLACE INTO cni_results VALUES (?,?,?,?,?)",
                   (container_id, network_id, ifname, json.dumps(conflist),
                    json.dumps(result) if result is not None else None))

    def cni_result(self, container_id: str, network_id: str) -> tuple[str, dict[str, Any], dict[str, Any] | None] | None:
        """The cached ifname, configuration list and ADD result (None if ADD never finished) of an endpoint."""
        row = self._exec("SELECT ifname, conflist, result FROM cni_results WHERE container_id=? AND network_id=?",
                         (container_id, network_id)).fetchone()
        return (row[0], json.loads(row[1]), json.loads(row[2]) if row[2] else None) if row else None

    def remove_cni_result(self, container_id: str, network_id: str) -> None:
        self._exec("DELETE FROM cni_results WHERE container_id=? AND network_id=?", (container_id, network_id))

    def cni_results(self) -> list[tuple[str, str]]:
        """(container id, network id) of every cached endpoint, for reconciliation."""
        return [(r[0], r[1]) for r in self._exec("SELECT container_id, network_id FROM cni_results").fetchall()]


# The endpoint half of an attachment row and of an external endpoint row, in _endpoint_fields' order,
# then the record state: one list for every statement that writes it.
_ENDPOINT_COLUMNS = ("endpoint_id", "ifname", "host_ifname", "ipv4", "ipv6", "mac", "gateway4", "gateway6", "state")
_SET_ENDPOINT = ", ".join(f"{c}=?" for c in _ENDPOINT_COLUMNS)
_SET_ENDPOINT_FROM_INSERT = ", ".join(f"{c}=excluded.{c}" for c in _ENDPOINT_COLUMNS)


def _endpoint_fields(a: Attachment) -> tuple[Any, ...]:
    return (
        a.endpoint_id, a.ifname, a.host_ifname,
        str(a.ipv4) if a.ipv4 else None, str(a.ipv6) if a.ipv6 else None, a.mac,
        str(a.gateway4) if a.gateway4 else None, str(a.gateway6) if a.gateway6 else None,
    )


def _network(r: tuple[Any, ...]) -> Network:
    return Network(
        id=r[0], name=r[1], driver=r[2], scope=r[3], created=r[4], enable_ipv6=bool(r[5]), internal=bool(r[6]),
        attachable=bool(r[7]), ipam=json.loads(r[8]), options=json.loads(r[9]), labels=json.loads(r[10]),
        bridge=r[11], builtin=bool(r[12]), user_subnets=bool(r[13]),
    )


def _container(r: tuple[Any, ...]) -> Container:
    return Container(
        id=r[0], name=r[1], image=r[2], image_id=r[3], created=r[4], config=json.loads(r[5]),
        host_config=json.loads(r[6]), state=ContainerState(**json.loads(r[7])),
    )


def _attachment(r: tuple[Any, ...]) -> Attachment:
    return Attachment(
        container_id=r[0], network_id=r[1], seq=r[2], aliases=tuple(json.loads(r[3])), ipv4_request=r[4],
        ipv6_request=r[5], endpoint_id=r[6], ifname=r[7], host_ifname=r[8],
        ipv4=ip_interface(r[9]) if r[9] else None, ipv6=ip_interface(r[10]) if r[10] else None, mac=r[11],
        gateway4=ip_address(r[12]) if r[12] else None, gateway6=ip_address(r[13]) if r[13] else None,
    )


def _external(r: tuple[Any, ...]) -> ExternalEndpoint:
    a = Attachment(
        container_id=r[0], network_id=r[1], seq=0, aliases=tuple(json.loads(r[5])), ipv4_request=r[6],
        ipv6_request=r[7], endpoint_id=r[8], ifname=r[9], host_ifname=r[10],
        ipv4=ip_interface(r[11]) if r[11] else None, ipv6=ip_interface(r[12]) if r[12] else None, mac=r[13],
        gateway4=ip_address(r[14]) if r[14] else None, gateway6=ip_address(r[15]) if r[15] else None,
    )
    return ExternalEndpoint(netns=r[3], name=r[4], cni_network=r[2], attachment=a)


def cleared(a: Attachment) -> Attachment:
    """The attachment without its runtime endpoint (container stopped or endpoint torn down)."""
    return replace(a, endpoint_id=None, ifname=None, host_ifname=None, ipv4=None, ipv6=None, mac=None,
                   gateway4=None, gateway6=None)
