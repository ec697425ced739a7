"""Named API identities: who a bearer token is, and the roles it holds.

The identities are read from ``registry.api_tokens_file`` (YAML or JSON), one entry per name::

    ci:
      roles: [reader, deployer]
      token_sha256: 3f1c…64 hex digits…          # sha256 of the token (preferred)
    flagger:
      role: flagger
      token: the-token-flagger-sends-as-metadata-token   # or the token itself (>= 16 chars)

The deprecated single ``registry.api_token`` is one more identity, ``api-token``, holding every
role. A presented token is hashed (SHA-256) and compared with every identity's digest in
constant time, without stopping at a match. The file is read again when it changes (a mounted
Secret updated in place), so tokens rotate without a restart; a file that became unreadable or
invalid refuses every authenticated call until it is fixed (it never falls back to the old one).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Final

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from metarec.config import Settings
from metarec.errors import ConfigError


class Role(StrEnum):
    """What an identity may do (docs/registry.md lists the routes of each)."""

    READER = "reader"  # GET calls, when registry.read_requires_token is set
    DEPLOYER = "deployer"  # gate, register, promote, archive, rollback
    CONTROLLER = "controller"  # promote, archive, rollback (a canary verdict)
    FLAGGER = "flagger"  # /flagger/* webhooks


LEGACY_IDENTITY: Final = "api-token"
IdentityName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$")]


@dataclass(frozen=True)
class Identity:
    """An authenticated caller: its name (the ledger's actor) and its roles."""

    name: str
    roles: frozenset[Role]


class IdentitySpec(BaseModel):
    """One entry of the tokens file: its role(s) and its token (or the token's SHA-256)."""

    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    roles: list[Role] = Field(default_factory=list, max_length=8)
    token: SecretStr | None = None
    token_sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not 16 <= len(value.get_secret_value()) <= 4096:
            raise ValueError("a token must have 16 to 4096 characters (or give its token_sha256)")
        return value

    @model_validator(mode="after")
    def _one_token_and_a_role(self) -> IdentitySpec:
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError("give exactly one of token_sha256 and token")
        if self.role is None and not self.roles:
            raise ValueError("give its role (role: deployer) or roles (roles: [reader, …])")
        return self

    def digest(self) -> bytes:
        """The SHA-256 digest of the identity's token."""
        if self.token is not None:
            return token_digest(self.token.get_secret_value().encode("utf-8"))
        return bytes.fromhex(str(self.token_sha256))

    def all_roles(self) -> frozenset[Role]:
        """``role`` and ``roles`` together."""
        return frozenset([*self.roles, *([self.role] if self.role else [])])


class TokensFile(RootModel[dict[IdentityName, IdentitySpec]]):
    """The tokens file: identity name → its spec."""


def token_digest(token: bytes) -> bytes:
    """The SHA-256 digest a token is compared by."""
    return hashlib.sha256(token).digest()


def load_identities(path: Path) -> dict[bytes, Identity]:
    """Read a tokens file into token digest → identity.

    Raises:
        ConfigError: The file is missing, not YAML/JSON, or an entry is invalid (the message
            names the entry and the problem, never a token); two identities share a token; an
            entry is named ``api-token`` (reserved for ``registry.api_token``).
    """
    fix = f"correct {path} (registry.api_tokens_file); see docs/registry.md."
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        specs = TokensFile.model_validate(data or {}).root
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"API tokens file {path} cannot be read ({type(exc).__name__}).", fix=fix
        ) from None
    except ValidationError as exc:
        first = exc.errors(include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "<top>"
        raise ConfigError(f"API tokens file {path}: '{where}': {first['msg']}.", fix=fix) from None
    found: dict[bytes, Identity] = {}
    for name, spec in specs.items():
        if name == LEGACY_IDENTITY:
            raise ConfigError(f"API tokens file {path} names '{name}', a reserved name.", fix=fix)
        digest = spec.digest()
        if digest in found:
            raise ConfigError(
                f"API tokens file {path}: {found[digest].name!r} and {name!r} share a token.",
                fix="give every identity its own token.",
            )
        found[digest] = Identity(name=name, roles=spec.all_roles())
    return found


class IdentityBook:
    """Every identity the API accepts, by token; the tokens file is re-read when it changes."""

    def __init__(self, *, legacy_token: SecretStr | None, tokens_file: Path | None) -> None:
        """Read the tokens file now (a bad file fails here, at start-up).

        Args:
            legacy_token: ``registry.api_token`` (identity ``api-token``, every role).
            tokens_file: ``registry.api_tokens_file`` (None: the legacy token only).

        Raises:
            ConfigError: The tokens file is invalid (:func:`load_identities`).
        """
        self._legacy: dict[bytes, Identity] = {}
        if legacy_token is not None and legacy_token.get_secret_value():
            digest = token_digest(legacy_token.get_secret_value().encode("utf-8"))
            self._legacy[digest] = Identity(name=LEGACY_IDENTITY, roles=frozenset(Role))
        self._path = tokens_file
        self._seen: tuple[int, int, int] | None = None
        self._from_file: dict[bytes, Identity] = {}
        self._refresh()

    @classmethod
    def from_settings(cls, settings: Settings) -> IdentityBook:
        """The identities of ``registry.api_token`` and ``registry.api_tokens_file``."""
        registry = settings.registry
        return cls(legacy_token=registry.api_token, tokens_file=registry.api_tokens_file)

    @property
    def configured(self) -> bool:
        """Whether any identity can authenticate at all."""
        return bool(self._legacy) or self._path is not None

    def authenticate(self, token: bytes) -> Identity | None:
        """The identity holding ``token`` (None: no identity holds it).

        Raises:
            ConfigError: The tokens file changed and is now unreadable or invalid.
        """
        self._refresh()
        given = token_digest(token)
        match = None
        for digest, identity in (*self._legacy.items(), *self._from_file.items()):
            if hmac.compare_digest(given, digest):  # every digest is compared: no early exit
                match = identity
        return match

    def _refresh(self) -> None:
        if self._path is None:
            return
        try:
            stat = self._path.stat()
        except OSError:
            self._seen, self._from_file = None, {}
            raise ConfigError(
                f"API tokens file {self._path} is missing.",
                fix="mount the identities Secret there or correct registry.api_tokens_file.",
            ) from None
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if signature != self._seen:
            self._seen, self._from_file = None, {}  # fail closed while the file is invalid
            self._from_file = load_identities(self._path)
            self._seen = signature
