"""`keyscope token | user export | user delete`: credentials for the API, and one user's data on request (GDPR)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.config import Settings


def add_token_arguments(parser: argparse.ArgumentParser) -> None:
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--service", action="store_true", help="the first configured service key (platform backend)")
    who.add_argument(
        "--admin", action="store_true", help="an admin token (default lifetime KEYSCOPE_ADMIN_TOKEN_TTL_S)"
    )
    who.add_argument("--user", type=int, metavar="ID", help="a token that reads only user ID's data")
    parser.add_argument("--ttl", type=int, metavar="SECONDS", help="token lifetime (default from the settings)")


def run_token(settings: Settings, args: argparse.Namespace) -> int:
    from app.auth import issue_token_from_settings, parse_service_key

    if args.service:
        if args.ttl is not None:
            raise ValueError("service keys do not expire; --ttl is for --user and --admin")
        if not settings.service_keys:
            raise ValueError(
                "no service key configured: run `keyscope up` (it writes secrets.json) or set KEYSCOPE_SERVICE_KEYS"
            )
        print(parse_service_key(settings.service_keys[0])[1].decode())
        return 0
    if not settings.token_secrets:
        raise ValueError(
            "no token secret configured: run `keyscope up` (it writes secrets.json) or set KEYSCOPE_TOKEN_SECRETS"
        )
    # The settings' audience too: with KEYSCOPE_JWT_AUDIENCE set, a token without it is refused.
    if args.admin:
        print(issue_token_from_settings(settings, "admin", ttl_s=args.ttl))
    else:
        print(issue_token_from_settings(settings, "user", user_id=args.user, ttl_s=args.ttl))
    return 0


def _print_stores(stores: dict[str, Any]) -> None:
    for name, entry in stores.items():
        parts = ", ".join(f"{part} {n}" for part, n in entry["parts"].items() if n)
        print(f"  {name:<11} {entry['count']:>9}" + (f"  ({parts})" if parts else ""))


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user_id", type=int, metavar="USER_ID")
    parser.add_argument("--out", metavar="FILE", help="archive path (default keyscope-user-USER_ID.zip)")


def run_export(settings: Settings, args: argparse.Namespace) -> int:
    from app.user_data import export_user

    out = Path(args.out or f"keyscope-user-{args.user_id}.zip")
    manifest = export_user(settings, args.user_id, out)
    print(f"wrote {out}: {manifest['total']} records about user {args.user_id}")
    _print_stores(manifest["stores"])
    return 0


def add_delete_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("user_id", type=int, metavar="USER_ID")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def run_delete(settings: Settings, args: argparse.Namespace) -> int:
    from app.user_data import delete_user

    if not args.yes:
        if not sys.stdin.isatty():
            raise ValueError("not a terminal: pass --yes to delete without a prompt")
        answer = input(f"Delete everything keyscope holds about user {args.user_id}? Type the user id to confirm: ")
        if answer.strip() != str(args.user_id):
            print("nothing deleted")
            return 1
    result = delete_user(settings, args.user_id)
    print(f"deleted user {args.user_id}: {result['total']} records; tombstone at {result['deleted_at']}")
    _print_stores(result["stores"])
    return 0
