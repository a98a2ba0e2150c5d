"""Demo data: a small, believable Willo account."""

from __future__ import annotations

import hashlib

from connector.sandbox import validate as v
from connector.sandbox.store import DEFAULT_STAGES, Store, question

LANGUAGES = [
    ("en", "English"),
    ("en-US", "English (US)"),
    ("fr", "French"),
    ("de", "German"),
    ("es", "Spanish"),
    ("it", "Italian"),
    ("nl", "Dutch"),
    ("pt", "Portuguese"),
    ("pl", "Polish"),
    ("sv", "Swedish"),
    ("ar", "Arabic"),
    ("ja", "Japanese"),
]
IDV_COUNTRIES = [
    ("GB", "United Kingdom"),
    ("IE", "Ireland"),
    ("US", "United States"),
    ("CA", "Canada"),
    ("FR", "France"),
    ("DE", "Germany"),
    ("ES", "Spain"),
    ("NL", "Netherlands"),
    ("AU", "Australia"),
    ("NZ", "New Zealand"),
]


def stable(label: str) -> str:
    """A fixed 32-hex key for a demo record, so examples can name it."""
    return hashlib.sha256(f"willo-sandbox-demo:{label}".encode()).hexdigest()[:32]


def derived_key(api_key: str, role: str) -> str:
    """Stable keys for the demo's other users, so a reset does not change them."""
    return "sk_sandbox_" + hashlib.sha256(f"{api_key}:{role}".encode()).hexdigest()[:32]


def base(store: Store, api_key: str) -> dict[str, str]:
    """The minimum every sandbox has: the owner (holding ``api_key``), reference data."""
    owner, _ = store.add_user(
        "owner@sandbox.example", "owner", "Olivia", "Owner", api_key, key=stable("user:owner")
    )
    eng = store.insert("categories", {"key": stable("category:eng"), "name": "Engineering"})
    sales = store.insert("categories", {"key": stable("category:sales"), "name": "Sales"})
    store.insert("categories", {"name": "Customer support"})
    store.insert(
        "interview_templates",
        {
            "key": stable("template:graduate"),
            "title": "Graduate software engineer",
            "category": eng["key"],
            "description": "Four questions for graduate engineering roles.",
            "questions": [
                {
                    "text": "Why do you want to work in software?",
                    "order": 0,
                    "answer_type": "video",
                    "max_retakes": 1,
                    "max_duration": 90,
                    "thinking_time": 30,
                },
                {
                    "text": "Tell us about a project you are proud of.",
                    "order": 1,
                    "answer_type": "video",
                    "max_retakes": 1,
                    "max_duration": 120,
                    "thinking_time": 30,
                },
                {
                    "text": "How do you approach debugging?",
                    "order": 2,
                    "answer_type": "text",
                    "max_characters": 1000,
                },
                {
                    "text": "Where do you want to be in three years?",
                    "order": 3,
                    "answer_type": "video",
                    "max_retakes": 2,
                    "max_duration": 60,
                    "thinking_time": 20,
                },
            ],
        },
    )
    store.insert(
        "interview_templates",
        {
            "title": "Account executive",
            "category": sales["key"],
            "description": "Screen for closing skills.",
            "questions": [
                {
                    "text": "Sell us this pen.",
                    "order": 0,
                    "answer_type": "video",
                    "max_retakes": 1,
                    "max_duration": 120,
                    "thinking_time": 30,
                }
            ],
        },
    )
    for type_, channel, subject, body in (
        ("invite", "email", "Your interview", "Hi {{first_name}}, please record your interview."),
        ("invite", "sms", None, "Hi {{first_name}}, your interview: {{link}}"),
        ("reminder", "email", "Reminder: your interview", "Just a reminder: {{link}}"),
        ("reminder", "sms", None, "Reminder: {{link}}"),
        ("success", "email", "Thank you", "Thanks for completing your interview."),
    ):
        store.insert(
            "message_templates",
            {
                "name": f"Default {type_} {channel}",
                "type": type_,
                "channel": channel,
                "subject": subject,
                "body": body,
                "is_default": True,
                "_owner": owner["key"],
            },
        )
    for tpl in store.table("interview_templates").values():
        tpl["questions"] = [question(q) for q in tpl["questions"]]
    return {"owner": api_key}


def demo(store: Store, api_key: str, request_host: str) -> dict[str, str]:
    """``--seed demo``: departments, interviews, participants in several stages, users."""
    keys = base(store, api_key)
    owner = store.user_for(api_key)
    assert owner is not None
    _, keys["admin"] = store.add_user(
        "admin@sandbox.example",
        "admin",
        "Adam",
        "Admin",
        derived_key(api_key, "admin"),
        key=stable("user:admin"),
    )
    std, keys["standard"] = store.add_user(
        "sam@sandbox.example",
        "standard",
        "Sam",
        "Standard",
        derived_key(api_key, "standard"),
        key=stable("user:standard"),
    )
    store.add_user(
        "new.hire@sandbox.example", "standard", "Nia", "New", status="invited", key=stable("user:new")
    )
    eng = store.insert(
        "departments",
        {
            "key": stable("department:engineering"),
            "name": "Engineering",
            "description": "Product and platform teams",
            "is_global": False,
            "branding": {"logo_url": None, "primary_colour": "#1a73e8"},
            "_owner": owner["key"],
        },
    )
    ops = store.insert(
        "departments",
        {
            "key": stable("department:operations"),
            "name": "Operations",
            "description": "Visible to everyone",
            "is_global": True,
            "branding": None,
            "_owner": owner["key"],
        },
    )
    store.insert(
        "departments",
        {
            "key": stable("department:sams-team"),
            "name": "Sam's team",
            "description": None,
            "is_global": False,
            "branding": None,
            "_owner": std["key"],
        },
    )

    def interview(title: str, dept: str, owner_key: str) -> dict[str, object]:
        rec = store.insert(
            "interviews",
            {
                "key": stable(f"interview:{title}"),
                "title": title,
                "department": dept,
                "default_language": "en",
                "description": f"First-round video interview for {title}.",
                "salary": None,
                "questions": [
                    {
                        "text": "Tell us about yourself.",
                        "order": 0,
                        "answer_type": "video",
                        "max_retakes": 2,
                        "max_duration": 120,
                        "thinking_time": 30,
                    },
                    {
                        "text": "Why this role?",
                        "order": 1,
                        "answer_type": "text",
                        "max_characters": 1500,
                    },
                ],
                "settings": dict(v.SETTINGS_DEFAULTS),
                "message_templates": dict.fromkeys(v.TEMPLATE_REF_RULES),
                "stages": list(DEFAULT_STAGES),
                "_owner": owner_key,
            },
        )
        rec["invite_link"] = f"{request_host}invite/{rec['key']}"
        rec["questions"] = [question(q) for q in rec["questions"]]
        return rec

    backend = interview("Backend Engineer", eng["key"], owner["key"])
    interview("Warehouse Supervisor", ops["key"], owner["key"])
    people = [
        ("ada@example.com", "Ada", "Lovelace", "Invited", "invited", None),
        ("grace@example.com", "Grace", "Hopper", "Completed", "completed", None),
        ("alan@example.com", "Alan", "Turing", "Reviewed", "completed", 4),
        ("katherine@example.com", "Katherine", "Johnson", "Shortlisted", "completed", 5),
        ("charles@example.com", "Charles", "Babbage", "Rejected", "completed", 2),
    ]
    for email, first, last, stage, status, score in people:
        now = store.clock.now()
        store.insert(
            "participants",
            {
                "key": stable(f"participant:{email}"),
                "interview": backend["key"],
                "email": email,
                "first_name": first,
                "last_name": last,
                "phone": None,
                "stage": stage,
                "status": status,
                "score": score,
                "created_at": now,
                "updated_at": now,
                "completed_at": now if status == "completed" else None,
                "invite_link": f"{request_host}i/{stable(f'participant:{email}')}",
                "_comments": [],
            },
        )
    store.insert("children", {"name": "Sandbox Europe", "parent": store.organisation})
    return keys


FIRST = ("Ada", "Grace", "Alan", "Katherine", "Charles", "Edsger", "Barbara", "Donald", "Frances", "Tim")
LAST = ("Lovelace", "Hopper", "Turing", "Johnson", "Babbage", "Dijkstra", "Liskov", "Knuth", "Allen", "Lee")


def bulk(store: Store, participants: int, request_host: str) -> str:
    """``--participants N``: one more interview ("Bulk hiring") with N participants, a
    third of them completed, for benchmarks. Keys are stable (``participant:bulk:I``)."""
    owner = store.user_for(next(iter(store.api_keys)))
    assert owner is not None
    itv = store.insert(
        "interviews",
        {
            "key": stable("interview:Bulk hiring"),
            "title": "Bulk hiring",
            "department": None,
            "default_language": "en",
            "description": "Many candidates, for benchmarks.",
            "salary": None,
            "questions": [question({"text": "Tell us about yourself.", "order": 0, "answer_type": "video"})],
            "settings": dict(v.SETTINGS_DEFAULTS),
            "message_templates": dict.fromkeys(v.TEMPLATE_REF_RULES),
            "stages": list(DEFAULT_STAGES),
            "_owner": owner["key"],
            "invite_link": f"{request_host}invite/{stable('interview:Bulk hiring')}",
        },
    )
    interview = itv["key"]
    table = store.table("participants")
    for i in range(participants):
        key = stable(f"participant:bulk:{i}")
        now = store.clock.now()
        done = i % 3 == 2
        table.insert(
            {
                "key": key,
                "interview": interview,
                "email": f"candidate{i:06d}@example.com",
                "first_name": FIRST[i % len(FIRST)],
                "last_name": LAST[(i // len(FIRST)) % len(LAST)],
                "phone": None,
                "stage": "Completed" if done else "Invited",
                "status": "completed" if done else "invited",
                "score": (i % 5) + 1 if done and i % 2 else None,
                "created_at": now,
                "updated_at": now,
                "completed_at": now if done else None,
                "invite_link": f"{request_host}i/{key}",
                "_comments": [],
            }
        )
    return interview
