"""The SMTP AUTH users file from the command line (``smtp.auth``: scrypt hashes).

    python -m netstack.cli.smtp_users add USERS_FILE alice            # asks for the password
    printf 'secret\\n' | python -m netstack.cli.smtp_users add USERS_FILE alice --password-stdin
    python -m netstack.cli.smtp_users check USERS_FILE alice          # exit 0 if the password matches

Exit status: 0 done (``check``: the password matches), 1 it does not match,
2 a malformed users file (one line on stderr: "path:line: reason").
"""
from __future__ import annotations

import argparse
import getpass
import sys

from smtp.auth import DEFAULT_LN, Users, UsersFileError, set_user


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m netstack.cli.smtp_users",
                                 description="Manage the SMTP AUTH users file (scrypt hashes).")
    ap.add_argument("action", choices=["add", "check"])
    ap.add_argument("file")
    ap.add_argument("user")
    ap.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    ap.add_argument("--ln", type=int, default=DEFAULT_LN, help="log2 of the scrypt cost N (default 14)")
    args = ap.parse_args(argv)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"password for {args.user}: ")
    try:
        if args.action == "add":
            set_user(args.file, args.user, password, ln=args.ln)
            return 0
        return 0 if Users.load(args.file).verify(args.user, password) else 1
    except UsersFileError as exc:
        print(f"smtp.auth: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
