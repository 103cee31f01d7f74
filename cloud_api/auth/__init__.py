"""People: password hashing, access tokens, login with rate limiting, roles and site scope.

Gateways authenticate with API keys (:mod:`cloud_api.api.deps`); people log in
here with the OAuth2 password flow and carry short-lived signed tokens.
"""
