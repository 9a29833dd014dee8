"""Entra ID stand-in: identities, signed tokens, and an App Service style managed-identity endpoint.

Tokens are JWTs signed RS256 with a per-sandbox key whose public half is published as a JWKS
(`/{tenant}/discovery/v2.0/keys`, as login.microsoftonline.com does), carrying the claims the real
services read (`aud`, `iss`, `tid`, `oid`, `appid`, `idtyp`, `roles`). Each stand-in verifies
signature, expiry and audience, so a token minted for one service is refused by another, as in Azure.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, replace

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.wrappers import Request, Response

from sandbox.httpserver import json_response

KUSTO_AUDIENCE = "https://kusto.kusto.windows.net"
IOTC_AUDIENCE = "https://apps.azureiotcentral.com"
LOGANALYTICS_AUDIENCE = "https://api.loganalytics.io"
ARM_AUDIENCE = "https://management.azure.com"
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
TENANT_DOMAIN = "sandbox.onmicrosoft.com"
TOKEN_LIFETIME_S = 3600
# The first-party application that sends an action group's secure webhook, and the app role it
# must hold on the receiving application (Microsoft: "Action groups", secure webhook script).
ACTION_GROUPS_APP_ID = "461e8683-5575-4561-ac7f-899cc907d62a"
ACTION_GROUPS_ROLE = "ActionGroupsSecureWebhook"


@dataclass(frozen=True)
class Identity:
    """A service principal or managed identity as Entra ID knows it."""

    name: str
    object_id: str
    client_id: str
    tenant_id: str = TENANT_ID

    @property
    def fqn(self) -> str:
        """How ADX names this identity when it authenticates (application id + tenant)."""
        return f"aadapp={self.client_id};{self.tenant_id}"

    def rotated(self) -> Identity:
        """A system-assigned identity switched off and on: same name, new ids."""
        return replace(self, object_id=str(uuid.uuid4()), client_id=str(uuid.uuid4()))


def new_identity(name: str) -> Identity:
    return Identity(name=name, object_id=str(uuid.uuid4()), client_id=str(uuid.uuid4()))


class AuthError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Directory:
    """Identities and the key that signs their tokens."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.key_id = secrets.token_hex(8)
        # The action groups' service principal as this tenant knows it (its object id is per tenant).
        self.action_groups_object_id = str(uuid.uuid4())
        self._lock = threading.Lock()
        self._by_name: dict[str, Identity] = {}
        self.identity_header = secrets.token_hex(16)
        self.token_requests = 0

    def add(self, identity: Identity) -> Identity:
        with self._lock:
            self._by_name[identity.name] = identity
        return identity

    def get(self, name: str) -> Identity:
        with self._lock:
            return self._by_name[name]

    def find(self, *, client_id: str | None = None, object_id: str | None = None) -> Identity | None:
        with self._lock:
            for identity in self._by_name.values():
                if client_id and identity.client_id.lower() == client_id.lower():
                    return identity
                if object_id and identity.object_id.lower() == object_id.lower():
                    return identity
        return None

    def tenant_of(self, text: str) -> str | None:
        """A tenant named by GUID or by its domain, as the tenant GUID (None if unknown)."""
        if text.lower() in (TENANT_ID, TENANT_DOMAIN):
            return TENANT_ID
        return None

    def all(self) -> list[Identity]:
        with self._lock:
            return list(self._by_name.values())

    def mint(self, identity: Identity, audience: str, lifetime_s: int = TOKEN_LIFETIME_S) -> str:
        now = int(time.time())
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{identity.tenant_id}/",
            "iat": now,
            "nbf": now - 5,
            "exp": now + lifetime_s,
            "tid": identity.tenant_id,
            "oid": identity.object_id,
            "appid": identity.client_id,
            "sub": identity.object_id,
            "idtyp": "app",
            "name": identity.name,
        }
        return self._sign(claims)

    def mint_action_group(
        self,
        audience: str,
        *,
        tenant_id: str = TENANT_ID,
        roles: tuple[str, ...] = (ACTION_GROUPS_ROLE,),
        version: int = 1,
        **extra: object,
    ) -> str:
        """The token an action group's secure webhook carries: an app-only token from the
        first-party action groups application for the receiver's application, with the app role
        assigned to it. Version 1 (`aud` the identifier URI asked for, `iss` sts.windows.net,
        `appid`) or 2, as the application's `requestedAccessTokenVersion` says (`aud` its client
        id, `iss` login.microsoftonline.com/{tid}/v2.0, `azp`; Microsoft Learn, "Access tokens in
        the Microsoft identity platform"). `extra` overrides claims (tests)."""
        now = int(time.time())
        claims: dict[str, object] = {
            "aud": audience,
            "iat": now,
            "nbf": now - 5,
            "exp": now + TOKEN_LIFETIME_S,
            "tid": tenant_id,
            "idtyp": "app",
            "oid": self.action_groups_object_id,
            "sub": self.action_groups_object_id,
            "roles": list(roles),
        }
        if version == 1:
            claims.update(
                {"iss": f"https://sts.windows.net/{tenant_id}/", "appid": ACTION_GROUPS_APP_ID, "appidacr": "2"}
            )
            claims["ver"] = "1.0"
        elif version == 2:
            claims.update(
                {
                    "iss": f"https://login.microsoftonline.com/{tenant_id}/v2.0",
                    "azp": ACTION_GROUPS_APP_ID,
                    "azpacr": "2",
                    "ver": "2.0",
                }
            )
        else:
            raise ValueError(f"version={version!r} must be 1 or 2")
        claims.update(extra)
        return self._sign(claims)

    def _sign(self, claims: dict[str, object]) -> str:
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.key_id})

    def jwks(self) -> dict[str, object]:
        """The signing keys as Entra publishes them (`{"keys": [JWK…]}`)."""
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        jwk.update({"kid": self.key_id, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    def authenticate(self, request: Request, audiences: tuple[str, ...]) -> Identity:
        """The caller's identity from its bearer token, or AuthError (401) as the service would."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthError(401, "Unauthorized", "A bearer token is required.")
        try:
            claims = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                audience=list(audiences),
                options={"require": ["exp"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError(401, "Unauthorized", "The access token has expired.") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError(401, "Unauthorized", "The access token audience is not valid for this service.") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(401, "Unauthorized", "The access token is not valid.") from exc
        identity = self.find(object_id=str(claims.get("oid", "")))
        if identity is None or identity.client_id != claims.get("appid"):
            # A rotated identity's old tokens name an object id Entra no longer knows.
            raise AuthError(401, "Unauthorized", "The access token names an unknown principal.")
        return identity


class TokenEndpoint:
    """`IDENTITY_ENDPOINT` + `IDENTITY_HEADER` (App Service, api-version 2019-08-01)."""

    def __init__(self, directory: Directory, default_identity: str) -> None:
        self.directory = directory
        self.default_identity = default_identity

    def __call__(self, request: Request) -> Response:
        if request.path.endswith("/discovery/v2.0/keys"):  # /{tenant}/discovery/v2.0/keys
            return json_response(self.directory.jwks())
        if request.method != "GET":
            return _msi_error(405, "Only GET is supported.")
        if request.headers.get("X-IDENTITY-HEADER") != self.directory.identity_header:
            return _msi_error(401, "X-IDENTITY-HEADER is missing or wrong.")
        if request.args.get("api-version") != "2019-08-01":
            return _msi_error(400, "api-version must be 2019-08-01.")
        resource = request.args.get("resource", "")
        if not resource:
            return _msi_error(400, "resource is required.")
        client_id = request.args.get("client_id")
        object_id = request.args.get("principal_id") or request.args.get("object_id")
        if client_id or object_id:
            identity = self.directory.find(client_id=client_id, object_id=object_id)
            if identity is None:
                return _msi_error(400, "No managed identity with that id is assigned to this resource.")
        else:
            identity = self.directory.get(self.default_identity)
        audience = resource.removesuffix("/.default").rstrip("/")
        lifetime = TOKEN_LIFETIME_S
        self.directory.token_requests += 1
        return json_response(
            {
                "access_token": self.directory.mint(identity, audience, lifetime),
                "expires_on": str(int(time.time()) + lifetime),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": identity.client_id,
            }
        )


def _msi_error(status: int, message: str) -> Response:
    return json_response({"statusCode": status, "message": message}, status)
