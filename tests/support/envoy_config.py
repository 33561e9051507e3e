#!/usr/bin/env python3
"""deploy/envoy/envoy.yaml for replicas on loopback: the same listener, routes, hash policy,
retries, health checks and load balancer, with only the addresses changed (the listeners' and
admin ports, and a STATIC list of replicas instead of the headless Service's DNS name).

    envoy_config.py ENVOY_YAML OUT --listen PORT --admin PORT --replica HOST:PORT [--replica ...]
                    [--set stream_idle_timeout=2s]

--set changes one of the few settings a test varies (the listener's stream_idle_timeout).
"""

import argparse
from pathlib import Path

import yaml

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("source", type=Path)
parser.add_argument("out", type=Path)
parser.add_argument("--listen", type=int, required=True)
parser.add_argument("--admin", type=int, required=True)
parser.add_argument("--replica", action="append", required=True)
parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
args = parser.parse_args()

config = yaml.safe_load(args.source.read_text())
config["admin"]["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": args.admin}
listeners = {listener["name"]: listener for listener in config["static_resources"]["listeners"]}
listener = listeners["grpc"]
listener["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": args.listen}
listeners["metrics"]["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": 0}
for setting in args.set:
    key, value = setting.split("=", 1)
    if key != "stream_idle_timeout":
        parser.error(f"--set {key}: only stream_idle_timeout can be set")
    (chain,) = listener["filter_chains"]
    (manager,) = chain["filters"]
    manager["typed_config"][key] = value
clusters = {cluster["name"]: cluster for cluster in config["static_resources"]["clusters"]}
(admin,) = clusters["envoy_admin"]["load_assignment"]["endpoints"][0]["lb_endpoints"]
admin["endpoint"]["address"]["socket_address"]["port_value"] = args.admin
cluster = clusters["samstream"]
cluster["type"] = "STATIC"
for key in ("dns_lookup_family", "dns_refresh_rate"):
    cluster.pop(key, None)
endpoints = []
for replica in args.replica:
    host, port = replica.rsplit(":", 1)
    endpoints.append({"endpoint": {"address": {"socket_address": {"address": host, "port_value": int(port)}}}})
cluster["load_assignment"]["endpoints"] = [{"lb_endpoints": endpoints}]
args.out.write_text(yaml.safe_dump(config, sort_keys=False))
