"""Names made safe for files, folders and file:// URLs.

A campaign or experiment name may carry what a dataset spec carries (``shapes?n=120``): a ``?``
starts a URL's query, so a browser cannot open ``compare-shapes?n=120.html`` from a file:// URL,
and a shell globs it. One sanitiser, so the experiment's default name, its report's file name and
the heatmap folders agree (trial 15 F13).
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_safe(text: str) -> str:
    """``text`` with every run of characters other than letters, digits, ``.``, ``_`` and ``-``
    replaced by one ``-``.

    >>> file_safe("compare-shapes?n=120")
    'compare-shapes-n-120'
    """
    return _UNSAFE.sub("-", text)
