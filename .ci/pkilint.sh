#!/usr/bin/env bash
# Lints certificates that Herald minted with pkilint's RFC 5280 linter.
# Passes when no finding is ERROR or FATAL, apart from pkilint's known false
# positive on the spiffe:// URI scheme (pkix.invalid_uri_syntax), which it
# raises for any URI scheme it does not know.
# Usage: .ci/pkilint.sh path/to/herald
set -euo pipefail
herald="$1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$herald" x509 mint --data-dir "$work/p256" --spiffe-id spiffe://example.org/leaf \
  --write "$work/p256/out" >/dev/null
"$herald" x509 mint --data-dir "$work/p384" --ca-key-type ec-p384 --key-type ec-p384 \
  --spiffe-id spiffe://example.org/ns/prod/sa/web --dns-name web.example.org \
  --dns-name web.prod.svc --write "$work/p384/out" >/dev/null

status=0
for cert in "$work"/p256/out/svid.pem "$work"/p256/out/bundle.pem \
            "$work"/p384/out/svid.pem "$work"/p384/out/bundle.pem; do
  findings="$(lint_pkix_cert lint "$cert" || true)"
  bad="$(printf '%s\n' "$findings" | grep -E '\((ERROR|FATAL)\)' | grep -v 'pkix.invalid_uri_syntax' || true)"
  name="${cert#"$work"/}"
  if [ -n "$bad" ]; then
    echo "pkilint: $name has findings:"
    printf '%s\n' "$findings"
    status=1
  else
    echo "pkilint: $name clean (no ERROR/FATAL besides the spiffe:// URI false positive)"
  fi
done
exit "$status"
