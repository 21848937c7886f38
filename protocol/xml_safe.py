"""The one lxml parser configuration for untrusted XML (MM7 SOAP, UAProf documents).

No entity resolution, no network, no DTD loading or validation, no huge trees,
comments and processing instructions dropped. This alone is not enough: lxml
still reads ``file:`` URLs named by an external DTD, so each caller also keeps
DOCTYPEs away from it (mm7_xml refuses them, uaprof cuts them out first).
"""

from __future__ import annotations

from typing import Any

from lxml import etree  # type: ignore[import-untyped, unused-ignore]


def pull_parser() -> Any:
    """A fresh incremental parser (callers bound size, depth and element count as they go)."""
    return etree.XMLPullParser(
        events=("start", "end"),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )
