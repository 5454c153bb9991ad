"""Checks deploy/envoy/envoy.yaml without Envoy (not installable here): the
YAML parses into Envoy's own Bootstrap proto (the xds-protos package), so
every field name, type and `@type` is one Envoy knows; and every SDS
reference names a secret Herald's agent serves, over the cluster that
points at the socket deploy/agent.toml configures.

Usage: check_envoy_bootstrap.py deploy/envoy/envoy.yaml deploy/agent.toml
"""
import re
import sys

import yaml
from google.protobuf import json_format

# Imported for the types the bootstrap's `@type`s name.
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2  # noqa: F401
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2  # noqa: F401
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2  # noqa: F401
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401

SERVED = {"default", "ROOTCA", "ALL"}


def sds_refs(node, path=""):
    """Every (path, secret config) under `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}"
            if key in ("tls_certificate_sds_secret_configs",):
                for i, v in enumerate(value):
                    yield f"{here}[{i}]", v
            elif key == "validation_context_sds_secret_config":
                yield here, value
            else:
                yield from sds_refs(value, here)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from sds_refs(v, f"{path}[{i}]")


def socket_path(agent_toml):
    try:
        import tomllib  # Python 3.11+
        return tomllib.load(open(agent_toml, "rb"))["socket_path"]
    except ImportError:
        return re.search(r'^socket_path = "([^"]+)"', open(agent_toml).read(), re.M).group(1)


def main():
    envoy_path, agent_path = sys.argv[1], sys.argv[2]
    doc = yaml.safe_load(open(envoy_path))
    bootstrap = bootstrap_pb2.Bootstrap()
    json_format.ParseDict(doc, bootstrap)  # raises on any unknown field or type

    socket = socket_path(agent_path)
    sds = [c for c in bootstrap.static_resources.clusters if c.name == "herald_sds"]
    assert len(sds) == 1, "no herald_sds cluster"
    pipe = sds[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.pipe.path
    assert pipe == socket, f"herald_sds dials {pipe}, the agent listens on {socket}"
    assert sds[0].typed_extension_protocol_options, "herald_sds must speak HTTP/2"

    refs = list(sds_refs(doc))
    assert len(refs) >= 4, refs
    for where, ref in refs:
        name = ref["name"]
        assert name in SERVED or name.startswith("spiffe://"), f"{where}: {name} is not served"
        grpc = ref["sds_config"]["api_config_source"]["grpc_services"][0]["envoy_grpc"]
        assert grpc["cluster_name"] == "herald_sds", f"{where}: {grpc}"

    text = open(envoy_path).read()
    assert "principal_name" in text and "spiffe://example.org/frontend" in text, "no RBAC on the peer's SPIFFE ID"
    print(f"{envoy_path}: a valid Envoy bootstrap; {len(refs)} SDS references to {socket}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
