"""Verifies a JWT-SVID the way an OIDC relying party does, with PyJWT:
discovery document -> jwks_uri -> PyJWKClient -> jwt.decode, requiring the
token's iss to equal the discovery document's issuer.

usage: oidc_verify.py ISSUER CA_FILE AUDIENCE TOKEN...
Prints "ok <kid> <sub>" per token; exits non-zero on the first failure.
Used by tests/oidc.rs (PyJWT: pip install 'pyjwt[crypto]').
"""
import json
import ssl
import sys
import urllib.request

import jwt


def main():
    issuer, ca_file, audience, tokens = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    ctx = ssl.create_default_context(cafile=ca_file)
    with urllib.request.urlopen(issuer + "/.well-known/openid-configuration", context=ctx) as r:
        discovery = json.load(r)
    assert discovery["issuer"] == issuer, discovery
    with urllib.request.urlopen(discovery["jwks_uri"], context=ctx) as r:
        jwks = json.load(r)
    for k in jwks["keys"]:
        # JWT authorities only: no X.509 authority (which carries x5c).
        assert "x5c" not in k and k.get("use") == "sig", k
    # A fresh client per run: no key cached from before a rotation.
    client = jwt.PyJWKClient(discovery["jwks_uri"], cache_jwk_set=False, ssl_context=ctx)
    algs = discovery["id_token_signing_alg_values_supported"]
    for token in tokens:
        key = client.get_signing_key_from_jwt(token)
        # issuer= makes PyJWT require the iss claim and compare it, as cloud
        # relying parties do; options= makes its absence an error too.
        claims = jwt.decode(
            token,
            key.key,
            algorithms=algs,
            audience=audience,
            issuer=discovery["issuer"],
            options={"require": ["iss", "sub", "aud", "exp"]},
        )
        print("ok", key.key_id, claims["sub"])


if __name__ == "__main__":
    main()
