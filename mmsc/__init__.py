"""mmsc: a self-hosted MMSC. The server side (I/O) lives here; codecs live in ``protocol``."""

__version__ = "0.1.0"
