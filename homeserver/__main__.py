"""The `devnet-homeserver` command (also `python -m homeserver`).

Subcommands: `generate-config`, `run`, `register-user` and `media`. Errors an operator can fix
(a bad config, a taken user name, a busy port) print one line and exit 1; tracebacks
are kept for bugs.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import signal
import sys
from collections.abc import Sequence

from homeserver.config import Config, ConfigError, load_config
from homeserver.errors import MatrixError
from homeserver.generate_config import REGISTRATION_POLICIES, generate_config
from homeserver.log_context import setup_logging
from homeserver.server import Homeserver, run
from homeserver.storage.database import DatabaseUnavailable

logger = logging.getLogger("homeserver")


class CommandError(Exception):
    """A failure the user can act on: printed as one line, exit status 1."""


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
    except CommandError as e:
        print(f"error: {e}", file=sys.stderr)
    except (KeyboardInterrupt, EOFError):
        # Ctrl-C or Ctrl-D at a password prompt.
        print(file=sys.stderr)
    return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="devnet-homeserver", description="DevNet Matrix homeserver")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser("generate-config", help="write a config, signing key and TLS certificate")
    gen.add_argument("--server-name", required=True,
                     help="the domain in user and room IDs; cannot be changed later")
    gen.add_argument("--config", default="homeserver.yaml", help="config file to write")
    gen.add_argument("--data-dir", help="where keys and the database go (default: the config's directory)")
    gen.add_argument("--registration", choices=REGISTRATION_POLICIES, default="disabled",
                     help="who may register through the client API (default: disabled)")
    gen.set_defaults(func=_generate_config)

    run_cmd = sub.add_parser("run", help="run the homeserver")
    run_cmd.add_argument("-c", "--config", required=True, help="config file")
    run_cmd.set_defaults(func=_run)

    reg = sub.add_parser("register-user", help="create an account (ignores the registration policy)")
    reg.add_argument("-c", "--config", required=True, help="config file")
    reg.add_argument("user", metavar="USER", help="a localpart (alice) or a user ID (@alice:example.org)")
    reg.add_argument("--admin", action="store_true", help="make the account a server admin")
    reg.add_argument("--password", help="the password (prompted for when absent; visible to `ps` when given)")
    reg.set_defaults(func=_register_user)

    media = sub.add_parser("media", help="media repository administration")
    media.add_argument("-c", "--config", required=True, help="config file")
    media_sub = media.add_subparsers(dest="media_command", required=True, metavar="ACTION")
    delete = media_sub.add_parser("delete", help="delete local media (and its thumbnails) by ID")
    delete.add_argument("media_ids", nargs="+", metavar="MEDIA_ID",
                        help="a media ID or an mxc://server/id URI of this server")
    purge = media_sub.add_parser("purge-remote", help="delete cached remote media not "
                                 "accessed for some days")
    purge.add_argument("--days", type=int, required=True, help="last accessed more than DAYS ago")
    media.set_defaults(func=_media)
    return parser


def _generate_config(args: argparse.Namespace) -> int:
    try:
        files = generate_config(args.server_name, args.config, args.data_dir,
                                registration_policy=args.registration)
    except FileExistsError as e:
        raise CommandError(f"{e.filename or args.config} already exists; refusing to overwrite it") from None
    print(f"wrote {files.config_path}")
    print(f"  signing key:     {files.signing_key_path}")
    print(f"  TLS certificate: {files.tls_cert_path} (self-signed, for the federation listener)")
    print(f"run it with: devnet-homeserver run -c {files.config_path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    setup_logging(config.log_level)
    try:
        asyncio.run(_serve(config))
    except DatabaseUnavailable as e:
        raise CommandError(str(e)) from None
    except OSError as e:
        # A busy port, an unreadable TLS file.
        raise CommandError(f"cannot start: {e}") from None
    return 0


async def _serve(config: Config) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        logger.info("received %s, shutting down", sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    logger.info("starting %s (database: %s)", config.server_name, config.database.engine)
    await run(config, stop)
    logger.info("stopped")


def _register_user(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    # Only problems are worth showing here, not the server's start-up chatter.
    setup_logging("WARNING")
    localpart = _localpart(args.user, config.server_name)
    password = args.password if args.password is not None else _prompt_password()
    try:
        user_id = asyncio.run(_create_account(config, localpart, password, args.admin))
    except MatrixError as e:
        raise CommandError(f"{e.errcode}: {e.error}") from None
    except DatabaseUnavailable as e:
        raise CommandError(str(e)) from None
    print(user_id)
    return 0


def _localpart(user: str, server_name: str) -> str:
    if not user.startswith("@"):
        return user
    localpart, sep, server = user[1:].partition(":")
    if not sep or server != server_name:
        raise CommandError(f"{user} is not a user ID on this server ({server_name})")
    return localpart


def _prompt_password() -> str:
    password = getpass.getpass("Password: ")
    if not password:
        raise CommandError("empty password")
    if getpass.getpass("Confirm password: ") != password:
        raise CommandError("passwords do not match")
    return password


async def _create_account(config: Config, localpart: str, password: str, admin: bool) -> str:
    hs = Homeserver(config)
    await hs.open()
    try:
        result = await hs.registration.register_user(localpart, password, admin=admin,
                                                     inhibit_login=True)
    finally:
        await hs.close()
    return result.user_id


def _media(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    setup_logging("WARNING")
    if args.media_command == "purge-remote" and args.days < 0:
        raise CommandError("--days must not be negative")
    try:
        asyncio.run(_media_action(config, args))
    except DatabaseUnavailable as e:
        raise CommandError(str(e)) from None
    return 0


async def _media_action(config: Config, args: argparse.Namespace) -> None:
    hs = Homeserver(config)
    await hs.open()
    try:
        if args.media_command == "purge-remote":
            count = await hs.media.purge_remote(args.days * 24 * 60 * 60 * 1000)
            print(f"purged {count} remote media")
            return
        missing = []
        for item in args.media_ids:
            server, _, media_id = item.removeprefix("mxc://").rpartition("/")
            if server not in ("", config.server_name) or not await hs.media.delete_local(media_id):
                missing.append(item)
            else:
                print(f"deleted {item}")
    finally:
        await hs.close()
    if missing:
        raise CommandError(f"no such local media: {', '.join(missing)}")


if __name__ == "__main__":
    sys.exit(main())
