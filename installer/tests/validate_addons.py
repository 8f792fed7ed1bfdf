#!/usr/bin/env python3
"""Validate rendered addon manifests strictly against the Kubernetes OpenAPI schemas.

Usage: validate_addons.py K8S_VERSION FILE...   (files in apply order)

Built-in kinds are validated with kubernetes-validate (its offline schemas, strict:
an unknown field is an error). A kind the schemas do not have must be defined by a
CustomResourceDefinition among the files given before it; the object is then validated
against that CRD's openAPIV3Schema, made strict the way the apiserver prunes: where a
schema lists properties and does not preserve unknown fields, any other field is an
error. Anything else is an error. Prints one line per problem and a summary; exits 1
when a problem was found.
"""

import copy
import sys

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def strict(schema):
    """The CRD schema with additionalProperties: false wherever the apiserver would prune."""
    s = copy.deepcopy(schema)
    # The apiserver always accepts these at the root of a custom object.
    root = s.setdefault("properties", {})
    root.setdefault("apiVersion", {"type": "string"})
    root.setdefault("kind", {"type": "string"})
    root.setdefault("metadata", {"type": "object"})

    def walk(node):
        if not isinstance(node, dict):
            return
        # Go's regexp takes a flag group anywhere ("^(?i)..."); Python's only at the start.
        pattern = node.get("pattern")
        if isinstance(pattern, str) and pattern.startswith("^(?i)"):
            node["pattern"] = "(?i)^" + pattern[len("^(?i)"):]
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for key in ("properties",):
            for v in node.get(key, {}).values():
                walk(v)
        for key in ("items", "additionalProperties"):
            walk(node.get(key))
        for key in ("anyOf", "allOf", "oneOf"):
            for v in node.get(key, []):
                walk(v)

    walk(s)
    return s


def crd_schemas(doc):
    """(apiVersion, kind) -> schema of every served version a v1 CRD defines."""
    spec = doc.get("spec", {})
    out = {}
    for v in spec.get("versions", []):
        if v.get("served"):
            api = "%s/%s" % (spec["group"], v["name"])
            out[(api, spec["names"]["kind"])] = v.get("schema", {}).get("openAPIV3Schema", {})
    return out


def name_of(doc):
    meta = doc.get("metadata") or {}
    ns = meta.get("namespace")
    return "%s %s%s" % (doc.get("kind"), ns + "/" if ns else "", meta.get("name"))


def validate(version, paths):
    problems, builtin, custom = [], 0, 0
    crds = {}
    for path in paths:
        for doc in load(path):
            what = "%s: %s" % (path, name_of(doc))
            try:
                kubernetes_validate.validate(doc, version, strict=True)
                builtin += 1
            except ValidationError as e:
                loc = ".".join(str(p) for p in e.path)
                problems.append("%s: %s: %s" % (what, loc, e.message))
            except SchemaNotFoundError:
                schema = crds.get((doc.get("apiVersion"), doc.get("kind")))
                if schema is None:
                    problems.append(
                        "%s: %s is not a Kubernetes %s kind and no CRD before it defines it"
                        % (what, doc.get("apiVersion"), version)
                    )
                    continue
                try:
                    jsonschema.validate(doc, strict(schema))
                    custom += 1
                except jsonschema.ValidationError as e:
                    loc = ".".join(str(p) for p in e.path)
                    problems.append("%s: %s: %s (CRD schema)" % (what, loc, e.message))
            if doc.get("kind") == "CustomResourceDefinition":
                crds.update(crd_schemas(doc))
    return problems, builtin, custom


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    problems, builtin, custom = validate(sys.argv[1], sys.argv[2:])
    for p in problems:
        print("ERROR " + p)
    print(
        "validated %d objects against the Kubernetes %s schemas and %d against CRD schemas, %d problems"
        % (builtin, sys.argv[1], custom, len(problems))
    )
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
