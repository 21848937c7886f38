"""Notification backends: how a WAP Push SMS reaches the recipient's handset.

``make_backend(config)`` reads ``[notify]`` and returns the configured
transport; the scheduler only ever sees the ``NotificationBackend`` protocol.
"""

from __future__ import annotations

from mmsc.notify.base import NotificationBackend, PushRequest, SendResult, make_backend
from mmsc.notify.kannel import KannelBackend
from mmsc.notify.none import NoneBackend

__all__ = [
    "KannelBackend",
    "NoneBackend",
    "NotificationBackend",
    "PushRequest",
    "SendResult",
    "make_backend",
]
