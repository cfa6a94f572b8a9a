#!/usr/bin/env python3
"""Writes entities.json for the Docs benchmark bundle.

Deterministic: the named entities the tests rely on are spelled out below; the filler users,
documents and comments come from a random.Random with a fixed seed. Run from anywhere:

    python3 benches/bundles/docs/gen_entities.py
"""

import json
import os
import random

SEED = 20260101
NOW = 1767225600          # 2026-01-01T00:00:00Z, the "now" of the tests and requests.jsonl
FUTURE = 1798761600       # 2027-01-01: links that are still valid
PAST = 1735689600         # 2025-01-01: expired links, elapsed retention

rng = random.Random(SEED)


def ref(kind, id_):
    return {"type": f"Docs::{kind}", "id": id_}


entities = []

# --- Organizations --------------------------------------------------------------------------

ORGS = {
    "acme": ("Acme Corp", "acme.example", "acme-it-admins"),
    "globex": ("Globex", "globex.example", "globex-admins"),
    "initech": ("Initech", "initech.example", "initech-admins"),
}
for oid, (name, domain, admin_team) in ORGS.items():
    entities.append({
        "uid": ref("Organization", oid),
        "attrs": {"name": name, "domain": domain, "admin_team": ref("Team", admin_team)},
        "parents": [],
    })

# --- Teams: (id, parent team or None for the org root, org, department) ---------------------

TEAMS = [
    ("acme-staff", None, "acme", "general"),
    ("acme-eng", "acme-staff", "acme", "engineering"),
    ("acme-platform", "acme-eng", "acme", "engineering"),
    ("acme-mobile", "acme-eng", "acme", "engineering"),
    ("acme-legal", "acme-staff", "acme", "legal"),
    ("acme-security", "acme-staff", "acme", "security"),
    ("acme-it-admins", "acme-staff", "acme", "it"),
    ("acme-sales", "acme-staff", "acme", "sales"),
    ("acme-contractors", None, "acme", "engineering"),
    ("globex-staff", None, "globex", "general"),
    ("globex-research", "globex-staff", "globex", "research"),
    ("globex-ml", "globex-research", "globex", "research"),
    ("globex-admins", "globex-staff", "globex", "it"),
    ("initech-staff", None, "initech", "general"),
    ("initech-finance", "initech-staff", "initech", "finance"),
    ("initech-admins", "initech-staff", "initech", "it"),
]
TEAM_ORG = {t: o for t, _, o, _ in TEAMS}
TEAM_DEPT = {t: d for t, _, _, d in TEAMS}
TEAM_PARENT = {t: p for t, p, _, _ in TEAMS}
for tid, parent, org, _ in TEAMS:
    entities.append({
        "uid": ref("Team", tid),
        "attrs": {"name": tid},
        "parents": [ref("Team", parent) if parent else ref("Organization", org)],
    })

# --- Folders: (id, parent folder or None for the org root, org, path, owner team, archived, private)

FOLDERS = [
    ("acme-root", None, "acme", "/acme", None, False, False),
    ("acme-handbook", "acme-root", "acme", "/acme/handbook", "acme-it-admins", False, False),
    ("acme-engineering", "acme-root", "acme", "/acme/engineering", "acme-eng", False, False),
    ("acme-platform-docs", "acme-engineering", "acme", "/acme/engineering/platform", "acme-platform", False, False),
    ("acme-platform-drafts", "acme-platform-docs", "acme", "/acme/engineering/platform/drafts", "acme-platform", False, False),
    ("acme-mobile-docs", "acme-engineering", "acme", "/acme/engineering/mobile", "acme-mobile", False, False),
    ("acme-legal-docs", "acme-root", "acme", "/acme/legal", "acme-legal", False, True),
    ("acme-legal-contracts", "acme-legal-docs", "acme", "/acme/legal/contracts", "acme-legal", False, True),
    ("acme-security-docs", "acme-root", "acme", "/acme/security", "acme-security", False, True),
    ("acme-sales-docs", "acme-root", "acme", "/acme/sales", "acme-sales", False, False),
    ("acme-archive", "acme-root", "acme", "/acme/archive", "acme-staff", True, False),
    ("acme-home", "acme-root", "acme", "/acme/home", None, False, True),
    ("globex-root", None, "globex", "/globex", None, False, False),
    ("globex-research-docs", "globex-root", "globex", "/globex/research", "globex-research", False, False),
    ("globex-ml-docs", "globex-research-docs", "globex", "/globex/research/ml", "globex-ml", False, False),
    ("globex-ml-drafts", "globex-ml-docs", "globex", "/globex/research/ml/drafts", "globex-ml", False, False),
    ("globex-policies", "globex-root", "globex", "/globex/policies", "globex-admins", False, False),
    ("globex-home", "globex-root", "globex", "/globex/home", None, False, True),
    ("initech-root", None, "initech", "/initech", None, False, False),
    ("initech-finance-docs", "initech-root", "initech", "/initech/finance", "initech-finance", False, True),
    ("initech-finance-reports", "initech-finance-docs", "initech", "/initech/finance/reports", "initech-finance", False, True),
    ("initech-general", "initech-root", "initech", "/initech/general", "initech-staff", False, False),
    ("initech-home", "initech-root", "initech", "/initech/home", None, False, True),
]
FOLDER_PATH = {}
FOLDER_ORG = {}
FOLDER_TEAM = {}


def add_folder(fid, parent, org, path, team, archived, private):
    FOLDER_PATH[fid] = path
    FOLDER_ORG[fid] = org
    FOLDER_TEAM[fid] = team
    attrs = {"name": path.rsplit("/", 1)[-1], "path": path, "org": ref("Organization", org),
             "archived": archived, "private": private}
    if team:
        attrs["owner_team"] = ref("Team", team)
    entities.append({
        "uid": ref("Folder", fid),
        "attrs": attrs,
        "parents": [ref("Folder", parent) if parent else ref("Organization", org)],
    })


for f in FOLDERS:
    add_folder(*f)

# --- Users ----------------------------------------------------------------------------------
# (id, team, clearances, blocked_tags, suspended, external, email or None for id@org domain);
# a user's department is their team's, except for those in DEPARTMENT_OVERRIDES.

NAMED_USERS = [
    ("alice", "acme-platform", ["confidential"], [], False, False, None),
    ("bob", "acme-platform", [], [], False, False, None),
    ("carol", "acme-mobile", ["confidential"], [], False, False, None),
    ("dave", "acme-legal", ["confidential", "legal", "restricted"], [], False, False, None),
    ("erin", "acme-security", ["confidential", "restricted"], [], False, False, None),
    ("frank", "acme-it-admins", ["confidential"], [], False, False, None),
    ("grace", "acme-sales", [], ["project-falcon"], False, False, None),
    ("heidi", "acme-platform", ["confidential"], [], True, False, None),
    ("ivan", "acme-contractors", [], [], False, True, "ivan@freelance.example"),
    ("judy", "acme-sales", ["confidential"], [], False, False, None),
    ("kim", "globex-ml", ["confidential", "itar"], [], False, False, None),
    ("leo", "globex-research", [], [], False, False, None),
    ("mallory", "globex-admins", ["confidential", "restricted"], [], False, False, None),
    ("trent", "globex-research", [], [], False, True, "trent@contractors.example"),
    ("nina", "initech-finance", ["confidential", "finance", "restricted"], [], False, False, None),
    ("oscar", "initech-admins", ["confidential"], [], False, False, None),
    ("peggy", "initech-finance", ["finance"], ["audit-2025"], False, False, None),
    ("olga", "acme-staff", [], [], False, False, None),
]
DEPARTMENT_OVERRIDES = {"olga": "sales"}  # sales operations, seated in the general staff team
FILLER_USERS = {
    "acme": ["ken", "liam", "maya", "noah", "pete", "quinn", "rosa"],
    "globex": ["sam", "tara", "uma", "vic", "wes", "xena", "yuri"],
    "initech": ["zane", "abby", "ben", "cleo", "dan", "eva", "finn", "gus"],
}
FILLER_TEAMS = {
    "acme": ["acme-platform", "acme-mobile", "acme-eng", "acme-sales", "acme-legal", "acme-staff"],
    "globex": ["globex-research", "globex-ml", "globex-staff"],
    "initech": ["initech-finance", "initech-staff"],
}
CLEARANCES = ["confidential", "restricted", "legal", "finance", "itar"]
TAGS = ["roadmap", "design", "rfc", "budget", "hiring", "ops", "customer", "research",
        "project-falcon", "project-kestrel", "audit-2025", "archive", "api", "marketing"]

users = list(NAMED_USERS)
for org, names in FILLER_USERS.items():
    for name in names:
        team = rng.choice(FILLER_TEAMS[org])
        clearances = sorted(c for c in CLEARANCES if rng.random() < 0.3)
        blocked = sorted(t for t in ["project-falcon", "project-kestrel", "audit-2025"] if rng.random() < 0.12)
        suspended = rng.random() < 0.08
        users.append((name, team, clearances, blocked, suspended, False, None))

TEAM_MEMBERS = {t: [] for t, *_ in TEAMS}
USER_ORG = {}
for uid, team, clearances, blocked, suspended, external, email in users:
    org = TEAM_ORG[team]
    USER_ORG[uid] = org
    TEAM_MEMBERS[team].append(uid)
    home = f"home-{uid}"
    add_folder(home, f"{org}-home", org, f"/{org}/home/{uid}", None, False, True)
    entities.append({
        "uid": ref("User", uid),
        "attrs": {
            "email": email or f"{uid}@{ORGS[org][1]}",
            "display_name": uid.capitalize(),
            "org": ref("Organization", org),
            "department": DEPARTMENT_OVERRIDES.get(uid, TEAM_DEPT[team]),
            "clearances": clearances,
            "blocked_tags": blocked,
            "suspended": suspended,
            "external": external,
            "home_folder": ref("Folder", home),
        },
        "parents": [ref("Team", team)],
    })

entities.append({"uid": ref("Visitor", "anonymous"), "attrs": {}, "parents": []})

# --- Documents ------------------------------------------------------------------------------


def link(token, audience, role, enabled=True, expires_at=FUTURE):
    return {"token": token, "enabled": enabled, "expires_at": expires_at,
            "audience": audience, "role": role}


def sharing(visibility="private", editors=(), viewers=(), guests=(), restrict_reshare=False, link=None):
    s = {"visibility": visibility,
         "editors": [ref("User", u) for u in editors],
         "viewers": [ref("User", u) for u in viewers],
         "guests": [ref("User", u) for u in guests],
         "restrict_reshare": restrict_reshare}
    if link:
        s["link"] = link
    return s


def add_doc(did, folder, owner, team, classification, tags=(), required=(), legal_hold=False,
            share=None, department=None, retain_until=None, title=None):
    org = FOLDER_ORG[folder]
    attrs = {
        "title": title or did.replace("-", " "),
        "path": f"{FOLDER_PATH[folder]}/{did}",
        "org": ref("Organization", org),
        "owner": ref("User", owner),
        "owner_team": ref("Team", team),
        "classification": classification,
        "tags": list(tags),
        "required_clearances": list(required),
        "legal_hold": legal_hold,
    }
    if share is not None:
        attrs["sharing"] = share
    if department is not None:
        attrs["department"] = department
    if retain_until is not None:
        attrs["retain_until"] = retain_until
    entities.append({"uid": ref("Document", did), "attrs": attrs, "parents": [ref("Folder", folder)]})


# Named documents (the tests rely on these).
add_doc("acme-platform-roadmap", "acme-platform-docs", "alice", "acme-platform", "internal",
        tags=["roadmap", "planning"], share=sharing(editors=["carol"], viewers=["grace"]))
add_doc("acme-platform-design", "acme-platform-docs", "alice", "acme-platform", "confidential",
        tags=["design", "project-falcon"],
        share=sharing(link=link("lnk-design", ["org"], "commenter")))
add_doc("acme-platform-rfc", "acme-platform-drafts", "alice", "acme-platform", "internal", tags=["rfc"])
add_doc("acme-platform-api-spec", "acme-platform-docs", "bob", "acme-platform", "internal",
        tags=["published", "api"], share=sharing(visibility="org"))
add_doc("acme-incident-2025-11", "acme-security-docs", "erin", "acme-security", "restricted",
        tags=["incident"], required=["restricted"])
add_doc("acme-contract-globex", "acme-legal-contracts", "dave", "acme-legal", "confidential",
        tags=["contract"], required=["legal"], legal_hold=True, retain_until=1893456000)
add_doc("acme-contract-2019", "acme-legal-contracts", "dave", "acme-legal", "confidential",
        tags=["contract", "archive"], required=["legal"], retain_until=PAST)
add_doc("acme-contract-2024", "acme-legal-contracts", "dave", "acme-legal", "confidential",
        tags=["contract"], required=["legal"], retain_until=1830297600)
add_doc("acme-handbook-welcome", "acme-handbook", "frank", "acme-it-admins", "public",
        tags=["handbook"], share=sharing(visibility="org"))
add_doc("acme-handbook-security", "acme-handbook", "frank", "acme-it-admins", "internal",
        tags=["handbook"])
add_doc("acme-press-release", "acme-sales-docs", "judy", "acme-sales", "public",
        tags=["press", "marketing"], share=sharing(visibility="public"))
add_doc("acme-sales-pipeline", "acme-sales-docs", "judy", "acme-sales", "confidential",
        tags=["sales", "project-falcon"], department="sales")
add_doc("acme-falcon-brief", "acme-sales-docs", "judy", "acme-sales", "internal",
        tags=["project-falcon", "sales"])
add_doc("acme-sales-playbook", "acme-sales-docs", "judy", "acme-sales", "internal",
        tags=["sales"], department="sales")
add_doc("acme-mobile-launch", "acme-mobile-docs", "carol", "acme-mobile", "internal",
        tags=["launch"], share=sharing(viewers=["bob"], guests=["ivan"], restrict_reshare=True))
add_doc("acme-mobile-budget", "acme-mobile-docs", "carol", "acme-mobile", "confidential",
        tags=["budget"], share=sharing(guests=["ivan"]))
add_doc("acme-old-plan", "acme-archive", "bob", "acme-staff", "internal", tags=["archive"])
add_doc("acme-alice-notes", "home-alice", "alice", "acme-platform", "internal", tags=["personal"])
add_doc("acme-eng-onboarding", "acme-engineering", "alice", "acme-eng", "internal",
        tags=["onboarding"], share=sharing(link=link("lnk-onboard", ["anyone"], "viewer")))
add_doc("acme-eng-brochure", "acme-engineering", "carol", "acme-eng", "public",
        tags=["marketing"], share=sharing(link=link("lnk-brochure", ["anyone"], "commenter")))
add_doc("acme-eng-retro", "acme-engineering", "bob", "acme-eng", "internal",
        tags=["retro"], share=sharing(link=link("lnk-retro", ["signed_in"], "commenter", expires_at=PAST)))
add_doc("acme-eng-offsite", "acme-engineering", "bob", "acme-eng", "internal",
        tags=["ops"], share=sharing(link=link("lnk-offsite", ["signed_in"], "viewer", enabled=False)))
add_doc("acme-eng-frozen-style", "acme-engineering", "alice", "acme-eng", "internal",
        tags=["frozen", "style"], share=sharing(editors=["judy"]))
add_doc("globex-ml-model-card", "globex-ml-docs", "kim", "globex-ml", "public",
        tags=["research"], share=sharing(visibility="public", link=link("lnk-card", ["anyone"], "viewer")))
add_doc("globex-ml-weights", "globex-ml-docs", "kim", "globex-ml", "confidential",
        tags=["export-controlled", "research"], required=["itar"])
add_doc("globex-ml-paper", "globex-ml-drafts", "kim", "globex-ml", "internal",
        tags=["research"], share=sharing(editors=["leo"]))
add_doc("globex-research-plan", "globex-research-docs", "leo", "globex-research", "internal",
        tags=["research", "planning"], department="research")
add_doc("globex-travel-policy", "globex-policies", "mallory", "globex-admins", "internal",
        tags=["policy"], share=sharing(visibility="org"))
add_doc("initech-q3-report", "initech-finance-reports", "nina", "initech-finance", "confidential",
        tags=["finance", "audit-2025"], required=["finance"], department="finance")
add_doc("initech-tps-template", "initech-general", "oscar", "initech-staff", "public",
        tags=["frozen", "template"], share=sharing(visibility="public"))
add_doc("initech-budget-2026", "initech-finance-docs", "nina", "initech-finance", "restricted",
        tags=["budget"], required=["finance", "restricted"])

# Filler documents: 49, filed in the team folders and home folders of each organization.
TEAM_FOLDERS = [f for f, _, _, _, team, _, _ in FOLDERS if team]


def members(team):
    """Direct and nested members of a team."""
    out = list(TEAM_MEMBERS[team])
    for t, parent in TEAM_PARENT.items():
        if parent == team:
            out.extend(members(t))
    return out


org_users = {}
for uid, org in USER_ORG.items():
    org_users.setdefault(org, []).append(uid)

for n in range(1, 50):
    did = f"doc-{n:03d}"
    if n % 5 == 0:
        owner = rng.choice(sorted(USER_ORG))
        folder = f"home-{owner}"
        team = next(u[1] for u in users if u[0] == owner)
    else:
        folder = rng.choice(TEAM_FOLDERS)
        team = FOLDER_TEAM[folder]
        candidates = members(team) or org_users[FOLDER_ORG[folder]]
        owner = rng.choice(sorted(candidates))
    org = FOLDER_ORG[folder]
    classification = rng.choices(["public", "internal", "confidential", "restricted"], [2, 5, 3, 1])[0]
    tags = sorted(rng.sample(TAGS, rng.randint(0, 3)))
    required = []
    if classification in ("confidential", "restricted") and rng.random() < 0.4:
        required = [rng.choice(["legal", "finance", "itar"])]
    if classification == "restricted":
        required = sorted(set(required) | {"restricted"})
    legal_hold = rng.random() < 0.1
    peers = [u for u in org_users[org] if u != owner]
    kind = rng.choices(["none", "private", "org", "public", "link"], [3, 4, 3, 1, 2])[0]
    share = None
    if kind == "private":
        share = sharing(editors=rng.sample(peers, rng.randint(0, 2)),
                        viewers=rng.sample(peers, rng.randint(0, 3)),
                        restrict_reshare=rng.random() < 0.3)
    elif kind == "org":
        share = sharing(visibility="org", editors=rng.sample(peers, rng.randint(0, 1)))
    elif kind == "public":
        share = sharing(visibility="public")
        classification = "public"
        required = []
    elif kind == "link":
        share = sharing(link=link(f"lnk-{did}", [rng.choice(["anyone", "signed_in", "org"])],
                                  rng.choice(["viewer", "commenter"]),
                                  enabled=rng.random() < 0.85,
                                  expires_at=rng.choice([PAST, NOW + 86400, FUTURE])))
    department = TEAM_DEPT[team] if rng.random() < 0.2 else None
    retain = rng.choice([None, None, None, PAST, FUTURE])
    add_doc(did, folder, owner, team, classification, tags=tags, required=required,
            legal_hold=legal_hold, share=share, department=department, retain_until=retain)

# --- Comments -------------------------------------------------------------------------------


def add_comment(cid, doc, author, resolved):
    entities.append({
        "uid": ref("Comment", cid),
        "attrs": {"author": ref("User", author), "document": ref("Document", doc), "resolved": resolved},
        "parents": [ref("Document", doc)],
    })


add_comment("c-roadmap-1", "acme-platform-roadmap", "grace", False)
add_comment("c-roadmap-2", "acme-platform-roadmap", "carol", True)
add_comment("c-design-1", "acme-platform-design", "bob", False)
add_comment("c-contract-1", "acme-contract-globex", "dave", True)
add_comment("c-research-1", "globex-research-plan", "kim", False)
for n in range(1, 11):
    doc = f"doc-{rng.randint(1, 49):03d}"
    org = next(e["attrs"]["org"]["id"] for e in entities if e["uid"] == ref("Document", doc))
    add_comment(f"c-{n:03d}", doc, rng.choice(sorted(org_users[org])), rng.random() < 0.4)

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "entities.json")
with open(out, "w") as f:
    json.dump(entities, f, indent=1)
    f.write("\n")

counts = {}
for e in entities:
    counts[e["uid"]["type"]] = counts.get(e["uid"]["type"], 0) + 1
print(out, counts)
