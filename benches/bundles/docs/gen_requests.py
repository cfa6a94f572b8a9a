#!/usr/bin/env python3
"""Writes requests.jsonl for the Docs benchmark bundle: 200 check requests (principal, action,
resource, context; no request entities) spread over users, documents, comments, folders,
actions and contexts.

Deterministic (a random.Random with a fixed seed) and built from entities.json, so run
gen_entities.py first. Requests lean towards callers related to the resource (its owner, its
owning team, its sharing settings) so that roughly half are allowed.

    python3 benches/bundles/docs/gen_requests.py
"""

import json
import os
import random

SEED = 4242
COUNT = 200
NOW = 1767225600
CORP_IPS = ["10.0.4.17", "10.20.30.40", "10.255.1.9"]
OUTSIDE_IPS = ["203.0.113.7", "198.51.100.23", "192.0.2.55"]

here = os.path.dirname(os.path.abspath(__file__))
entities = json.load(open(os.path.join(here, "entities.json")))
rng = random.Random(SEED)

by_type = {}
for e in entities:
    by_type.setdefault(e["uid"]["type"].split("::")[1], {})[e["uid"]["id"]] = e
users, teams, folders = by_type["User"], by_type["Team"], by_type["Folder"]
docs, comments = by_type["Document"], by_type["Comment"]
orgs = by_type["Organization"]

team_parent = {t: (e["parents"][0]["id"] if e["parents"][0]["type"] == "Docs::Team" else None)
               for t, e in teams.items()}


def in_team(uid, team):
    t = users[uid]["parents"][0]["id"]
    while t:
        if t == team:
            return True
        t = team_parent[t]
    return False


def E(kind, id_):
    return {"type": f"Docs::{kind}", "id": id_}


def pick(weighted):
    items, weights = zip(*weighted)
    return rng.choices(items, weights)[0]


def device():
    return {"managed": rng.random() < 0.8, "mfa": rng.random() < 0.85,
            "os": rng.choice(["macos", "windows", "linux", "ios", "android"])}


def network():
    corp = rng.random() < 0.75
    return {"ip": rng.choice(CORP_IPS if corp else OUTSIDE_IPS),
            "country": rng.choice(["US", "DE", "JP", "BR"])}


def now():
    return pick([(NOW, 8), (NOW - 86400 * 400, 1), (NOW + 86400 * 800, 1)])


def share_role():
    return pick([("none", 12), ("viewer", 3), ("commenter", 2), ("editor", 2), ("owner", 1)])


def related_user(doc):
    a = doc["attrs"]
    org = a["org"]["id"]
    same_org = sorted(u for u, e in users.items() if e["attrs"]["org"]["id"] == org)
    team = sorted(u for u in users if in_team(u, a["owner_team"]["id"]))
    named = []
    if "sharing" in a:
        s = a["sharing"]
        named = sorted({r["id"] for k in ("editors", "viewers", "guests") for r in s[k]})
    choice = pick([("owner", 5), ("team", 4), ("named", 2), ("org", 2), ("any", 3)])
    if choice == "owner":
        return a["owner"]["id"]
    if choice == "team" and team:
        return rng.choice(team)
    if choice == "named" and named:
        return rng.choice(named)
    if choice == "org":
        return rng.choice(same_org)
    return rng.choice(sorted(users))


def doc_request():
    did = rng.choice(sorted(docs))
    doc = docs[did]
    a = doc["attrs"]
    action = pick([("view", 8), ("download", 3), ("comment", 3), ("edit", 4), ("rename", 1),
                   ("move", 1), ("share", 2), ("delete", 1), ("set_classification", 1)])
    if action == "view" and rng.random() < 0.08:
        principal = E("Visitor", "anonymous")
    else:
        principal = E("User", related_user(doc))
    ctx = {"now": now(), "share_role": share_role(), "device": device(), "network": network()}
    if action in ("view", "comment"):
        link = a.get("sharing", {}).get("link")
        if link and rng.random() < 0.7:
            ctx["link_token"] = link["token"] if rng.random() < 0.85 else "lnk-forged"
    elif action == "download":
        ctx["format"] = rng.choice(["pdf", "docx", "md"])
    elif action == "move":
        org = a["org"]["id"] if rng.random() < 0.8 else rng.choice(sorted(orgs))
        ctx["destination"] = E("Folder", rng.choice(sorted(
            f for f, e in folders.items() if e["attrs"]["org"]["id"] == org)))
    elif action == "share":
        invitee = rng.choice(sorted(users))
        ctx["invitee_email"] = users[invitee]["attrs"]["email"]
        ctx["grant_role"] = rng.choice(["viewer", "commenter", "editor"])
    elif action == "set_classification":
        ctx["new_classification"] = rng.choice(["public", "internal", "confidential", "restricted"])
    return {"principal": principal, "action": E("Action", action), "resource": E("Document", did),
            "context": ctx}


def comment_request():
    cid = rng.choice(sorted(comments))
    c = comments[cid]["attrs"]
    doc = docs[c["document"]["id"]]
    who = pick([("author", 3), ("doc", 3), ("any", 2)])
    if who == "author":
        uid = c["author"]["id"]
    elif who == "doc":
        uid = related_user(doc)
    else:
        uid = rng.choice(sorted(users))
    action = rng.choice(["resolve_comment", "delete_comment"])
    return {"principal": E("User", uid), "action": E("Action", action), "resource": E("Comment", cid),
            "context": {"now": now(), "device": device()}}


def folder_request():
    fid = rng.choice(sorted(folders))
    f = folders[fid]["attrs"]
    org = f["org"]["id"]
    if fid.startswith("home-") and rng.random() < 0.6:
        uid = fid[len("home-"):]
    elif "owner_team" in f and rng.random() < 0.5:
        uid = rng.choice(sorted(u for u in users if in_team(u, f["owner_team"]["id"])) or sorted(users))
    elif rng.random() < 0.7:
        uid = rng.choice(sorted(u for u, e in users.items() if e["attrs"]["org"]["id"] == org))
    else:
        uid = rng.choice(sorted(users))
    action = pick([("list_folder", 3), ("create_document", 2)])
    return {"principal": E("User", uid), "action": E("Action", action), "resource": E("Folder", fid),
            "context": {"now": now(), "device": device(), "network": network()}}


with open(os.path.join(here, "requests.jsonl"), "w") as out:
    for _ in range(COUNT):
        kind = pick([(doc_request, 75), (comment_request, 10), (folder_request, 15)])
        out.write(json.dumps(kind()) + "\n")
print(os.path.join(here, "requests.jsonl"), COUNT)
