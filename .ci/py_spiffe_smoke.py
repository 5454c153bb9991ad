"""Smoke test: py-spiffe (PyPI package `spiffe`) fetches an X509-SVID, the
bundles and a JWT-SVID from `herald dev`, and the JWT validates.

Usage: python3 .ci/py_spiffe_smoke.py path/to/herald
Exits non-zero with a message on any failure.
"""
import os
import re
import subprocess
import sys
import tempfile
import time

from spiffe import WorkloadApiClient


def main() -> int:
    herald = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [herald, "dev", "--data-dir", os.path.join(tmp, "herald")],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            socket = None
            deadline = time.time() + 60
            while time.time() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                m = re.match(r"export SPIFFE_ENDPOINT_SOCKET=(\S+)", line)
                if m:
                    socket = m.group(1)
                    break
            if socket is None:
                print("py-spiffe smoke: herald dev printed no SPIFFE_ENDPOINT_SOCKET line")
                return 1
            uid = os.getuid()
            want = f"spiffe://example.org/dev/user/{uid}"
            last = None
            for _ in range(50):
                try:
                    with WorkloadApiClient(socket) as client:
                        svid = client.fetch_x509_svid()
                        bundles = client.fetch_x509_bundles()
                        jwt = client.fetch_jwt_svid(audience={"smoke"})
                        jwt_bundles = client.fetch_jwt_bundles()
                        ok = client.validate_jwt_svid(jwt.token, "smoke")
                    break
                except Exception as e:  # the agent may still be syncing
                    last = e
                    time.sleep(0.2)
            else:
                print(f"py-spiffe smoke: fetching failed: {last!r}")
                return 1
            got = str(svid.spiffe_id)
            assert got == want, f"X509-SVID for {got}, expected {want}"
            assert bundles.get_bundle_for_trust_domain(svid.spiffe_id.trust_domain) is not None, "no X.509 bundle"
            assert str(jwt.spiffe_id) == want, f"JWT-SVID for {jwt.spiffe_id}"
            assert jwt_bundles.get_bundle_for_trust_domain(svid.spiffe_id.trust_domain) is not None, "no JWT bundle"
            assert str(ok.spiffe_id) == want, "ValidateJWTSVID returned another ID"
            print(f"py-spiffe smoke: OK ({got}, leaf serial {svid.leaf.serial_number:x}, JWT validated)")
            return 0
        finally:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
