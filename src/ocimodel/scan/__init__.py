"""Scanning models for what a load would run (issue 16; docs/scanning.md).

The layers of this package, bottom up:

- :mod:`ocimodel.scan.findings`: what a scan reports (severities, findings, reports);
- :mod:`ocimodel.scan.formats`: the format scanners, each one module that recognises its
  format by the bytes (never by the file name) and lists what is wrong with a file;
- :mod:`ocimodel.scan.engine`: runs every scanner whose format a file's bytes show, on a
  file, a directory or the layers of a model; caching and remote reads live there too.

The API (``ocimodel.scan``) and the CLI (``ocimodel scan``) sit above, as everywhere."""
