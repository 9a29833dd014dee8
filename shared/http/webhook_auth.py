"""The alert webhook's credential: the Entra token an action group's *secure webhook* sends.

An action group with `useAadAuth` asks Entra for a token for the receiving application (its
`identifierUri`) as the first-party action groups application, and sends it as
`Authorization: Bearer`. The function is anonymous to the Functions host (no key in any URL);
this module is its lock: signature from the tenant's published keys (JWKS), `iss` the tenant,
`aud` the webhook application, `appid`/`azp` the action groups application, and the app role
`ActionGroupsSecureWebhook` in `roles`. Nothing else about the token is trusted or logged.
The application pins `api.requestedAccessTokenVersion` (infra/modules/webhook-app.bicep), yet
both versions are accepted: a v1 token's `aud` is the identifier URI that was asked for, a v2
token's is the application's client id, and an action group does not retry a 401.
Sources: Microsoft Learn, "Action groups" (secure webhook; the PowerShell script names the
application id and the role), and "Access tokens in the Microsoft identity platform" (v1 `iss`
`https://sts.windows.net/{tid}/`, v2 `https://login.microsoftonline.com/{tid}/v2.0`; `appid` v1,
`azp` v2; `aud` of a v2 token is the resource's client id).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shared.http.api import ApiError

if TYPE_CHECKING:
    from jwt import PyJWKClient

    from shared.config.settings import Settings

ACTION_GROUPS_APP_ID = "461e8683-5575-4561-ac7f-899cc907d62a"
ACTION_GROUPS_ROLE = "ActionGroupsSecureWebhook"
_clients: dict[str, PyJWKClient] = {}
_lock = threading.Lock()


def jwks_url(settings: Settings) -> str:
    return f"{settings.entra_authority.rstrip('/')}/{settings.alert_tenant_id}/discovery/v2.0/keys"


def _client(url: str) -> PyJWKClient:
    from jwt import PyJWKClient

    with _lock:
        if url not in _clients:
            # Keys are cached; an unknown `kid` (a rotated key) refetches the set.
            _clients[url] = PyJWKClient(url, cache_keys=True, lifespan=3600, timeout=10)
        return _clients[url]


def forget_signing_keys() -> None:
    """A new host starts without cached keys. Within a process, an unknown `kid` refetches the set
    at most once per PyJWT's 30 s cooldown: a tenant whose keys changed inside that window would
    be refused until it passes."""
    with _lock:
        _clients.clear()


def _unauthorized(message: str) -> ApiError:
    error = ApiError(401, "Unauthorized", message, "Authorization")
    error.response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return error


def audiences(settings: Settings) -> list[str]:
    """The `aud` values of this healer's tokens: the identifier URI (v1) and the client id (v2)."""
    return [a for a in (settings.alert_audience, settings.alert_client_id) if a]


def check_action_group_token(headers: Mapping[str, str], settings: Settings) -> dict[str, Any]:
    """The token's claims if it is an action group's secure-webhook token for this healer, else
    ApiError 401 naming what is wrong (never the token)."""
    import jwt

    if not audiences(settings) or not settings.alert_tenant_id:
        raise _unauthorized(
            "the alert webhook is not configured (HEALER_ALERT_TENANT_ID and HEALER_ALERT_AUDIENCE or "
            "HEALER_ALERT_CLIENT_ID are unset)"
        )
    header = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("a bearer token from the action group's secure webhook is required")
    tenant = settings.alert_tenant_id
    try:
        key = _client(jwks_url(settings)).get_signing_key_from_jwt(token.strip())
        claims: dict[str, Any] = jwt.decode(
            token.strip(),
            key.key,
            algorithms=["RS256"],
            audience=audiences(settings),
            issuer=[f"https://sts.windows.net/{tenant}/", f"https://login.microsoftonline.com/{tenant}/v2.0"],
            options={"require": ["exp", "iat", "aud", "iss"]},
            leeway=60,
        )
    except jwt.ExpiredSignatureError as exc:
        raise _unauthorized("the token has expired") from exc
    except jwt.InvalidAudienceError as exc:
        raise _unauthorized("the token's aud is neither HEALER_ALERT_AUDIENCE nor HEALER_ALERT_CLIENT_ID") from exc
    except jwt.InvalidIssuerError as exc:
        raise _unauthorized("the token's iss is not the tenant HEALER_ALERT_TENANT_ID") from exc
    except jwt.PyJWKClientConnectionError as exc:  # Entra unreachable: the action group retries a 503
        raise ApiError(503, "Unavailable", "the tenant's signing keys could not be fetched; retry later") from exc
    except jwt.PyJWKClientError as exc:
        raise _unauthorized(f"the token's signing key is not one the tenant publishes ({type(exc).__name__})") from exc
    except jwt.PyJWTError as exc:
        raise _unauthorized(f"the token is not valid ({type(exc).__name__})") from exc
    if str(claims.get("tid", "")).lower() != tenant.lower():
        raise _unauthorized("the token's tid is not HEALER_ALERT_TENANT_ID")
    client = claims.get("appid") or claims.get("azp")
    if client != ACTION_GROUPS_APP_ID:
        raise _unauthorized("the token was not issued to the action groups application (appid/azp)")
    roles = claims.get("roles")
    if not isinstance(roles, list) or ACTION_GROUPS_ROLE not in roles:
        raise _unauthorized(f"the token does not carry the app role {ACTION_GROUPS_ROLE}")
    return claims
