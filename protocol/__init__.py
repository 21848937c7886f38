"""Sans-I/O protocol codecs for mmsc: no sockets, no asyncio, no database."""

from protocol.errors import DecodeError, EncodeError

__all__ = ["DecodeError", "EncodeError"]
