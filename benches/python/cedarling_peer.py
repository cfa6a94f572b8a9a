"""cedarling-python (the Janssen Project's Cedarling) as a benchmark peer: a directory policy
store holding the same policies, schema and static entities, and Cedarling configured for a plain
decision (logging, JWT checks, Lock, metrics and trace off). One `authorize_unsigned` call per
decision, with its one principal, so the answer is that principal's Cedar decision.

Cedarling takes no entity references as attribute values: its JSON-to-Cedar conversion has no
`__entity` escape, and with a schema it fills entity-typed attributes of request entities only from
entities it built itself. So those attributes are left out of its default entities and made optional
in its copy of the schema. Rules reading them cannot behave as in Cedar; the benchmarked requests
read none. With a schema Cedarling derives the action hierarchy from it, so action entities are left
out too; without one it needs strict schema validation off."""

import hashlib
import json
import re

import cedarling_python as cedarling


def _has_entity_ref(value):
    if isinstance(value, dict):
        return "__entity" in value or any(_has_entity_ref(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_entity_ref(v) for v in value)
    return False


def _relaxed(schema):
    """schema with each entity-typed attribute (`name: Entity,` or `name: Set<Entity>,` on a line
    of its own, as the bundles here write them) optional."""
    entity_types = set(re.findall(r"\bentity\s+(\w+)", schema))
    attribute = re.compile(r"^(\s*\w+)(\s*:\s*(?:Set<\s*)?(\w+)\s*>?\s*,?\s*(?://.*)?)$", re.M)
    return attribute.sub(lambda m: m.group(1) + "?" + m.group(2) if m.group(3) in entity_types else m.group(0), schema)


def cedarling_engine(policies, schema, entities, workdir):
    """A Cedarling deciding with `policies` (every one with an @id), `schema` (Cedar schema text,
    or None) and `entities` (Cedar entity JSON) as its default entities; the store goes in
    `workdir`."""
    store = workdir / "cedarling-store"
    (store / "policies").mkdir(parents=True)
    (store / "entities").mkdir()
    defaults = [
        {
            "uid": e["uid"],
            "attrs": {k: v for k, v in e.get("attrs", {}).items() if not _has_entity_ref(v)},
            "parents": e.get("parents", []),
        }
        for e in entities
        if not (schema and e["uid"]["type"].split("::")[-1] == "Action")
    ]
    digest = hashlib.sha256(policies.encode()).hexdigest()
    metadata = {"cedar_version": "4.4.0", "policy_store": {"id": digest[:16], "name": "bench", "version": "1.0.0"}}
    (store / "metadata.json").write_text(json.dumps(metadata))
    (store / "policies" / "policies.cedar").write_text(policies)
    (store / "entities" / "entities.json").write_text(json.dumps(defaults))
    config = {
        "CEDARLING_APPLICATION_NAME": "bench",
        "CEDARLING_POLICY_STORE_LOCAL_FN": str(store),
        "CEDARLING_LOG_TYPE": "off",
        "CEDARLING_JWT_SIG_VALIDATION": "disabled",
        "CEDARLING_JWT_STATUS_VALIDATION": "disabled",
        "CEDARLING_LOCK": "disabled",
        "CEDARLING_METRICS_COLLECTION": "disabled",
        "CEDARLING_TRACE": "disabled",
        "CEDARLING_MAX_DEFAULT_ENTITIES": max(1000, len(defaults)),
    }
    if schema:
        (store / "schema.cedarschema").write_text(_relaxed(schema))
    else:
        config["CEDARLING_STRICT_SCHEMA_VALIDATION"] = "disabled"
    return cedarling.Cedarling(cedarling.BootstrapConfig(config))


def cedarling_decide(engine, principal, action, resource, context):
    """One decision. principal/resource: {"type", "id", "attrs"}; action: 'Ns::Action::"id"'."""
    request = cedarling.RequestUnsigned(
        principal=cedarling.EntityData(cedarling.CedarEntityMapping(principal["type"], principal["id"]), **principal["attrs"]),
        action=action,
        resource=cedarling.EntityData(cedarling.CedarEntityMapping(resource["type"], resource["id"]), **resource["attrs"]),
        context=context,
    )
    return engine.authorize_unsigned(request).is_allowed()
