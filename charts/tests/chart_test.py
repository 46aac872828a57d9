#!/usr/bin/env python3
"""Offline test of the Helm chart charts/txmesh, without a helm binary or a cluster.

Helm itself comes from the helm-python-sdk package (a Helm v4 SDK build loaded with ctypes),
the Kubernetes schemas from kubernetes-validate; `make chart-test` installs both into
$TXMESH_VENV and runs this file with that venv's python.

For every good values file in values/ (a case):
  - helm lint --strict (kube 1.30) reports no warning or error;
  - the chart renders (release namespace txmesh-system), and every rendered object passes
    `kubernetes-validate --strict -k 1.30.0` (custom kinds, which it has no schema for, are
    reported as skipped);
  - the render equals golden/<case>.yaml (TXMESH_BLESS=1 rewrites it: review the diff);
  - properties that matter are asserted (security context, RBAC scope, selectors...).
For every values/bad-*.yaml: rendering must fail with each `# expect:` message, and so must
lint when the file says `# fails: schema` (lint does not run a template's `fail`).
The CRD in crds/ is validated too. Exits non-zero if anything failed.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import helm_python as helm
import yaml
from helm_python import _native

HERE = Path(__file__).resolve().parent
CHART = HERE.parent / "txmesh"
VALUES = HERE / "values"
GOLDEN = HERE / "golden"
KUBE_VERSION = "1.30.0"
NAMESPACE = "txmesh-system"
SERVICE_MONITOR_API = ["monitoring.coreos.com/v1", "monitoring.coreos.com/v1/ServiceMonitor"]
BLESS = os.environ.get("TXMESH_BLESS") == "1"
VALIDATOR = Path(sys.executable).parent / "kubernetes-validate"


@dataclass
class Case:
    """A good values file and how it is rendered."""

    values: str
    release: str = "txmesh"
    # API versions the simulated cluster serves beyond the built-in ones.
    api_versions: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return Path(self.values).stem


CASES = [
    Case("defaults.yaml"),
    Case("full.yaml", release="prod", api_versions=SERVICE_MONITOR_API),
    Case("cert-manager.yaml"),
    Case("no-leader-election.yaml"),
]


class Failure(Exception):
    """A failed check, with what to show."""


results: list[tuple[str, str, str | None]] = []


def check(case: str, what: str, fn, *args) -> None:
    """Runs one check (which may return a note to show) and records it; a failure does not
    stop the others."""
    try:
        note = fn(*args)
    except Failure as failure:
        results.append((case, what, str(failure)))
        print(f"FAIL {case}: {what}\n{indent(str(failure))}")
    except Exception as error:  # a Helm error, or a render missing what a check looks for
        results.append((case, what, f"{type(error).__name__}: {error}"))
        print(f"FAIL {case}: {what}\n{indent(f'{type(error).__name__}: {error}')}")
    else:
        results.append((case, what, None))
        print(f"ok   {case}: {what}")
        if note:
            print(indent(note))


def indent(text: str) -> str:
    return "\n".join("       " + line for line in text.rstrip().splitlines())


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


# ---------------------------------------------------------------------------------------------
# Rendering and linting.


def load_values(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def render(values: dict, release: str, api_versions: list[str]) -> dict[str, str]:
    """template path -> rendered text, as `helm template --kube-version --api-versions` would.

    helm-python-sdk 0.2.2's Chart.render does not pass kube_version and api_versions on,
    although its native helm_render takes them; the Makefile pins the version this relies on.
    """
    chart = helm.Chart.load(CHART)
    options = {
        "name": release,
        "namespace": NAMESPACE,
        "kube_version": f"v{KUBE_VERSION}",
        "api_versions": api_versions,
    }
    rendered = _native.call_string(
        "helm_render", chart._raw(), json.dumps(values), json.dumps(options)
    )
    return json.loads(rendered)


def manifest(rendered: dict[str, str]) -> str:
    """The golden form: each non-empty template under its path, NOTES.txt as comments."""
    parts = []
    notes = ""
    for path in sorted(rendered):
        text = rendered[path].strip()
        if path.endswith("NOTES.txt"):
            notes = text
        elif text:
            parts.append(f"# Source: {path}\n{text}\n")
    out = "---\n".join(parts)
    if notes:
        out += "# NOTES.txt:\n" + "".join(f"#   {line}".rstrip() + "\n" for line in notes.splitlines())
    return out


def objects_of(rendered: dict[str, str]) -> list[dict]:
    objects = []
    for path in sorted(rendered):
        if path.endswith(".yaml"):
            objects += [doc for doc in yaml.safe_load_all(rendered[path]) if doc]
    return objects


def lint_clean(values: dict) -> None:
    report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSION}")
    # Severity 1 is information ("icon is recommended"); 2 warning, 3 error.
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    expect(
        not problems and not report["errors"],
        "helm lint --strict:\n" + "\n".join(f"{m['path']}: {m['error']}" for m in problems)
        + "".join(f"\n{e}" for e in report["errors"]),
    )


def validate(objects: list[dict], label: str) -> str:
    """kubernetes-validate --strict on every object; returns a note of what was skipped."""
    with tempfile.TemporaryDirectory(prefix="txmesh-chart-") as tmp:
        files = []
        for i, obj in enumerate(objects):
            path = Path(tmp) / f"{i:02}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
            path.write_text(yaml.safe_dump(obj))
            files.append(str(path))
        run = subprocess.run(
            [str(VALIDATOR), "--strict", "-k", KUBE_VERSION, *files],
            capture_output=True,
            text=True,
        )
    lines = (run.stdout + run.stderr).splitlines()
    passed = [line for line in lines if line.startswith("INFO") and " passed " in line]
    skipped = [line for line in lines if line.startswith("WARN") and "find schema" in line]
    errors = [line for line in lines if line.startswith("ERROR")]
    expect(
        run.returncode == 0 and not errors and len(passed) + len(skipped) == len(objects),
        f"kubernetes-validate exited {run.returncode}; {len(passed)} of {len(objects)} "
        f"objects passed:\n" + "\n".join(lines),
    )
    kinds = sorted({line.split("kind ")[1].split(" ")[0] for line in skipped})
    note = f"{len(passed)} {label} valid against Kubernetes {KUBE_VERSION}"
    if kinds:
        note += f", {len(skipped)} skipped (custom kinds without a schema: {', '.join(kinds)})"
    return note


def compare_golden(case: str, text: str) -> None:
    path = GOLDEN / f"{case}.yaml"
    if BLESS:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    expect(path.exists(), f"{path} is missing: run with TXMESH_BLESS=1 and review it")
    want = path.read_text()
    if want != text:
        diff = difflib.unified_diff(
            want.splitlines(), text.splitlines(), f"golden/{case}.yaml", "rendered", lineterm=""
        )
        lines = list(diff)
        shown = "\n".join(lines[:80]) + ("\n..." if len(lines) > 80 else "")
        raise Failure(f"the render differs from golden/{case}.yaml (TXMESH_BLESS=1 to accept):\n{shown}")


# ---------------------------------------------------------------------------------------------
# Properties.


def find(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str) -> dict:
    found = find(objects, kind)
    expect(len(found) == 1, f"expected one {kind}, found {len(found)}")
    return found[0]


def env_of(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def operator_pod(objects: list[dict]) -> tuple[dict, dict]:
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    containers = pod["containers"]
    expect(len(containers) == 1, "the operator pod has one container")
    return pod, containers[0]


def props_common(objects: list[dict], values: dict) -> None:
    """What holds for every values file."""
    cluster_kinds = {"ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}
    for o in objects:
        if o["kind"] not in cluster_kinds:
            expect("namespace" in o["metadata"], f"{o['kind']} {o['metadata']['name']} has a namespace")

    pod, container = operator_pod(objects)
    security = pod.get("securityContext", {})
    expect(security.get("runAsNonRoot") is True, "the pod runs as non-root")
    expect(security.get("runAsUser") == 65532, "the pod runs as user 65532")
    expect(security.get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp RuntimeDefault")
    sc = container.get("securityContext", {})
    expect(sc.get("allowPrivilegeEscalation") is False, "no privilege escalation")
    expect(sc.get("readOnlyRootFilesystem") is True, "read-only root filesystem")
    expect(sc.get("capabilities", {}).get("drop") == ["ALL"], "every capability dropped")
    expect(container["args"] == ["operator"], "the container runs `txmesh operator`")

    env = env_of(container)
    expect(env["TXMESH_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}, "pod name from the downward API")
    expect(
        env["TXMESH_POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}},
        "pod namespace from the downward API",
    )
    port = values.get("metrics", {}).get("port", 8080)
    expect(env["TXMESH_OPERATOR_HTTP_ADDR"] == f"0.0.0.0:{port}", "the HTTP address uses metrics.port")
    ports = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    injector = effective(values)["injector"]
    if injector["enabled"]:
        ports.append({"name": "webhook", "containerPort": injector["port"], "protocol": "TCP"})
    expect(container["ports"] == ports, f"container ports {ports}")
    expect(container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, "liveness /healthz")
    expect(container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, "readiness /readyz")

    # The selectors agree: the Deployment's pods, the Service, the PDB and the ServiceMonitor.
    deployment = one(objects, "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    expect(selector.items() <= pod_labels.items(), "the Deployment selects its own pods")
    expect(selector.get("app.kubernetes.io/component") == "operator", "the selector names the component")
    service = operator_service(objects)
    expect(service["spec"]["selector"] == selector, "the Service selects the operator pods")
    for pdb in find(objects, "PodDisruptionBudget"):
        expect(pdb["spec"]["selector"]["matchLabels"] == selector, "the PDB selects the operator pods")
    for monitor in find(objects, "ServiceMonitor"):
        expect(
            monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items(),
            "the ServiceMonitor selects the Service",
        )

    # RBAC: no wildcards, leases never cluster-wide, every binding's role exists and names the
    # operator's service account (or the sidecar groups).
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o for o in objects if o["kind"] in ("Role", "ClusterRole")}
    for role in roles.values():
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                expect("*" not in rule.get(key, []), f"{role['kind']} {role['metadata']['name']}: no wildcard {key}")
    for role in find(objects, "ClusterRole"):
        for rule in role["rules"]:
            expect("leases" not in rule["resources"], f"ClusterRole {role['metadata']['name']} grants no leases")
    account = pod["serviceAccountName"]
    for binding in find(objects, "RoleBinding") + find(objects, "ClusterRoleBinding"):
        ref = binding["roleRef"]
        namespace = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
        expect((ref["kind"], namespace, ref["name"]) in roles, f"{binding['kind']} {binding['metadata']['name']}: its role is rendered")
        for subject in binding["subjects"]:
            if subject["kind"] == "ServiceAccount":
                expect(
                    subject == {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE},
                    f"{binding['metadata']['name']} binds the operator's service account",
                )
            else:
                expect(
                    subject["kind"] == "Group" and subject["name"].startswith("system:serviceaccounts:"),
                    f"{binding['metadata']['name']}: only service account groups",
                )


def operator_service(objects: list[dict]) -> dict:
    found = [o for o in find(objects, "Service") if o["metadata"]["name"].endswith("-operator")]
    expect(len(found) == 1, "one operator Service")
    return found[0]


def effective(values: dict) -> dict:
    """The case's values over the chart's defaults, as Helm merges them."""

    def merge(base, over):
        if isinstance(base, dict) and isinstance(over, dict):
            return {k: merge(base.get(k), over[k]) if k in base else over[k] for k in over} | {
                k: v for k, v in base.items() if k not in over
            }
        return over

    return merge(yaml.safe_load((CHART / "values.yaml").read_text()), values)


def selects(selector: dict, labels: dict) -> bool:
    """Whether a metav1.LabelSelector (matchLabels, matchExpressions) selects these labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        key, op, vals = e["key"], e["operator"], e.get("values", [])
        ok = {
            "In": key in labels and labels[key] in vals,
            "NotIn": key not in labels or labels[key] not in vals,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


# Namespaces (their labels, as the API server sets kubernetes.io/metadata.name) and which
# injector webhook must see their pods: none, /inject/pod or /inject/namespace.
INJECTION_NAMESPACES = [
    ({"kubernetes.io/metadata.name": "kube-system"}, None),
    ({"kubernetes.io/metadata.name": "kube-public"}, None),
    ({"kubernetes.io/metadata.name": "kube-node-lease"}, None),
    ({"kubernetes.io/metadata.name": NAMESPACE}, None),
    ({"kubernetes.io/metadata.name": NAMESPACE, "txmesh.io/injection": "enabled"}, None),
    ({"kubernetes.io/metadata.name": "kube-system", "txmesh.io/injection": "enabled"}, None),
    ({"kubernetes.io/metadata.name": "orders"}, "/inject/pod"),
    ({"kubernetes.io/metadata.name": "orders", "txmesh.io/injection": "true"}, "/inject/pod"),
    ({"kubernetes.io/metadata.name": "orders", "txmesh.io/injection": "enabled"}, "/inject/namespace"),
    ({"kubernetes.io/metadata.name": "orders", "txmesh.io/injection": "disabled"}, None),
]


def props_injector(objects: list[dict], values: dict) -> str:
    """The sidecar injector: on, its webhooks, their certificates and RBAC; off, nothing."""
    injector = effective(values)["injector"]
    _, container = operator_pod(objects)
    env = env_of(container)
    webhook_rules = [
        (role, rule)
        for role in find(objects, "Role") + find(objects, "ClusterRole")
        for rule in role["rules"]
        if "mutatingwebhookconfigurations" in rule["resources"]
    ]
    cert_kinds = find(objects, "Certificate") + find(objects, "Issuer")
    if not injector["enabled"]:
        expect(not find(objects, "MutatingWebhookConfiguration"), "injector off: no webhook configuration")
        expect([o["metadata"]["name"] for o in find(objects, "Service")] == [operator_service(objects)["metadata"]["name"]], "injector off: no webhook Service")
        expect(not cert_kinds, "injector off: no cert-manager objects")
        expect(not webhook_rules, "injector off: no webhook RBAC")
        expect(not any(r["metadata"]["name"].endswith("-webhook") for r in find(objects, "Role") + find(objects, "RoleBinding")), "injector off: no webhook Secret Role")
        leftover = [n for n in env if n.startswith(("TXMESH_WEBHOOK", "TXMESH_SIDECAR", "TXMESH_NATIVE", "TXMESH_DEFAULT_COORDINATOR", "TXMESH_INJECTION"))]
        expect(not leftover, f"injector off: no injector settings, found {leftover}")
        expect(not container.get("volumeMounts") and not operator_pod(objects)[0].get("volumes"), "injector off: no volumes")
        return "injector off: nothing of it rendered"

    config = one(objects, "MutatingWebhookConfiguration")
    services = [o for o in find(objects, "Service") if o["metadata"]["name"].endswith("-webhook")]
    expect(len(services) == 1, "one webhook Service")
    service = services[0]
    expect(service["spec"]["selector"] == operator_service(objects)["spec"]["selector"], "the webhook Service selects the operator pods")
    expect(
        [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(443, "webhook")],
        "the webhook Service serves 443 from the container port webhook",
    )
    expect(env["TXMESH_WEBHOOK_ADDR"] == f"0.0.0.0:{injector['port']}", "the webhook address uses injector.port")
    for monitor in find(objects, "ServiceMonitor"):
        expect(
            not monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items(),
            "the operator's ServiceMonitor does not select the webhook Service",
        )

    webhooks = {w["name"]: w for w in config["webhooks"]}
    expect(sorted(webhooks) == ["namespaces.inject.txmesh.io", "pods.inject.txmesh.io"], f"two fully qualified webhooks, not {sorted(webhooks)}")
    policies = {"pods.inject.txmesh.io": injector["failurePolicy"]["pod"], "namespaces.inject.txmesh.io": injector["failurePolicy"]["namespace"]}
    paths = {"pods.inject.txmesh.io": "/inject/pod", "namespaces.inject.txmesh.io": "/inject/namespace"}
    for name, w in webhooks.items():
        expect(w["failurePolicy"] == policies[name], f"{name}: failurePolicy {policies[name]} as configured")
        expect(
            w["clientConfig"] == {"service": {"namespace": NAMESPACE, "name": service["metadata"]["name"], "path": paths[name], "port": 443}},
            f"{name}: calls {paths[name]} through the webhook Service, caBundle left to the operator or cert-manager",
        )
        expect(w["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}], f"{name}: pods CREATE only")
        expect(
            (w["sideEffects"], w["admissionReviewVersions"], w["reinvocationPolicy"], w["matchPolicy"], w["timeoutSeconds"])
            == ("None", ["v1"], "IfNeeded", "Equivalent", injector["timeoutSeconds"]),
            f"{name}: sideEffects None, AdmissionReview v1, IfNeeded, Equivalent, timeoutSeconds",
        )
        names = next(e for e in w["namespaceSelector"]["matchExpressions"] if e["key"] == "kubernetes.io/metadata.name")
        expect(names["operator"] == "NotIn" and {NAMESPACE, "kube-system"} <= set(names["values"]), f"{name}: excludes the release namespace and kube-system")
        expect(not selects(w["objectSelector"], {"app.kubernetes.io/managed-by": "txmesh-operator"}), f"{name}: never the coordinators' own pods")
        expect(selects(w["objectSelector"], {"app": "orders"}), f"{name}: sees application pods")
    for labels, want in INJECTION_NAMESPACES:
        seen = [paths[n] for n, w in webhooks.items() if selects(w["namespaceSelector"], labels)]
        expect(seen == ([want] if want else []), f"namespace {labels}: seen by {seen}, want {want}")

    expect(env["TXMESH_NATIVE_SIDECAR"] == str(injector["nativeSidecar"]).lower(), "injector.nativeSidecar is passed on")
    expect(json.loads(env["TXMESH_SIDECAR_RESOURCES"]) == injector["sidecar"]["resources"], "the sidecar resources as JSON")
    expect(env.get("TXMESH_DEFAULT_COORDINATOR") == (injector["defaultCoordinator"] or None), "the default coordinator, if any")

    self_managed = ("TXMESH_WEBHOOK_SERVICE", "TXMESH_WEBHOOK_CONFIG", "TXMESH_WEBHOOK_SECRET")
    if injector["certManager"]["enabled"]:
        annotation = config["metadata"].get("annotations", {}).get("cert-manager.io/inject-ca-from", "")
        certificates = {c["metadata"]["name"]: c for c in find(objects, "Certificate")}
        namespace, _, name = annotation.partition("/")
        expect(namespace == NAMESPACE and name in certificates, f"cert-manager fills the caBundle from a rendered Certificate: {annotation!r}")
        serving = certificates[name]
        host = f"{service['metadata']['name']}.{NAMESPACE}.svc"
        domain = effective(values)["kubeClusterDomain"]
        expect(serving["spec"]["dnsNames"] == [host, f"{host}.{domain}"], "the serving certificate names the webhook Service")
        expect("server auth" in serving["spec"]["usages"], "the serving certificate is for server auth")
        expect(not any(n in env for n in self_managed), "cert-manager mode: the operator patches nothing")
        expect(not webhook_rules, "cert-manager mode: no webhook configuration RBAC")
        expect(
            not any("secrets" in rule["resources"] and rule.get("resourceNames")
                    for role in find(objects, "Role") for rule in role["rules"]),
            "cert-manager mode: no webhook Secret Role",
        )
        pod, _ = operator_pod(objects)
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = [m for m in container["volumeMounts"] if m["mountPath"] == env["TXMESH_WEBHOOK_CERT_DIR"]]
        expect(len(mounts) == 1 and mounts[0]["readOnly"] is True and "subPath" not in mounts[0], "the certificate directory is a read-only whole-Secret mount")
        expect(volumes[mounts[0]["name"]]["secret"]["secretName"] == serving["spec"]["secretName"], "the mount is the serving certificate's Secret")
        issuer = serving["spec"]["issuerRef"]
        given = injector["certManager"]["issuerRef"]
        if given:
            expect(issuer == given, "the serving certificate uses the given issuer")
            expect(not find(objects, "Issuer") and len(certificates) == 1, "a given issuer: the chart makes no issuer or CA")
        else:
            issuers = {i["metadata"]["name"]: i for i in find(objects, "Issuer")}
            ca_issuer = issuers[issuer["name"]]
            ca = [c for c in certificates.values() if c["spec"].get("secretName") == ca_issuer["spec"]["ca"]["secretName"]]
            expect(len(ca) == 1 and ca[0]["spec"]["isCA"] is True, "the CA Issuer signs with the chart's CA Certificate")
            expect(issuers[ca[0]["spec"]["issuerRef"]["name"]]["spec"] == {"selfSigned": {}}, "the CA is self-signed")
        return f"cert-manager mode, {'given issuer' if given else 'bootstrap issuers'}"

    # Self-managed: the operator's Secret and the caBundle patch, limited by name.
    expect(not cert_kinds, "self-managed: no cert-manager objects")
    expect(not container.get("volumeMounts") and "TXMESH_WEBHOOK_CERT_DIR" not in env, "self-managed: no certificate mount")
    expect(env["TXMESH_WEBHOOK_SERVICE"] == f"{NAMESPACE}/{service['metadata']['name']}", "TXMESH_WEBHOOK_SERVICE names the webhook Service")
    expect(env["TXMESH_WEBHOOK_CONFIG"] == config["metadata"]["name"], "TXMESH_WEBHOOK_CONFIG names the webhook configuration")
    expect(
        [(role["kind"], rule) for role, rule in webhook_rules]
        == [("ClusterRole", {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations"],
                             "resourceNames": [config["metadata"]["name"]], "verbs": ["get", "patch"]})],
        "a ClusterRole may get and patch that webhook configuration only",
    )
    secret_roles = [r for r in find(objects, "Role") if r["metadata"]["name"].endswith("-operator-webhook")]
    expect(len(secret_roles) == 1 and secret_roles[0]["metadata"]["namespace"] == NAMESPACE, "the webhook Secret Role is in the release namespace")
    expect(
        secret_roles[0]["rules"] == [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [env["TXMESH_WEBHOOK_SECRET"]], "verbs": ["get", "update"]},
        ],
        "secrets: create, and get/update/patch on the webhook Secret only",
    )
    return "self-managed certificates"


# What operator/src does with the API (Api calls, kube-runtime's Controller, finalizer and
# Recorder): the operator's role must grant exactly this.
OPERATOR_RULES = {
    ("txmesh.io", "transactioncoordinators"): {"list", "watch", "patch"},
    ("txmesh.io", "transactioncoordinators/status"): {"patch"},
    ("txmesh.io", "transactioncoordinators/finalizers"): {"update"},
    ("apps", "statefulsets"): {"get", "list", "watch", "create", "patch"},
    ("", "secrets"): {"get", "list", "watch", "create", "patch"},
    ("", "configmaps"): {"list", "watch", "create", "patch"},
    ("", "services"): {"list", "watch", "create", "patch"},
    ("policy", "poddisruptionbudgets"): {"list", "watch", "create", "patch", "delete"},
    ("", "pods"): {"list"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("monitoring.coreos.com", "servicemonitors"): {"create", "patch", "delete"},
}


# What the injection watchdog (operator/src/inject/watchdog.rs) calls, cluster-wide: its
# ClusterRole must grant exactly this.
WATCHDOG_RULES = {
    ("", "namespaces"): {"list"},
    ("", "pods"): {"list"},
    ("", "pods/eviction"): {"create"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
WATCHDOG_ENV = ("TXMESH_INJECTION_WATCHDOG_SECS", "TXMESH_INJECTION_WATCHDOG_MAX_EVICTIONS")


def grants(role: dict) -> dict[tuple[str, str], set[str]]:
    return {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def watchdog_rbac(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["metadata"]["name"].endswith("-injection-watchdog")]


def props_watchdog(objects: list[dict], values: dict) -> str:
    """The injection watchdog: its settings and its ClusterRole exactly when the injector is on
    and injector.watchdog.intervalSeconds is above 0; nothing of it otherwise."""
    injector = effective(values)["injector"]
    watchdog = injector["watchdog"]
    _, container = operator_pod(objects)
    env = env_of(container)
    rbac = watchdog_rbac(objects)
    evicting = [r["metadata"]["name"] for r in find(objects, "Role") + find(objects, "ClusterRole")
                if ("", "pods/eviction") in grants(r) or ("", "namespaces") in grants(r)]
    if not (injector["enabled"] and watchdog["intervalSeconds"] > 0):
        expect(not [n for n in env if n in WATCHDOG_ENV], "watchdog off: no watchdog settings")
        expect(not rbac, f"watchdog off: no watchdog RBAC, found {[o['metadata']['name'] for o in rbac]}")
        expect(not evicting, f"watchdog off: no role evicts pods or lists namespaces, found {evicting}")
        return "watchdog off: no settings, no ClusterRole"

    expect(
        (env["TXMESH_INJECTION_WATCHDOG_SECS"], env["TXMESH_INJECTION_WATCHDOG_MAX_EVICTIONS"])
        == (str(watchdog["intervalSeconds"]), str(watchdog["maxEvictionsPerSweep"])),
        "injector.watchdog.intervalSeconds and maxEvictionsPerSweep are passed on",
    )
    name = operator_service(objects)["metadata"]["name"].removesuffix("-operator") + "-injection-watchdog"
    expect(
        sorted((o["kind"], o["metadata"]["name"]) for o in rbac) == [("ClusterRole", name), ("ClusterRoleBinding", name)],
        f"a ClusterRole and ClusterRoleBinding {name} (cluster-wide, whatever watchNamespace), and no other watchdog RBAC",
    )
    role = one(rbac, "ClusterRole")
    expect(grants(role) == WATCHDOG_RULES, f"the watchdog's ClusterRole grants what its sweep calls:\n{grants(role)}")
    expect(
        all(set(rule) == {"apiGroups", "resources", "verbs"} for rule in role["rules"]),
        "the watchdog's rules are neither narrowed by name nor widened by URL",
    )
    expect(evicting == [name], f"only the watchdog's ClusterRole evicts pods or lists namespaces, not {evicting}")
    binding = one(rbac, "ClusterRoleBinding")
    expect(binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}, "the binding is to the watchdog's ClusterRole")
    expect(len(binding["subjects"]) == 1, "the binding names the operator's service account only")
    expect(
        all(o["metadata"]["labels"]["app.kubernetes.io/component"] == "sidecar-injector" for o in rbac),
        "the watchdog RBAC is labelled like the injector's other objects",
    )
    return f"watchdog every {watchdog['intervalSeconds']} s, at most {watchdog['maxEvictionsPerSweep']} evictions"


def lease_role(objects: list[dict]) -> dict | None:
    found = [r for r in find(objects, "Role") if any("leases" in rule["resources"] for rule in r["rules"])]
    expect(len(found) <= 1, "at most one Role grants leases")
    return found[0] if found else None


def props_defaults(objects: list[dict], rendered: dict[str, str]) -> None:
    pod, container = operator_pod(objects)
    env = env_of(container)
    expect("TXMESH_WATCH_NAMESPACE" not in env, "no watch namespace: all namespaces")
    expect(env["TXMESH_LEADER_ELECTION"] == "true", "leader election on")
    expect(env["TXMESH_LOG_FORMAT"] == "json", "JSON logs by default")
    expect(env["TXMESH_CATCH_UP_STALL_SECS"] == "120", "the catch-up stall window defaults to 120 s")
    expect(
        (env["TXMESH_INJECTION_WATCHDOG_SECS"], env["TXMESH_INJECTION_WATCHDOG_MAX_EVICTIONS"]) == ("300", "20"),
        "the injection watchdog is on by default: every 300 s, at most 20 evictions",
    )
    watchdog_role = [r for r in find(objects, "ClusterRole") if r["metadata"]["name"] == "txmesh-injection-watchdog"]
    expect(len(watchdog_role) == 1 and grants(watchdog_role[0]) == WATCHDOG_RULES, "the watchdog's ClusterRole, by default")
    expect(container["image"] == "txmesh/txmesh:0.1.0", "the image tag defaults to appVersion")
    operator_role = [r for r in find(objects, "ClusterRole") if r["metadata"]["name"] == "txmesh-operator"]
    expect(len(operator_role) == 1, "the operator's ClusterRole")
    granted = grants(operator_role[0])
    expect(granted == OPERATOR_RULES, f"the ClusterRole grants what the operator uses:\n{granted}")
    role = lease_role(objects)
    expect(role is not None and role["metadata"]["namespace"] == NAMESPACE, "a Lease Role in the release namespace")
    named = [rule for rule in role["rules"] if rule.get("resourceNames")]
    expect(
        named == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                   "resourceNames": [env["TXMESH_LEASE_NAME"]], "verbs": ["get", "update"]}],
        "get and update only on the operator's own Lease",
    )
    expect(not find(objects, "PodDisruptionBudget"), "no PDB for one replica")
    expect(not find(objects, "ServiceMonitor"), "no ServiceMonitor by default")
    expect("kind: TransactionCoordinator" in rendered_notes(rendered), "NOTES.txt shows how to create a TransactionCoordinator")
    expect("txmesh.io/injection=enabled" in rendered_notes(rendered), "NOTES.txt shows how to opt in to injection")
    expect("operator.replicaCount=2" in rendered_notes(rendered), "NOTES.txt: one replica and failurePolicy Fail, run two")


def props_full(objects: list[dict], rendered: dict[str, str]) -> None:
    pod, container = operator_pod(objects)
    env = env_of(container)
    expect(env["TXMESH_WATCH_NAMESPACE"] == "payments", "the watch namespace is passed on")
    expect(env["TXMESH_CLUSTER_DOMAIN"] == "corp.internal", "the cluster domain is passed on")
    expect(env["TXMESH_LEASE_DURATION_SECS"] == "30" and env["TXMESH_LEASE_RENEW_SECS"] == "10", "Lease timings")
    expect(env["TXMESH_CATCH_UP_STALL_SECS"] == "300", "operator.catchUpStallSeconds is passed on")
    expect(container["image"] == "registry.example/txmesh/txmesh:0.1.0-rc.1", "image repository and tag")
    expect(pod["serviceAccountName"] == "txmesh-operator-sa", "the existing service account")
    expect(not find(objects, "ServiceAccount"), "no ServiceAccount made when serviceAccount.create is false")
    # Watching one namespace: nothing cluster-wide but the webhook configuration's patch
    # (a cluster-scoped kind; props_injector checks it is limited to that one object) and the
    # injection watchdog (pods anywhere may have missed the webhooks; props_watchdog checks its
    # rules).
    expect(
        sorted(r["metadata"]["name"] for r in find(objects, "ClusterRole") + find(objects, "ClusterRoleBinding"))
        == ["payments-txmesh-injection-watchdog"] * 2 + ["payments-txmesh-operator-webhook"] * 2,
        "no ClusterRole with watchNamespace but the webhook's and the injection watchdog's",
    )
    expect(
        (env["TXMESH_INJECTION_WATCHDOG_SECS"], env["TXMESH_INJECTION_WATCHDOG_MAX_EVICTIONS"]) == ("60", "5"),
        "the watchdog's interval and cap are passed on",
    )
    operator_role = [r for r in find(objects, "Role") if r["metadata"]["name"] == "payments-txmesh-operator"]
    expect(len(operator_role) == 1 and operator_role[0]["metadata"]["namespace"] == "payments", "the operator's Role is in the watched namespace")
    granted = grants(operator_role[0])
    without_monitors = {k: v for k, v in OPERATOR_RULES.items() if k[1] != "servicemonitors"}
    expect(granted == without_monitors, "the Role grants what the operator uses, no ServiceMonitors (rbac.serviceMonitors false)")
    expect(lease_role(objects)["metadata"]["namespace"] == NAMESPACE, "the Lease Role stays in the release namespace")
    expect("operator.replicaCount=2" not in rendered_notes(rendered), "NOTES.txt: two replicas, no advice to run two")
    pdb = one(objects, "PodDisruptionBudget")
    expect(pdb["spec"]["maxUnavailable"] == 1, "the PDB lets one operator pod go")
    monitor = one(objects, "ServiceMonitor")
    expect(monitor["metadata"]["labels"].get("release") == "prometheus", "ServiceMonitor labels")
    expect(monitor["spec"]["endpoints"][0]["relabelings"], "ServiceMonitor relabelings")
    # Sidecar discovery: in the watched namespace, for both application namespaces.
    sidecar = [b for b in find(objects, "RoleBinding") if b["metadata"]["name"].endswith("-sidecar-discovery")]
    expect([b["metadata"]["namespace"] for b in sidecar] == ["payments"], "sidecar RBAC defaults to the watched namespace")
    expect(
        [s["name"] for s in sidecar[0]["subjects"]] == ["system:serviceaccounts:orders", "system:serviceaccounts:inventory"],
        "every service account of each application namespace",
    )
    role = [r for r in find(objects, "Role") if r["metadata"]["name"].endswith("-sidecar-discovery")][0]
    expect(
        role["rules"] == [{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}],
        "sidecars may only read EndpointSlices",
    )


def props_no_leader_election(objects: list[dict], rendered: dict[str, str]) -> None:
    deployment = one(objects, "Deployment")
    expect(deployment["spec"].get("strategy") == {"type": "Recreate"}, "Recreate without the Lease")
    _, container = operator_pod(objects)
    env = env_of(container)
    expect(env["TXMESH_LEADER_ELECTION"] == "false", "leader election off")
    expect(not any(name.startswith("TXMESH_LEASE") for name in env), "no Lease settings")
    expect(lease_role(objects) is None, "no Lease Role")
    expect(not watchdog_rbac(objects), "no injector, no injection watchdog RBAC")
    expect(not any(n in env for n in WATCHDOG_ENV), "no injector, no injection watchdog settings")
    expect(not find(objects, "ServiceMonitor"), "no ServiceMonitor where the API is not served")
    expect("WARNING: serviceMonitor.enabled" in rendered_notes(rendered), "NOTES.txt says the ServiceMonitor was left out")
    expect("txmesh.io/injection" not in rendered_notes(rendered), "NOTES.txt: no injection without the injector")
    sidecar = [r for r in find(objects, "Role") if r["metadata"]["name"].endswith("-sidecar-discovery")]
    expect(sorted(r["metadata"]["namespace"] for r in sidecar) == ["payments", "payments-staging"], "a sidecar Role per coordinator namespace")


def props_cert_manager(objects: list[dict], rendered: dict[str, str]) -> str:
    values = load_values(VALUES / "cert-manager.yaml")
    pod, container = operator_pod(objects)
    expect("TXMESH_WEBHOOK_CERT_DIR" in env_of(container), "the operator reads cert-manager's certificate")
    expect(not any(n in env_of(container) for n in WATCHDOG_ENV), "intervalSeconds 0: no injection watchdog settings")
    expect(not watchdog_rbac(objects), "intervalSeconds 0: no injection watchdog ClusterRole")
    # The other branch, without a golden file of its own: an issuer of the user's.
    values["injector"]["certManager"]["issuerRef"] = {"name": "internal-ca", "kind": "ClusterIssuer"}
    return props_injector(objects_of(render(values, "txmesh", [])), values)


def rendered_notes(rendered: dict[str, str]) -> str:
    return next((text for path, text in rendered.items() if path.endswith("NOTES.txt")), "")


PROPERTIES = {
    "defaults": props_defaults,
    "full": props_full,
    "cert-manager": props_cert_manager,
    "no-leader-election": props_no_leader_election,
}


# ---------------------------------------------------------------------------------------------
# Bad values.


def expectations(path: Path) -> tuple[str, list[str]]:
    fails, expects = "", []
    for line in path.read_text().splitlines():
        if line.startswith("# fails:"):
            fails = line.split(":", 1)[1].strip()
        elif line.startswith("# expect:"):
            expects.append(line.split(":", 1)[1].strip())
    return fails, expects


def bad_case(path: Path) -> str:
    fails, expects = expectations(path)
    expect(fails in ("schema", "template") and expects, f"{path.name} needs '# fails: schema|template' and '# expect:' lines")
    values = load_values(path)
    try:
        render(values, "txmesh", [])
    except helm.HelmError as error:
        message = str(error)
    else:
        raise Failure("rendered, but must not")
    missing = [e for e in expects if e not in message]
    expect(not missing, f"the render error lacks {missing}:\n{message}")
    if fails == "schema":
        report = helm.lint(CHART, values, strict=True, kube_version=f"v{KUBE_VERSION}")
        errors = "\n".join(report["errors"])
        expect(report["errors"], "helm lint found no error")
        missing = [e for e in expects if e not in errors]
        expect(not missing, f"the lint errors lack {missing}:\n{errors}")
    return f"{'render and lint' if fails == 'schema' else 'render'} refused: {message.strip()}"


# ---------------------------------------------------------------------------------------------


def good_case(case: Case) -> None:
    values = load_values(VALUES / case.values)
    state: dict = {}

    def rendering() -> None:
        state["rendered"] = render(values, case.release, case.api_versions)
        state["objects"] = objects_of(state["rendered"])

    check(case.name, "helm lint --strict", lint_clean, values)
    check(case.name, "render", rendering)
    if "objects" not in state:
        return
    objects, rendered = state["objects"], state["rendered"]

    check(case.name, "kubernetes-validate --strict", validate, objects, "objects")
    check(case.name, "golden" + (" (blessed)" if BLESS else ""), compare_golden, case.name, manifest(rendered))
    check(case.name, "properties (all values)", props_common, objects, values)
    check(case.name, "properties (injector)", props_injector, objects, values)
    check(case.name, "properties (injection watchdog)", props_watchdog, objects, values)
    check(case.name, f"properties ({case.name})", PROPERTIES[case.name], objects, rendered)


def values_documented() -> None:
    """No dead values: every .Values path a template reads is in values.yaml, every knob in
    values.yaml is read by a template and described by values.schema.json, and back."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    templates = "".join(p.read_text() for p in sorted((CHART / "templates").iterdir()))
    used = set(re.findall(r"\.Values\.([A-Za-z0-9_.]+)", templates))

    def knobs(values: dict, node: dict, prefix: str = "") -> list[str]:
        # A knob is a value whose schema has no properties of its own (free-form objects
        # such as resources or affinity count as one).
        out = []
        props = node.get("properties", {})
        for key, value in values.items():
            path = prefix + key
            expect(key in props, f"values.yaml {path} is not in values.schema.json")
            child = props[key]
            if isinstance(value, dict) and "properties" in child:
                out += knobs(value, child, path + ".")
            else:
                out.append(path)
        missing = sorted(set(props) - set(values) - {"global"})
        expect(not missing, f"values.schema.json has {[prefix + m for m in missing]} but values.yaml does not")
        return out

    for path in knobs(defaults, schema):
        expect(
            any(path == ref or path.startswith(ref + ".") for ref in used),
            f"values.yaml {path} is read by no template",
        )
    for ref in used:
        node = defaults
        for key in ref.split("."):
            expect(isinstance(node, dict) and key in node, f"templates read .Values.{ref}, which values.yaml lacks")
            node = node[key]


def app_version_matches() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    workspace = (HERE.parent.parent / "Cargo.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', workspace, re.MULTILINE)
    expect(version is not None, "Cargo.toml names the workspace version")
    expect(chart["appVersion"] == version.group(1), f"appVersion {chart['appVersion']} != workspace version {version.group(1)}")


def main() -> int:
    helm.disable_logging()
    print(f"chart test: {CHART} with helm-python-sdk {helm.__version__} (Helm {helm.helm_sdk_version()})")
    if not VALIDATOR.exists():
        print(f"chart test: {VALIDATOR} is missing: run make deps-python", file=sys.stderr)
        return 2

    listed = {case.values for case in CASES}
    on_disk = {p.name for p in VALUES.glob("*.yaml") if not p.name.startswith("bad-")}
    check("values", "every value documented, checked and used", values_documented)
    check("values", "every good values file is a case", lambda: expect(listed == on_disk, f"cases {sorted(listed)} != files {sorted(on_disk)}"))

    def crds() -> str:
        objects = []
        for crd in helm.Chart.load(CHART).crds:
            objects += [doc for doc in yaml.safe_load_all(crd["data"]) if doc]
        expect(objects, "crds/ holds the CRD")
        return validate(objects, "CRDs")

    check("crds", "kubernetes-validate --strict", crds)
    check("chart", "appVersion is the workspace's version (the image tag make image builds)", app_version_matches)
    for case in CASES:
        good_case(case)
    for path in sorted(VALUES.glob("bad-*.yaml")):
        check(path.stem, "refused", bad_case, path)

    failed = [r for r in results if r[2] is not None]
    print(f"\nchart-test: {len(results) - len(failed)} passed, {len(failed)} failed")
    for case, what, _ in failed:
        print(f"  failed: {case}: {what}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
