#!/bin/bash
# Makes throw-away TLS credentials for the NBD server tests, in the layouts qemu-nbd and
# libnbd use (see src/nbd/tls.h):
#
#   DIR/ca-cert.pem, ca-key.pem          a self-signed test CA
#   DIR/server-cert.pem, server-key.pem  the server's certificate (CN and SAN localhost,
#                                        SAN 127.0.0.1 and ::1), signed by the CA
#   DIR/client-cert.pem, client-key.pem  a client certificate (libnbd sends it if present)
#   DIR/keys.psk                         one PSK line "qblock:<64 hex digits>"
#
# With --intermediate the server certificate is signed by an intermediate CA instead:
# ca-cert.pem then holds the intermediate followed by the root (the chain the server
# completes from), and root-cert.pem holds the root alone, for clients that trust only it.
#
# Usage: make-tls-creds.sh [--intermediate] DIR     (needs certtool, from gnutls-bin)
set -euo pipefail

intermediate=0
if [[ ${1:-} == --intermediate ]]; then
  intermediate=1
  shift
fi
if [[ $# -ne 1 ]]; then
  echo "usage: $0 [--intermediate] DIR" >&2
  exit 2
fi
dir=$1
if ! command -v certtool >/dev/null; then
  echo "$0: certtool not found (install gnutls-bin)" >&2
  exit 1
fi

mkdir -p "$dir"
umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Runs certtool quietly, showing its output only when it fails.
certtool_q() {
  if ! certtool "$@" >"$tmp/certtool.log" 2>&1; then
    echo "$0: certtool $*:" >&2
    cat "$tmp/certtool.log" >&2
    exit 1
  fi
}
# RSA keys: with them the certificates can carry key encipherment next to digital signature,
# which QEMU's credential checks insist on, so qemu-nbd and qemu-img accept the same files.
genkey() {
  certtool_q --generate-privkey --key-type=rsa --bits=3072 --no-text --outfile "$1"
}

cat >"$tmp/ca.info" <<'EOF'
organization = "qblock test"
cn = "qblock test CA"
ca
cert_signing_key
crl_signing_key
expiration_days = 3650
EOF
cat >"$tmp/intermediate.info" <<'EOF'
organization = "qblock test"
cn = "qblock test intermediate CA"
ca
path_len = 0
cert_signing_key
crl_signing_key
expiration_days = 3650
EOF
cat >"$tmp/server.info" <<'EOF'
organization = "qblock test"
cn = "localhost"
dns_name = "localhost"
ip_address = "127.0.0.1"
ip_address = "::1"
tls_www_server
signing_key
encryption_key
expiration_days = 3650
EOF
cat >"$tmp/client.info" <<'EOF'
organization = "qblock test"
cn = "qblock test client"
tls_www_client
signing_key
encryption_key
expiration_days = 3650
EOF

genkey "$dir/ca-key.pem"
certtool_q --generate-self-signed --no-text --template "$tmp/ca.info" \
  --load-privkey "$dir/ca-key.pem" --outfile "$tmp/root-cert.pem"

# The key and certificate that sign the server's certificate.
signer_key="$dir/ca-key.pem"
signer_cert="$tmp/root-cert.pem"
if [[ $intermediate -eq 1 ]]; then
  genkey "$dir/intermediate-key.pem"
  certtool_q --generate-certificate --no-text --template "$tmp/intermediate.info" \
    --load-privkey "$dir/intermediate-key.pem" \
    --load-ca-certificate "$tmp/root-cert.pem" --load-ca-privkey "$dir/ca-key.pem" \
    --outfile "$tmp/intermediate-cert.pem"
  signer_key="$dir/intermediate-key.pem"
  signer_cert="$tmp/intermediate-cert.pem"
  cat "$tmp/intermediate-cert.pem" "$tmp/root-cert.pem" >"$dir/ca-cert.pem"
  cp "$tmp/root-cert.pem" "$dir/root-cert.pem"
else
  cp "$tmp/root-cert.pem" "$dir/ca-cert.pem"
fi

for who in server client; do
  genkey "$dir/$who-key.pem"
  certtool_q --generate-certificate --no-text --template "$tmp/$who.info" \
    --load-privkey "$dir/$who-key.pem" \
    --load-ca-certificate "$signer_cert" --load-ca-privkey "$signer_key" \
    --outfile "$dir/$who-cert.pem"
done

# The PSK file: identity "qblock" with a random 32-byte key in hex.
key=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
printf 'qblock:%s\n' "$key" >"$dir/keys.psk"

# Certificates are public; keys and the PSK file stay owner-only (umask above).
chmod 644 "$dir"/*-cert.pem
