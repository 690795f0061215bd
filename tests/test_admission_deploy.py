"""deploy/: the Kubernetes manifests of the admission webhook parse, and what must agree
between them does: names, ports, paths, the TLS secret, the kinds the rules send, and the
server's deadline against the API server's timeout. The certificate script makes a
serving certificate for the Service's name that chains to its CA. No cluster, no registry."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from typer.main import get_command

from ocimodel.admission import app as webhook_app
from ocimodel.admission.review import POD_SPEC_PATHS
from ocimodel.cli.app import app as root
from ocimodel.trust.policy import parse_policy

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
RESOURCES = {  # the API resource of each kind the webhook reads a pod spec from
    "Pod": ("", "pods"), "Deployment": ("apps", "deployments"), "StatefulSet": ("apps", "statefulsets"),
    "DaemonSet": ("apps", "daemonsets"), "ReplicaSet": ("apps", "replicasets"), "Job": ("batch", "jobs"),
    "CronJob": ("batch", "cronjobs"),
}


def _documents(name: str) -> dict[str, dict]:
    with open(DEPLOY / name) as f:
        return {doc["kind"] + "/" + doc["metadata"]["name"]: doc for doc in yaml.safe_load_all(f) if doc}


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    found: dict[str, dict] = {}
    for name in ("webhook.yaml", "webhook-configurations.yaml", "cert-manager.yaml"):
        found.update(_documents(name))
    return found


def _serve_options(container: dict) -> dict:
    """The container's arguments as `ocimodel admission serve` parses them (so an option
    the command does not have fails here)."""
    args = container["args"]
    assert args[:2] == ["admission", "serve"]
    command = get_command(root).commands["admission"].commands["serve"]
    return command.make_context("serve", list(args[2:])).params


def test_the_manifests_agree_with_each_other_and_with_the_server(manifests):
    deployment = manifests["Deployment/ocimodel-admission"]
    service = manifests["Service/ocimodel-admission"]
    namespace = deployment["metadata"]["namespace"]
    assert manifests[f"Namespace/{namespace}"]["metadata"]["labels"]["models.ocimodel.dev/admission"] == "disabled"
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    options = _serve_options(container)

    # The Service reaches the Deployment's pods on the port the server listens on.
    assert service["metadata"]["namespace"] == namespace
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (port,) = container["ports"]
    assert port["containerPort"] == options["port"]
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in (port["name"], port["containerPort"])
    for probe, path in (("readinessProbe", webhook_app.READYZ), ("livenessProbe", webhook_app.HEALTHZ)):
        get = container[probe]["httpGet"]
        assert (get["path"], get["scheme"], get["port"]) == (path, "HTTPS", port["name"])

    # The mounted files are where the arguments say.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    def mounted(path: Path) -> tuple[str, str]:
        (name,) = [n for n, at in mounts.items() if str(path).startswith(at + "/")]
        return name, str(path)[len(mounts[name]) + 1:]
    tls_volume, cert_file = mounted(options["tls_cert"])
    assert mounted(options["tls_key"]) == (tls_volume, "tls.key") and cert_file == "tls.crt"
    secret = volumes[tls_volume]["secret"]["secretName"]
    assert manifests["Certificate/ocimodel-admission"]["spec"]["secretName"] == secret
    assert f"SECRET={secret}\n" in (DEPLOY / "make-certs.sh").read_text()
    docker_volume, docker_file = mounted(options["docker_config"])
    assert {"key": ".dockerconfigjson", "path": docker_file} in volumes[docker_volume]["secret"]["items"]
    assert docker_file == "config.json"  # what --docker-config requires

    # The example policy loads, with its key where the policy looks for it.
    policy_volume, policy_file = mounted(options["policy"])
    config_map = manifests[f"ConfigMap/{volumes[policy_volume]['configMap']['name']}"]
    paths = {item["path"]: item["key"] for item in volumes[policy_volume]["configMap"]["items"]}
    policy = parse_policy(yaml.safe_load(config_map["data"][paths[policy_file]]))
    for signer in policy.signers.values():
        assert signer.key in paths and paths[signer.key] in config_map["data"]

    # Both webhook configurations: the Service, the paths, fail closed, opt-in namespaces,
    # a timeout longer than the deadline, and every kind the server reads.
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace > options["deadline"] + 2  # answers in progress finish after SIGTERM
    for kind, path in (("MutatingWebhookConfiguration", webhook_app.MUTATE),
                       ("ValidatingWebhookConfiguration", webhook_app.VALIDATE)):
        configuration = manifests[f"{kind}/ocimodel-admission"]
        certificate = configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
        assert certificate == f"{namespace}/ocimodel-admission" and "Certificate/ocimodel-admission" in manifests
        (webhook,) = configuration["webhooks"]
        client = webhook["clientConfig"]["service"]
        assert (client["name"], client["namespace"], client["path"], client["port"]) == (
            service["metadata"]["name"], namespace, path, service_port["port"])
        assert webhook["failurePolicy"] == "Fail" and webhook["admissionReviewVersions"] == ["v1"]
        assert webhook["timeoutSeconds"] > options["deadline"]
        assert webhook["timeoutSeconds"] <= 30  # the API server's limit
        assert webhook["namespaceSelector"]["matchLabels"] == {"models.ocimodel.dev/admission": "enabled"}
        sent = {(group, resource) for rule in webhook["rules"] for group in rule["apiGroups"]
                for resource in rule["resources"]}
        assert set(RESOURCES.values()) <= sent and ("", "pods/ephemeralcontainers") in sent
        assert set(RESOURCES) == set(POD_SPEC_PATHS)
        assert all(set(rule["operations"]) == {"CREATE", "UPDATE"} for rule in webhook["rules"])
    dns = manifests["Certificate/ocimodel-admission"]["spec"]["dnsNames"]
    assert f"{service['metadata']['name']}.{namespace}.svc" in dns


def test_the_kyverno_example_parses_and_verifies_our_bundle_layout():
    (policy,) = _documents("kyverno-policy.yaml").values()
    assert policy["kind"] == "ClusterPolicy"
    (rule,) = policy["spec"]["rules"]
    (verify,) = rule["verifyImages"]
    assert verify["type"] == "SigstoreBundle"
    assert {a["type"] for a in verify["attestations"]} == {"https://sigstore.dev/cosign/sign/v1",
                                                           "https://ocimodel.dev/scan/v1"}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_the_certificate_script_makes_a_serving_certificate_for_the_service(tmp_path):
    run = subprocess.run(["sh", str(DEPLOY / "make-certs.sh"), str(tmp_path / "certs")], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    out = tmp_path / "certs"
    cert = x509.load_pem_x509_certificate((out / "tls.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "ocimodel-admission.ocimodel-system.svc" in names
    # It is issued by the CA the caBundle carries, and the key is the certificate's.
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate((out / "ca.crt").read_bytes()))
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(out / "tls.crt", out / "tls.key")
    assert oct((out / "tls.key").stat().st_mode & 0o777) == "0o600"
