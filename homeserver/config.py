"""Configuration: frozen attrs classes loaded from YAML and validated.

Every error names the offending key (`database.engine: must be one of ...`) so a bad
config fails at start with one useful line. `config.sample.yaml` documents every option.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Any, TypeVar, cast

import attrs
import yaml

from homeserver.signing_key import load_signing_key
from homeserver.types import is_valid_server_name

T = TypeVar("T")


class ConfigError(Exception):
    """A bad config value; the message starts with the dotted key path."""


class _Section:
    """Reads typed values out of one mapping, naming the key path in errors."""

    def __init__(self, data: Any, path: str):
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path or 'config'}: must be a mapping")
        self.data = data
        self.path = path

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, typ: type[T] | tuple[type, ...], default: Any = attrs.NOTHING) -> T:
        if name not in self.data or self.data[name] is None:
            if default is attrs.NOTHING:
                raise ConfigError(f"{self.key(name)}: is required")
            return default  # type: ignore[no-any-return]
        value = self.data[name]
        # bool is an int in Python; never accept it where a number is expected.
        types = typ if isinstance(typ, tuple) else (typ,)
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            names = " or ".join(t.__name__ for t in types)
            raise ConfigError(f"{self.key(name)}: must be {names}, got {value!r}")
        return cast(T, value)

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            raise ConfigError(f"{self.key(name)}: must be one of {', '.join(choices)}, got {value!r}")
        return value

    def port(self, name: str, default: int) -> int:
        value = self.get(name, int, default)
        if not 0 <= value < 65536:
            raise ConfigError(f"{self.key(name)}: must be a TCP port (0-65535), got {value}")
        return value

    def positive(self, name: str, typ: type, default: Any) -> Any:
        value: Any = self.get(name, typ if typ is not float else (int, float), default)
        if value is not None and value <= 0:
            raise ConfigError(f"{self.key(name)}: must be positive, got {value}")
        return value

    def sub(self, name: str) -> _Section:
        return _Section(self.data.get(name), self.key(name))

    def path_value(self, name: str, base_dir: str, default: str | None = attrs.NOTHING) -> Any:  # type: ignore[assignment]
        value = self.get(name, str, default)
        if value is None:
            return None
        return value if os.path.isabs(value) else os.path.normpath(os.path.join(base_dir, value))


@attrs.frozen
class ListenerConfig:
    bind: str
    port: int
    tls_cert_path: str | None = None
    tls_key_path: str | None = None

    @classmethod
    def load(cls, s: _Section, base_dir: str, default_port: int) -> ListenerConfig:
        cert = s.path_value("tls_cert_path", base_dir, None)
        key = s.path_value("tls_key_path", base_dir, None)
        if (cert is None) != (key is None):
            raise ConfigError(f"{s.key('tls_key_path')}: tls_cert_path and tls_key_path go together")
        return cls(bind=s.get("bind", str, "127.0.0.1"), port=s.port("port", default_port),
                   tls_cert_path=cert, tls_key_path=key)


@attrs.frozen
class DatabaseConfig:
    engine: str
    path: str | None = None  # sqlite
    dsn: str | None = None  # postgres
    pool_size: int = 10

    @classmethod
    def load(cls, s: _Section, base_dir: str) -> DatabaseConfig:
        engine = s.choice("engine", ("sqlite", "postgres"), "sqlite")
        if engine == "sqlite":
            path = s.get("path", str, "homeserver.db")
            if path != ":memory:" and not os.path.isabs(path):
                path = os.path.join(base_dir, path)
            return cls(engine=engine, path=path)
        return cls(engine=engine, dsn=s.get("dsn", str), pool_size=s.positive("pool_size", int, 10))


@attrs.frozen
class RateLimit:
    """A token bucket: `per_second` refill rate, `burst` capacity."""

    per_second: float
    burst: int


DEFAULT_RATE_LIMITS: dict[str, RateLimit] = {
    "login": RateLimit(per_second=0.2, burst=5),
    "register": RateLimit(per_second=0.2, burst=5),
    "register_available": RateLimit(per_second=1.0, burst=10),
    "password_change": RateLimit(per_second=0.1, burst=3),
    "message": RateLimit(per_second=10.0, burst=50),
    "default": RateLimit(per_second=20.0, burst=100),
}


def _load_rate_limits(s: _Section) -> dict[str, RateLimit]:
    limits = dict(DEFAULT_RATE_LIMITS)
    for action in s.data:
        if not isinstance(action, str):
            raise ConfigError(f"{s.key(str(action))}: rate limit names must be strings")
        sub = s.sub(action)
        # A partial entry keeps the action's own default for the other field.
        base = limits.get(action) or limits["default"]
        limits[action] = RateLimit(per_second=float(sub.positive("per_second", float, base.per_second)),
                                   burst=sub.positive("burst", int, base.burst))
    return limits


@attrs.frozen
class RegistrationConfig:
    policy: str  # disabled | token | open
    # Tokens accepted by m.login.registration_token, in addition to any in the database.
    tokens: tuple[str, ...] = ()
    guest_access: bool = False
    password_min_length: int = 8
    # Shared secret for the admin registration API and the register-user CLI.
    shared_secret: str | None = None

    @classmethod
    def load(cls, s: _Section) -> RegistrationConfig:
        tokens = s.get("tokens", list, [])
        for i, t in enumerate(tokens):
            if not isinstance(t, str) or not t:
                raise ConfigError(f"{s.key('tokens')}[{i}]: must be a non-empty string")
        policy = s.choice("policy", ("disabled", "token", "open"), "disabled")
        return cls(policy=policy, tokens=tuple(tokens), guest_access=s.get("guest_access", bool, False),
                   password_min_length=s.get("password_min_length", int, 8),
                   shared_secret=s.get("shared_secret", str, None))


@attrs.frozen
class AuthConfig:
    # Lifetime of access tokens issued with a refresh token (spec: refresh tokens, v1.3).
    access_token_lifetime_ms: int = 5 * 60 * 1000
    # UIAA sessions are forgotten after this long.
    uiaa_session_lifetime_ms: int = 15 * 60 * 1000
    # argon2id cost parameters for new password hashes (existing hashes are upgraded at
    # the next successful login). Lower them only on very small machines, or in tests.
    password_hash_time_cost: int = 3
    password_hash_memory_kib: int = 65536
    password_hash_parallelism: int = 4

    @classmethod
    def load(cls, s: _Section) -> AuthConfig:
        memory = s.positive("password_hash_memory_kib", int, 65536)
        parallelism = s.positive("password_hash_parallelism", int, 4)
        if memory < 8 * parallelism:
            # argon2 needs at least 8 KiB per lane.
            raise ConfigError(f"{s.key('password_hash_memory_kib')}: must be at least 8 per "
                              f"unit of password_hash_parallelism, got {memory}")
        return cls(access_token_lifetime_ms=s.positive("access_token_lifetime_ms", int, 5 * 60 * 1000),
                   uiaa_session_lifetime_ms=s.positive("uiaa_session_lifetime_ms", int, 15 * 60 * 1000),
                   password_hash_time_cost=s.positive("password_hash_time_cost", int, 3),
                   password_hash_memory_kib=memory, password_hash_parallelism=parallelism)


@attrs.frozen
class ThumbnailSize:
    width: int
    height: int
    method: str  # scale | crop


DEFAULT_THUMBNAIL_SIZES = (ThumbnailSize(32, 32, "crop"), ThumbnailSize(96, 96, "crop"),
                           ThumbnailSize(320, 240, "scale"), ThumbnailSize(640, 480, "scale"),
                           ThumbnailSize(800, 600, "scale"))


@attrs.frozen
class UrlPreviewConfig:
    """URL previews (GET /media/v1/preview_url): the server fetches pages users name, so
    it is off by default and never reaches private, loopback or link-local addresses
    unless they fall in `allowed_hosts_cidrs`."""

    enabled: bool = False
    allowed_hosts_cidrs: tuple[str, ...] = ()
    max_response_bytes: int = 1_000_000
    timeout_s: float = 10.0
    # How long a preview is reused for the same URL, and how many are kept.
    cache_ttl_ms: int = 60 * 60 * 1000
    cache_max_entries: int = 1000

    @classmethod
    def load(cls, s: _Section) -> UrlPreviewConfig:
        cidrs = s.get("allowed_hosts_cidrs", list, [])
        for i, c in enumerate(cidrs):
            try:
                ipaddress.ip_network(c, strict=False)
            except (TypeError, ValueError):
                raise ConfigError(f"{s.key('allowed_hosts_cidrs')}[{i}]: must be a CIDR like "
                                  f"10.0.0.0/8, got {c!r}") from None
        return cls(
            enabled=s.get("enabled", bool, False),
            allowed_hosts_cidrs=tuple(cidrs),
            max_response_bytes=s.positive("max_response_bytes", int, 1_000_000),
            timeout_s=float(s.positive("timeout_s", float, 10.0)),
            cache_ttl_ms=s.positive("cache_ttl_ms", int, 60 * 60 * 1000),
            cache_max_entries=s.positive("cache_max_entries", int, 1000),
        )


@attrs.frozen
class MediaConfig:
    """The media repository (spec: content repository)."""

    media_store_path: str
    max_upload_size: int = 50 * 1024 * 1024
    # Total bytes of media one user may have stored; None: no quota.
    max_storage_per_user: int | None = None
    # Content types (exact, or a `type/*` prefix); empty allow list: anything not denied.
    allowed_content_types: tuple[str, ...] = ()
    denied_content_types: tuple[str, ...] = ()
    # Legacy unauthenticated /_matrix/media/v3/download|thumbnail: all | none |
    # before_cutoff (media created before legacy_unauthenticated_cutoff_ms, the spec's
    # "freeze").
    legacy_unauthenticated_media: str = "before_cutoff"
    legacy_unauthenticated_cutoff_ms: int = 0
    # Sizes generated at upload for images; other sizes are made on request and cached.
    thumbnail_sizes: tuple[ThumbnailSize, ...] = DEFAULT_THUMBNAIL_SIZES
    # Images with more pixels than this are not decoded (decompression bombs).
    max_image_pixels: int = 32 * 1024 * 1024
    # Async uploads (POST /media/v1/create): how long an ID stays usable, how many a user
    # may hold unused.
    unused_expiration_ms: int = 24 * 60 * 60 * 1000
    max_pending_uploads: int = 10
    url_preview: UrlPreviewConfig = UrlPreviewConfig()

    @classmethod
    def load(cls, s: _Section, base_dir: str) -> MediaConfig:
        sizes = []
        default_sizes = [attrs.asdict(t) for t in DEFAULT_THUMBNAIL_SIZES]
        for i, item in enumerate(s.get("thumbnail_sizes", list, default_sizes)):
            t = _Section(item, f"{s.key('thumbnail_sizes')}[{i}]")
            sizes.append(ThumbnailSize(t.positive("width", int, attrs.NOTHING),
                                       t.positive("height", int, attrs.NOTHING),
                                       t.choice("method", ("scale", "crop"), "scale")))
        cutoff = s.get("legacy_unauthenticated_cutoff_ms", int, 0)
        if cutoff < 0:
            raise ConfigError(f"{s.key('legacy_unauthenticated_cutoff_ms')}: must not be negative")
        return cls(
            media_store_path=s.path_value("media_store_path", base_dir, "media_store"),
            max_upload_size=s.positive("max_upload_size", int, 50 * 1024 * 1024),
            max_storage_per_user=s.positive("max_storage_per_user", int, None),
            allowed_content_types=_content_types(s, "allowed_content_types"),
            denied_content_types=_content_types(s, "denied_content_types"),
            legacy_unauthenticated_media=s.choice("legacy_unauthenticated_media",
                                                  ("all", "none", "before_cutoff"), "before_cutoff"),
            legacy_unauthenticated_cutoff_ms=cutoff,
            thumbnail_sizes=tuple(sizes),
            max_image_pixels=s.positive("max_image_pixels", int, 32 * 1024 * 1024),
            unused_expiration_ms=s.positive("unused_expiration_ms", int, 24 * 60 * 60 * 1000),
            max_pending_uploads=s.positive("max_pending_uploads", int, 10),
            url_preview=UrlPreviewConfig.load(s.sub("url_preview")),
        )


def _content_types(s: _Section, name: str) -> tuple[str, ...]:
    values = s.get(name, list, [])
    for i, v in enumerate(values):
        if not isinstance(v, str) or "/" not in v:
            raise ConfigError(f"{s.key(name)}[{i}]: must be a content type like image/png or image/*")
    return tuple(v.lower() for v in values)


@attrs.frozen
class PresenceConfig:
    """Presence (online/unavailable/offline): some organisations turn it off for privacy
    or load; then every update is ignored and everyone reads as offline."""

    enabled: bool = True
    # After this long without activity an online user becomes unavailable.
    idle_timeout_ms: int = 5 * 60 * 1000

    @classmethod
    def load(cls, s: _Section) -> PresenceConfig:
        return cls(enabled=s.get("enabled", bool, True),
                   idle_timeout_ms=s.positive("idle_timeout_ms", int, 5 * 60 * 1000))


@attrs.frozen
class PushConfig:
    """Push notifications to devices."""

    # Pushers may name gateways on loopback or private networks (a gateway run next to the
    # homeserver, tests). Off by default: a user could otherwise make the server post to
    # internal services.
    allow_private_gateway_addresses: bool = False
    # The P-256 key signing VAPID tokens for web push (RFC 8292); created on first start
    # when missing. None only for a PushConfig built in code.
    vapid_private_key_path: str | None = None
    # The `sub` of VAPID tokens: how a push service operator reaches the admin.
    vapid_contact: str | None = None

    @classmethod
    def load(cls, s: _Section, base_dir: str) -> PushConfig:
        contact = s.get("vapid_contact", str, None)
        if contact is not None and not contact.startswith(("mailto:", "https://")):
            raise ConfigError(f"{s.key('vapid_contact')}: must be a mailto: or https: URL")
        return cls(allow_private_gateway_addresses=s.get("allow_private_gateway_addresses",
                                                         bool, False),
                   vapid_private_key_path=s.path_value("vapid_private_key_path", base_dir,
                                                       "vapid.key"),
                   vapid_contact=contact)


@attrs.frozen
class Config:
    server_name: str
    public_baseurl: str
    signing_key_path: str
    client_listener: ListenerConfig
    federation_listener: ListenerConfig | None
    database: DatabaseConfig
    registration: RegistrationConfig
    auth: AuthConfig
    rate_limits: dict[str, RateLimit]
    max_request_body_bytes: int
    serve_server_wellknown: bool
    log_level: str
    config_dir: str
    media: MediaConfig = attrs.field(factory=lambda: MediaConfig(media_store_path="media_store"))
    presence: PresenceConfig = attrs.field(factory=PresenceConfig)
    push: PushConfig = attrs.field(factory=PushConfig)

    @classmethod
    def from_dict(cls, data: Any, config_dir: str) -> Config:
        s = _Section(data, "")
        server_name = s.get("server_name", str)
        if not is_valid_server_name(server_name):
            raise ConfigError(f"server_name: not a valid Matrix server name: {server_name!r}")
        client = ListenerConfig.load(s.sub("listeners").sub("client"), config_dir, 8008)
        fed_section = s.sub("listeners").sub("federation")
        federation = None
        if fed_section.data.get("enabled", True) is not False:
            federation = ListenerConfig.load(fed_section, config_dir, 8448)
        default_base = f"http://{'localhost' if client.bind in ('127.0.0.1', '0.0.0.0', '::') else client.bind}:{client.port}/"
        public_baseurl = s.get("public_baseurl", str, default_base)
        if not public_baseurl.startswith(("http://", "https://")):
            raise ConfigError(f"public_baseurl: must be an http(s) URL, got {public_baseurl!r}")
        return cls(
            server_name=server_name,
            public_baseurl=public_baseurl.rstrip("/") + "/",
            signing_key_path=s.path_value("signing_key_path", config_dir),
            client_listener=client,
            federation_listener=federation,
            database=DatabaseConfig.load(s.sub("database"), config_dir),
            registration=RegistrationConfig.load(s.sub("registration")),
            auth=AuthConfig.load(s.sub("auth")),
            rate_limits=_load_rate_limits(s.sub("rate_limits")),
            max_request_body_bytes=s.positive("max_request_body_bytes", int, 1024 * 1024),
            serve_server_wellknown=s.get("serve_server_wellknown", bool, True),
            log_level=s.choice("log_level", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
            config_dir=config_dir,
            media=MediaConfig.load(s.sub("media"), config_dir),
            presence=PresenceConfig.load(s.sub("presence")),
            push=PushConfig.load(s.sub("push"), config_dir),
        )


def load_config(path: str) -> Config:
    """Read and validate a YAML config file; raises ConfigError with a one-line reason."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    config = Config.from_dict(data, os.path.dirname(os.path.abspath(path)))
    if not os.path.exists(config.signing_key_path):
        raise ConfigError(f"signing_key_path: file not found: {config.signing_key_path}")
    try:
        load_signing_key(config.signing_key_path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"signing_key_path: not a usable signing key file: {e}") from None
    return config
