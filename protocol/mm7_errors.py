"""The one error the MM7 decoder raises, carrying what the SOAP Fault needs to answer it.

A VASP's broken request must become an MM7 answer (RSErrorRsp in a SOAP Fault),
never a traceback: ``status_code`` is the TS 23.140 status to answer with, and
``namespace`` / ``transaction_id`` / ``mm7_version`` are filled whenever they could
be read, so the fault goes back in the caller's own namespace with its own
TransactionID and MM7Version.

Status codes used by the decoder (TS 23.140 §8.7, status code table):

- 2004 Multimedia content refused: the body is larger than ``max_size`` (as MM1
  answers an oversized message with Error-permanent-content-not-accepted).
- 2007 Message format corrupt: an element whose value does not fit its type (a date,
  a boolean, a number) or its enumeration (MessageClass "Foo"), as the status table
  says; and anything that is not a readable SOAP message: XML that is not
  well-formed, a DOCTYPE or entity declaration, a document deeper or larger than our
  limits, broken MIME framing, a Content href that names no attachment among several.
  (The table names 4004 for unparseable SOAP/XML; field practice differs, and 2007
  is kept for it as before.)
- 4003 Unsupported operation: a Body element that is no MM7 operation we know.
- 4004 Validation error: the message is readable but an element the operation must
  carry is missing or empty (the SOAP Header's TransactionID included).
- 3000 Server Error: a bug of ours surfaced while decoding (never expected; the
  fuzz tests assert it does not happen).
"""

from __future__ import annotations

from protocol.errors import DecodeError
from protocol.mm7_tables import STATUS


class Mm7DecodeError(DecodeError):
    """An MM7 message that cannot be decoded; answer it with ``status_code``."""

    def __init__(
        self,
        status_code: int,
        reason: str,
        *,
        namespace: str | None = None,
        transaction_id: str | None = None,
        mm7_version: str | None = None,
        offset: int = 0,
    ) -> None:
        super().__init__(offset, reason)
        self.status_code = status_code
        self.namespace = namespace
        self.transaction_id = transaction_id
        self.mm7_version = mm7_version  # the caller's MM7Version, for the Fault to echo

    @property
    def status_text(self) -> str:
        return STATUS.get(self.status_code, "")

    def __str__(self) -> str:
        return f"{self.status_code} {self.status_text}: {self.reason}"
