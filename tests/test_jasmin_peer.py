"""Jasmin answers as an SMSC: the SMPP 3.4 exchanges that the MMSC's client relies on.

These prove the test peer itself (scripts/jasmin.sh, tests/jasmin.py) with raw
sockets and struct, so that a later failure of the MMSC's SMPP client against
Jasmin points at the client, not at the peer or at a shared SMPP library.
"""

# ruff: noqa: F811  (tests take the imported session fixture as a parameter of the same name)

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from tests.jasmin import Jasmin, jasmin_server  # noqa: F401
from tests.smpp_fixture import submit_sm

# SMPP 3.4 §5.1.2.1 command ids and §5.1.3 command_status values.
RESPONSE = 0x80000000
BIND_TRANSCEIVER = 0x00000009
SUBMIT_SM = 0x00000004
UNBIND = 0x00000006
ENQUIRE_LINK = 0x00000015
ESME_ROK = 0x00000000
ESME_RBINDFAIL = 0x0000000D
ESME_RINVPASWD = 0x0000000E
INTERFACE_VERSION = 0x34
TIMEOUT = 10.0  # seconds for one answer; Jasmin answers on loopback in milliseconds

# A WAP push as the MMSC sends it: UDH (port 2948 -> 9200), WSP push header, a few octets.
WAP_PUSH = bytes.fromhex("0605040b8423f0010603beaf848c829874657374")


@dataclass(frozen=True)
class Pdu:
    command_id: int
    command_status: int
    sequence_number: int
    body: bytes


class Esme:
    """A bare ESME connection: whole PDUs out and in, enquire_link answered on the way."""

    def __init__(self, server: Jasmin) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
        self.sequence = 0

    def close(self) -> None:
        self.sock.close()

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence

    def send(self, command_id: int, body: bytes = b"", sequence: int | None = None) -> int:
        """Send one PDU; returns its sequence_number."""
        seq = self.next_sequence() if sequence is None else sequence
        self.sock.sendall(struct.pack(">IIII", 16 + len(body), command_id, 0, seq) + body)
        return seq

    def _read_exact(self, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def read(self) -> Pdu | None:
        """The next PDU from the server, None when it closed the connection."""
        while True:
            header = self._read_exact(16)
            if header is None:
                return None
            length, command_id, status, seq = struct.unpack(">IIII", header)
            body = self._read_exact(length - 16) if length > 16 else b""
            if body is None:
                return None
            if command_id == ENQUIRE_LINK:  # the SMSC may probe the link at any time
                self.send(ENQUIRE_LINK | RESPONSE, sequence=seq)
                continue
            return Pdu(command_id, status, seq, body)

    def request(self, command_id: int, body: bytes = b"") -> Pdu:
        """Send a request and return its response (same sequence_number, response id)."""
        seq = self.send(command_id, body)
        pdu = self.read()
        assert pdu is not None, f"connection closed instead of answering 0x{command_id:08x}"
        assert (pdu.command_id, pdu.sequence_number) == (command_id | RESPONSE, seq), pdu
        return pdu

    def bind_transceiver(self, system_id: str, password: str) -> Pdu:
        """bind_transceiver (SMPP 3.4 §4.1.5): C-strings, interface version, empty address range."""
        body = (
            system_id.encode() + b"\0" + password.encode() + b"\0" + b"\0"  # system_type
            + bytes([INTERFACE_VERSION, 0, 0])  # interface_version, addr_ton, addr_npi
            + b"\0"  # address_range
        )  # fmt: skip
        return self.request(BIND_TRANSCEIVER, body)


def c_string(body: bytes) -> str:
    """The leading C-Octet String of a body."""
    assert b"\0" in body, body
    return body.split(b"\0", 1)[0].decode("ascii")


def bound(server: Jasmin) -> Esme:
    """A connection bound as the provisioned ESME (the starting point of most exchanges)."""
    esme = Esme(server)
    resp = esme.bind_transceiver(server.system_id, server.password)
    assert resp.command_status == ESME_ROK, (
        f"bind_transceiver_resp status 0x{resp.command_status:x}"
    )
    return esme


def test_bind_transceiver_accepts_the_provisioned_user(jasmin_server: Jasmin) -> None:
    esme = Esme(jasmin_server)
    try:
        resp = esme.bind_transceiver(jasmin_server.system_id, jasmin_server.password)
        assert resp.command_status == ESME_ROK
        c_string(resp.body)  # system_id of the SMSC (Jasmin echoes the ESME's)
    finally:
        esme.close()


def test_bind_transceiver_refuses_a_wrong_password(jasmin_server: Jasmin) -> None:
    esme = Esme(jasmin_server)
    try:
        resp = esme.bind_transceiver(jasmin_server.system_id, "wrongpw")
        # Jasmin 0.11.1 answers ESME_RINVPASWD (0x0E), with no body, and keeps the connection.
        assert resp.command_status != ESME_ROK
        assert resp.command_status in (ESME_RINVPASWD, ESME_RBINDFAIL), hex(resp.command_status)
    finally:
        esme.close()


def test_submit_sm_is_accepted_and_recorded(jasmin_server: Jasmin) -> None:
    jasmin_server.clear()
    esme = bound(jasmin_server)
    try:
        seq = esme.next_sequence()
        sent = submit_sm(
            WAP_PUSH,
            sequence_number=seq,
            source_addr="15551230000",
            destination_addr="15551239999",
        )
        esme.sock.sendall(sent)
        resp = esme.read()
        assert resp is not None
        assert (resp.command_id, resp.sequence_number) == (SUBMIT_SM | RESPONSE, seq)
        assert resp.command_status == ESME_ROK
        assert c_string(resp.body), "submit_sm_resp carries no message_id"
    finally:
        esme.close()

    [record] = jasmin_server.wait_received(1)
    assert record["short_message"].hex() == WAP_PUSH.hex()
    assert (record["source_addr"], record["destination_addr"]) == ("15551230000", "15551239999")
    assert record["user"] == jasmin_server.system_id
    assert record["sequence_number"] == seq
    # Jasmin's own encoding of what it parsed is the PDU we sent, octet for octet.
    assert record["pdu"] == sent


def test_unbind_is_answered_and_the_connection_closes(jasmin_server: Jasmin) -> None:
    esme = bound(jasmin_server)
    try:
        resp = esme.request(UNBIND)
        assert resp.command_status == ESME_ROK
        assert resp.body == b""
        assert esme.read() is None
    finally:
        esme.close()


def test_restart_drops_the_link_and_the_user_can_bind_again(jasmin_server: Jasmin) -> None:
    esme = bound(jasmin_server)
    try:
        jasmin_server.restart()
        assert esme.read() is None  # Jasmin closes connections without an unbind
    finally:
        esme.close()
    bound(jasmin_server).close()
