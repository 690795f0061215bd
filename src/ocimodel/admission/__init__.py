"""A Kubernetes admission webhook that verifies the models a workload names before it
runs (`ocimodel admission serve`, docs/admission.md). Needs the optional extra
``ocimodel[admission]`` (starlette, uvicorn).

review.py reads an AdmissionReview and finds the model references (pure); verdicts.py
resolves and judges them through the API's ``verify``, with caches and a deadline; app.py
is the Starlette application; server.py runs it with uvicorn over TLS; metrics.py and
records.py are the Prometheus metrics and the deployment records written off the request
path. A layer above the API, beside the CLI: nothing below imports it."""
