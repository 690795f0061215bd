"""Scanning models for what a load would run (issue 16; docs/scanning.md).

The layers of this package, bottom up:

- :mod:`ocimodel.scan.findings`: what a scan reports (severities, findings, reports);
- :mod:`ocimodel.scan.formats`: the format scanners, each one module that recognises its
  format by the bytes (never by the file name) and lists what is wrong with a file;
- :mod:`ocimodel.scan.engine`: runs every scanner whose format a file's bytes show, on a
  file, a directory or the layers of a model; caching and remote reads live there too.

The API (``ocimodel.scan``) and the CLI (``ocimodel scan``) sit above, as everywhere."""

import sys as _sys
import types as _types


class _ScanPackage(_types.ModuleType):
    """``ocimodel.scan`` is this package and, called, the API function
    (:func:`ocimodel.api.functions.scan`, a Client method with the connection arguments):
    Python makes a subpackage an attribute of its parent once it is imported, so the
    package itself must be what ``ocimodel.scan(...)`` calls."""

    def __call__(self, *args, **kwargs):
        from ocimodel.api.functions import scan

        return scan(*args, **kwargs)


_sys.modules[__name__].__class__ = _ScanPackage
