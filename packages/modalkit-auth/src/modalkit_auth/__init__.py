"""modalkit-auth: API-key auth for modalkit services, as a FastAPI dependency, and Modal proxy auth.

Keys come from the config file (development), an environment variable, or an AWS SSM parameter (the ``[ssm]``
extra), refreshed in the background with a grace period for rotated keys::

    authenticator = build_authenticator(settings.app_settings)   # None when no auth is configured
    router = APIRouter(dependencies=[Depends(authenticator.dependency)])
    await authenticator.start()    # fetch SSM keys; until then protected routes answer 503
    ...
    await authenticator.stop()
"""

from importlib.metadata import version as _version

from modalkit_auth import errors
from modalkit_auth._authenticator import Authenticator, ProxyCredentials
from modalkit_auth._build import build_authenticator, new_job_id
from modalkit_auth._keys import KeySource
from modalkit_auth.errors import AuthConfigError, AuthError, KeySourceError, MissingExtraError

__version__ = _version("modalkit-auth")

__all__ = [
    "AuthConfigError",
    "AuthError",
    "Authenticator",
    "KeySource",
    "KeySourceError",
    "MissingExtraError",
    "ProxyCredentials",
    "__version__",
    "build_authenticator",
    "errors",
    "new_job_id",
]
