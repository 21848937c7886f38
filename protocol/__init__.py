"""Sans-I/O protocol codecs for mmsc: no sockets, no asyncio, no database."""

from protocol import mms as _mms
from protocol.errors import DecodeError, EncodeError

# True when the hot modules run as mypyc-compiled extensions (see setup.py).
COMPILED: bool = not _mms.__file__.endswith(".py")

__all__ = ["COMPILED", "DecodeError", "EncodeError"]
