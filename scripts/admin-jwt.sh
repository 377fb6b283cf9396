#!/usr/bin/env bash
# admin-jwt.sh KEY [SECONDS]: prints a JWT for verdictd's `bearer_jwt` admin API (role
# admin, audience kbs), valid SECONDS (default 300), signed by openssl with the Ed25519
# private KEY (PEM) whose public half is in verdictd's [admin] public_keys.
set -euo pipefail
key=${1:?usage: admin-jwt.sh KEY [SECONDS]}
secs=${2:-300}
[[ -r $key ]] || { echo "admin-jwt.sh: $key: cannot read the key" >&2; exit 1; }
# The header says EdDSA: any other key would sign a token verdictd refuses.
openssl pkey -in "$key" -noout -text 2>/dev/null | grep -q '^ED25519 Private-Key' ||
  { echo "admin-jwt.sh: $key: not an Ed25519 private key (openssl genpkey -algorithm ed25519)" >&2; exit 1; }
b64url() { basenc --base64url -w0 | tr -d =; }
now=$(date +%s)
h=$(printf '{"alg":"EdDSA","typ":"JWT"}' | b64url)
p=$(printf '{"iss":"admin-jwt.sh","role":"admin","aud":["kbs"],"iat":%d,"exp":%d}' "$now" $((now + secs)) | b64url)
input=$(mktemp)
trap 'rm -f "$input"' EXIT
printf '%s.%s' "$h" "$p" > "$input"
sig=$(openssl pkeyutl -sign -rawin -inkey "$key" -in "$input" | b64url)
printf '%s.%s.%s\n' "$h" "$p" "$sig"
