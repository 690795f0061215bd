"""Scanning models for what a load would run (issue 16; docs/scanning.md).

The layers of this package, bottom up:

- :mod:`ocimodel.scanning.findings`: what a scan reports (severities, findings, reports);
- :mod:`ocimodel.scanning.formats`: the format scanners, each one module that recognises its
  format by the bytes (never by the file name) and lists what is wrong with a file;
- :mod:`ocimodel.scanning.engine`: runs every scanner whose format a file's bytes show, on a
  file, a directory or the layers of a model; caching and remote reads live there too.

The API (``ocimodel.scan``, api/scan.py) and the CLI (``ocimodel scan``) sit above, as
everywhere. The package is named ``scanning`` so that importing it never replaces the
function ``ocimodel.scan`` (Python sets an imported subpackage as an attribute of its
parent)."""
