"""`ocimodel admission serve`: the Kubernetes admission webhook (docs/admission.md). A
sub-app the root adds as `ocimodel admission`; the server lives in ocimodel.admission,
loaded when the command runs (it needs the optional extra ocimodel[admission])."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from ocimodel.cli.common import connection, report_error, state, stderr
from ocimodel.cli.signing import PASSWORD_ENV
from ocimodel.errors import OcimodelError, UsageError

admission_app = typer.Typer(
    name="admission",
    help=(
        "A Kubernetes admission webhook that lets a Pod or workload run only models the policy allows.\n\n"
        "  ocimodel admission serve --policy policy.yaml --tls-cert tls.crt --tls-key tls.key"
    ),
    no_args_is_help=True,
)


@admission_app.command("serve")
def serve(
    policy: Annotated[Path, typer.Option("--policy", metavar="FILE", help="The verify policy (as `ocimodel verify --policy`): signers, attestations, scan, licenses, evaluations. Reloaded when the file (or a key it names) changes.")],
    tls_cert: Annotated[Path, typer.Option("--tls-cert", metavar="PEM", help="The server certificate (chain) the API server checks against the webhook's caBundle.")],
    tls_key: Annotated[Path, typer.Option("--tls-key", metavar="PEM", help="The private key of --tls-cert.")],
    tls_reload_interval: Annotated[float, typer.Option("--tls-reload-interval", metavar="SECONDS", help="How often to look for a renewed --tls-cert and --tls-key; a pair that loads is served on new connections, one that does not is ignored (0: never).")] = 10.0,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="The port to listen on (0: any free port, logged).")] = 8443,
    host: Annotated[str, typer.Option("--host", help="The address to listen on.")] = "0.0.0.0",
    deadline: Annotated[float, typer.Option("--deadline", metavar="SECONDS", help="Time to judge one request; a model not judged by then is denied. Keep it below the webhook's timeoutSeconds.")] = 8.0,
    cache_ttl: Annotated[float, typer.Option("--cache-ttl", metavar="SECONDS", help="How long a verdict is reused for the same repository, digest and policy (0: never).")] = 300.0,
    resolve_ttl: Annotated[float, typer.Option("--resolve-ttl", metavar="SECONDS", help="How long a tag's digest is reused (default 0: every request asks the registry).")] = 0.0,
    docker_config: Annotated[Path | None, typer.Option("--docker-config", metavar="FILE", help="Registry credentials: a docker config.json (default: $DOCKER_CONFIG/config.json, else ~/.docker/config.json).")] = None,
    record_deployments: Annotated[str | None, typer.Option("--record-deployments", metavar="ENVIRONMENT", help="Write a deployment record in this environment for each admitted model, off the request path; never for a dry run. Unsigned unless --record-key.")] = None,
    record_key: Annotated[Path | None, typer.Option("--record-key", metavar="PEM", help=f"Sign the deployment records with this ECDSA P-256 private key (encrypted: ${PASSWORD_ENV}), so `deployments --policy` can trust them. Only with --record-deployments; checked at start.")] = None,
) -> None:
    """Serve the validating (/validate) and mutating (/mutate) admission webhooks over
    HTTPS, with /healthz, /readyz and Prometheus /metrics.

      ocimodel admission serve --policy /etc/ocimodel/policy.yaml --tls-cert /tls/tls.crt --tls-key /tls/tls.key
      ocimodel admission serve --policy policy.yaml --tls-cert tls.crt --tls-key tls.key --record-deployments prod --record-key /keys/webhook.key

    Models are found in Pods and in the pod templates of Deployments, StatefulSets,
    DaemonSets, ReplicaSets, Jobs and CronJobs: image volumes (volumes[].image.reference),
    containers whose image is a model artifact (ordinary container images are left alone),
    and the annotation models.ocimodel.dev/references. Each is resolved to a digest and
    judged by the policy; the answer names the model, the rule and the reason. /mutate also
    pins each model to the digest that was verified.

    Fail closed: a registry that does not answer within --deadline, a policy that stops
    loading, a malformed request: denied, with the reason. The server refuses to start when
    the policy, its keys, the TLS files or --record-key do not load (exit 2). A renewed certificate is
    served without a restart (--tls-reload-interval). SIGTERM stops it gracefully.
    Logs: one JSON line per request on stderr. deploy/ has the Kubernetes manifests.
    """
    try:
        from ocimodel.admission import server
    except ImportError as exc:
        report_error("UsageError", f"the admission webhook needs the extra ocimodel[admission] ({exc.name} is missing)",
                     "pip install 'ocimodel[admission]'", 2)
        raise typer.Exit(2) from None
    options = server.ServeOptions(
        policy=policy, tls_cert=tls_cert, tls_key=tls_key, host=host, port=port, deadline=deadline,
        cache_ttl=cache_ttl, resolve_ttl=resolve_ttl, docker_config=docker_config,
        record_environment=record_deployments, record_key=record_key, tls_reload_interval=tls_reload_interval,
    )
    # The wait line of the CLI has no reader here: the deadline bounds every wait.
    quiet = dataclasses.replace(connection(), on_wait=None)
    try:
        server.configure_logging()
        server.serve(options, quiet)
    except OcimodelError as exc:
        if state["debug"]:
            stderr.print_exception()
        code = 2 if isinstance(exc, UsageError) else 1
        report_error(type(exc).__name__, exc.message, exc.hint, code)
        raise typer.Exit(code) from None
